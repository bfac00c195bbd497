/*
 * test_cluster_rt.c -- runtimes in cluster mode: several stead_rt in one
 * process, each a node of one deployment, over a real nats-server and a
 * real PostgreSQL (both started here on loopback).
 *
 * What is checked: calls, sends, events and object-to-object calls reach
 * the one owner from any node with exact counts; a turn whose lease ended
 * under it commits nothing (fencing) and its caller gets ENOTOWNER; a
 * joining node takes shards under load and a leaving node hands them over
 * with no acknowledged increment lost; alarms fire once, on the owner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster/node.h"
#include "core/core.h"
#include "natsrv.h"
#include "storage/pg_helper.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHARDS 16
#define TTL_MS 1200
#define MAXRT  4

static natsrv nsrv;
/* Read by worker threads of every runtime (rt_index), written by the
 * test as nodes come and go. */
static stead_rt *_Atomic rts[MAXRT];
static atomic_int ran_on[MAXRT]; /* turns of "ctr" per runtime */
static atomic_int alarm_on[MAXRT];

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int rt_index(stead_ctx *ctx) {
  stead_rt *rt = stead__ctx_rt(ctx);
  for (int i = 0; i < MAXRT; i++)
    if (rts[i] == rt)
      return i;
  return -1;
}

/* ---- the test class: a durable counter ----------------------------- */

static long long load(stead_ctx *ctx, const char *key) {
  void *v = NULL;
  size_t n = 0;
  long long x = 0;
  if (stead_get(ctx, key, strlen(key), &v, &n) == 0 && v) {
    char buf[32] = {0};
    memcpy(buf, v, n < sizeof buf - 1 ? n : sizeof buf - 1);
    x = atoll(buf);
  }
  stead_free(v);
  return x;
}

static int bump(stead_ctx *ctx, const char *key) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", load(ctx, key) + 1);
  int rc = stead_put(ctx, key, strlen(key), buf, (size_t)n);
  if (rc == 0)
    stead_reply(ctx, buf, (size_t)n); /* EMISUSE in sends and events: no caller */
  return rc;
}

static int m_inc(stead_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  int i = rt_index(ctx);
  if (i >= 0)
    atomic_fetch_add(&ran_on[i], 1);
  return bump(ctx, "n");
}

static int m_get(stead_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", load(ctx, "n"));
  return stead_reply(ctx, buf, (size_t)n);
}

/* Sleeps `arg` ms inside the turn, then increments. */
static int m_slow_inc(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[16] = {0};
  memcpy(buf, arg, len < sizeof buf - 1 ? len : sizeof buf - 1);
  sleep_ms(atoi(buf));
  return bump(ctx, "n");
}

static int relay_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  (void)udata;
  if (res->status != 0)
    return stead_fail(ctx, "relay: %s", res->message);
  return 0; /* the relay's caller was answered when its first turn ended */
}

/* Calls inc on the counter named by `arg`, from inside this turn. */
static int m_relay(stead_ctx *ctx, const void *arg, size_t len) {
  char id[64] = {0};
  memcpy(id, arg, len < sizeof id - 1 ? len : sizeof id - 1);
  return stead_ctx_call(ctx, "ctr", id, "inc", NULL, 0, 5000, relay_then, NULL);
}

static int m_arm(stead_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return stead_alarm_set(ctx, "tick", stead_now_ms(ctx) + 200, NULL, 0);
}

static int m_fired(stead_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", load(ctx, "fired"));
  return stead_reply(ctx, buf, (size_t)n);
}

static int on_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t meta_len,
                    uint32_t attempt) {
  (void)name;
  (void)meta;
  (void)meta_len;
  (void)attempt;
  int i = rt_index(ctx);
  if (i >= 0)
    atomic_fetch_add(&alarm_on[i], 1);
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", load(ctx, "fired") + 1);
  return stead_put(ctx, "fired", 5, buf, (size_t)n);
}

static int on_event(stead_ctx *ctx, const char *topic, const void *payload, size_t len) {
  (void)topic;
  (void)payload;
  (void)len;
  return bump(ctx, "n");
}

static int m_sub(stead_ctx *ctx, const void *arg, size_t len) {
  char pat[64] = {0};
  memcpy(pat, arg, len < sizeof pat - 1 ? len : sizeof pat - 1);
  return stead_subscribe(ctx, pat);
}

static const stead_method ctr_methods[] = {
    {"sub", m_sub},     {"inc", m_inc}, {"get", m_get},     {"slow_inc", m_slow_inc},
    {"relay", m_relay}, {"arm", m_arm}, {"fired", m_fired}, {NULL, NULL}};

static const stead_class ctr_class = {
    .name = "ctr", .methods = ctr_methods, .on_alarm = on_alarm, .on_event = on_event};

/* ---- the connection class: an echoing room ------------------------- */

/* What objects of "room" saw, on whichever node ran them. */
static atomic_int room_msgs, room_closes, room_last_close, room_node;

static int room_connect(stead_ctx *ctx, stead_conn *conn, const void *meta, size_t len) {
  if (len == 6 && memcmp(meta, "reject", 6) == 0)
    return stead_conn_reject(ctx, "room is full");
  atomic_store(&room_node, rt_index(ctx));
  int rc = stead_conn_set_attachment(ctx, conn, meta, len);
  if (rc == 0)
    rc = stead_conn_tag(ctx, conn, "member");
  if (rc == 0)
    rc = stead_conn_send(conn, "welcome", 7, STEAD_CONN_TEXT);
  return rc;
}

