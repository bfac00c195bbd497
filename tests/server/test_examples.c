/*
 * test_examples.c -- the alarm-driven examples (ratelimiter, reminder) in
 * process, with an injected clock and alarm_manual, so every window and
 * every firing is exact; the bad-body codes of every example
 * (stead_fail_code: EINVAL, not EHANDLER); and the gateway's JSON
 * renderings of state structs, alarms and bytes (render.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples.h"
#include "server/render.h"
#include "stead.h"

#define T0 INT64_C(1700000000000)

typedef struct fixture {
  stead_rt *rt;
  _Atomic int64_t now;
} fixture;

static int64_t clock_fn(void *udata) {
  return atomic_load(&((fixture *)udata)->now);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  atomic_store(&f->now, T0);
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.alarm_manual = 1;
  cfg.clock = clock_fn;
  cfg.clock_udata = f;
  if (stead_open(&cfg, &f->rt) != 0 || stead_examples_register(f->rt) != 0) {
    fprintf(stderr, "setup: %s\n", stead_errmsg());
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  stead_close(f->rt);
  free(f);
  return 0;
}

static void advance(fixture *f, int64_t ms) {
  atomic_fetch_add(&f->now, ms);
}

/* Calls and returns the status; the reply (or the error message) in out. */
static int call(fixture *f, const char *cls, const char *id, const char *method,
                const char *body, char *out, size_t outn) {
  void *reply = NULL;
  size_t len = 0;
  int rc = stead_call(f->rt, cls, id, method, body, body ? strlen(body) : 0, 5000, &reply,
                      &len);
  if (out)
    snprintf(out, outn, "%s", rc == 0 ? (reply ? (char *)reply : "") : stead_errmsg());
  stead_free(reply);
  return rc;
}

static void expect(fixture *f, const char *cls, const char *id, const char *method,
                   const char *body, int code, const char *want) {
  char out[2048];
  int rc = call(f, cls, id, method, body, out, sizeof out);
  if (rc != code || (want && strstr(out, want) == NULL))
    fail_msg("%s/%s %s(%s): %d %s; want %d with %s", cls, id, method, body ? body : "",
             rc, out, code, want ? want : "");
}

/* The object's pending alarms as "name@offset_from_T0" joined by ','. */
static void alarms_str(fixture *f, const char *cls, const char *id, char *out, size_t n) {
  stead_alarm_info *al = NULL;
  size_t k = 0;
  assert_int_equal(stead_alarms_pending(f->rt, cls, id, &al, &k), 0);
  out[0] = 0;
  for (size_t i = 0; i < k; i++)
    snprintf(out + strlen(out), n - strlen(out), "%s%s@%lld", i ? "," : "", al[i].name,
             (long long)(al[i].at_ms - T0));
  stead_free(al);
}

#define assert_alarms(f, cls, id, want)                                                  \
  do {                                                                                   \
    char a_[512];                                                                        \
    alarms_str(f, cls, id, a_, sizeof a_);                                               \
    assert_string_equal(a_, want);                                                       \
  } while (0)

/* The ratelimiter's state rendered as the gateway renders it. */
static void rl_state(fixture *f, const char *id, char *out, size_t n) {
  void *st = NULL;
  assert_int_equal(stead_object_state(f->rt, "ratelimiter", id, &st), 0);
  json_t *j = stead__state_json(stead_class_schema(f->rt, "ratelimiter"), st);
  stead_object_state_free(f->rt, "ratelimiter", st);
  json_int_t ws = json_integer_value(json_object_get(j, "window_start"));
  snprintf(out, n, "requests=%lld window_start=%lld",
           (long long)json_integer_value(json_object_get(j, "requests")),
           ws ? (long long)(ws - T0) : -1LL);
  json_decref(j);
}

#define assert_rl(f, id, want)                                                           \
  do {                                                                                   \
    char s_[256];                                                                        \
    rl_state(f, id, s_, sizeof s_);                                                      \
    assert_string_equal(s_, want);                                                       \
  } while (0)

