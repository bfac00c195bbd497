/*
 * Events in the runtime: transactional emit (a failed turn or a failed
 * commit publishes nothing), ordering of one object's events, objects as
 * subscribers (on_event turns, activation, unsubscribe), durable
 * subscriptions across a close/reopen of a SQLite-backed runtime, bad
 * patterns and topics, a full mailbox, and the pattern -> NATS subject
 * mapping.
 */
#include "core/core.h"
#include "core/events.h"
#include "storage/failbe.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- an outside listener that records what it sees ------------------ */

typedef struct seen {
  pthread_mutex_t mu;
  char log[16384];
  int n;
} seen;

static seen g_seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void seen_reset(void) {
  pthread_mutex_lock(&g_seen.mu);
  g_seen.log[0] = 0;
  g_seen.n = 0;
  pthread_mutex_unlock(&g_seen.mu);
}

static int seen_n(void) {
  pthread_mutex_lock(&g_seen.mu);
  int n = g_seen.n;
  pthread_mutex_unlock(&g_seen.mu);
  return n;
}

static int record(stead_event *ev, void *udata) {
  size_t len;
  const char *p = stead_event_payload(ev, &len);
  pthread_mutex_lock(&g_seen.mu);
  size_t l = strlen(g_seen.log);
  snprintf(g_seen.log + l, sizeof g_seen.log - l, "%s%s=%.*s", l ? "," : "",
           stead_event_topic(ev), (int)len, p ? p : "");
  g_seen.n++;
  pthread_mutex_unlock(&g_seen.mu);
  return 0;
}

/* Waits up to 5 s for the listener to have seen n events. */
static void wait_seen(int n) {
  for (int i = 0; i < 5000 && seen_n() < n; i++)
    test_sleep_ms(1);
  assert_int_equal(seen_n(), n);
}

/* ---- a class that publishes and subscribes ---------------------------- */

static _Atomic int g_block; /* on_event of "slow.*" topics spins while set */
static _Atomic int g_in_event;

static void arg_str(char *buf, size_t size, const void *arg, size_t len) {
  snprintf(buf, size, "%.*s", (int)len, (const char *)arg);
}

/* emit: arg "topic payload" -> one transactional emit. */
static int m_emit(stead_ctx *ctx, const void *arg, size_t len) {
  char b[512];
  arg_str(b, sizeof b, arg, len);
  char *sp = strchr(b, ' ');
  const char *pl = "";
  if (sp) {
    *sp = 0;
    pl = sp + 1;
  }
  return stead_emit(ctx, b, pl, strlen(pl));
}

/* emit_fail: emits, then the handler fails. */
static int m_emit_fail(stead_ctx *ctx, const void *arg, size_t len) {
  int rc = stead_emit(ctx, "fail.topic", "x", 1);
  return rc ? rc : stead_fail(ctx, "changed my mind");
}

/* emit_many: arg N -> emits seq.0 .. seq.N-1 with payload i. */
static int m_emit_many(stead_ctx *ctx, const void *arg, size_t len) {
  char b[32];
  arg_str(b, sizeof b, arg, len);
  int n = atoi(b);
  for (int i = 0; i < n; i++) {
    char p[16];
    int k = snprintf(p, sizeof p, "%d", i);
    int rc = stead_emit(ctx, "seq.n", p, (size_t)k);
    if (rc)
      return rc;
  }
  return 0;
}

static int m_sub(stead_ctx *ctx, const void *arg, size_t len) {
  char b[512];
  arg_str(b, sizeof b, arg, len);
  return stead_subscribe(ctx, b);
}

static int m_unsub(stead_ctx *ctx, const void *arg, size_t len) {
  char b[512];
  arg_str(b, sizeof b, arg, len);
  return stead_unsubscribe(ctx, b);
}

/* sub_emit: subscribes to arg and emits "subbed.x" in the same turn. */
static int m_sub_emit(stead_ctx *ctx, const void *arg, size_t len) {
  int rc = m_sub(ctx, arg, len);
  return rc ? rc : stead_emit(ctx, "subbed.x", "", 0);
}