/* Echoes every message; "who" answers with the attachment of the sender
 * found through stead_conn_list (works after hibernation); "bye" makes
 * the object close the connection. */
static int room_message(stead_ctx *ctx, stead_conn *conn, const void *data, size_t len,
                        unsigned flags) {
  atomic_fetch_add(&room_msgs, 1);
  if (len == 3 && memcmp(data, "bye", 3) == 0)
    return stead_conn_close(conn, 4000, "bye from the room");
  if (len == 5 && memcmp(data, "flood", 5) == 0) {
    int rc = 0;
    for (int i = 0; i < 50 && rc == 0; i++)
      rc = stead_conn_send(conn, "flood", 5, 0);
    return rc;
  }
  if (len == 3 && memcmp(data, "who", 3) == 0) {
    stead_conn **list = NULL;
    size_t n = 0;
    int rc = stead_conn_list(ctx, "member", &list, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
      const void *a = NULL;
      size_t alen = 0;
      if ((rc = stead_conn_attachment(ctx, list[i], &a, &alen)) == 0)
        rc = stead_conn_send(list[i], a, alen, 0);
    }
    stead_free(list);
    return rc;
  }
  return stead_conn_send(conn, data, len, flags);
}

static int room_close(stead_ctx *ctx, stead_conn *conn, int code, const char *reason) {
  (void)ctx;
  (void)conn;
  (void)reason;
  atomic_store(&room_last_close, code);
  atomic_fetch_add(&room_closes, 1);
  return 0;
}

static const stead_method room_methods[] = {{"get", m_get}, {NULL, NULL}};

static const stead_class room_class = {.name = "room",
                                       .methods = room_methods,
                                       .on_connect = room_connect,
                                       .on_conn_message = room_message,
                                       .on_conn_close = room_close};

/* The client's side: messages kept in order, the close remembered. */
typedef struct client {
  pthread_mutex_t mu;
  char got[2048][16];
  size_t n;
  bool bad_order;
  atomic_int closed, code;
  char reason[128];
} client;

static void cl_message(stead_conn *conn, const void *data, size_t len, unsigned flags,
                       void *u) {
  (void)conn;
  (void)flags;
  client *c = u;
  pthread_mutex_lock(&c->mu);
  if (c->n < 2048) {
    size_t k = len < 15 ? len : 15;
    memcpy(c->got[c->n], data, k);
    c->got[c->n][k] = 0;
    c->n++;
  }
  pthread_mutex_unlock(&c->mu);
}

static void cl_close(stead_conn *conn, int code, const char *reason, void *u) {
  (void)conn;
  client *c = u;
  snprintf(c->reason, sizeof c->reason, "%s", reason);
  atomic_store(&c->code, code);
  atomic_store(&c->closed, 1);
}

static size_t cl_count(client *c) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static void cl_wait(client *c, size_t n, int ms) {
  int64_t until = stead__mono_ms() + ms;
  while (cl_count(c) < n && stead__mono_ms() < until)
    sleep_ms(5);
  assert_true(cl_count(c) >= n);
}

static void wait_flag(atomic_int *f, int v, int ms) {
  int64_t until = stead__mono_ms() + ms;
  while (atomic_load(f) < v && stead__mono_ms() < until)
    sleep_ms(5);
  assert_true(atomic_load(f) >= v);
}

/* ---- nodes ---------------------------------------------------------- */

static char deployment[32];

static void log_line(stead_log_level lvl, const char *line, void *u) {
  (void)u;
  if (lvl <= STEAD_LOG_WARN)
    fprintf(stderr, "log: %s\n", line);
}

static int node_open(int i) {
  char spec[512], id[16];
  snprintf(id, sizeof id, "n%d", i);
  pgh_spec(spec, sizeof spec, deployment, "");
  stead_config c;
  stead_config_init(&c);
  c.workers = 2;
  c.storage = spec;
  c.cluster_nats = nsrv.url;
  c.cluster_node_id = id;
  c.cluster_deployment = deployment;
  c.cluster_shards = SHARDS;
  c.cluster_lease_ttl_ms = TTL_MS;
  c.cluster_heartbeat_ms = 100;
  c.log = log_line;
  c.log_level = STEAD_LOG_WARN;
  stead_rt *rt = NULL;
  int rc = stead_open(&c, &rt);
  if (rc == 0)
    rc = stead_register(rt, &ctr_class);
  if (rc == 0)
    rc = stead_register(rt, &room_class);
  atomic_store(&rts[i], rt);
  return rc;
}

static void node_close(int i) {
  stead_rt *rt = atomic_exchange(&rts[i], NULL);
  assert_int_equal(stead_close(rt), 0);
}

/* Waits until the open nodes hold every shard, each exactly the shards
 * rendezvous hashing gives it among them. */
