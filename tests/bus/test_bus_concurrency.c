/*
 * test_bus_concurrency.c -- concurrent emits (async and sync) from several
 * threads while other threads subscribe and unsubscribe, then free with
 * events in flight. Checks that every accepted emit completes exactly
 * once, that a stable listener saw every event meant for it, that one
 * event's listeners still run in priority order, and (under TSan, label
 * "concurrency") that there are no data races.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/bus_internal.h"

enum { EMITTERS = 3, PER_EMITTER = 3000, CHURNERS = 2, CHURN_ROUNDS = 400 };

typedef struct shared {
  stead_bus *bus;
  atomic_int stable_hits; /* the "orders.**" listener */
  atomic_int done_calls;
  atomic_int accepted;
  atomic_int bad;
  atomic_int churn_hits;
} shared;

/* Event-local order check: the high-priority listener stamps the payload,
 * the low one checks the stamp. */
static int first(stead_event *ev, void *udata) {
  (void)udata;
  return stead_event_set_payload(ev, "first", 5);
}

static int second(stead_event *ev, void *udata) {
  shared *s = udata;
  size_t len;
  const char *p = stead_event_payload(ev, &len);
  if (len != 5 || memcmp(p, "first", 5) != 0)
    atomic_fetch_add(&s->bad, 1);
  atomic_fetch_add(&s->stable_hits, 1);
  return 0;
}

static int churned(stead_event *ev, void *udata) {
  (void)ev;
  atomic_fetch_add(&((shared *)udata)->churn_hits, 1);
  return 0;
}

static void done(const stead_emit_result *r, void *udata) {
  shared *s = udata;
  if (r->status != 0 || r->n_errors != 0)
    atomic_fetch_add(&s->bad, 1);
  atomic_fetch_add(&s->done_calls, 1);
}

static void *emitter(void *arg) {
  shared *s = arg;
  char topic[64];
  for (int i = 0; i < PER_EMITTER; i++) {
    snprintf(topic, sizeof topic, "orders.%d.created", i % 17);
    if (i % 4 == 0) {
      if (stead_bus_emit_sync(s->bus, topic, "x", 1, NULL, 0, NULL) != 0)
        atomic_fetch_add(&s->bad, 1);
    } else {
      int rc = stead_bus_emit(s->bus, topic, "x", 1, NULL, 0, done, s);
      if (rc == 0)
        atomic_fetch_add(&s->accepted, 1);
      else /* wait_when_full: even EOVERLOAD would be wrong here */
        atomic_fetch_add(&s->bad, 1);
    }
  }
  return NULL;
}

static void *churner(void *arg) {
  shared *s = arg;
  char id[STEAD_BUS_ID_SIZE];
  for (int i = 0; i < CHURN_ROUNDS; i++) {
    const char *pat =
        i % 3 == 0 ? "orders.*.created" : (i % 3 == 1 ? "**.created" : "x.y");
    if (stead_bus_on(s->bus, pat, churned, s, i % 5, id) != 0 ||
        stead_bus_off(s->bus, id) != 0)
      atomic_fetch_add(&s->bad, 1);
  }
  return NULL;
}

static void test_concurrent_emits_with_churn(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 3;
  cfg.queue_capacity = 256;
  cfg.wait_when_full = 1;
  shared s = {0};
  assert_int_equal(stead_bus_new(&cfg, &s.bus), 0);
  assert_int_equal(stead_bus_on(s.bus, "orders.**", second, &s, 1, NULL), 0);
  assert_int_equal(stead_bus_on(s.bus, "orders.*.created", first, &s, 2, NULL), 0);
  pthread_t th[EMITTERS + CHURNERS];
  for (int i = 0; i < EMITTERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, emitter, &s), 0);
  for (int i = 0; i < CHURNERS; i++)
    assert_int_equal(pthread_create(&th[EMITTERS + i], NULL, churner, &s), 0);
  for (int i = 0; i < EMITTERS + CHURNERS; i++)
    pthread_join(th[i], NULL);
  stead_bus_stats st;
  assert_int_equal(stead_bus_get_stats(s.bus, &st), 0);
  assert_int_equal(st.listeners, 2);
  /* Free while async events may still be queued: it drains them. */
  assert_int_equal(stead_bus_free(s.bus), 0);
  int sync_emits = EMITTERS * (PER_EMITTER / 4);
  assert_int_equal(atomic_load(&s.accepted), EMITTERS * PER_EMITTER - sync_emits);
  assert_true(atomic_load(&s.churn_hits) >= 0);
  assert_int_equal(atomic_load(&s.done_calls), atomic_load(&s.accepted));
  assert_int_equal(atomic_load(&s.stable_hits), EMITTERS * PER_EMITTER);
  assert_int_equal(atomic_load(&s.bad), 0);
}

/* Several threads unsubscribing listeners that are running on workers. */
typedef struct slow {
  atomic_int running;
  atomic_int after_off; /* invocations observed after off returned */
  atomic_bool off_done;
} slow;

static int slow_listener(stead_event *ev, void *udata) {
  (void)ev;
  slow *s = udata;
  if (atomic_load(&s->off_done))
    atomic_fetch_add(&s->after_off, 1);
  atomic_fetch_add(&s->running, 1);
  for (volatile int i = 0; i < 2000; i++)
    ;
  atomic_fetch_sub(&s->running, 1);
  return 0;
}

static void test_off_vs_running(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 3;
  cfg.queue_capacity = 4096;
  for (int round = 0; round < 20; round++) {
    stead_bus *b;
    assert_int_equal(stead_bus_new(&cfg, &b), 0);
    slow s = {0};
    char id[STEAD_BUS_ID_SIZE];
    assert_int_equal(stead_bus_on(b, "t.*", slow_listener, &s, 0, id), 0);
    for (int i = 0; i < 200; i++)
      assert_int_equal(stead_bus_emit(b, "t.x", NULL, 0, NULL, 0, NULL, NULL), 0);
    assert_int_equal(stead_bus_off(b, id), 0);
    /* off returned: nothing is running and nothing starts again. */
    assert_int_equal(atomic_load(&s.running), 0);
    atomic_store(&s.off_done, true);
    assert_int_equal(stead_bus_free(b), 0);
    assert_int_equal(atomic_load(&s.after_off), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_emits_with_churn),
      cmocka_unit_test(test_off_vs_running),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
