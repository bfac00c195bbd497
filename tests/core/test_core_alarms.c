/*
 * Durable alarms through the runtime, with an injected clock and
 * stead_alarms_fire_due (no sleeps): order, upsert, cancel, list, failed
 * turns, recurring alarms, retries with backoff, dead letters, waking a
 * deactivated object, and a restart of a SQLite-backed runtime.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static test_clock g_clock;
static char g_dir[128];

/* The fire log of this process: "id:name@attempt" lines in fire order. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[8192];
static _Atomic int g_fail_left; /* on_alarm fails while > 0 */

static void log_fire(const char *id, const char *name, uint32_t attempt) {
  pthread_mutex_lock(&g_mu);
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s:%s@%u ", id, name, attempt);
  pthread_mutex_unlock(&g_mu);
}

static int on_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t len,
                    uint32_t attempt) {
  if (atomic_load(&g_fail_left) > 0) {
    atomic_fetch_sub(&g_fail_left, 1);
    return stead_fail(ctx, "not yet");
  }
  log_fire(stead_object_id(ctx), name, attempt);
  /* Count fires in storage, in the alarm's own turn. */
  char key[160];
  int kl = snprintf(key, sizeof key, "fired:%s", name);
  void *v = NULL;
  size_t vl;
  long n = stead_get(ctx, key, (size_t)kl, &v, &vl) == 0 ? atol(v) : 0;
  stead_free(v);
  char nv[32];
  int k = snprintf(nv, sizeof nv, "%ld", n + 1);
  int rc = stead_put(ctx, key, (size_t)kl, nv, (size_t)k);
  /* meta "again:<ms>" makes it recurring. */
  if (rc == 0 && len > 6 && memcmp(meta, "again:", 6) == 0)
    rc = stead_alarm_set(ctx, name, stead_now_ms(ctx) + atol((const char *)meta + 6),
                         meta, len);
  return rc;
}

/* set: "name at_offset_ms [meta]" relative to now. */
static int set(stead_ctx *ctx, const void *arg, size_t len) {
  char name[64], meta[64] = "";
  long long off;
  if (sscanf(arg, "%63s %lld %63s", name, &off, meta) < 2)
    return stead_fail(ctx, "bad set");
  return stead_alarm_set(ctx, name, stead_now_ms(ctx) + off, meta, strlen(meta));
}

static int set_then_fail(stead_ctx *ctx, const void *arg, size_t len) {
  stead_alarm_set(ctx, "doomed", stead_now_ms(ctx), NULL, 0);
  return stead_fail(ctx, "no");
}

static int cancel(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_alarm_cancel(ctx, arg);
}

static int cancel_all(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_alarm_cancel_all(ctx);
}

/* list: replies "name@offset " in order, offsets from now; sees the turn's
 * own change when arg is "+x". */
static int list(stead_ctx *ctx, const void *arg, size_t len) {
  if (len && ((const char *)arg)[0] == '+')
    stead_alarm_set(ctx, "x", stead_now_ms(ctx) + 1, NULL, 0);
  stead_alarm_info *a;
  size_t n;
  int rc = stead_alarm_list(ctx, &a, &n);
  if (rc)
    return rc;
  char out[1024] = "";
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(out);
    snprintf(out + l, sizeof out - l, "%s@%lld ", a[i].name,
             (long long)(a[i].at_ms - stead_now_ms(ctx)));
  }
  stead_free(a);
  return stead_reply(ctx, out, strlen(out));
}

static int fired(stead_ctx *ctx, const void *arg, size_t len) {
  char key[160];
  int kl = snprintf(key, sizeof key, "fired:%.*s", (int)len, (const char *)arg);
  void *v = NULL;
  size_t vl;
  int rc = stead_get(ctx, key, (size_t)kl, &v, &vl);
  if (rc == STEAD_ENOTFOUND)
    return stead_reply(ctx, "0", 1);
  rc = rc ? rc : stead_reply(ctx, v, vl);
  stead_free(v);
  return rc;
}

static const stead_method methods[] = {
    {"set", set},       {"set_then_fail", set_then_fail},
    {"cancel", cancel}, {"cancel_all", cancel_all},
    {"list", list},     {"fired", fired},
    {NULL, NULL}};
static const stead_class cls = {
    .name = "alarmed", .methods = methods, .on_alarm = on_alarm};