static void converge(int timeout_ms) {
  int64_t until = stead__mono_ms() + timeout_ms;
  for (;;) {
    const char *ids[MAXRT];
    char names[MAXRT][16];
    size_t n = 0;
    for (int i = 0; i < MAXRT; i++)
      if (rts[i]) {
        snprintf(names[n], sizeof names[n], "n%d", i);
        ids[n] = names[n];
        n++;
      }
    bool ok = true;
    size_t k = 0;
    for (int i = 0; i < MAXRT && ok; i++) {
      if (!rts[i])
        continue;
      uint32_t want[SHARDS];
      int nw = stead_shards_for_node(ids[k], ids, n, SHARDS, NULL, want, SHARDS);
      k++;
      stead_cluster_status *st = NULL;
      assert_int_equal(stead_cluster_status_get(rts[i], &st), 0);
      ok = st->nmembers == n && (int)st->nowned == nw;
      for (size_t j = 0; ok && j < st->nowned; j++)
        ok = st->owned[j].shard == want[j] && !st->owned[j].draining;
      stead_free(st);
    }
    if (ok)
      return;
    if (stead__mono_ms() > until)
      fail_msg("the nodes did not converge within %d ms", timeout_ms);
    sleep_ms(20);
  }
}

static int owner_of(const char *id) {
  uint32_t s = (uint32_t)stead_shard_for_key("ctr", id, SHARDS, NULL);
  for (int i = 0; i < MAXRT; i++)
    if (rts[i] && stead__node_owns(stead__cluster_node(rts[i]), s))
      return i;
  return -1;
}

static long long get_count(stead_rt *rt, const char *id) {
  void *r = NULL;
  size_t n = 0;
  int rc = stead_call(rt, "ctr", id, "get", NULL, 0, 10000, &r, &n);
  assert_int_equal(rc, 0);
  long long v = atoll(r);
  stead_free(r);
  return v;
}

static int setup(void **state) {
  (void)state;
  static int seq;
  snprintf(deployment, sizeof deployment, "t%d_%d", (int)getpid() % 100000, seq++);
  for (int i = 0; i < MAXRT; i++)
    atomic_store(&rts[i], NULL);
  for (int i = 0; i < MAXRT; i++) {
    atomic_store(&ran_on[i], 0);
    atomic_store(&alarm_on[i], 0);
  }
  atomic_store(&room_msgs, 0);
  atomic_store(&room_closes, 0);
  atomic_store(&room_last_close, 0);
  atomic_store(&room_node, -1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int i = 0; i < MAXRT; i++)
    if (rts[i])
      node_close(i);
  return 0;
}

/* ---- tests ---------------------------------------------------------- */

static void test_config_errors(void **state) {
  (void)state;
  stead_config c;
  stead_config_init(&c);
  stead_rt *rt = NULL;
  c.cluster_nats = nsrv.url;
  c.cluster_node_id = "x";
  assert_int_equal(stead_open(&c, &rt), STEAD_EINVAL); /* memory storage */
  assert_non_null(strstr(stead_errmsg(), "PostgreSQL"));
  char spec[512];
  pgh_spec(spec, sizeof spec, deployment, "");
  c.storage = spec;
  c.cluster_nats = "http://localhost";
  assert_int_equal(stead_open(&c, &rt), STEAD_EINVAL);
  c.cluster_nats = nsrv.url;
  c.cluster_node_id = NULL;
  assert_int_equal(stead_open(&c, &rt), STEAD_EINVAL);
  assert_null(rt);
  /* Joining fails late (no nats-server there): everything opened so far
   * is undone (ASan's leak check watches), and the message says why. */
  c.cluster_node_id = "x";
  c.cluster_nats = "nats://127.0.0.1:1";
  assert_int_equal(stead_open(&c, &rt), STEAD_EIO);
  assert_non_null(strstr(stead_errmsg(), "NATS"));
  assert_null(rt);
  /* Cluster mode bounds lock waits and stalled transactions by the lease
   * ttl, unless the spec says otherwise. */
  c.cluster_node_id = "x";
  c.cluster_lease_ttl_ms = 1500;
  c.storage = "postgres://h/db";
  c.cluster_deployment = "Prod-EU";
  char *sp = stead__cluster_storage_spec(&c);
  assert_string_equal(
      sp, "postgres://h/db?prefix=prod_eu&lock_timeout_ms=500&idle_tx_timeout_ms=750");
  free(sp);
  c.cluster_deployment = "9lives";
  sp = stead__cluster_storage_spec(&c);
  assert_non_null(strstr(sp, "?prefix=d9lives&"));
  free(sp);
  c.cluster_deployment = NULL;
  c.storage = "postgres://h/db?prefix=p&lock_timeout_ms=9";
  sp = stead__cluster_storage_spec(&c);
  assert_string_equal(
      sp, "postgres://h/db?prefix=p&lock_timeout_ms=9&idle_tx_timeout_ms=750");
  free(sp);
  /* A single node has no cluster status. */
  stead_config_init(&c);
  assert_int_equal(stead_open(&c, &rt), 0);
  stead_cluster_status *st = (void *)1;
  assert_int_equal(stead_cluster_status_get(rt, &st), STEAD_ENOTSUP);
  assert_null(st);
  stead_close(rt);
}