#define RL "{\"limit\":2,\"window_ms\":1000}"

static void test_ratelimiter_windows(void **state) {
  fixture *f = *state;
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"allowed\"");
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"allowed\"");
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"rate_limited\"");
  assert_rl(f, "u", "requests=2 window_start=0");
  assert_alarms(f, "ratelimiter", "u", "reset@1000");
  /* Not due yet: nothing fires. */
  advance(f, 999);
  assert_int_equal(stead_alarms_fire_due(f->rt), 0);
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"rate_limited\"");
  /* The window ends: a used window re-arms for the next one. */
  advance(f, 1);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  assert_rl(f, "u", "requests=0 window_start=1000");
  assert_alarms(f, "ratelimiter", "u", "reset@2000");
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"allowed\"");
  advance(f, 1000);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  assert_alarms(f, "ratelimiter", "u", "reset@3000");
  /* A window without checks closes and nothing ticks any more. */
  advance(f, 1000);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  assert_rl(f, "u", "requests=0 window_start=-1");
  assert_alarms(f, "ratelimiter", "u", "");
  advance(f, 3600 * 1000);
  assert_int_equal(stead_alarms_fire_due(f->rt), 0);
  /* The next check opens a fresh window at its own time. */
  expect(f, "ratelimiter", "u", "check", RL, 0, "\"allowed\"");
  assert_alarms(f, "ratelimiter", "u", "reset@3604000");
}

static void test_ratelimiter_late_alarm_and_defaults(void **state) {
  fixture *f = *state;
  expect(f, "ratelimiter", "late", "check", RL, 0, "\"allowed\"");
  expect(f, "ratelimiter", "late", "check", RL, 0, "\"allowed\"");
  /* The clock passes the window's end before its alarm ran: the check
   * does not count against the old window; it opens a new one and moves
   * the alarm, so the old due time fires nothing. */
  advance(f, 1500);
  expect(f, "ratelimiter", "late", "check", RL, 0, "\"allowed\"");
  assert_rl(f, "late", "requests=1 window_start=1500");
  assert_alarms(f, "ratelimiter", "late", "reset@2500");
  assert_int_equal(stead_alarms_fire_due(f->rt), 0);
  /* window_ms defaults to 60 s; a limit of 0 allows nothing. */
  expect(f, "ratelimiter", "dflt", "check", "{\"limit\":0}", 0, "\"rate_limited\"");
  assert_alarms(f, "ratelimiter", "dflt", "reset@61500");
  /* A new window_ms applies from the next window; a new limit at once. */
  expect(f, "ratelimiter", "dflt", "check", "{\"limit\":1,\"window_ms\":10}", 0,
         "\"allowed\"");
  assert_alarms(f, "ratelimiter", "dflt", "reset@61500");
}

