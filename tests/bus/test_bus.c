/*
 * test_bus.c -- event bus behaviour: priorities, abort, errors and the
 * error handler, listener ids, payload replacement, properties, limits,
 * on/off from inside listeners, off while a listener runs, overload, and
 * free with events in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "bus/bus_internal.h"

static stead_bus *new_bus(int workers, size_t queue) {
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = workers;
  cfg.queue_capacity = queue;
  stead_bus *b = NULL;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  return b;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- a log of which listeners ran ------------------------------------- */

typedef struct trace {
  char buf[256];
} trace;

typedef struct tag {
  trace *t;
  const char *name;
  int ret;          /* what the listener returns */
  bool abort;       /* abort the event */
  const char *fail; /* message for stead_event_fail */
} tag;

static int traced(stead_event *ev, void *udata) {
  tag *g = udata;
  strcat(g->t->buf, g->name);
  if (g->abort)
    stead_event_abort(ev);
  if (g->fail)
    return stead_event_fail(ev, "%s: %s", g->name, g->fail);
  return g->ret;
}

static void test_priority_order(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 16);
  trace t = {.buf = ""};
  tag a = {.t = &t, .name = "a"}, bb = {.t = &t, .name = "b"}, c = {.t = &t, .name = "c"},
      d = {.t = &t, .name = "d"}, e = {.t = &t, .name = "e"};
  /* Across different patterns: one sequence by priority, ties in order. */
  assert_int_equal(stead_bus_on(b, "user.*", traced, &a, STEAD_PRIORITY_NORMAL, NULL), 0);
  assert_int_equal(stead_bus_on(b, "**", traced, &bb, STEAD_PRIORITY_HIGH, NULL), 0);
  assert_int_equal(stead_bus_on(b, "user.created", traced, &c, STEAD_PRIORITY_LOW, NULL),
                   0);
  assert_int_equal(stead_bus_on(b, "user.**", traced, &d, STEAD_PRIORITY_NORMAL, NULL),
                   0);
  assert_int_equal(stead_bus_on(b, "**.created", traced, &e, STEAD_PRIORITY_HIGH, NULL),
                   0);
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "user.created", NULL, 0, NULL, 0, &r), 0);
  assert_string_equal(t.buf, "beadc");
  assert_int_equal(r->matched, 5);
  assert_int_equal(r->ran, 5);
  assert_int_equal(r->aborted, 0);
  assert_int_equal(r->n_errors, 0);
  assert_string_equal(r->topic, "user.created");
  stead_emit_result_free(r);
  t.buf[0] = 0;
  assert_int_equal(stead_bus_emit_sync(b, "user.deleted", NULL, 0, NULL, 0, NULL), 0);
  assert_string_equal(t.buf, "bad");
  assert_int_equal(stead_bus_free(b), 0);
}

static void test_abort(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 16);
  trace t = {.buf = ""};
  tag hi = {.t = &t, .name = "H", .abort = true}, lo = {.t = &t, .name = "L"};
  assert_int_equal(
      stead_bus_on(b, "invoice.processed", traced, &lo, STEAD_PRIORITY_LOW, NULL), 0);
  assert_int_equal(stead_bus_on(b, "invoice.*", traced, &hi, STEAD_PRIORITY_HIGH, NULL),
                   0);
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "invoice.processed", "x", 1, NULL, 0, &r), 0);
  assert_string_equal(t.buf, "H");
  assert_int_equal(r->aborted, 1);
  assert_int_equal(r->matched, 2);
  assert_int_equal(r->ran, 1);
  stead_emit_result_free(r);
  hi.abort = false;
  t.buf[0] = 0;
  assert_int_equal(stead_bus_emit_sync(b, "invoice.processed", NULL, 0, NULL, 0, NULL),
                   0);
  assert_string_equal(t.buf, "HL");
  assert_int_equal(stead_bus_free(b), 0);
}

/* ---- errors --------------------------------------------------------------- */