static void test_routing_exact(void **state) {
  (void)state;
  assert_int_equal(node_open(0), 0);
  assert_int_equal(node_open(1), 0);
  converge(15000);
  enum { OBJ = 200, ROUNDS = 3 };
  char id[32];
  for (int r = 0; r < ROUNDS; r++)
    for (int i = 0; i < OBJ; i++) {
      snprintf(id, sizeof id, "o%d", i);
      void *rep = NULL;
      size_t n = 0;
      assert_int_equal(
          stead_call(rts[(i + r) % 2], "ctr", id, "inc", NULL, 0, 10000, &rep, &n), 0);
      assert_int_equal(atoll(rep), r + 1);
      stead_free(rep);
    }
  /* Every turn ran on the owner: each object is active on one node. */
  for (int i = 0; i < OBJ; i++) {
    snprintf(id, sizeof id, "o%d", i);
    int o = owner_of(id);
    assert_true(o == 0 || o == 1);
    assert_int_equal(stead_is_active(rts[o], "ctr", id), 1);
    assert_int_equal(stead_is_active(rts[1 - o], "ctr", id), 0);
    assert_int_equal(get_count(rts[1 - o], id), ROUNDS);
  }
  /* A turn may run again after a fenced attempt (a late lease renewal on
   * a loaded machine): never less than once per increment. */
  assert_true(atomic_load(&ran_on[0]) + atomic_load(&ran_on[1]) >= OBJ * ROUNDS);
  assert_true(atomic_load(&ran_on[0]) > 0 && atomic_load(&ran_on[1]) > 0);
  /* Sends, events and calls made from inside a turn cross nodes too. */
  int a = -1, b = -1;
  for (int i = 0; i < OBJ && (a < 0 || b < 0); i++) {
    snprintf(id, sizeof id, "o%d", i);
    if (owner_of(id) == 0 && a < 0)
      a = i;
    if (owner_of(id) == 1 && b < 0)
      b = i;
  }
  char ida[32], idb[32];
  snprintf(ida, sizeof ida, "o%d", a);
  snprintf(idb, sizeof idb, "o%d", b);
  assert_int_equal(stead_send(rts[0], "ctr", idb, "inc", NULL, 0), 0);
  assert_int_equal(stead__deliver_event(rts[0], "ctr", idb, "t.x", "e", 1), 0);
  void *rep = NULL;
  size_t n = 0;
  assert_int_equal(
      stead_call(rts[0], "ctr", ida, "relay", idb, strlen(idb), 10000, &rep, &n), 0);
  stead_free(rep);
  int64_t until = stead__mono_ms() + 5000;
  while (get_count(rts[0], idb) < ROUNDS + 3 && stead__mono_ms() < until)
    sleep_ms(10);
  assert_int_equal(get_count(rts[0], idb), ROUNDS + 3);
  /* The metrics name the forwarding. */
  char *text = NULL;
  size_t tl = 0;
  assert_int_equal(stead_metrics_text(rts[0], &text, &tl), 0);
  assert_non_null(strstr(text, "stead_cluster_forwarded_total"));
  assert_non_null(strstr(text, "stead_cluster_owned_shards"));
  stead_free(text);
}

typedef struct async_res {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, status;
} async_res;

static void async_cb(const stead_result *res, void *u) {
  async_res *a = u;
  pthread_mutex_lock(&a->mu);
  a->status = res->status;
  a->done = 1;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* A turn that outlives its node's lease (the node stopped renewing, as if
 * paused) must not commit, and its caller hears ENOTOWNER. */
static void test_fenced_turn(void **state) {
  (void)state;
  assert_int_equal(node_open(0), 0);
  converge(15000);
  assert_int_equal(stead_call(rts[0], "ctr", "slow", "inc", NULL, 0, 5000, NULL, NULL),
                   0);
  async_res ar = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  char ms[16];
  int n = snprintf(ms, sizeof ms, "%d", TTL_MS + 600);
  assert_int_equal(stead_call_async(rts[0], "ctr", "slow", "slow_inc", ms, (size_t)n,
                                    TTL_MS * 3, async_cb, &ar),
                   0);
  sleep_ms(100); /* the turn is running */
  stead__node_test_pause_leases(stead__cluster_node(rts[0]), 1);
  pthread_mutex_lock(&ar.mu);
  while (!ar.done)
    pthread_cond_wait(&ar.cv, &ar.mu);
  pthread_mutex_unlock(&ar.mu);
  assert_int_equal(ar.status, STEAD_ENOTOWNER);
  stead__node_test_pause_leases(stead__cluster_node(rts[0]), 0);
  converge(15000);
  /* The fenced increment is not there; the node works again. */
  assert_int_equal(get_count(rts[0], "slow"), 1);
  assert_int_equal(stead_call(rts[0], "ctr", "slow", "inc", NULL, 0, 5000, NULL, NULL),
                   0);
  assert_int_equal(get_count(rts[0], "slow"), 2);
}

typedef struct loadgen {
  pthread_t thr;
  int from; /* runtime index the calls go through */
  atomic_bool stop;
  int nobj;
  long long acked[64];
  long long ambiguous[64]; /* timed out: may or may not have applied */
  long long failed_other;
  int bad_status; /* a non-retryable failure */
} loadgen;

static void *load_main(void *p) {
  loadgen *l = p;
  char id[32];
  for (long long k = 0; !atomic_load(&l->stop); k++) {
    int i = (int)(k % l->nobj);
    snprintf(id, sizeof id, "m%d", i);
    int rc = stead_call(rts[l->from], "ctr", id, "inc", NULL, 0, 8000, NULL, NULL);
    if (rc == 0)
      l->acked[i]++;
    else if (rc == STEAD_ETIMEDOUT || rc == STEAD_EUNKNOWN)
      l->ambiguous[i]++;
    else if (rc == STEAD_ENOTOWNER || rc == STEAD_EOVERLOAD || rc == STEAD_ESTORAGE)
      l->failed_other++; /* retryable, known not applied (ESTORAGE: rolled back) */
    else
      l->bad_status = rc;
  }
  return NULL;
}