static void test_ratelimiter_bad_bodies(void **state) {
  fixture *f = *state;
  static const struct {
    const char *body, *want;
  } bad[] = {
      {NULL, "the body is empty"},
      {"{\"limit\":", "check takes {\"limit\":N}"},
      {"[1]", "not a JSON object"},
      {"{}", "\"limit\" must be an integer"},
      {"{\"limit\":\"5\"}", "\"limit\" must be an integer"},
      {"{\"limit\":1.5}", "\"limit\" must be an integer"},
      {"{\"limit\":-1}", "\"limit\" must be in 0..1099511627776, got -1"},
      {"{\"limit\":1,\"window_ms\":9}", "\"window_ms\" must be in 10..604800000, got 9"},
      {"{\"limit\":1,\"window_ms\":604800001}", "\"window_ms\" must be in"},
      {"{\"limit\":1,\"burst\":2}", "unknown member \"burst\""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect(f, "ratelimiter", "bad", "check", bad[i].body, STEAD_EINVAL, bad[i].want);
  /* Nothing was counted or armed by the refused checks. */
  assert_alarms(f, "ratelimiter", "bad", "");
  assert_rl(f, "bad", "requests=0 window_start=-1");
}

static void test_reminder(void **state) {
  fixture *f = *state;
  expect(f, "reminder", "r", "fired", NULL, 0, "{}");
  expect(f, "reminder", "r", "schedule", "{\"name\":\"tea\",\"in_ms\":500}", 0,
         "{\"name\":\"tea\",\"at_ms\":1700000000500}");
  expect(f, "reminder", "r", "schedule",
         "{\"name\":\"call mum\",\"in_ms\":1000,\"meta\":{\"tel\":\"123\"}}", 0, NULL);
  expect(f, "reminder", "r", "schedule", "{\"name\":\"zzz\",\"in_ms\":100000}", 0, NULL);
  assert_alarms(f, "reminder", "r", "tea@500,call mum@1000,zzz@100000");
  /* The meta is stored as compact JSON ({} when not given). */
  stead_alarm_info *al = NULL;
  size_t n = 0;
  assert_int_equal(stead_alarms_pending(f->rt, "reminder", "r", &al, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(al[0].meta, "{}", 2);
  assert_int_equal(al[1].meta_len, strlen("{\"tel\":\"123\"}"));
  assert_memory_equal(al[1].meta, "{\"tel\":\"123\"}", al[1].meta_len);
  stead_free(al);

  advance(f, 500);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  expect(f, "reminder", "r", "fired", NULL, 0, "{\"tea\":1}");
  /* Scheduling again replaces: one alarm, the new time. */
  expect(f, "reminder", "r", "schedule", "{\"name\":\"call mum\",\"in_ms\":2000}", 0,
         NULL);
  assert_alarms(f, "reminder", "r", "call mum@2500,zzz@100000");
  expect(f, "reminder", "r", "schedule", "{\"name\":\"tea\",\"in_ms\":0}", 0, NULL);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  expect(f, "reminder", "r", "fired", NULL, 0, "{\"tea\":2}");
  /* Cancel says whether something was pending; a canceled one never fires. */
  expect(f, "reminder", "r", "cancel", "{\"name\":\"call mum\"}", 0,
         "{\"name\":\"call mum\",\"canceled\":true}");
  expect(f, "reminder", "r", "cancel", "{\"name\":\"call mum\"}", 0,
         "{\"name\":\"call mum\",\"canceled\":false}");
  advance(f, 5000);
  assert_int_equal(stead_alarms_fire_due(f->rt), 0);
  advance(f, 100000);
  assert_int_equal(stead_alarms_fire_due(f->rt), 1);
  expect(f, "reminder", "r", "fired", NULL, 0, "{\"tea\":2,\"zzz\":1}");
  assert_alarms(f, "reminder", "r", "");
}

static void test_reminder_bad_bodies(void **state) {
  fixture *f = *state;
  char big[70 * 1024];
  int k = snprintf(big, sizeof big, "{\"name\":\"x\",\"in_ms\":1,\"meta\":{\"pad\":\"");
  memset(big + k, 'a', 66 * 1024);
  strcpy(big + k + 66 * 1024, "\"}}");
  char long_name[200];
  snprintf(long_name, sizeof long_name, "{\"name\":\"%0129d\",\"in_ms\":1}", 0);
  static const struct {
    const char *method, *body, *want;
  } bad[] = {
      {"schedule", NULL, "the body is empty"},
      {"schedule", "nope", "schedule takes {\"name\":S,\"in_ms\":N,\"meta\":{...}}"},
      {"schedule", "[]", "not a JSON object"},
      {"schedule", "{\"in_ms\":1}", "\"name\" must be a string"},
      {"schedule", "{\"name\":\"\",\"in_ms\":1}", "\"name\" must be 1..128 bytes"},
      {"schedule", "{\"name\":\"a\\u0000b\",\"in_ms\":1}", "\\u0000 is not allowed"},
      {"schedule", "{\"name\":\"a\"}", "\"in_ms\" must be an integer in 0.."},
      {"schedule", "{\"name\":\"a\",\"in_ms\":-1}", "\"in_ms\" must be an integer"},
      {"schedule", "{\"name\":\"a\",\"in_ms\":\"1\"}", "\"in_ms\" must be an integer"},
      {"schedule", "{\"name\":\"a\",\"in_ms\":1,\"meta\":[1]}",
       "\"meta\" must be an object"},
      {"schedule", "{\"name\":\"a\",\"in_ms\":1,\"when\":2}", "unknown member \"when\""},
      {"cancel", "{}", "cancel takes {\"name\":S}; \"name\" must be a string"},
      {"cancel", "{\"name\":\"a\",\"in_ms\":1}", "unknown member \"in_ms\""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect(f, "reminder", "bad", bad[i].method, bad[i].body, STEAD_EINVAL, bad[i].want);
  expect(f, "reminder", "bad", "schedule", long_name, STEAD_EINVAL, "got 129 bytes");
  expect(f, "reminder", "bad", "schedule", big, STEAD_ETOOBIG, "the limit is 65536");
  assert_alarms(f, "reminder", "bad", "");
}

/* Bad bodies of the other examples are the caller's fault too. */
static void test_bad_bodies_are_einval(void **state) {
  fixture *f = *state;
  expect(f, "counter", "c", "increment", "\"x\"", STEAD_EINVAL, "takes a JSON integer");
  expect(f, "counter", "c", "increment", "2", 0, "2");
  expect(f, "chatroom", "room", "post", "{\"user\":", STEAD_EINVAL, "not valid JSON");
  expect(f, "chatroom", "room", "post", "{\"user\":\"a\"}", STEAD_EINVAL,
         "\"text\" must be a string");
  expect(f, "chatroom", "a.b", "post", "{\"user\":\"a\",\"text\":\"t\"}", STEAD_EINVAL,
         "cannot be a topic segment");
  expect(f, "echo", "e", "fail", "boom", STEAD_EHANDLER, "boom");
  /* Outside a turn it only returns the code; >= 0 means EHANDLER. */
  assert_int_equal(stead_fail_code(NULL, STEAD_EINVAL, "x"), STEAD_EINVAL);
  assert_int_equal(stead_fail_code(NULL, 3, "x"), STEAD_EHANDLER);
}

/* ---- render.c ---- */

typedef struct every {
  int64_t i;
  int64_t ts;
  double d;
  double nan;
  bool b;
  char *s;
  char *null_s;
  char *bad_s;
  stead_bytes bytes;
} every;

static const stead_field every_fields[] = {
    STEAD_FIELD_INT64(every, i, 0),           STEAD_FIELD_TIMESTAMP(every, ts, 0),
    STEAD_FIELD_DOUBLE(every, d, 0),          STEAD_FIELD_DOUBLE(every, nan, 0),
    STEAD_FIELD_BOOL(every, b, false),        STEAD_FIELD_STRING(every, s, NULL),
    STEAD_FIELD_STRING(every, null_s, NULL),  STEAD_FIELD_STRING(every, bad_s, NULL),
    STEAD_FIELD_BYTES(every, bytes, NULL, 0),
};
static const stead_schema every_schema = STEAD_SCHEMA(every, every_fields);

static char *dump(json_t *j) {
  assert_non_null(j);
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(j);
  return s;
}

static void test_render_state(void **state) {
  unsigned char raw[] = {0, 1, 2, 0xff};
  every e = {.i = INT64_MIN,
             .ts = INT64_C(1795446658125),
             .d = 2.5,
             .nan = NAN,
             .b = true,
             .s = "h\xc3\xa9",
             .null_s = NULL,
             .bad_s = "\xff",
             .bytes = {raw, sizeof raw}};
  char *s = dump(stead__state_json(&every_schema, &e));
  assert_string_equal(s, "{\"i\":-9223372036854775808,\"ts\":1795446658125,\"d\":2.5,"
                         "\"nan\":null,\"b\":true,\"s\":\"h\xc3\xa9\",\"null_s\":null,"
                         "\"bad_s_base64\":\"/w==\",\"bytes\":\"AAEC/w==\"}");
  free(s);
  every z = {0};
  s = dump(stead__state_json(&every_schema, &z));
  assert_string_equal(s, "{\"i\":0,\"ts\":0,\"d\":0.0,\"nan\":0.0,\"b\":false,\"s\":null,"
                         "\"null_s\":null,\"bad_s\":null,\"bytes\":\"\"}");
  free(s);
}

static void test_render_bytes_and_alarms(void **state) {
  json_t *o = json_object();
  assert_int_equal(stead__json_set_bytes(o, "json", "{\"a\":[1,2]}", 11), 0);
  assert_int_equal(stead__json_set_bytes(o, "num", "42", 2), 0);
  assert_int_equal(stead__json_set_bytes(o, "text", "hello there", 11), 0);
  assert_int_equal(stead__json_set_bytes(o, "bin", "\x00\xfe", 2), 0);
  assert_int_equal(stead__json_set_bytes(o, "empty", "", 0), 0);
  char *s = dump(o);
  assert_string_equal(s, "{\"json\":{\"a\":[1,2]},\"num\":42,\"text\":\"hello there\","
                         "\"bin_base64\":\"AP4=\",\"empty\":null}");
  free(s);
  stead_alarm_info al[] = {{"a", 5, 0, NULL, 0}, {"b", 7, 3, "{\"k\":1}", 7}};
  s = dump(stead__alarms_json(al, 2));
  assert_string_equal(s,
                      "[{\"name\":\"a\",\"at_ms\":5,\"attempt\":0,\"meta\":null},"
                      "{\"name\":\"b\",\"at_ms\":7,\"attempt\":3,\"meta\":{\"k\":1}}]");
  free(s);
  s = dump(stead__alarms_json(NULL, 0));
  assert_string_equal(s, "[]");
  free(s);
  char *b = stead__base64("foobar", 6);
  assert_string_equal(b, "Zm9vYmFy");
  free(b);
  b = stead__base64("fooba", 5);
  assert_string_equal(b, "Zm9vYmE=");
  free(b);
}

static void test_render_cluster(void **state) {
  stead_cluster_shard owned[2] = {{3, 7, 0, 1200}, {9, 1, 1, 40}};
  const char *members[] = {"a", "b"};
  stead_cluster_status st = {.node_id = "b",
                             .deployment = "prod",
                             .nshards = 16,
                             .owned = owned,
                             .nowned = 2,
                             .members = members,
                             .nmembers = 2,
                             .acquired = 2,
                             .lost = 1,
                             .malformed = 5,
                             .calls = 11,
                             .call_retries = 4};
  json_t *j = stead__cluster_json(&st, "postgres", "http://127.0.0.1:1");
  assert_non_null(j);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  assert_string_equal(
      s, "{\"counters\":{\"acquire_failures\":0,\"acquired\":2,\"expired\":0,"
         "\"forward_retries\":4,\"forwarded\":11,\"lost\":1,\"malformed\":5,"
         "\"not_owner\":0,\"released\":0},\"deployment\":\"prod\","
         "\"members\":[{\"node_id\":\"a\",\"self\":false},{\"node_id\":\"b\","
         "\"self\":true}],\"mode\":\"cluster\",\"node_id\":\"b\",\"owned\":[{"
         "\"draining\":false,\"epoch\":7,\"lease_left_ms\":1200,\"shard\":3},{"
         "\"draining\":true,\"epoch\":1,\"lease_left_ms\":40,\"shard\":9}],"
         "\"shards\":16,\"shards_owned\":2,\"storage\":\"postgres\",\"url\":"
         "\"http://127.0.0.1:1\"}");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ratelimiter_windows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ratelimiter_late_alarm_and_defaults, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ratelimiter_bad_bodies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reminder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reminder_bad_bodies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_bodies_are_einval, setup, teardown),
      cmocka_unit_test(test_render_state),
      cmocka_unit_test(test_render_bytes_and_alarms),
      cmocka_unit_test(test_render_cluster),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