static void test_errors_reported_in_order(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 16);
  trace t = {.buf = ""};
  tag e1 = {.t = &t, .name = "1", .fail = "disk full"}, ok = {.t = &t, .name = "2"},
      e3 = {.t = &t, .name = "3", .ret = STEAD_ETIMEDOUT},
      e4 = {.t = &t, .name = "4", .ret = 7};
  char id1[STEAD_BUS_ID_SIZE], id3[STEAD_BUS_ID_SIZE];
  assert_int_equal(stead_bus_on(b, "a.b", traced, &e1, 4, id1), 0);
  assert_int_equal(stead_bus_on(b, "a.*", traced, &ok, 3, NULL), 0);
  assert_int_equal(stead_bus_on(b, "**", traced, &e3, 2, id3), 0);
  assert_int_equal(stead_bus_on(b, "a.**", traced, &e4, 1, NULL), 0);
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "a.b", NULL, 0, NULL, 0, &r), STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "disk full"));
  /* A failing listener does not stop the next ones. */
  assert_string_equal(t.buf, "1234");
  assert_int_equal(r->status, STEAD_EHANDLER);
  assert_int_equal(r->n_errors, 3);
  assert_string_equal(r->errors[0].listener_id, id1);
  assert_string_equal(r->errors[0].pattern, "a.b");
  assert_int_equal(r->errors[0].code, STEAD_EHANDLER);
  assert_string_equal(r->errors[0].message, "1: disk full");
  assert_string_equal(r->errors[1].listener_id, id3);
  assert_int_equal(r->errors[1].code, STEAD_ETIMEDOUT);
  assert_non_null(r->errors[1].message);
  assert_int_equal(r->errors[2].code, STEAD_EHANDLER); /* positive -> EHANDLER */
  assert_string_equal(r->errors[2].pattern, "a.**");
  stead_emit_result_free(r);
  stead_bus_stats st;
  assert_int_equal(stead_bus_get_stats(b, &st), 0);
  assert_int_equal(st.listener_errors, 3);
  assert_int_equal(st.sync_emits, 1);
  assert_int_equal(stead_bus_free(b), 0);
}

typedef struct handler_log {
  int calls;
  char last_id[STEAD_BUS_ID_SIZE];
  int last_code;
  char last_msg[128];
  bool swallow_all;
  bool abort_on_error;
} handler_log;

static int on_error(stead_event *ev, const char *listener_id, int code,
                    const char *message, void *udata) {
  handler_log *h = udata;
  h->calls++;
  snprintf(h->last_id, sizeof h->last_id, "%s", listener_id);
  snprintf(h->last_msg, sizeof h->last_msg, "%s", message);
  h->last_code = code;
  assert_string_equal(stead_event_listener_id(ev), listener_id);
  if (h->abort_on_error)
    stead_event_abort(ev);
  /* Swallow everything, or only errors whose message says "minor". */
  return h->swallow_all || strstr(message, "minor") ? 0 : 1;
}

static void test_error_handler(void **state) {
  (void)state;
  handler_log h = {0};
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.on_error = on_error;
  cfg.error_udata = &h;
  stead_bus *b;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  trace t = {.buf = ""};
  tag minor = {.t = &t, .name = "m", .fail = "minor"},
      major = {.t = &t, .name = "M", .fail = "major"}, last = {.t = &t, .name = "z"};
  char idM[STEAD_BUS_ID_SIZE];
  assert_int_equal(stead_bus_on(b, "x", traced, &minor, 3, NULL), 0);
  assert_int_equal(stead_bus_on(b, "x", traced, &major, 2, idM), 0);
  assert_int_equal(stead_bus_on(b, "x", traced, &last, 1, NULL), 0);
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "x", NULL, 0, NULL, 0, &r), STEAD_EHANDLER);
  assert_int_equal(h.calls, 2);
  assert_string_equal(h.last_id, idM);
  assert_string_equal(h.last_msg, "M: major");
  assert_int_equal(h.last_code, STEAD_EHANDLER);
  assert_int_equal(r->n_errors, 1); /* the minor one was swallowed */
  assert_string_equal(r->errors[0].listener_id, idM);
  stead_emit_result_free(r);
  /* Swallowing everything: the emitter sees success. */
  h.swallow_all = true;
  assert_int_equal(stead_bus_emit_sync(b, "x", NULL, 0, NULL, 0, NULL), 0);
  assert_int_equal(h.calls, 4);
  /* The handler may abort the event. */
  h.abort_on_error = true;
  t.buf[0] = 0;
  assert_int_equal(stead_bus_emit_sync(b, "x", NULL, 0, NULL, 0, &r), 0);
  assert_string_equal(t.buf, "m");
  assert_int_equal(r->aborted, 1);
  stead_emit_result_free(r);
  assert_int_equal(stead_bus_free(b), 0);
}

