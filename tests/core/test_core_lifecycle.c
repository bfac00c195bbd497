/*
 * Lifecycle: hibernate and shutdown after idle time (injected clock, no
 * sleeps), LRU eviction past max_activations, explicit deactivation, and
 * reactivation keeping behaviour.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

static _Atomic int g_activations, g_deactivations;

typedef struct st {
  int64_t n;
} st;

static int on_act(stead_ctx *ctx) {
  atomic_fetch_add(&g_activations, 1);
  return 0;
}

static int on_deact(stead_ctx *ctx) {
  atomic_fetch_add(&g_deactivations, 1);
  return 0;
}

static int incr(stead_ctx *ctx, const void *arg, size_t len) {
  st *s = stead_state(ctx);
  s->n++;
  char buf[32];
  int k = snprintf(buf, sizeof buf, "%lld", (long long)s->n);
  return stead_reply(ctx, buf, (size_t)k);
}

static const stead_method methods[] = {{"incr", incr}, {NULL, NULL}};

static const stead_class idle_class = {.name = "idler",
                                       .methods = methods,
                                       .on_activate = on_act,
                                       .on_deactivate = on_deact,
                                       .state_size = sizeof(st),
                                       .hibernate_after_ms = 1000,
                                       .shutdown_after_ms = 5000};

static const stead_class plain_class = {.name = "plain",
                                        .methods = methods,
                                        .on_activate = on_act,
                                        .on_deactivate = on_deact,
                                        .state_size = sizeof(st)};

static test_clock g_clock;

static stead_rt *open_rt(size_t max_acts) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.max_activations = max_acts;
  cfg.clock = test_clock_read;
  cfg.clock_udata = &g_clock;
  atomic_store(&g_clock.now_ms, 1000000);
  atomic_store(&g_activations, 0);
  atomic_store(&g_deactivations, 0);
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &idle_class), 0);
  assert_rc(stead_register(rt, &plain_class), 0);
  return rt;
}

static long incr_call(stead_rt *rt, const char *cls, const char *id) {
  void *r;
  size_t n;
  assert_rc(stead_call(rt, cls, id, "incr", NULL, 0, 0, &r, &n), 0);
  long v = atol(r);
  stead_free(r);
  return v;
}

static long metric(stead_rt *rt, const char *name) {
  char *text;
  assert_rc(stead_metrics_text(rt, &text, NULL), 0);
  char key[128];
  snprintf(key, sizeof key, "\n%s ", name);
  char *p = strstr(text, key);
  long v = p ? atol(p + strlen(key)) : -1;
  stead_free(text);
  return v;
}

static void test_idle_hibernate_then_shutdown(void **state) {
  stead_rt *rt = open_rt(0);
  assert_int_equal(incr_call(rt, "idler", "a"), 1);
  assert_int_equal(incr_call(rt, "plain", "p"), 1);
  int64_t t = atomic_load(&g_clock.now_ms);
  /* Not idle long enough: nothing happens. */
  assert_int_equal(stead_sweep(rt, t + 500), 0);
  stead_run_until_idle(rt);
  assert_int_equal(metric(rt, "stead_hibernations_total"), 0);
  /* Past hibernate_after: caches dropped, still active. */
  stead_sweep(rt, t + 1500);
  stead_run_until_idle(rt);
  assert_int_equal(metric(rt, "stead_hibernations_total"), 1);
  assert_int_equal(stead_is_active(rt, "idler", "a"), 1);
  /* Past shutdown_after: deactivated; the plain class never is. */
  assert_int_equal(stead_sweep(rt, t + 6000), 1);
  stead_run_until_idle(rt);
  assert_int_equal(stead_is_active(rt, "idler", "a"), 0);
  assert_int_equal(stead_is_active(rt, "plain", "p"), 1);
  assert_int_equal(atomic_load(&g_deactivations), 1);
  /* A message reactivates it transparently (memory state starts fresh). */
  assert_int_equal(incr_call(rt, "idler", "a"), 1);
  assert_int_equal(atomic_load(&g_activations), 3);
  stead_close(rt);
}

static void test_busy_object_not_swept(void **state) {
  stead_rt *rt = open_rt(0);
  int64_t t = atomic_load(&g_clock.now_ms);
  assert_int_equal(incr_call(rt, "idler", "a"), 1);
  /* Used again just before the sweep: its idle time restarts. */
  atomic_store(&g_clock.now_ms, t + 4900);
  assert_int_equal(incr_call(rt, "idler", "a"), 2);
  assert_int_equal(stead_sweep(rt, t + 6000), 0);
  stead_run_until_idle(rt);
  assert_int_equal(stead_is_active(rt, "idler", "a"), 1);
  stead_close(rt);
}

static void test_lru_eviction(void **state) {
  stead_rt *rt = open_rt(10);
  for (int i = 0; i < 100; i++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", i);
    atomic_fetch_add(&g_clock.now_ms, 1);
    assert_int_equal(incr_call(rt, "plain", id), 1);
  }
  stead_run_until_idle(rt);
  assert_true(stead_active_count(rt) <= 10);
  assert_true(atomic_load(&g_deactivations) >= 90);
  /* The most recent ones survived; the oldest were evicted. */
  assert_int_equal(stead_is_active(rt, "plain", "o99"), 1);
  assert_int_equal(stead_is_active(rt, "plain", "o0"), 0);
  /* Evicted objects answer again (reactivated). */
  assert_int_equal(incr_call(rt, "plain", "o0"), 1);
  stead_close(rt);
}

static void test_explicit_deactivate(void **state) {
  stead_rt *rt = open_rt(0);
  assert_rc(stead_deactivate(rt, "plain", "never"), 0); /* not active: fine */
  assert_int_equal(incr_call(rt, "plain", "d"), 1);
  assert_int_equal(incr_call(rt, "plain", "d"), 2);
  assert_rc(stead_deactivate(rt, "plain", "d"), 0);
  assert_int_equal(stead_is_active(rt, "plain", "d"), 0);
  assert_int_equal(atomic_load(&g_deactivations), 1);
  assert_int_equal(incr_call(rt, "plain", "d"), 1);
  assert_rc(stead_deactivate(rt, "nope", "d"), STEAD_ENOCLASS);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_hibernate_then_shutdown),
      cmocka_unit_test(test_busy_object_not_swept),
      cmocka_unit_test(test_lru_eviction),
      cmocka_unit_test(test_explicit_deactivate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