static void check_counts(loadgen *l, int via) {
  char id[32];
  for (int i = 0; i < l->nobj; i++) {
    snprintf(id, sizeof id, "m%d", i);
    long long v = get_count(rts[via], id);
    if (v < l->acked[i] || v > l->acked[i] + l->ambiguous[i])
      fail_msg("%s: count %lld, acknowledged %lld, ambiguous %lld", id, v, l->acked[i],
               l->ambiguous[i]);
  }
}

/* A third node joins while a second one keeps calling; later one leaves. */
static void test_join_and_leave_under_load(void **state) {
  (void)state;
  assert_int_equal(node_open(0), 0);
  assert_int_equal(node_open(1), 0);
  converge(15000);
  loadgen l;
  memset(&l, 0, sizeof l);
  l.from = 0;
  l.nobj = 64;
  assert_int_equal(pthread_create(&l.thr, NULL, load_main, &l), 0);
  sleep_ms(300);
  assert_int_equal(node_open(2), 0);
  converge(15000);
  sleep_ms(300);
  node_close(1); /* a graceful leave: drains, hands over */
  converge(15000);
  sleep_ms(300);
  atomic_store(&l.stop, true);
  pthread_join(l.thr, NULL);
  assert_int_equal(l.bad_status, 0);
  long long total = 0;
  for (int i = 0; i < l.nobj; i++)
    total += l.acked[i];
  assert_true(total > 100);
  check_counts(&l, 2);
  /* No object is active on a node that does not own it. */
  char id[32];
  for (int i = 0; i < l.nobj; i++) {
    snprintf(id, sizeof id, "m%d", i);
    int o = owner_of(id);
    assert_true(o == 0 || o == 2);
    assert_int_equal(stead_is_active(rts[o == 0 ? 2 : 0], "ctr", id), 0);
  }
}

static void test_alarm_fires_once_on_owner(void **state) {
  (void)state;
  assert_int_equal(node_open(0), 0);
  assert_int_equal(node_open(1), 0);
  converge(15000);
  enum { N = 20 };
  char id[32];
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "al%d", i);
    assert_int_equal(stead_call(rts[i % 2], "ctr", id, "arm", NULL, 0, 5000, NULL, NULL),
                     0);
  }
  sleep_ms(1500);
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "al%d", i);
    void *r = NULL;
    size_t n = 0;
    assert_int_equal(stead_call(rts[0], "ctr", id, "fired", NULL, 0, 5000, &r, &n), 0);
    assert_int_equal(atoll(r), 1);
    stead_free(r);
  }
  assert_int_equal(atomic_load(&alarm_on[0]) + atomic_load(&alarm_on[1]), N);
}

static atomic_int heard;

static int count_listener(stead_event *ev, void *u) {
  (void)ev;
  (void)u;
  atomic_fetch_add(&heard, 1);
  return 0;
}

/* An id of class ctr whose owner among nodes n0..n(k-1) is n(want). */
static void id_owned_by_cls(const char *cls, int want, int k, const char *prefix,
                            char *out, size_t cap) {
  const char *ids[] = {"n0", "n1", "n2", "n3"};
  for (int i = 0;; i++) {
    snprintf(out, cap, "%s%d", prefix, i);
    int s = stead_shard_for_key(cls, out, SHARDS, NULL);
    if (stead_shard_owner((uint32_t)s, ids, (size_t)k, NULL) == want)
      return;
  }
}

static void id_owned_by(int want, int k, const char *prefix, char *out, size_t cap) {
  id_owned_by_cls("ctr", want, k, prefix, out, cap);
}

/* Events cross nodes: each subscribed object hears an event once, on its
 * owner, wherever it was emitted; function listeners hear other nodes'
 * events; a subscription follows its object to a node that joins later. */
static void test_events_cross_nodes(void **state) {
  (void)state;
  assert_int_equal(node_open(0), 0);
  assert_int_equal(node_open(1), 0);
  converge(15000);
  char on0[32], on1[32], mover[32];
  id_owned_by(0, 2, "ev", on0, sizeof on0);
  id_owned_by(1, 2, "ev", on1, sizeof on1);
  id_owned_by(2, 3, "mv", mover, sizeof mover);
  const char *subs[] = {on0, on1, mover};
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        stead_call(rts[i % 2], "ctr", subs[i], "sub", "news.*", 6, 5000, NULL, NULL), 0);
  char lid[STEAD_BUS_ID_SIZE];
  atomic_store(&heard, 0);
  assert_int_equal(stead_bus_on(stead_rt_bus(rts[1]), "news.**", count_listener, NULL,
                                STEAD_PRIORITY_NORMAL, lid),
                   0);
  assert_int_equal(stead_emit_rt(rts[0], "news.a", "x", 1), 0);
  assert_int_equal(stead_emit_rt(rts[1], "news.b", "y", 1), 0);
  int64_t until = stead__mono_ms() + 5000;
  while ((get_count(rts[0], on0) < 2 || get_count(rts[0], on1) < 2 ||
          atomic_load(&heard) < 2) &&
         stead__mono_ms() < until)
    sleep_ms(10);
  sleep_ms(200); /* a duplicate would land by now */
  assert_int_equal(get_count(rts[1], on0), 2);
  assert_int_equal(get_count(rts[0], on1), 2);
  assert_int_equal(get_count(rts[0], mover), 2);
  assert_int_equal(atomic_load(&heard), 2);
  assert_int_equal(stead_bus_off(stead_rt_bus(rts[1]), lid), 0);
  /* n2 joins and takes `mover`'s shard: its subscription comes along. */
  assert_int_equal(node_open(2), 0);
  converge(15000);
  assert_int_equal(owner_of(mover), 2);
  until = stead__mono_ms() + 5000;
  long long v = 2;
  while ((v = get_count(rts[0], mover)) < 3 && stead__mono_ms() < until) {
    assert_int_equal(stead_emit_rt(rts[0], "news.c", "z", 1), 0);
    sleep_ms(100);
  }
  assert_true(v >= 3);
  assert_int_equal(stead_is_active(rts[2], "ctr", mover), 1);
}

