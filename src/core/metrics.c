/*
 * metrics.c -- the runtime's metrics in Prometheus text format.
 *
 * Counters live in the runtime (stead__metrics_core) and are bumped where
 * things happen; this file only renders them. Modules added later
 * (storage, alarms, bus) render their own families from here.
 */
#include "core/core.h"

#include <stdlib.h>

static int counter(stead__buf *b, const char *name, const char *help,
                   const stead__counter *c) {
  return stead__metric_header(b, name, "counter", help) |
         stead__metric_value(b, name, NULL, (double)stead__counter_get(c));
}

static int calls(stead__buf *b, const stead__metrics_core *m) {
  const char *n = "stead_calls_total";
  int rc =
      stead__metric_header(b, n, "counter", "Calls from outside a turn, by outcome.");
  rc |= stead__metric_value(b, n, "outcome=\"ok\"",
                            (double)stead__counter_get(&m->calls_ok));
  rc |= stead__metric_value(b, n, "outcome=\"handler_error\"",
                            (double)stead__counter_get(&m->calls_handler));
  rc |= stead__metric_value(b, n, "outcome=\"timeout\"",
                            (double)stead__counter_get(&m->calls_timeout));
  rc |= stead__metric_value(b, n, "outcome=\"overload\"",
                            (double)stead__counter_get(&m->calls_overload));
  rc |= stead__metric_value(b, n, "outcome=\"other_error\"",
                            (double)stead__counter_get(&m->calls_other));
  return rc;
}

int stead_metrics_text(stead_rt *rt, char **out, size_t *out_len) {
  if (!rt || !out)
    return stead__err(STEAD_EINVAL, "runtime or out is NULL");
  stead__buf b = {0};
  const stead__metrics_core *m = &rt->m;
  int rc = 0;
  rc |= counter(&b, "stead_turns_total",
                "Turns run (method calls, sends, continuations).", &m->turns);
  rc |= counter(&b, "stead_turns_failed_total", "Turns whose handler failed.",
                &m->turns_failed);
  rc |= counter(&b, "stead_turns_slow_total", "Turns longer than slow_turn_ms.",
                &m->turns_slow);
  rc |= calls(&b, m);
  rc |= stead__metric_header(&b, "stead_call_duration_seconds", "histogram",
                             "Latency of calls from outside a turn, enqueue to reply.");
  rc |= stead__metric_hist(&b, "stead_call_duration_seconds", NULL, &m->call_latency);
  rc |= counter(&b, "stead_sends_total", "One-way messages sent.", &m->sends);
  rc |= counter(&b, "stead_sends_dropped_total",
                "One-way messages from turns that could not be delivered.",
                &m->sends_dropped);
  rc |= counter(&b, "stead_continuations_total",
                "Replies delivered as continuation turns.", &m->conts);
  rc |= stead__metric_header(&b, "stead_activations", "gauge", "Activations in memory.");
  rc |= stead__metric_value(&b, "stead_activations", NULL,
                            (double)atomic_load(&rt->nactive));
  rc |=
      counter(&b, "stead_activations_total", "Objects activated.", &m->activations_total);
  rc |= counter(&b, "stead_activation_failures_total", "on_activate failures.",
                &m->activate_failed);
  rc |= counter(&b, "stead_deactivations_total", "Objects deactivated.",
                &m->deactivations_total);
  rc |= counter(&b, "stead_hibernations_total", "Idle objects that dropped their caches.",
                &m->hibernations_total);
  rc |= stead__metric_header(&b, "stead_inflight", "gauge",
                             "Messages queued or running, and turns committing.");
  rc |=
      stead__metric_value(&b, "stead_inflight", NULL, (double)atomic_load(&rt->inflight));
  rc |= counter(&b, "stead_turns_commit_failed_total",
                "Turns that succeeded but whose commit failed (answered ESTORAGE).",
                &m->commit_failures);
  rc |= stead__store_metrics(rt, &b);
  rc |= stead__bus_rt_metrics(rt, &b);
  rc |= stead__cluster_metrics(rt, &b);
  rc |= stead__alarm_rt_metrics(rt, &b);
  rc |= stead__timers_rt_metrics(rt, &b);
  rc |= stead__conn_rt_metrics(rt, &b);
  if (rc) {
    stead__buf_free(&b);
    return stead__err(STEAD_ENOMEM, "out of memory rendering metrics");
  }
  *out = (char *)b.data;
  if (out_len)
    *out_len = b.len;
  return 0;
}