static int m_sub_fail(stead_ctx *ctx, const void *arg, size_t len) {
  int rc = m_sub(ctx, arg, len);
  return rc ? rc : stead_fail(ctx, "no");
}

/* try: arg "op arg" (op: sub, unsub, emit); replies "<code> <message>" so
 * the test sees the API's own code (a failed handler would turn it into
 * EHANDLER). */
static int m_try(stead_ctx *ctx, const void *arg, size_t len) {
  char b[512];
  arg_str(b, sizeof b, arg, len);
  char *a = strchr(b, ' ');
  a = a ? (*a = 0, a + 1) : b + strlen(b);
  int rc = strcmp(b, "sub") == 0     ? stead_subscribe(ctx, a)
           : strcmp(b, "unsub") == 0 ? stead_unsubscribe(ctx, a)
                                     : stead_emit(ctx, a, "", 0);
  char out[1200];
  int k = snprintf(out, sizeof out, "%d %s", rc, rc ? stead_errmsg() : "");
  return stead_reply(ctx, out, (size_t)k);
}

/* subs: replies the subscriptions joined by spaces. */
static int m_subs(stead_ctx *ctx, const void *arg, size_t len) {
  char **p;
  size_t n;
  int rc = stead_subscriptions(ctx, &p, &n);
  if (rc)
    return rc;
  char out[2048] = "";
  for (size_t i = 0; i < n; i++)
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", p[i]);
  stead_free(p);
  return stead_reply(ctx, out, strlen(out));
}

/* events: replies the events received so far, "topic=payload,...". */
static int m_events(stead_ctx *ctx, const void *arg, size_t len) {
  stead_list_opts o = {.prefix = "e", .prefix_len = 1};
  stead_kv *kv;
  size_t n;
  int rc = stead_list(ctx, &o, &kv, &n);
  if (rc)
    return rc;
  stead__buf b = {0};
  for (size_t i = 0; i < n; i++) {
    if (i)
      stead__buf_append(&b, ",", 1);
    stead__buf_append(&b, kv[i].value, kv[i].value_len);
  }
  stead_free(kv);
  rc = stead_reply(ctx, b.data, b.len);
  stead__buf_free(&b);
  return rc;
}

/* Each event is stored under e<seq>, so order and count survive. */
static int on_event(stead_ctx *ctx, const char *topic, const void *payload, size_t len) {
  if (strncmp(topic, "slow.", 5) == 0) {
    atomic_fetch_add(&g_in_event, 1);
    while (atomic_load(&g_block))
      test_sleep_ms(1);
  }
  void *v = NULL;
  size_t vl = 0;
  long seq = 0;
  if (stead_get(ctx, "n", 1, &v, &vl) == 0) {
    seq = atol(v);
    stead_free(v);
  }
  char k[32], val[600], ns[32];
  int kl = snprintf(k, sizeof k, "e%08ld", seq);
  int l = snprintf(val, sizeof val, "%s=%.*s", topic, (int)len, (const char *)payload);
  int nl = snprintf(ns, sizeof ns, "%ld", seq + 1);
  int rc = stead_put(ctx, k, (size_t)kl, val, (size_t)l);
  return rc ? rc : stead_put(ctx, "n", 1, ns, (size_t)nl);
}

static const stead_method methods[] = {{"emit", m_emit},
                                       {"emit_fail", m_emit_fail},
                                       {"emit_many", m_emit_many},
                                       {"sub", m_sub},
                                       {"sub_emit", m_sub_emit},
                                       {"unsub", m_unsub},
                                       {"sub_fail", m_sub_fail},
                                       {"subs", m_subs},
                                       {"try", m_try},
                                       {"events", m_events},
                                       {NULL, NULL}};

static const stead_class obj_class = {
    .name = "obj", .methods = methods, .on_event = on_event};

/* A class without on_event cannot subscribe. */
static const stead_class deaf_class = {.name = "deaf", .methods = methods};

/* ---- helpers ----------------------------------------------------------- */

static stead_rt *open_rt(const char *storage, size_t mailbox_limit) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = storage;
  if (mailbox_limit)
    cfg.mailbox_limit = mailbox_limit;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &obj_class), 0);
  assert_rc(stead_register(rt, &deaf_class), 0);
  return rt;
}