/* ---- connections across nodes -------------------------------------- */

static void conn_setup(client *c, char *room, size_t cap, const char *prefix) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  assert_int_equal(node_open(0), 0);
  assert_int_equal(node_open(1), 0);
  converge(15000);
  id_owned_by_cls("room", 1, 2, prefix, room, cap); /* n1 runs it */
}

/* A client on n0 talks to a room run by n1: accepted with the object's
 * welcome first, 1000 messages echoed in order both ways, the object
 * hibernates and finds the connection again by tag with its attachment,
 * a client close reaches the object's on_conn_close once. */
static void test_conn_across_nodes(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "r");
  stead_conn *conn = NULL;
  assert_int_equal(
      stead_connect(rts[0], "room", room, "alice", 5, cl_message, cl_close, &c, &conn),
      0);
  assert_int_equal(atomic_load(&room_node), 1);
  enum { N = 1000 };
  for (int i = 0; i < N; i++) {
    char b[16];
    int n = snprintf(b, sizeof b, "m%d", i);
    assert_int_equal(stead_conn_send(conn, b, (size_t)n, 0), 0);
  }
  cl_wait(&c, N + 1, 20000);
  assert_string_equal(c.got[0], "welcome");
  for (int i = 0; i < N; i++) {
    char b[16];
    snprintf(b, sizeof b, "m%d", i);
    assert_string_equal(c.got[i + 1], b);
  }
  /* Hibernation on the owner: the connection outlives the activation. */
  assert_int_equal(stead_deactivate(rts[1], "room", room), 0);
  int64_t until = stead__mono_ms() + 5000;
  while (stead_is_active(rts[1], "room", room) && stead__mono_ms() < until)
    sleep_ms(5);
  assert_int_equal(stead_is_active(rts[1], "room", room), 0);
  assert_int_equal(stead_conn_send(conn, "who", 3, 0), 0);
  cl_wait(&c, N + 2, 10000);
  assert_string_equal(c.got[N + 1], "alice");
  assert_int_equal(atomic_load(&c.closed), 0);
  assert_int_equal(stead_conn_close(conn, 4100, "leaving"), 0);
  wait_flag(&room_closes, 1, 10000);
  assert_int_equal(atomic_load(&room_last_close), 4100);
  sleep_ms(100);
  assert_int_equal(atomic_load(&room_closes), 1);
  assert_int_equal(atomic_load(&room_msgs), N + 1);
  stead_conn_stats st;
  assert_int_equal(stead_conn_get_stats(rts[1], &st), 0);
  assert_int_equal(st.open, 0);
  pthread_mutex_destroy(&c.mu);
}

/* A rejection and its reason cross nodes; an object's close with its code
 * arrives after the messages sent before it. */
static void test_conn_reject_and_object_close(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "j");
  stead_conn *conn = NULL;
  assert_int_equal(
      stead_connect(rts[0], "room", room, "reject", 6, cl_message, cl_close, &c, &conn),
      STEAD_EREJECTED);
  assert_null(conn);
  assert_non_null(strstr(stead_errmsg(), "room is full"));
  assert_int_equal(
      stead_connect(rts[0], "room", room, "bob", 3, cl_message, cl_close, &c, &conn), 0);
  assert_int_equal(stead_conn_send(conn, "one", 3, 0), 0);
  assert_int_equal(stead_conn_send(conn, "bye", 3, 0), 0);
  wait_flag(&c.closed, 1, 10000);
  assert_int_equal(atomic_load(&c.code), 4000);
  assert_string_equal(c.reason, "bye from the room");
  assert_int_equal(cl_count(&c), 2); /* welcome, one */
  assert_string_equal(c.got[1], "one");
  assert_int_equal(stead_conn_send(conn, "late", 4, 0), STEAD_ECLOSED);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  sleep_ms(100);
  assert_int_equal(atomic_load(&room_closes), 0); /* the object closed it */
  pthread_mutex_destroy(&c.mu);
}

/* An id of class room that n2 owns among {n0, n1, n2}: n2 joining moves
 * it. Returns its owner among {n0, n1}. */
static int id_moving_to_n2(char *out, size_t cap) {
  const char *ids[] = {"n0", "n1", "n2"};
  for (int i = 0;; i++) {
    snprintf(out, cap, "mv%d", i);
    uint32_t s = (uint32_t)stead_shard_for_key("room", out, SHARDS, NULL);
    if (stead_shard_owner(s, ids, 3, NULL) == 2)
      return stead_shard_owner(s, ids, 2, NULL);
  }
}

