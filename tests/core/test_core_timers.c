/*
 * In-memory timers: one-shot and periodic ticks as turns, cancel, a failed
 * turn starts nothing, timers die with their activation, the real-time
 * path, and bad input.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct obj {
  int ticks;
  uint64_t last_id;
} obj;

static int tick(stead_ctx *ctx, void *udata) {
  ((obj *)stead_state(ctx))->ticks++;
  return 0;
}

static int failing_tick(stead_ctx *ctx, void *udata) {
  ((obj *)stead_state(ctx))->ticks++;
  return stead_fail(ctx, "tick failed");
}

/* after N / every N / every_fail N / cancel / count / start_then_fail */
static int after(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_timer_after(ctx, atoll(arg), tick, NULL,
                           &((obj *)stead_state(ctx))->last_id);
}

static int every(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_timer_every(ctx, atoll(arg), tick, NULL,
                           &((obj *)stead_state(ctx))->last_id);
}

static int every_fail(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_timer_every(ctx, atoll(arg), failing_tick, NULL,
                           &((obj *)stead_state(ctx))->last_id);
}

static int cancel(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_timer_cancel(ctx, ((obj *)stead_state(ctx))->last_id);
}

static int start_then_fail(stead_ctx *ctx, const void *arg, size_t len) {
  stead_timer_after(ctx, 10, tick, NULL, NULL);
  return stead_fail(ctx, "no");
}

static int start_and_cancel(stead_ctx *ctx, const void *arg, size_t len) {
  uint64_t id;
  int rc = stead_timer_after(ctx, 10, tick, NULL, &id);
  return rc ? rc : stead_timer_cancel(ctx, id);
}

static int count(stead_ctx *ctx, const void *arg, size_t len) {
  char b[16];
  int k = snprintf(b, sizeof b, "%d", ((obj *)stead_state(ctx))->ticks);
  return stead_reply(ctx, b, (size_t)k);
}

static int bad(stead_ctx *ctx, const void *arg, size_t len) {
  char b[64];
  int k =
      snprintf(b, sizeof b, "%d %d %d %d %d", stead_timer_after(ctx, 1, NULL, NULL, NULL),
               stead_timer_after(ctx, -1, tick, NULL, NULL),
               stead_timer_every(ctx, 0, tick, NULL, NULL),
               stead_timer_after(ctx, STEAD_MAX_TIMER_MS + 1, tick, NULL, NULL),
               stead_timer_cancel(ctx, 999999));
  return stead_reply(ctx, b, (size_t)k);
}

static const stead_method methods[] = {{"after", after},
                                       {"every", every},
                                       {"every_fail", every_fail},
                                       {"cancel", cancel},
                                       {"start_then_fail", start_then_fail},
                                       {"start_and_cancel", start_and_cancel},
                                       {"count", count},
                                       {"bad", bad},
                                       {NULL, NULL}};
static const stead_class cls = {
    .name = "ticker", .methods = methods, .state_size = sizeof(obj)};

static test_clock g_clock;

static stead_rt *open_rt(int manual) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.alarm_manual = manual;
  if (manual) {
    cfg.clock = test_clock_read;
    cfg.clock_udata = &g_clock;
    atomic_store(&g_clock.now_ms, 1000000);
  }
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &cls), 0);
  return rt;
}

static char *call(stead_rt *rt, const char *id, const char *m, const char *arg,
                  int want) {
  void *r = NULL;
  size_t n;
  int rc = stead_call(rt, "ticker", id, m, arg, arg ? strlen(arg) : 0, 5000, &r, &n);
  if (rc != want)
    fail_msg("%s.%s: %s %s", id, m, stead_errname(rc), stead_errmsg());
  return r;
}

static int ticks(stead_rt *rt, const char *id) {
  char *r = call(rt, id, "count", NULL, 0);
  int v = atoi(r);
  stead_free(r);
  return v;
}