static int call(stead_rt *rt, const char *cls, const char *id, const char *method,
                const char *arg, char *out, size_t out_size) {
  void *r = NULL;
  size_t n = 0;
  int rc = stead_call(rt, cls, id, method, arg, arg ? strlen(arg) : 0, 5000, &r, &n);
  if (out)
    snprintf(out, out_size, "%.*s", (int)n, r ? (char *)r : "");
  stead_free(r);
  return rc;
}

static char g_msg[1200];

/* Runs stead_subscribe/unsubscribe/emit in a turn of cls/id; returns its
 * code, the message in g_msg. */
static int try_op(stead_rt *rt, const char *cls, const char *id, const char *op,
                  const char *arg) {
  char a[600], out[1300];
  snprintf(a, sizeof a, "%s %s", op, arg);
  assert_rc(call(rt, cls, id, "try", a, out, sizeof out), 0);
  char *sp = strchr(out, ' ');
  snprintf(g_msg, sizeof g_msg, "%s", sp ? sp + 1 : "");
  return atoi(out);
}

#define CALL(rt, id, m, a) assert_rc(call(rt, "obj", id, m, a, NULL, 0), 0)

/* Polls obj/id's events until they equal want (or 5 s pass). */
static void wait_events(stead_rt *rt, const char *id, const char *want) {
  char got[8192] = "";
  for (int i = 0; i < 5000; i++) {
    assert_rc(call(rt, "obj", id, "events", NULL, got, sizeof got), 0);
    if (strcmp(got, want) == 0)
      return;
    test_sleep_ms(1);
  }
  assert_string_equal(got, want);
}

static char *listen_all(stead_rt *rt, char *id) {
  seen_reset();
  assert_rc(stead_bus_on(stead_rt_bus(rt), "**", record, NULL, 0, id), 0);
  return id;
}

/* ---- tests ------------------------------------------------------------- */

static void test_emit_after_commit_and_not_on_failure(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  char lid[STEAD_BUS_ID_SIZE];
  listen_all(rt, lid);
  CALL(rt, "p", "emit", "a.b hello");
  wait_seen(1);
  assert_int_equal(call(rt, "obj", "p", "emit_fail", NULL, NULL, 0), STEAD_EHANDLER);
  CALL(rt, "p", "emit", "a.c after");
  wait_seen(2);
  pthread_mutex_lock(&g_seen.mu);
  assert_string_equal(g_seen.log, "a.b=hello,a.c=after");
  pthread_mutex_unlock(&g_seen.mu);
  char *m;
  size_t ml;
  assert_rc(stead_metrics_text(rt, &m, &ml), 0);
  assert_non_null(strstr(m, "stead_bus_tx_emits_total{outcome=\"released\"} 2"));
  assert_non_null(strstr(m, "stead_bus_tx_emits_total{outcome=\"discarded\"} 1"));
  stead_free(m);
  assert_rc(stead_bus_off(stead_rt_bus(rt), lid), 0);
  stead_close(rt);
}

static void test_failed_commit_emits_nothing(void **state) {
  stead_rt *rt = open_rt("fail+memory", 0);
  char lid[STEAD_BUS_ID_SIZE];
  listen_all(rt, lid);
  CALL(rt, "s", "sub", "never.*");
  /* A turn that writes (a subscription) and emits; its commit fails. */
  stead__failbe_fail_next(stead__rt_backend(rt), 1);
  assert_int_equal(call(rt, "obj", "s", "sub_emit", "x.*", NULL, 0), STEAD_ESTORAGE);
  /* A write-less emit turn behind a failing commit is gated by it. */
  stead__failbe_set_delay_us(stead__rt_backend(rt), 50000);
  stead__failbe_fail_next(stead__rt_backend(rt), 1);
  stead_send(rt, "obj", "s", "sub", "y.*", 3);
  assert_int_equal(call(rt, "obj", "s", "emit", "gated.t lost", NULL, 0), STEAD_ESTORAGE);
  stead__failbe_set_delay_us(stead__rt_backend(rt), 0);
  stead_run_until_idle(rt);
  test_sleep_ms(50);
  assert_int_equal(seen_n(), 0);
  CALL(rt, "s", "emit", "ok.t fine");
  wait_seen(1);
  pthread_mutex_lock(&g_seen.mu);
  assert_string_equal(g_seen.log, "ok.t=fine");
  pthread_mutex_unlock(&g_seen.mu);
  /* The failed subscription was not kept. */
  char subs[256];
  assert_rc(call(rt, "obj", "s", "subs", NULL, subs, sizeof subs), 0);
  assert_string_equal(subs, "never.*");
  stead_bus_off(stead_rt_bus(rt), lid);
  stead_close(rt);
}