/* The object's shard moves (a node joins): the client's end closes with
 * STEAD_CLOSE_MOVED, the object is not told, and a new connect reaches the
 * object on its new node. The owner shutting down: GOING_AWAY, told to
 * the object and the client before the node leaves. */
static void test_conn_owner_moves_and_leaves(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "l");
  int owner = id_moving_to_n2(room, sizeof room);
  int entry = 1 - owner; /* the client on the other node */
  stead_conn *conn = NULL;
  assert_int_equal(stead_connect(rts[entry], "room", room, "carol", 5, cl_message,
                                 cl_close, &c, &conn),
                   0);
  assert_int_equal(atomic_load(&room_node), owner);
  assert_int_equal(node_open(2), 0);
  wait_flag(&c.closed, 1, 15000);
  assert_int_equal(atomic_load(&c.code), STEAD_CLOSE_MOVED);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  converge(15000);
  client c2;
  memset(&c2, 0, sizeof c2);
  pthread_mutex_init(&c2.mu, NULL);
  assert_int_equal(stead_connect(rts[entry], "room", room, "carol", 5, cl_message,
                                 cl_close, &c2, &conn),
                   0);
  assert_int_equal(atomic_load(&room_node), 2);
  cl_wait(&c2, 1, 5000);
  assert_int_equal(atomic_load(&room_closes), 0);
  node_close(2);
  wait_flag(&c2.closed, 1, 15000);
  assert_int_equal(atomic_load(&c2.code), STEAD_CLOSE_GOING_AWAY);
  assert_int_equal(atomic_load(&room_closes), 1);
  assert_int_equal(atomic_load(&room_last_close), STEAD_CLOSE_GOING_AWAY);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  pthread_mutex_destroy(&c.mu);
  pthread_mutex_destroy(&c2.mu);
}

/* The owner dies without a word: the client's end closes (MOVED) once
 * membership notices. The client's node dies: the object hears
 * on_conn_close (ABNORMAL) once. */
static void test_conn_node_killed(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "k");
  stead_conn *conn = NULL;
  assert_int_equal(
      stead_connect(rts[0], "room", room, "dave", 4, cl_message, cl_close, &c, &conn), 0);
  stead__node_test_kill(stead__cluster_node(rts[1]));
  wait_flag(&c.closed, 1, 15000);
  assert_int_equal(atomic_load(&c.code), STEAD_CLOSE_MOVED);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  node_close(1); /* the killed node's own on_conn_close (GOING_AWAY) ran here */
  atomic_store(&room_closes, 0);
  atomic_store(&room_last_close, 0);
  /* The other way round: a client on n1, the room on n0 (n0 owns all). */
  assert_int_equal(node_open(1), 0);
  converge(15000);
  id_owned_by_cls("room", 0, 2, "q", room, sizeof room);
  client c2;
  memset(&c2, 0, sizeof c2);
  pthread_mutex_init(&c2.mu, NULL);
  assert_int_equal(
      stead_connect(rts[1], "room", room, "erin", 4, cl_message, cl_close, &c2, &conn),
      0);
  assert_int_equal(atomic_load(&room_node), 0);
  stead__node_test_kill(stead__cluster_node(rts[1]));
  wait_flag(&room_closes, 1, 15000);
  assert_int_equal(atomic_load(&room_last_close), STEAD_CLOSE_ABNORMAL);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  node_close(1);
  sleep_ms(100);
  assert_int_equal(atomic_load(&room_closes), 1);
  pthread_mutex_destroy(&c.mu);
  pthread_mutex_destroy(&c2.mu);
}

typedef struct answered {
  atomic_int n, status;
} answered;

static void answer_fn(void *a, int status, const void *data, size_t len,
                      const char *message) {
  (void)data;
  (void)len;
  (void)message;
  answered *an = a;
  atomic_store(&an->status, status);
  atomic_fetch_add(&an->n, 1);
}

/* Traffic between nodes is numbered per connection: a message that comes
 * out of turn (one lost in between, or a duplicate) closes the connection
 * on either side instead of being skipped; malformed traffic is refused
 * or dropped, and the nodes keep serving. */
