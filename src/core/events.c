/*
 * events.c -- the runtime's side of the event bus: the bus the runtime
 * owns, and (to come) transactional emits from turns and objects as
 * subscribers.
 *
 * The bus lives in the runtime's STEAD__SLOT_BUS slot from stead_open
 * until stead_close has drained the last turn.
 */
#include "core/core.h"

#include <stdlib.h>

typedef struct rtbus {
  stead_bus *bus;
} rtbus;

static rtbus *get(stead_rt *rt) {
  return *stead__rt_slot(rt, STEAD__SLOT_BUS);
}

int stead__bus_rt_open(stead_rt *rt) {
  rtbus *rb = calloc(1, sizeof *rb);
  if (!rb)
    return stead__err(STEAD_ENOMEM, "out of memory");
  stead_bus_config bc;
  stead_bus_config_init(&bc);
  bc.workers = rt->cfg.workers > 2 ? 2 : rt->cfg.workers;
  int rc = stead_bus_new(&bc, &rb->bus);
  if (rc) {
    free(rb);
    return rc;
  }
  *stead__rt_slot(rt, STEAD__SLOT_BUS) = rb;
  return 0;
}

void stead__bus_rt_close(stead_rt *rt) {
  rtbus *rb = get(rt);
  if (!rb)
    return;
  *stead__rt_slot(rt, STEAD__SLOT_BUS) = NULL;
  stead_bus_free(rb->bus);
  free(rb);
}

int stead__bus_rt_metrics(stead_rt *rt, stead__buf *b) {
  rtbus *rb = get(rt);
  if (!rb)
    return 0;
  stead_bus_stats st;
  stead_bus_get_stats(rb->bus, &st);
  int rc = 0;
  rc |= stead__metric_header(b, "stead_bus_emits_total", "counter",
                             "Events emitted on the runtime's bus, by outcome.");
  rc |= stead__metric_value(b, "stead_bus_emits_total", "outcome=\"succeeded\"",
                            (double)st.succeeded);
  rc |= stead__metric_value(b, "stead_bus_emits_total", "outcome=\"failed\"",
                            (double)st.failed);
  rc |= stead__metric_value(b, "stead_bus_emits_total", "outcome=\"rejected\"",
                            (double)st.rejected);
  rc |= stead__metric_header(b, "stead_bus_pool_workers", "gauge",
                             "Bus pool workers by state.");
  rc |= stead__metric_value(b, "stead_bus_pool_workers", "state=\"running\"",
                            (double)st.running);
  rc |=
      stead__metric_value(b, "stead_bus_pool_workers", "state=\"idle\"", (double)st.idle);
  rc |= stead__metric_header(b, "stead_bus_queue_waiting", "gauge",
                             "Events accepted and waiting for a bus worker.");
  rc |= stead__metric_value(b, "stead_bus_queue_waiting", NULL, (double)st.waiting);
  rc |= stead__metric_header(b, "stead_bus_listeners", "gauge", "Registered listeners.");
  rc |= stead__metric_value(b, "stead_bus_listeners", NULL, (double)st.listeners);
  return rc ? STEAD_ENOMEM : 0;
}
