/*
 * call.c -- completions of requests: exactly once, whoever gets there first.
 *
 * A call is completed by the turn that answers it, by its deadline timer, or
 * by close. An atomic `done` flag decides the winner; the losers do
 * nothing. The call is reference counted because the message and the timer
 * each hold it and either may be the last to let go.
 */
#include "core/core.h"

#include <stdlib.h>

stead__call *stead__call_new(stead_rt *rt, stead_call_cb cb, void *udata, int timeout_ms,
                             bool internal, size_t extra, void **extra_out) {
  stead__call *c = calloc(1, sizeof *c + extra);
  if (!c)
    return NULL;
  if (extra_out)
    *extra_out = c + 1;
  atomic_init(&c->refs, 1);
  atomic_init(&c->done, 0);
  c->rt = rt;
  c->cb = cb;
  c->udata = udata;
  c->start_ns = stead__rt_mono_ns(rt);
  c->deadline_ns = c->start_ns + (int64_t)timeout_ms * 1000000;
  c->internal = internal;
  return c;
}

void stead__call_unref(stead__call *c) {
  if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
    free(c);
}

static void count_outcome(stead_rt *rt, stead__call *c, int status) {
  if (c->internal)
    return;
  stead__metrics_core *m = &rt->m;
  switch (status) {
  case 0:
    stead__counter_add(&m->calls_ok, 1);
    break;
  case STEAD_EHANDLER:
    stead__counter_add(&m->calls_handler, 1);
    break;
  case STEAD_ETIMEDOUT:
    stead__counter_add(&m->calls_timeout, 1);
    break;
  case STEAD_EOVERLOAD:
    stead__counter_add(&m->calls_overload, 1);
    break;
  default:
    stead__counter_add(&m->calls_other, 1);
  }
  stead__hist_observe_ns(&m->call_latency, stead__rt_mono_ns(rt) - c->start_ns);
}

int stead__call_complete(stead__call *c, int status, const void *data, size_t len,
                         const char *message) {
  if (atomic_exchange_explicit(&c->done, 1, memory_order_acq_rel))
    return 0;
  /* The deadline no longer matters; drop the timer's reference if it had
   * not fired yet (if it is firing now, it will find done set). */
  if (c->deadline_ns && stead__timer_cancel(&c->rt->timers, &c->timer))
    stead__call_unref(c);
  count_outcome(c->rt, c, status);
  stead_result res = {status, status == 0 ? data : NULL, status == 0 ? len : 0,
                      status == 0 ? NULL : (message ? message : stead_strerror(status))};
  c->cb(&res, c->udata);
  return 1;
}

static void call_deadline(void *arg) {
  stead__call *c = arg;
  if (!atomic_exchange_explicit(&c->done, 1, memory_order_acq_rel)) {
    count_outcome(c->rt, c, STEAD_ETIMEDOUT);
    stead_result res = {STEAD_ETIMEDOUT, NULL, 0, "deadline exceeded"};
    c->cb(&res, c->udata);
  }
  stead__call_unref(c);
}

int stead__call_arm(stead__call *c) {
  if (!c->deadline_ns)
    return 0;
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  c->timer.fn = call_deadline;
  c->timer.arg = c;
  int rc = stead__timer_arm(&c->rt->timers, &c->timer, c->deadline_ns);
  if (rc != 0)
    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
  return rc;
}