static void test_emit_order_from_one_object(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  CALL(rt, "sink", "sub", "seq.*");
  char lid[STEAD_BUS_ID_SIZE];
  listen_all(rt, lid);
  CALL(rt, "src", "emit_many", "50");
  /* And 50 more, one per turn, sent without waiting. */
  for (int i = 50; i < 100; i++) {
    char a[32];
    snprintf(a, sizeof a, "seq.n %d", i);
    assert_rc(stead_send(rt, "obj", "src", "emit", a, strlen(a)), 0);
  }
  wait_seen(100);
  char want[8192] = "";
  for (int i = 0; i < 100; i++)
    snprintf(want + strlen(want), sizeof want - strlen(want), "%sseq.n=%d", i ? "," : "",
             i);
  pthread_mutex_lock(&g_seen.mu);
  assert_string_equal(g_seen.log, want);
  pthread_mutex_unlock(&g_seen.mu);
  wait_events(rt, "sink", want);
  stead_bus_off(stead_rt_bus(rt), lid);
  stead_close(rt);
}

static void test_subscribe_on_event_and_activation(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  CALL(rt, "s", "sub", "chat.*.message");
  CALL(rt, "s", "sub", "chat.*.message"); /* idempotent */
  assert_rc(stead_emit_rt(rt, "chat.r1.message", "hi", 2), 0);
  assert_rc(stead_emit_rt(rt, "chat.r1.typing", "no", 2), 0);
  wait_events(rt, "s", "chat.r1.message=hi");
  /* A deactivated subscriber is activated by the next event. */
  assert_rc(stead_deactivate(rt, "obj", "s"), 0);
  assert_int_equal(stead_is_active(rt, "obj", "s"), 0);
  assert_rc(stead_emit_rt(rt, "chat.r2.message", "yo", 2), 0);
  for (int i = 0; i < 5000 && stead_is_active(rt, "obj", "s") != 1; i++)
    test_sleep_ms(1);
  assert_int_equal(stead_is_active(rt, "obj", "s"), 1);
  wait_events(rt, "s", "chat.r1.message=hi,chat.r2.message=yo");
  /* One object's event reaches another object's turn: emit from a turn. */
  CALL(rt, "pub", "emit", "chat.r3.message from-turn");
  wait_events(rt, "s", "chat.r1.message=hi,chat.r2.message=yo,chat.r3.message=from-turn");
  char subs[256];
  assert_rc(call(rt, "obj", "s", "subs", NULL, subs, sizeof subs), 0);
  assert_string_equal(subs, "chat.*.message");
  stead_close(rt);
}

static void test_unsubscribe(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  CALL(rt, "u", "sub", "a.**");
  CALL(rt, "u", "sub", "b");
  assert_rc(stead_emit_rt(rt, "a", "1", 1), 0);
  wait_events(rt, "u", "a=1");
  CALL(rt, "u", "unsub", "a.**");
  assert_int_equal(try_op(rt, "obj", "u", "unsub", "a.**"), STEAD_ENOTFOUND);
  assert_non_null(strstr(g_msg, "not subscribed"));
  assert_rc(stead_emit_rt(rt, "a.x", "2", 1), 0);
  assert_rc(stead_emit_rt(rt, "b", "3", 1), 0);
  /* b is behind a.x on the single bus worker: once it arrived, a.x was
   * dispatched and not delivered. */
  wait_events(rt, "u", "a=1,b=3");
  char subs[256];
  assert_rc(call(rt, "obj", "u", "subs", NULL, subs, sizeof subs), 0);
  assert_string_equal(subs, "b");
  char *m;
  size_t ml;
  assert_rc(stead_metrics_text(rt, &m, &ml), 0);
  assert_non_null(strstr(m, "stead_bus_subscriptions 1\n"));
  stead_free(m);
  stead_close(rt);
}