static void test_after_and_every(void **state) {
  stead_rt *rt = open_rt(1);
  stead_free(call(rt, "a", "after", "100", 0));
  atomic_fetch_add(&g_clock.now_ms, 99);
  assert_int_equal(stead_timers_fire_due(rt), 0);
  atomic_fetch_add(&g_clock.now_ms, 1);
  assert_int_equal(stead_timers_fire_due(rt), 1);
  atomic_fetch_add(&g_clock.now_ms, 1000);
  assert_int_equal(stead_timers_fire_due(rt), 0); /* one-shot */
  assert_int_equal(ticks(rt, "a"), 1);
  stead_free(call(rt, "e", "every", "50", 0));
  for (int i = 0; i < 4; i++) {
    atomic_fetch_add(&g_clock.now_ms, 50);
    assert_int_equal(stead_timers_fire_due(rt), 1);
  }
  assert_int_equal(ticks(rt, "e"), 4);
  stead_free(call(rt, "e", "cancel", NULL, 0));
  atomic_fetch_add(&g_clock.now_ms, 500);
  assert_int_equal(stead_timers_fire_due(rt), 0);
  assert_int_equal(ticks(rt, "e"), 4);
  stead_close(rt);
}

static void test_failed_turn_and_failing_tick(void **state) {
  stead_rt *rt = open_rt(1);
  char *r = call(rt, "f", "start_then_fail", NULL, STEAD_EHANDLER);
  assert_null(r);
  stead_free(call(rt, "f", "start_and_cancel", NULL, 0));
  atomic_fetch_add(&g_clock.now_ms, 100);
  assert_int_equal(stead_timers_fire_due(rt), 0);
  /* A failing tick does not stop a periodic timer. */
  stead_free(call(rt, "g", "every_fail", "10", 0));
  for (int i = 0; i < 3; i++) {
    atomic_fetch_add(&g_clock.now_ms, 10);
    assert_int_equal(stead_timers_fire_due(rt), 1);
  }
  assert_int_equal(ticks(rt, "g"), 3);
  stead_close(rt);
}

static void test_timers_die_with_activation(void **state) {
  stead_rt *rt = open_rt(1);
  stead_free(call(rt, "d", "every", "10", 0));
  atomic_fetch_add(&g_clock.now_ms, 10);
  assert_int_equal(stead_timers_fire_due(rt), 1);
  assert_rc(stead_deactivate(rt, "ticker", "d"), 0);
  atomic_fetch_add(&g_clock.now_ms, 100);
  assert_int_equal(stead_timers_fire_due(rt), 0);
  assert_int_equal(stead_is_active(rt, "ticker", "d"), 0); /* ticks do not wake it */
  assert_int_equal(ticks(rt, "d"), 0);                     /* a fresh activation */
  stead_close(rt);
}

static void test_real_time_ticks(void **state) {
  stead_rt *rt = open_rt(0);
  stead_free(call(rt, "rt", "every", "5", 0));
  int n = 0;
  for (int i = 0; i < 2000 && (n = ticks(rt, "rt")) < 5; i++)
    test_sleep_ms(1);
  assert_true(n >= 5);
  assert_rc(stead_deactivate(rt, "ticker", "rt"), 0);
  test_sleep_ms(30);
  assert_int_equal(ticks(rt, "rt"), 0); /* a new activation: the old timer died */
  assert_rc(stead_timers_fire_due(rt), STEAD_EMISUSE);
  stead_close(rt);
}

static void test_bad_input(void **state) {
  stead_rt *rt = open_rt(1);
  char *r = call(rt, "b", "bad", NULL, 0);
  char want[64];
  snprintf(want, sizeof want, "%d %d %d %d %d", STEAD_EINVAL, STEAD_EINVAL, STEAD_EINVAL,
           STEAD_EINVAL, STEAD_ENOTFOUND);
  assert_string_equal(r, want);
  stead_free(r);
  assert_rc(stead_timer_after(NULL, 1, tick, NULL, NULL), STEAD_EMISUSE);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_after_and_every),
      cmocka_unit_test(test_failed_turn_and_failing_tick),
      cmocka_unit_test(test_timers_die_with_activation),
      cmocka_unit_test(test_real_time_ticks),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