static void test_conn_gap_closes(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "g");
  stead_conn *conn = NULL;
  assert_int_equal(
      stead_connect(rts[0], "room", room, "hank", 4, cl_message, cl_close, &c, &conn), 0);
  cl_wait(&c, 1, 5000); /* welcome: push number 1 */
  char key[24];
  snprintf(key, sizeof key, "%llu", (unsigned long long)stead_conn_id(conn));
  /* On the client's node: push number 1 again (a duplicate). */
  stead__env_header h[] = {{"x-stead-conn", key},
                           {"x-stead-op", "msg"},
                           {"x-stead-seq", "1"},
                           {"x-stead-code", "0"}};
  stead__env e;
  memset(&e, 0, sizeof e);
  e.kind = STEAD__ENV_ONEWAY;
  e.cls = "room";
  e.id = room;
  e.method = "conn";
  e.headers = h;
  e.nheaders = 4;
  e.payload = "dup";
  e.payload_len = 3;
  /* Malformed first: no number. Dropped, nothing closes. */
  e.nheaders = 2;
  stead__conn_remote_push(rts[0], &e);
  e.nheaders = 4;
  sleep_ms(50);
  assert_int_equal(atomic_load(&c.closed), 0);
  stead__conn_remote_push(rts[0], &e);
  wait_flag(&c.closed, 1, 5000);
  assert_int_equal(atomic_load(&c.code), STEAD_CLOSE_INTERNAL);
  assert_non_null(strstr(c.reason, "lost"));
  wait_flag(&room_closes, 1, 10000); /* the owner was told */
  assert_int_equal(cl_count(&c), 1); /* "dup" was not delivered */
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);

  /* On the owner: message number 5 of a fresh connection (1..4 lost). */
  client c2;
  memset(&c2, 0, sizeof c2);
  pthread_mutex_init(&c2.mu, NULL);
  assert_int_equal(
      stead_connect(rts[0], "room", room, "ivy", 3, cl_message, cl_close, &c2, &conn), 0);
  snprintf(key, sizeof key, "%llu", (unsigned long long)stead_conn_id(conn));
  stead__env_header h2[] = {{"x-stead-from", "n0"},
                            {"x-stead-conn", key},
                            {"x-stead-op", "msg"},
                            {"x-stead-seq", "5"},
                            {"x-stead-code", "0"}};
  e.headers = h2;
  e.nheaders = 5;
  e.kind = STEAD__ENV_REQUEST;
  answered an = {0};
  stead__conn_remote_in(rts[1], &e, answer_fn, &an);
  assert_int_equal(atomic_load(&an.n), 1);
  assert_int_equal(atomic_load(&an.status), STEAD_EPROTO);
  wait_flag(&room_closes, 2, 10000);
  assert_int_equal(atomic_load(&room_last_close), STEAD_CLOSE_INTERNAL);
  wait_flag(&c2.closed, 1, 10000); /* and the client hears of it */
  /* Unknown connection, bad headers, unknown operation: refused. */
  h2[1].value = "999999";
  h2[3].value = "1";
  stead__conn_remote_in(rts[1], &e, answer_fn, &an);
  assert_int_equal(atomic_load(&an.status), STEAD_ECLOSED);
  h2[1].value = "x";
  stead__conn_remote_in(rts[1], &e, answer_fn, &an);
  assert_int_equal(atomic_load(&an.status), STEAD_EPROTO);
  h2[1].value = key;
  h2[2].value = "jump";
  stead__conn_remote_in(rts[1], &e, answer_fn, &an);
  assert_int_equal(atomic_load(&an.status), STEAD_EPROTO);
  assert_int_equal(atomic_load(&an.n), 4);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  assert_int_equal(atomic_load(&room_closes), 2);
  pthread_mutex_destroy(&c.mu);
  pthread_mutex_destroy(&c2.mu);
}

static void slow_message(stead_conn *conn, const void *data, size_t len, unsigned flags,
                         void *u) {
  sleep_ms(20);
  cl_message(conn, data, len, flags, u);
}

static stead_conn *_Atomic slow_conn;

static void slow_connected(stead_conn *conn, int status, const char *reason, void *u) {
  (void)reason;
  (void)u;
  assert_int_equal(status, 0);
  atomic_store(&slow_conn, conn);
}

/* A client on n0 that does not keep up with the room's messages is
 * disconnected with STEAD_CLOSE_SLOW on its node, and the object on n1
 * hears it. */
static void test_conn_slow_client_across_nodes(void **state) {
  (void)state;
  client c;
  char room[32];
  conn_setup(&c, room, sizeof room, "s");
  stead_conn_opts o = {0};
  o.on_message = slow_message;
  o.on_close = cl_close;
  o.udata = &c;
  o.max_queue_msgs = 4;
  atomic_store(&slow_conn, NULL);
  assert_int_equal(
      stead_connect_async(rts[0], "room", room, "gina", 4, &o, slow_connected, NULL), 0);
  int64_t until = stead__mono_ms() + 10000;
  while (!atomic_load(&slow_conn) && stead__mono_ms() < until)
    sleep_ms(5);
  stead_conn *conn = atomic_load(&slow_conn);
  assert_non_null(conn);
  assert_int_equal(stead_conn_send(conn, "flood", 5, 0), 0);
  wait_flag(&c.closed, 1, 10000);
  assert_int_equal(atomic_load(&c.code), STEAD_CLOSE_SLOW);
  wait_flag(&room_closes, 1, 10000);
  assert_int_equal(atomic_load(&room_last_close), STEAD_CLOSE_SLOW);
  assert_true(cl_count(&c) < 50);
  assert_int_equal(stead_conn_close(conn, 0, NULL), 0);
  pthread_mutex_destroy(&c.mu);
}

int main(void) {
  int rc = pgh_start(0);
  if (rc)
    return rc < 0 ? 1 : 0;
  if (natsrv_start(&nsrv) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routing_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fenced_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_join_and_leave_under_load, setup, teardown),
      cmocka_unit_test_setup_teardown(test_alarm_fires_once_on_owner, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events_cross_nodes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conn_across_nodes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conn_reject_and_object_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conn_owner_moves_and_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conn_node_killed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conn_slow_client_across_nodes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_conn_gap_closes, setup, teardown),
  };
  rc = cmocka_run_group_tests_name("cluster_rt", tests, NULL, NULL);
  natsrv_stop(&nsrv);
  return rc;
}