static void test_durable_subscriptions_across_restart(void **state) {
  char dir[] = "/tmp/stead-events-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char spec[256];
  snprintf(spec, sizeof spec, "sqlite:%s/data.db", dir);
  stead_rt *rt = open_rt(spec, 0);
  CALL(rt, "d", "sub", "order.*.paid");
  CALL(rt, "d", "sub", "gone.*");
  CALL(rt, "d", "unsub", "gone.*");
  assert_int_equal(call(rt, "obj", "d", "sub_fail", "failed.*", NULL, 0), STEAD_EHANDLER);
  CALL(rt, "e", "sub", "**.paid");
  assert_rc(stead_close(rt), 0);

  rt = open_rt(spec, 0);
  /* Nothing activated them: the listeners came from storage. */
  assert_int_equal(stead_is_active(rt, "obj", "d"), 0);
  assert_rc(stead_emit_rt(rt, "gone.x", "g", 1), 0);
  assert_rc(stead_emit_rt(rt, "failed.x", "f", 1), 0);
  assert_rc(stead_emit_rt(rt, "order.7.paid", "42", 2), 0);
  wait_events(rt, "d", "order.7.paid=42");
  wait_events(rt, "e", "order.7.paid=42");
  char subs[256];
  assert_rc(call(rt, "obj", "d", "subs", NULL, subs, sizeof subs), 0);
  assert_string_equal(subs, "order.*.paid");
  assert_rc(stead_close(rt), 0);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_bad_patterns_and_topics(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  const char *bad[] = {"a..b", "ab*", "*a", "***", ".a", "a.", "", "a b", "a.**b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(try_op(rt, "obj", "x", "sub", bad[i]), STEAD_EINVAL);
    assert_int_equal(stead_bus_on(stead_rt_bus(rt), bad[i], record, NULL, 0, NULL),
                     STEAD_EINVAL);
  }
  char longp[400];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = 0;
  assert_int_equal(try_op(rt, "obj", "x", "sub", longp), STEAD_ETOOBIG);
  /* Topics: wildcards are for patterns only. */
  assert_int_equal(try_op(rt, "obj", "x", "emit", "a.*"), STEAD_EINVAL);
  assert_non_null(strstr(g_msg, "wildcard"));
  assert_int_equal(stead_emit_rt(rt, "a..b", "", 0), STEAD_EINVAL);
  assert_int_equal(stead_emit_rt(rt, NULL, "", 0), STEAD_EINVAL);
  assert_int_equal(stead_emit_rt(NULL, "a", "", 0), STEAD_EINVAL);
  assert_int_equal(stead_emit(NULL, "a", "", 0), STEAD_EMISUSE);
  assert_int_equal(stead_subscribe(NULL, "a"), STEAD_EMISUSE);
  assert_int_equal(try_op(rt, "deaf", "x", "sub", "a.*"), STEAD_ENOTSUP);
  assert_non_null(strstr(g_msg, "on_event"));
  /* None of those left a subscription behind. */
  char subs[64];
  assert_rc(call(rt, "obj", "x", "subs", NULL, subs, sizeof subs), 0);
  assert_string_equal(subs, "");
  stead_close(rt);
}

static void test_full_mailbox_drops_and_counts(void **state) {
  stead_rt *rt = open_rt("memory", 4);
  CALL(rt, "f", "sub", "slow.*");
  atomic_store(&g_block, 1);
  atomic_store(&g_in_event, 0);
  assert_rc(stead_emit_rt(rt, "slow.0", "0", 1), 0);
  while (atomic_load(&g_in_event) == 0)
    test_sleep_ms(1);
  /* The object is stuck in its first on_event: its mailbox takes 4. */
  for (int i = 1; i <= 20; i++) {
    char t[16];
    snprintf(t, sizeof t, "slow.%d", i);
    assert_rc(stead_emit_rt(rt, t, "x", 1), 0);
  }
  char *m = NULL;
  size_t ml;
  for (int i = 0; i < 5000; i++) {
    stead_free(m);
    assert_rc(stead_metrics_text(rt, &m, &ml), 0);
    if (strstr(m, "stead_bus_queue_waiting 0\n") &&
        !strstr(m, "stead_bus_pool_workers{state=\"running\"} 1"))
      break;
    test_sleep_ms(1);
  }
  atomic_store(&g_block, 0);
  stead_run_until_idle(rt);
  stead_free(m);
  assert_rc(stead_metrics_text(rt, &m, &ml), 0);
  const char *d = strstr(m, "stead_bus_object_events_total{outcome=\"dropped_full\"} ");
  const char *ok = strstr(m, "stead_bus_object_events_total{outcome=\"delivered\"} ");
  assert_non_null(d);
  assert_non_null(ok);
  long dropped =
      atol(d + strlen("stead_bus_object_events_total{outcome=\"dropped_full\"} "));
  long delivered =
      atol(ok + strlen("stead_bus_object_events_total{outcome=\"delivered\"} "));
  stead_free(m);
  assert_true(dropped >= 15);
  assert_int_equal(dropped + delivered, 21);
  /* What was delivered ran, as turns, and the rest is gone. */
  char got[4096];
  assert_rc(call(rt, "obj", "f", "events", NULL, got, sizeof got), 0);
  int commas = 0;
  for (char *p = got; *p; p++)
    commas += *p == ',';
  assert_int_equal(commas + 1, delivered);
  stead_close(rt);
}

static void test_too_many_subscriptions(void **state) {
  stead_rt *rt = open_rt("memory", 0);
  /* The limit counts stored subscriptions (and those of the open turn). */
  for (int i = 0; i < STEAD_MAX_SUBSCRIPTIONS; i++) {
    char p[32];
    snprintf(p, sizeof p, "t.%d", i);
    CALL(rt, "many", "sub", p);
  }
  assert_int_equal(try_op(rt, "obj", "many", "sub", "t.x"), STEAD_ETOOBIG);
  assert_non_null(strstr(g_msg, "limit"));
  /* Re-subscribing an existing pattern is still fine. */
  CALL(rt, "many", "sub", "t.7");
  stead_close(rt);
}

static void test_nats_subjects(void **state) {
  static const struct {
    const char *pattern, *s0, *s1;
    int filter;
  } cases[] = {
      {"a.b", "a.b", NULL, 0},
      {"a.*", "a.*", NULL, 0},
      {"a.**", "a.>", "a", 0},
      {"**", ">", NULL, 0},
      {"*.**", "*.>", "*", 0},
      {"**.done", ">", NULL, 1},
      {"a.**.z", "a.>", NULL, 1},
      {"a.**.**", "a.>", "a", 1},
      {"a.*.b.**", "a.*.b.>", "a.*.b", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char s[2][STEAD__NATS_SUBJECT_MAX];
    int n = 0, f = -1;
    assert_rc(stead__nats_subjects(cases[i].pattern, s, &n, &f), 0);
    assert_string_equal(s[0], cases[i].s0);
    assert_int_equal(n, cases[i].s1 ? 2 : 1);
    if (cases[i].s1)
      assert_string_equal(s[1], cases[i].s1);
    assert_int_equal(f, cases[i].filter);
  }
  char s[2][STEAD__NATS_SUBJECT_MAX];
  int n, f;
  assert_int_equal(stead__nats_subjects("a..b", s, &n, &f), STEAD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emit_after_commit_and_not_on_failure),
      cmocka_unit_test(test_failed_commit_emits_nothing),
      cmocka_unit_test(test_emit_order_from_one_object),
      cmocka_unit_test(test_subscribe_on_event_and_activation),
      cmocka_unit_test(test_unsubscribe),
      cmocka_unit_test(test_durable_subscriptions_across_restart),
      cmocka_unit_test(test_bad_patterns_and_topics),
      cmocka_unit_test(test_full_mailbox_drops_and_counts),
      cmocka_unit_test(test_too_many_subscriptions),
      cmocka_unit_test(test_nats_subjects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