/* ---- async emit and the done callback ------------------------------------ */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int status;
  size_t n_errors;
  char first_msg[128];
  char payload[64];
  char topic[64];
} waiter;

static void waiter_init(waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
}

static void waiter_destroy(waiter *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

static void on_done(const stead_emit_result *r, void *udata) {
  waiter *w = udata;
  pthread_mutex_lock(&w->mu);
  w->done++;
  w->status = r->status;
  w->n_errors = r->n_errors;
  if (r->n_errors)
    snprintf(w->first_msg, sizeof w->first_msg, "%s", r->errors[0].message);
  snprintf(w->payload, sizeof w->payload, "%.*s", (int)r->len, (const char *)r->payload);
  snprintf(w->topic, sizeof w->topic, "%s", r->topic);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void wait_done(waiter *w, int n) {
  pthread_mutex_lock(&w->mu);
  while (w->done < n)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

static void test_async_emit_reports_errors(void **state) {
  (void)state;
  stead_bus *b = new_bus(2, 16);
  trace t = {.buf = ""};
  tag bad = {.t = &t, .name = "b", .fail = "nope"};
  assert_int_equal(stead_bus_on(b, "job.*", traced, &bad, 0, NULL), 0);
  waiter w;
  waiter_init(&w);
  assert_int_equal(stead_bus_emit(b, "job.done", "pay", 3, NULL, 0, on_done, &w), 0);
  wait_done(&w, 1);
  assert_int_equal(w.status, STEAD_EHANDLER);
  assert_int_equal(w.n_errors, 1);
  assert_string_equal(w.first_msg, "b: nope");
  assert_string_equal(w.payload, "pay");
  assert_string_equal(w.topic, "job.done");
  /* No listener: done still fires once, with success. */
  assert_int_equal(stead_bus_emit(b, "nobody.listens", NULL, 0, NULL, 0, on_done, &w), 0);
  wait_done(&w, 2);
  assert_int_equal(w.status, 0);
  /* A rejected emit never calls done. */
  assert_int_equal(stead_bus_emit(b, "bad..topic", NULL, 0, NULL, 0, on_done, &w),
                   STEAD_EINVAL);
  assert_int_equal(stead_bus_free(b), 0);
  assert_int_equal(w.done, 2);
  stead_bus_stats st = {0};
  waiter_destroy(&w);
  (void)st;
}

/* ---- payload and properties ---------------------------------------------- */

static int upper(stead_event *ev, void *udata) {
  (void)udata;
  size_t len;
  const char *p = stead_event_payload(ev, &len);
  char buf[64];
  for (size_t i = 0; i < len; i++)
    buf[i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
  return stead_event_set_payload(ev, buf, len);
}

static int suffix(stead_event *ev, void *udata) {
  (void)udata;
  size_t len;
  const char *p = stead_event_payload(ev, &len);
  char buf[64];
  memcpy(buf, p, len);
  memcpy(buf + len, "!", 1);
  return stead_event_set_payload(ev, buf, len + 1);
}

static int too_big(stead_event *ev, void *udata) {
  (void)udata;
  static char big[2048];
  assert_int_equal(stead_event_set_payload(ev, big, sizeof big), STEAD_ETOOBIG);
  assert_int_equal(stead_event_set_payload(ev, NULL, 3), STEAD_EINVAL);
  return 0;
}

static void test_payload_replacement(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.max_payload = 1024;
  stead_bus *b;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  assert_int_equal(stead_bus_on(b, "p", upper, NULL, 2, NULL), 0);
  assert_int_equal(stead_bus_on(b, "p", suffix, NULL, 1, NULL), 0);
  assert_int_equal(stead_bus_on(b, "p", too_big, NULL, 0, NULL), 0);
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "p", "hello", 5, NULL, 0, &r), 0);
  assert_int_equal(r->len, 6);
  assert_memory_equal(r->payload, "HELLO!", 6);
  stead_emit_result_free(r);
  static char big[1025];
  assert_int_equal(stead_bus_emit_sync(b, "p", big, sizeof big, NULL, 0, &r),
                   STEAD_ETOOBIG);
  assert_null(r);
  assert_int_equal(stead_bus_emit(b, "p", NULL, 4, NULL, 0, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_free(b), 0);
}

static int read_props(stead_event *ev, void *udata) {
  int *ok = udata;
  assert_string_equal(stead_event_property(ev, "trace"), "t-1");
  assert_string_equal(stead_event_property(ev, "tenant"), "acme");
  assert_null(stead_event_property(ev, "missing"));
  assert_int_equal(stead_event_property_count(ev), 2);
  const char *k, *v;
  assert_int_equal(stead_event_property_at(ev, 1, &k, &v), 0);
  assert_string_equal(k, "tenant");
  assert_string_equal(v, "acme");
  assert_int_equal(stead_event_property_at(ev, 2, &k, &v), STEAD_ENOTFOUND);
  assert_string_equal(stead_event_topic(ev), "order.placed");
  assert_non_null(stead_event_bus(ev));
  (*ok)++;
  return 0;
}

static void test_properties(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.max_properties = 2;
  stead_bus *b;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  int ok = 0;
  assert_int_equal(stead_bus_on(b, "order.*", read_props, &ok, 0, NULL), 0);
  char key[8] = "trace";
  stead_event_prop props[3] = {{key, "t-1"}, {"tenant", "acme"}, {"x", "y"}};
  stead_emit_result *r;
  assert_int_equal(stead_bus_emit_sync(b, "order.placed", NULL, 0, props, 2, &r), 0);
  assert_int_equal(ok, 1);
  stead_emit_result_free(r);
  /* Properties are copied: changing the caller's strings after emit is safe. */
  waiter w;
  waiter_init(&w);
  assert_int_equal(stead_bus_emit(b, "order.placed", NULL, 0, props, 2, on_done, &w), 0);
  strcpy(key, "XXXXX");
  wait_done(&w, 1);
  assert_int_equal(ok, 2);
  assert_int_equal(w.status, 0);
  assert_int_equal(stead_bus_emit_sync(b, "order.placed", NULL, 0, props, 3, NULL),
                   STEAD_ETOOBIG);
  stead_event_prop bad[1] = {{NULL, "v"}};
  assert_int_equal(stead_bus_emit_sync(b, "order.placed", NULL, 0, bad, 1, NULL),
                   STEAD_EINVAL);
  assert_int_equal(stead_bus_emit_sync(b, "order.placed", NULL, 0, NULL, 1, NULL),
                   STEAD_EINVAL);
  assert_int_equal(stead_bus_free(b), 0);
  waiter_destroy(&w);
}

/* ---- ids ------------------------------------------------------------------ */

static int noop(stead_event *ev, void *udata) {
  (void)ev;
  (void)udata;
  return 0;
}

static bool is_crockford(const char *s) {
  if (strlen(s) != 26)
    return false;
  for (const char *c = s; *c; c++)
    if (!strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", *c))
      return false;
  return s[0] <= '7'; /* 128 bits: the first digit carries only 3 */
}

static void test_default_ids_are_ulids(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 16);
  char prev[STEAD_BUS_ID_SIZE] = "", id[STEAD_BUS_ID_SIZE];
  for (int i = 0; i < 2000; i++) {
    assert_int_equal(stead_bus_on(b, "a", noop, NULL, 0, id), 0);
    assert_true(is_crockford(id));
    assert_true(strcmp(prev, id) < 0); /* strictly increasing */
    strcpy(prev, id);
  }
  stead_bus_stats st;
  assert_int_equal(stead_bus_get_stats(b, &st), 0);
  assert_int_equal(st.listeners, 2000);
  assert_int_equal(stead_bus_off(b, id), 0);
  assert_int_equal(stead_bus_off(b, id), STEAD_ENOTFOUND);
  assert_int_equal(stead_bus_off(b, "nope"), STEAD_ENOTFOUND);
  assert_int_equal(stead_bus_get_stats(b, &st), 0);
  assert_int_equal(st.listeners, 1999);
  assert_int_equal(stead_bus_free(b), 0);
}

static void test_ulid_monotonic_and_format(void **state) {
  (void)state;
  stead__ulid_state st;
  stead__ulid_init(&st);
  char a[27], b[27], c[27];
  int64_t ms = 1700000000000;
  assert_int_equal(stead__ulid_next(&st, ms, a), 0);
  assert_int_equal(stead__ulid_next(&st, ms, b), 0);     /* same ms */
  assert_int_equal(stead__ulid_next(&st, ms - 5, c), 0); /* clock stepped back */
  assert_true(strcmp(a, b) < 0 && strcmp(b, c) < 0);
  assert_memory_equal(a, b, 10); /* same timestamp part */
  assert_memory_equal(a, c, 10);
  assert_true(is_crockford(a));
  /* Known encodings: time 0 with zero randomness, then the max time. */
  memset(&st, 0, sizeof st);
  st.last_ms = 0;
  assert_int_equal(stead__ulid_next(&st, 0, a), 0);
  assert_string_equal(a, "00000000000000000000000001");
  memset(st.last_rand, 0xff, 10);
  st.last_ms = ((int64_t)1 << 48) - 1;
  assert_int_equal(stead__ulid_next(&st, st.last_ms, a), STEAD_EOVERLOAD);
  st.last_rand[9] = 0xfe;
  assert_int_equal(stead__ulid_next(&st, st.last_ms, a), 0);
  assert_string_equal(a, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
  assert_int_equal(stead__ulid_next(&st, -1, a), STEAD_EINVAL);
  /* Time is encoded in the first 10 characters, ordered. */
  stead__ulid_init(&st);
  assert_int_equal(stead__ulid_next(&st, 1000, a), 0);
  assert_int_equal(stead__ulid_next(&st, 1001, b), 0);
  assert_true(strncmp(a, b, 10) < 0);
}

static int gen_fixed(char *out, size_t size, void *udata) {
  int *mode = udata;
  if (*mode == 1)
    return STEAD_EIO;
  if (*mode == 2) {
    out[0] = 0;
    return 0;
  }
  snprintf(out, size, "listener-%d", *mode);
  return 0;
}

static void test_custom_id_generator(void **state) {
  (void)state;
  int mode = 7;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.id_gen = gen_fixed;
  cfg.id_udata = &mode;
  stead_bus *b;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  char id[STEAD_BUS_ID_SIZE];
  assert_int_equal(stead_bus_on(b, "a", noop, NULL, 0, id), 0);
  assert_string_equal(id, "listener-7");
  assert_int_equal(stead_bus_on(b, "b", noop, NULL, 0, id), STEAD_EEXIST);
  mode = 1;
  assert_int_equal(stead_bus_on(b, "b", noop, NULL, 0, id), STEAD_EIO);
  mode = 2;
  assert_int_equal(stead_bus_on(b, "b", noop, NULL, 0, id), STEAD_EINVAL);
  assert_int_equal(stead_bus_off(b, "listener-7"), 0);
  mode = 7;
  assert_int_equal(stead_bus_on(b, "b", noop, NULL, 0, id), 0); /* free again */
  assert_int_equal(stead_bus_free(b), 0);
}

/* ---- limits and bad input ------------------------------------------------ */

static void test_limits_and_bad_input(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  stead_bus *b = NULL;
  cfg.workers = -1;
  assert_int_equal(stead_bus_new(&cfg, &b), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "workers"));
  stead_bus_config_init(&cfg);
  cfg.queue_capacity = 0;
  assert_int_equal(stead_bus_new(&cfg, &b), STEAD_EINVAL);
  stead_bus_config_init(&cfg);
  cfg.max_segments = 500;
  assert_int_equal(stead_bus_new(&cfg, &b), STEAD_EINVAL);
  stead_bus_config_init(&cfg);
  cfg.max_topic_len = 0;
  assert_int_equal(stead_bus_new(&cfg, &b), STEAD_EINVAL);
  assert_int_equal(stead_bus_new(NULL, NULL), STEAD_EINVAL);
  assert_null(b);

  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.max_listeners = 3;
  cfg.max_topic_len = 8;
  cfg.max_segments = 3;
  assert_int_equal(stead_bus_new(&cfg, &b), 0);
  assert_int_equal(stead_bus_on(b, "a.b.c", noop, NULL, 0, NULL), 0);
  assert_int_equal(stead_bus_on(b, "a.b.c.d", noop, NULL, 0, NULL), STEAD_ETOOBIG);
  assert_int_equal(stead_bus_on(b, "abcdefghi", noop, NULL, 0, NULL), STEAD_ETOOBIG);
  assert_int_equal(stead_bus_on(b, "a*", noop, NULL, 0, NULL), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "whole segment"));
  assert_int_equal(stead_bus_on(b, NULL, noop, NULL, 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_on(b, "a", NULL, NULL, 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_on(NULL, "a", noop, NULL, 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_on(b, "*", noop, NULL, 0, NULL), 0);
  assert_int_equal(stead_bus_on(b, "**", noop, NULL, 0, NULL), 0);
  assert_int_equal(stead_bus_on(b, "x", noop, NULL, 0, NULL), STEAD_EOVERLOAD);
  assert_non_null(strstr(stead_errmsg(), "max_listeners"));
  assert_int_equal(stead_bus_emit_sync(b, "a.b.c.d", NULL, 0, NULL, 0, NULL),
                   STEAD_ETOOBIG);
  assert_int_equal(stead_bus_emit_sync(b, "a.*", NULL, 0, NULL, 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_emit(b, "", NULL, 0, NULL, 0, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_emit(NULL, "a", NULL, 0, NULL, 0, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_off(b, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_get_stats(b, NULL), STEAD_EINVAL);
  assert_int_equal(stead_bus_free(b), 0);
  assert_int_equal(stead_bus_free(NULL), 0);
}

/* ---- on/off from inside listeners ------------------------------------------ */

typedef struct churn {
  stead_bus *b;
  char self_id[STEAD_BUS_ID_SIZE];
  char victim_id[STEAD_BUS_ID_SIZE];
  int self_runs, added_runs, victim_runs, subscribed;
} churn;

static int added(stead_event *ev, void *udata) {
  (void)ev;
  ((churn *)udata)->added_runs++;
  return 0;
}

static int victim(stead_event *ev, void *udata) {
  (void)ev;
  ((churn *)udata)->victim_runs++;
  return 0;
}

static int self_remover(stead_event *ev, void *udata) {
  churn *c = udata;
  c->self_runs++;
  stead_bus *b = stead_event_bus(ev);
  /* Subscribing from a listener works and does not see this event. */
  assert_int_equal(stead_bus_on(b, "c.*", added, c, 100, NULL), 0);
  c->subscribed++;
  /* Removing itself and a later listener of this very event. */
  assert_int_equal(stead_bus_off(b, stead_event_listener_id(ev)), 0);
  assert_int_equal(stead_bus_off(b, c->victim_id), 0);
  /* Freeing the bus from inside is refused. */
  assert_int_equal(stead_bus_free(b), STEAD_EMISUSE);
  return 0;
}

static void test_on_off_inside_listener(void **state) {
  (void)state;
  stead_bus *b = new_bus(2, 16);
  churn c = {.b = b};
  assert_int_equal(stead_bus_on(b, "c.x", self_remover, &c, 10, c.self_id), 0);
  assert_int_equal(stead_bus_on(b, "c.**", victim, &c, 1, c.victim_id), 0);
  assert_int_equal(stead_bus_emit_sync(b, "c.x", NULL, 0, NULL, 0, NULL), 0);
  assert_int_equal(c.self_runs, 1);
  assert_int_equal(c.added_runs, 0);  /* snapshot taken at emit */
  assert_int_equal(c.victim_runs, 0); /* removed before its turn */
  /* Same through the pool. */
  waiter w;
  waiter_init(&w);
  assert_int_equal(stead_bus_emit(b, "c.x", NULL, 0, NULL, 0, on_done, &w), 0);
  wait_done(&w, 1);
  assert_int_equal(c.self_runs, 1); /* it removed itself */
  assert_int_equal(c.added_runs, 1);
  assert_int_equal(stead_bus_free(b), 0);
  waiter_destroy(&w);
}

/* ---- a gate that blocks a listener until the test opens it -------------- */

typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool open;
  int entered, left;
} gate;

static void gate_init(gate *g) {
  memset(g, 0, sizeof *g);
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
}

static void gate_destroy(gate *g) {
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
}

static int gated(stead_event *ev, void *udata) {
  (void)ev;
  gate *g = udata;
  pthread_mutex_lock(&g->mu);
  g->entered++;
  pthread_cond_broadcast(&g->cv);
  while (!g->open)
    pthread_cond_wait(&g->cv, &g->mu);
  g->left++;
  pthread_mutex_unlock(&g->mu);
  return 0;
}

static void gate_wait_entered(gate *g, int n) {
  pthread_mutex_lock(&g->mu);
  while (g->entered < n)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->open = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

typedef struct off_arg {
  stead_bus *b;
  const char *id;
  gate *g;
  atomic_int returned;
  int left_at_return;
  int rc;
} off_arg;

static void *off_thread(void *arg) {
  off_arg *a = arg;
  a->rc = stead_bus_off(a->b, a->id);
  pthread_mutex_lock(&a->g->mu);
  a->left_at_return = a->g->left;
  pthread_mutex_unlock(&a->g->mu);
  atomic_store(&a->returned, 1);
  return NULL;
}

static void test_off_waits_for_running_listener(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 16);
  gate g;
  gate_init(&g);
  char id[STEAD_BUS_ID_SIZE];
  assert_int_equal(stead_bus_on(b, "slow", gated, &g, 0, id), 0);
  assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, NULL, NULL), 0);
  assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, NULL, NULL), 0);
  gate_wait_entered(&g, 1);
  off_arg a = {.b = b, .id = id, .g = &g};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, off_thread, &a), 0);
  sleep_ms(50);
  assert_int_equal(atomic_load(&a.returned), 0); /* still waiting */
  gate_open(&g);
  pthread_join(th, NULL);
  assert_int_equal(a.rc, 0);
  assert_int_equal(a.left_at_return, 1); /* the running call had returned */
  assert_int_equal(stead_bus_free(b), 0);
  assert_int_equal(g.entered, 1); /* the queued event did not start it again */
  gate_destroy(&g);
}

/* ---- overload ----------------------------------------------------------------- */

typedef struct emit_arg {
  stead_bus *b;
  atomic_int returned;
  int rc;
} emit_arg;

static void *emit_thread(void *arg) {
  emit_arg *a = arg;
  a->rc = stead_bus_emit(a->b, "slow", NULL, 0, NULL, 0, NULL, NULL);
  atomic_store(&a->returned, 1);
  return NULL;
}

static int emit_inside(stead_event *ev, void *udata) {
  int *rc = udata;
  *rc = stead_bus_emit(stead_event_bus(ev), "slow", NULL, 0, NULL, 0, NULL, NULL);
  return 0;
}

static void test_overload(void **state) {
  (void)state;
  for (int wait_mode = 0; wait_mode < 2; wait_mode++) {
    stead_bus_config cfg;
    stead_bus_config_init(&cfg);
    cfg.workers = 1;
    cfg.queue_capacity = 2;
    cfg.wait_when_full = wait_mode;
    stead_bus *b;
    assert_int_equal(stead_bus_new(&cfg, &b), 0);
    gate g;
    gate_init(&g);
    int inside_rc = 1;
    assert_int_equal(stead_bus_on(b, "slow", gated, &g, 0, NULL), 0);
    assert_int_equal(stead_bus_on(b, "inside", emit_inside, &inside_rc, 0, NULL), 0);
    waiter w;
    waiter_init(&w);
    assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, on_done, &w), 0);
    gate_wait_entered(&g, 1); /* the worker is busy */
    assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, on_done, &w), 0);
    /* emit_sync from this thread runs a listener that emits to the full pool:
     * it must get EOVERLOAD, never wait (even in wait mode). */
    assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, on_done, &w), 0);
    assert_int_equal(stead_bus_emit_sync(b, "inside", NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(inside_rc, STEAD_EOVERLOAD);
    stead_bus_stats st;
    assert_int_equal(stead_bus_get_stats(b, &st), 0);
    assert_int_equal(st.waiting, 2);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.workers, 1);
    if (!wait_mode) {
      assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, on_done, &w),
                       STEAD_EOVERLOAD);
      assert_true(stead_retryable(STEAD_EOVERLOAD));
      assert_int_equal(stead_bus_get_stats(b, &st), 0);
      assert_int_equal(st.rejected, 2);
      gate_open(&g);
      wait_done(&w, 3);
    } else {
      emit_arg a = {.b = b};
      pthread_t th;
      assert_int_equal(pthread_create(&th, NULL, emit_thread, &a), 0);
      sleep_ms(50);
      assert_int_equal(atomic_load(&a.returned), 0); /* waiting for room */
      gate_open(&g);
      pthread_join(th, NULL);
      assert_int_equal(a.rc, 0);
      wait_done(&w, 3);
    }
    assert_int_equal(stead_bus_free(b), 0);
    assert_int_equal(w.done, 3);
    assert_int_equal(g.entered, 3 + wait_mode);
    waiter_destroy(&w);
    gate_destroy(&g);
  }
}