static stead_rt *open_rt(const char *storage, uint32_t max_attempts) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = storage;
  cfg.clock = test_clock_read;
  cfg.clock_udata = &g_clock;
  cfg.alarm_max_attempts = max_attempts;
  cfg.alarm_manual = 1;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &cls), 0);
  return rt;
}

static char *call(stead_rt *rt, const char *id, const char *method, const char *arg) {
  void *r = NULL;
  size_t n;
  int rc =
      stead_call(rt, "alarmed", id, method, arg, arg ? strlen(arg) : 0, 5000, &r, &n);
  if (rc)
    fail_msg("%s.%s(%s): %s %s", id, method, arg ? arg : "", stead_errname(rc),
             stead_errmsg());
  return r;
}

static void call_ok(stead_rt *rt, const char *id, const char *method, const char *arg) {
  stead_free(call(rt, id, method, arg));
}

static void expect(stead_rt *rt, const char *id, const char *method, const char *arg,
                   const char *want) {
  char *r = call(rt, id, method, arg);
  if (strcmp(r, want) != 0)
    fail_msg("%s.%s: got \"%s\", want \"%s\"", id, method, r, want);
  stead_free(r);
}

static void advance(int64_t ms) {
  atomic_fetch_add(&g_clock.now_ms, ms);
}