/* ---- free with events in flight ------------------------------------------- */

typedef struct free_arg {
  stead_bus *b;
  int rc;
} free_arg;

static void *free_thread(void *arg) {
  free_arg *a = arg;
  a->rc = stead_bus_free(a->b);
  return NULL;
}

static int late_emitter(stead_event *ev, void *udata) {
  int *rc = udata;
  *rc = stead_bus_emit(stead_event_bus(ev), "late", NULL, 0, NULL, 0, NULL, NULL);
  return 0;
}

static void count_done(const stead_emit_result *r, void *udata) {
  (void)r;
  atomic_fetch_add((atomic_int *)udata, 1);
}

static void test_free_drains_in_flight(void **state) {
  (void)state;
  stead_bus *b = new_bus(1, 64);
  gate g;
  gate_init(&g);
  int late_rc = 1;
  atomic_int dones = 0;
  assert_int_equal(stead_bus_on(b, "slow", gated, &g, 0, NULL), 0);
  assert_int_equal(stead_bus_on(b, "slow", late_emitter, &late_rc, -1, NULL), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(stead_bus_emit(b, "slow", NULL, 0, NULL, 0, count_done, &dones), 0);
  gate_wait_entered(&g, 1);
  free_arg a = {.b = b, .rc = 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, free_thread, &a), 0);
  sleep_ms(30);
  assert_int_equal(atomic_load(&dones), 0); /* free is waiting, nothing lost */
  gate_open(&g);
  pthread_join(th, NULL);
  assert_int_equal(a.rc, 0);
  assert_int_equal(atomic_load(&dones), 10); /* each exactly once */
  assert_int_equal(g.left, 10);
  assert_int_equal(late_rc, STEAD_ECLOSED); /* emits during the drain */
  gate_destroy(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_priority_order),
      cmocka_unit_test(test_abort),
      cmocka_unit_test(test_errors_reported_in_order),
      cmocka_unit_test(test_error_handler),
      cmocka_unit_test(test_async_emit_reports_errors),
      cmocka_unit_test(test_payload_replacement),
      cmocka_unit_test(test_properties),
      cmocka_unit_test(test_default_ids_are_ulids),
      cmocka_unit_test(test_ulid_monotonic_and_format),
      cmocka_unit_test(test_custom_id_generator),
      cmocka_unit_test(test_limits_and_bad_input),
      cmocka_unit_test(test_on_off_inside_listener),
      cmocka_unit_test(test_off_waits_for_running_listener),
      cmocka_unit_test(test_overload),
      cmocka_unit_test(test_free_drains_in_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