static int setup(void **state) {
  snprintf(g_dir, sizeof g_dir, "/tmp/stead-alarm-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  atomic_store(&g_clock.now_ms, 1800000000000);
  g_log[0] = 0;
  atomic_store(&g_fail_left, 0);
  return 0;
}

static int teardown(void **state) {
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  return system(cmd);
}

static void test_order_upsert_cancel_list(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  call_ok(rt, "a", "set", "b 200");
  call_ok(rt, "a", "set", "a 200"); /* same time: name order */
  call_ok(rt, "a", "set", "c 100");
  call_ok(rt, "a", "set", "gone 50");
  call_ok(rt, "a", "set", "moved 10");
  call_ok(rt, "a", "set", "moved 300"); /* upsert */
  call_ok(rt, "a", "cancel", "gone");
  expect(rt, "a", "list", NULL, "c@100 a@200 b@200 moved@300 ");
  expect(rt, "a", "list", "+", "x@1 c@100 a@200 b@200 moved@300 "); /* own change */
  expect(rt, "a", "list", NULL, "x@1 c@100 a@200 b@200 moved@300 ");
  /* Nothing is due yet. */
  assert_int_equal(stead_alarms_fire_due(rt), 0);
  advance(250);
  assert_int_equal(stead_alarms_fire_due(rt), 4);
  assert_string_equal(g_log, "a:x@0 a:c@0 a:a@0 a:b@0 ");
  expect(rt, "a", "list", NULL, "moved@50 ");
  stead_alarm_info *p;
  size_t n;
  assert_rc(stead_alarms_pending(rt, "alarmed", "a", &p, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(p[0].name, "moved");
  stead_free(p);
  call_ok(rt, "a", "cancel_all", NULL);
  expect(rt, "a", "list", NULL, "");
  advance(1000);
  assert_int_equal(stead_alarms_fire_due(rt), 0);
  stead_close(rt);
}

static void test_failed_turn_sets_nothing(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  void *r;
  size_t n;
  assert_rc(stead_call(rt, "alarmed", "f", "set_then_fail", NULL, 0, 5000, &r, &n),
            STEAD_EHANDLER);
  expect(rt, "f", "list", NULL, "");
  advance(10);
  assert_int_equal(stead_alarms_fire_due(rt), 0);
  stead_close(rt);
}

static void test_past_and_far_future(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  call_ok(rt, "p", "set", "past -100000");
  call_ok(rt, "p", "set", "future 315360000000"); /* ten years */
  assert_int_equal(stead_alarms_fire_due(rt), 1);
  expect(rt, "p", "fired", "past", "1");
  expect(rt, "p", "list", NULL, "future@315360000000 ");
  stead_close(rt);
}

/* Found by fuzz_records (an alarm row due at -2^63+1 in a data file):
 * computing the fired alarm's lateness overflowed int64 (UBSan). Any
 * int64 due time is allowed through the API too. */
static void test_extreme_due_times(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  assert_rc(stead_alarm_set_for(rt, "alarmed", "x", "lo", INT64_MIN, NULL, 0), 0);
  assert_rc(stead_alarm_set_for(rt, "alarmed", "x", "lo1", INT64_MIN + 1, NULL, 0), 0);
  assert_rc(stead_alarm_set_for(rt, "alarmed", "x", "hi", INT64_MAX, NULL, 0), 0);
  assert_int_equal(stead_alarms_fire_due(rt), 2);
  expect(rt, "x", "fired", "lo", "1");
  expect(rt, "x", "fired", "lo1", "1");
  expect(rt, "x", "fired", "hi", "0");
  stead_alarm_info *al = NULL;
  size_t n = 0;
  assert_rc(stead_alarms_pending(rt, "alarmed", "x", &al, &n), 0);
  assert_int_equal(n, 1);
  assert_true(al[0].at_ms == INT64_MAX);
  stead_free(al);
  stead_close(rt);
}

static void test_recurring(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  call_ok(rt, "r", "set", "tick 100 again:100");
  for (int i = 0; i < 5; i++) {
    advance(100);
    assert_int_equal(stead_alarms_fire_due(rt), 1);
  }
  expect(rt, "r", "fired", "tick", "5");
  expect(rt, "r", "list", NULL, "tick@100 ");
  stead_close(rt);
}

static void test_retry_backoff_then_success(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  call_ok(rt, "t", "set", "flaky 0");
  atomic_store(&g_fail_left, 2);
  assert_int_equal(stead_alarms_fire_due(rt), 1); /* attempt 0 fails */
  expect(rt, "t", "list", NULL, "flaky@1000 ");   /* base 1 s */
  advance(999);
  assert_int_equal(stead_alarms_fire_due(rt), 0); /* never before due */
  advance(1);
  assert_int_equal(stead_alarms_fire_due(rt), 1); /* attempt 1 fails */
  expect(rt, "t", "list", NULL, "flaky@2000 ");   /* doubled */
  advance(2000);
  assert_int_equal(stead_alarms_fire_due(rt), 1); /* attempt 2 succeeds */
  assert_string_equal(g_log, "t:flaky@2 ");
  expect(rt, "t", "list", NULL, "");
  stead_close(rt);
}

static _Atomic int g_dead;
static char g_dead_payload[256];

static int dead_listener(stead_event *ev, void *udata) {
  size_t n;
  const void *p = stead_event_payload(ev, &n);
  snprintf(g_dead_payload, sizeof g_dead_payload, "%.*s", (int)n, (const char *)p);
  atomic_fetch_add(&g_dead, 1);
  return 0;
}

static void test_dead_letter(void **state) {
  stead_rt *rt = open_rt("memory", 3);
  stead_bus_on(stead_rt_bus(rt), STEAD_ALARM_DEAD_LETTER_TOPIC, dead_listener, NULL, 0,
               NULL);
  call_ok(rt, "d", "set", "doomed 0");
  atomic_store(&g_fail_left, 100);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(stead_alarms_fire_due(rt), 1);
    advance(10000);
  }
  assert_int_equal(stead_alarms_fire_due(rt), 0);
  expect(rt, "d", "list", NULL, "");
  for (int i = 0; i < 1000 && atomic_load(&g_dead) == 0; i++)
    test_sleep_ms(1); /* the bus delivers on its own pool */
  assert_int_equal(atomic_load(&g_dead), 1);
  assert_string_equal(
      g_dead_payload,
      "{\"class\":\"alarmed\",\"id\":\"d\",\"alarm\":\"doomed\",\"attempts\":3}");
  char *text;
  assert_rc(stead_metrics_text(rt, &text, NULL), 0);
  assert_non_null(strstr(text, "stead_alarms_dead_lettered_total 1"));
  stead_free(text);
  stead_close(rt);
}

static void test_wakes_deactivated_object(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  call_ok(rt, "w", "set", "wake 100");
  assert_rc(stead_deactivate(rt, "alarmed", "w"), 0);
  assert_int_equal(stead_is_active(rt, "alarmed", "w"), 0);
  advance(100);
  assert_int_equal(stead_alarms_fire_due(rt), 1);
  assert_int_equal(stead_is_active(rt, "alarmed", "w"), 1);
  expect(rt, "w", "fired", "wake", "1");
  stead_close(rt);
}

static void test_restart_fires_each_once(void **state) {
  char spec[200];
  snprintf(spec, sizeof spec, "sqlite:%s/a.db", g_dir);
  stead_rt *rt = open_rt(spec, 0);
  enum { OBJ = 200, PER = 10 };
  for (int o = 0; o < OBJ; o++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", o);
    for (int k = 0; k < PER; k++) {
      char arg[32];
      snprintf(arg, sizeof arg, "n%d %d", k, 1000 + k * 10 + o);
      call_ok(rt, id, "set", arg);
    }
  }
  stead_close(rt);
  advance(100000); /* the process was down; everything fell due */
  rt = open_rt(spec, 0);
  assert_int_equal(stead_alarms_fire_due(rt), OBJ * PER);
  assert_int_equal(stead_alarms_fire_due(rt), 0);
  for (int o = 0; o < OBJ; o += 37) {
    char id[16];
    snprintf(id, sizeof id, "o%d", o);
    for (int k = 0; k < PER; k++) {
      char name[16];
      snprintf(name, sizeof name, "n%d", k);
      expect(rt, id, "fired", name, "1");
    }
    expect(rt, id, "list", NULL, "");
  }
  stead_close(rt);
}

static void test_bad_alarm_input(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  void *r;
  size_t n;
  char big[300];
  memset(big, 'n', sizeof big - 1);
  big[sizeof big - 1] = 0;
  char arg[400];
  snprintf(arg, sizeof arg, "%s 10", big);
  assert_rc(stead_call(rt, "alarmed", "b", "set", arg, strlen(arg), 5000, &r, &n),
            STEAD_EHANDLER); /* the handler returned ETOOBIG */
  stead_alarm_info *p;
  assert_rc(stead_alarms_pending(rt, "alarmed", "", &p, &n), STEAD_EINVAL);
  assert_rc(stead_alarm_set(NULL, "x", 0, NULL, 0), STEAD_EMISUSE);
  stead_close(rt);
}

static void test_set_from_outside(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  assert_rc(stead_alarm_set_for(rt, "alarmed", "out", "ext",
                                atomic_load(&g_clock.now_ms) + 100, "m", 1),
            0);
  assert_int_equal(stead_is_active(rt, "alarmed", "out"), 1); /* it was a turn */
  expect(rt, "out", "list", NULL, "ext@100 ");
  assert_rc(stead_alarm_set_for(rt, "alarmed", "out", "gone", 0, NULL, 0), 0);
  assert_rc(stead_alarm_cancel_for(rt, "alarmed", "out", "gone"), 0);
  expect(rt, "out", "list", NULL, "ext@100 ");
  advance(100);
  assert_int_equal(stead_alarms_fire_due(rt), 1);
  expect(rt, "out", "fired", "ext", "1");
  char big[200];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  assert_rc(stead_alarm_set_for(rt, "alarmed", "out", big, 0, NULL, 0), STEAD_ETOOBIG);
  assert_rc(stead_alarm_set_for(rt, "nope", "out", "x", 0, NULL, 0), STEAD_ENOCLASS);
  assert_rc(stead_alarm_set_for(rt, "alarmed", "out", NULL, 0, NULL, 0), STEAD_EINVAL);
  stead_close(rt);
}

static void test_live_scheduler_real_clock(void **state) {
  /* The scheduler's own thread, on the system clock: an alarm 50 ms out
   * fires by itself, not before it is due. */
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &cls), 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  call_ok(rt, "live", "set", "soon 50");
  char *r = NULL;
  for (int i = 0; i < 5000; i++) {
    r = call(rt, "live", "fired", "soon");
    if (strcmp(r, "1") == 0)
      break;
    stead_free(r);
    r = NULL;
    test_sleep_ms(1);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_non_null(r);
  stead_free(r);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  assert_true(ms >= 45); /* wall and monotonic clocks may differ by a tick */
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_order_upsert_cancel_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_turn_sets_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_past_and_far_future, setup, teardown),
      cmocka_unit_test_setup_teardown(test_extreme_due_times, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recurring, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_backoff_then_success, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wakes_deactivated_object, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_fires_each_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_alarm_input, setup, teardown),
      cmocka_unit_test_setup_teardown(test_live_scheduler_real_clock, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_from_outside, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
