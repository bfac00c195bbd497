/*
 * test_node.c -- cluster nodes in one process against a real nats-server
 * and PostgreSQL 15 (both started by the test): lease ownership, join,
 * drain before release, kill, lease loss and fencing, routing, not-owner
 * redirects, malformed envelopes.
 *
 * Each node is a separate stead__node with its own NATS connection and
 * backend, driven by a fake runtime that records the callbacks. A poller
 * thread checks, all along, that no node claims a shard whose lease the
 * table gives to a newer tenure (the single-owner property).
 *
 * Timing: lease ttl 1200 ms, renewal every 300 ms, heartbeats every 100 ms
 * expiring after 1000 ms, so a death costs about max(ttl, expiry).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster/nats.h"
#include "cluster/node.h"
#include "natsrv.h"
#include "storage/lease.h"
#include "storage/pg_helper.h"

#include <pthread.h>
#include <stdatomic.h>

#define TTL_MS   1200
#define RENEW_MS 300
#define MAXS     64
#define MAXN     4

static natsrv nsrv;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------
 * The fake runtime.
 * ------------------------------------------------------------------- */

static atomic_uint_fast64_t gseq; /* one clock for the order of events */

static uint64_t tick(void) {
  return atomic_fetch_add(&gseq, 1) + 1;
}

typedef struct pend {
  stead__node_done_fn done;
  void *arg;
  uint32_t shard;
  int64_t at_ms;
} pend;

typedef struct fake {
  char id[32];
  pthread_mutex_t mu;
  int owned[MAXS]; /* per callbacks: acquired and not drained/lost */
  uint64_t epoch[MAXS];
  uint64_t seq_acquired[MAXS], seq_drain[MAXS], seq_done[MAXS], seq_released[MAXS];
  int64_t acquired_ms[MAXS];
  int drains, releases, losts, acquires;
  uint64_t lost_epoch[MAXS];
  int violations; /* handle() for a shard it should not get */
  pend pend[MAXS * 2];
  int npend;
  int hold; /* do not complete drains */
  atomic_int handled;
  pthread_t thr;
  int stop;
} fake;

static void f_handle(void *u, const stead__env *env, stead__node_replier *r) {
  fake *f = u;
  pthread_mutex_lock(&f->mu);
  if (env->shard >= MAXS || !f->owned[env->shard])
    f->violations++;
  pthread_mutex_unlock(&f->mu);
  atomic_fetch_add(&f->handled, 1);
  if (!r)
    return;
  if (strcmp(env->method, "fail") == 0)
    stead__node_respond(r, STEAD_EHANDLER, NULL, 0, "the fake handler failed");
  else
    stead__node_respond(r, 0, f->id, strlen(f->id), NULL);
}

static void f_drain(void *u, uint32_t s, stead__node_done_fn done, void *arg) {
  fake *f = u;
  pthread_mutex_lock(&f->mu);
  f->owned[s] = 0;
  f->seq_drain[s] = tick();
  f->drains++;
  f->pend[f->npend++] = (pend){done, arg, s, stead__mono_ms()};
  pthread_mutex_unlock(&f->mu);
}

static void f_lost(void *u, uint32_t s, uint64_t epoch) {
  fake *f = u;
  pthread_mutex_lock(&f->mu);
  f->owned[s] = 0;
  f->losts++;
  f->lost_epoch[s] = epoch;
  pthread_mutex_unlock(&f->mu);
}

static void f_acquired(void *u, uint32_t s, uint64_t epoch) {
  fake *f = u;
  pthread_mutex_lock(&f->mu);
  f->owned[s] = 1;
  f->epoch[s] = epoch;
  f->seq_acquired[s] = tick();
  f->acquired_ms[s] = stead__mono_ms();
  f->acquires++;
  pthread_mutex_unlock(&f->mu);
}

static void f_released(void *u, uint32_t s, uint64_t epoch) {
  fake *f = u;
  pthread_mutex_lock(&f->mu);
  f->seq_released[s] = tick();
  f->releases++;
  pthread_mutex_unlock(&f->mu);
}

/* Completes drains 30 ms after they began, like turns finishing, from its
 * own thread. */
static void *f_main(void *arg) {
  fake *f = arg;
  pthread_mutex_lock(&f->mu);
  while (!f->stop) {
    int64_t now = stead__mono_ms();
    for (int i = 0; i < f->npend && !f->hold;) {
      if (now - f->pend[i].at_ms < 30) {
        i++;
        continue;
      }
      pend p = f->pend[i];
      f->pend[i] = f->pend[--f->npend];
      f->seq_done[p.shard] = tick();
      pthread_mutex_unlock(&f->mu);
      p.done(p.arg);
      pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    sleep_ms(5);
    pthread_mutex_lock(&f->mu);
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

static fake *fake_new(const char *id) {
  fake *f = calloc(1, sizeof *f);
  snprintf(f->id, sizeof f->id, "%s", id);
  pthread_mutex_init(&f->mu, NULL);
  pthread_create(&f->thr, NULL, f_main, f);
  return f;
}

static void fake_free(fake *f) {
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thr, NULL);
  assert_int_equal(f->npend, 0);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

static void fake_hold(fake *f, int on) {
  pthread_mutex_lock(&f->mu);
  f->hold = on;
  pthread_mutex_unlock(&f->mu);
}

/* ---------------------------------------------------------------------
 * Nodes.
 * ------------------------------------------------------------------- */

typedef struct tnode {
  stead__node *n;
  stead__backend *b;
  fake *f;
  char id[32];
} tnode;

static stead__backend *open_backend(const char *prefix) {
  char spec[600];
  pgh_spec(spec, sizeof spec, prefix, "&pool=2");
  stead__backend *b = NULL;
  int rc = stead__backend_open(spec, &b);
  if (rc)
    fail_msg("open %s: %s", spec, stead_errmsg());
  return b;
}

static void fill_opts(stead__node_opts *o, const char *dep, const char *id, uint32_t S,
                      const char *seed, stead__backend *b, fake *f) {
  stead__node_opts_init(o);
  o->deployment = dep;
  o->node_id = id;
  o->nshards = S;
  o->seed = seed;
  o->nats_url = nsrv.url;
  o->backend = b;
  o->lease_ttl_ms = TTL_MS;
  o->renew_ms = RENEW_MS;
  o->acquire_retry_ms = 50;
  o->heartbeat_ms = 100;
  o->expire_ms = 1000; /* generous: CI machines stall threads under load */
  o->rt = (stead__node_runtime){.handle = f_handle,
                                .drain = f_drain,
                                .lost = f_lost,
                                .acquired = f_acquired,
                                .released = f_released,
                                .udata = f};
}

static void tn_open(tnode *t, const char *dep, const char *id, uint32_t S) {
  memset(t, 0, sizeof *t);
  snprintf(t->id, sizeof t->id, "%s", id);
  t->b = open_backend(dep);
  t->f = fake_new(id);
  stead__node_opts o;
  fill_opts(&o, dep, id, S, "test-seed", t->b, t->f);
  int rc = stead__node_open(&o, &t->n);
  if (rc)
    fail_msg("node %s: %s: %s", id, stead_errname(rc), stead_errmsg());
}

static void tn_close(tnode *t) {
  stead__node_close(t->n);
  t->n = NULL;
  fake_free(t->f);
  stead__backend_close(t->b);
}

/* The owner HRW gives among `ids`. */
static const char *hrw(uint32_t s, const char *const *ids, size_t n) {
  int i = stead_shard_owner(s, ids, n, "test-seed");
  assert_true(i >= 0);
  return ids[i];
}

/* 1 if node t sees exactly `ids` as the live set. */
static int sees(tnode *t, const char *const *ids, size_t n) {
  stead__node_status *st;
  assert_int_equal(stead__node_status_get(t->n, &st), 0);
  int ok = st->nmembers == n;
  for (size_t i = 0; ok && i < n; i++) {
    int found = 0;
    for (size_t j = 0; j < n; j++)
      found |= strcmp(st->members[j], ids[i]) == 0;
    ok = found;
  }
  stead_free(st);
  return ok;
}

/* Waits until every node sees the others, every shard is owned by exactly
 * its HRW owner among the given nodes, and nobody else holds a lease on
 * it. */
static void converge(tnode **nodes, size_t nn, uint32_t S, int max_ms) {
  const char *ids[MAXN];
  for (size_t i = 0; i < nn; i++)
    ids[i] = nodes[i]->id;
  int64_t until = stead__mono_ms() + max_ms;
  for (;;) {
    int ok = 1;
    for (size_t i = 0; i < nn && ok; i++)
      ok = sees(nodes[i], ids, nn);
    for (uint32_t s = 0; s < S && ok; s++) {
      const char *want = hrw(s, ids, nn);
      for (size_t i = 0; i < nn && ok; i++) {
        uint64_t e;
        int held = stead__node_owner_epoch(nodes[i]->n, s, &e) == 0;
        int owns = stead__node_owns(nodes[i]->n, s);
        int mine = strcmp(nodes[i]->id, want) == 0;
        ok = mine ? owns : !held;
      }
    }
    if (ok)
      return;
    if (stead__mono_ms() > until)
      fail_msg("ownership did not converge within %d ms", max_ms);
    sleep_ms(20);
  }
}

/* ---------------------------------------------------------------------
 * The single-owner poller.
 * ------------------------------------------------------------------- */

typedef struct row {
  char owner[64];
  uint64_t epoch;
  int held;
  int seen;
} row;

typedef struct poller {
  pthread_mutex_t mu; /* guards nodes[] against close */
  tnode *nodes[MAXN + 1];
  stead__backend *b;
  uint32_t S;
  row last[MAXS];
  int violations, polls;
  char why[256];
  atomic_int stop;
  pthread_t thr;
} poller;

static int collect(void *u, const stead__lease *l) {
  row *rows = u;
  if (l->shard < MAXS) {
    snprintf(rows[l->shard].owner, sizeof rows[l->shard].owner, "%s", l->owner);
    rows[l->shard].epoch = l->epoch;
    rows[l->shard].held = l->held;
    rows[l->shard].seen = 1;
  }
  return 0;
}

static void violation(poller *p, const char *fmt, ...) {
  p->violations++;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->why, sizeof p->why, fmt, ap);
  va_end(ap);
}

/* The table is read FIRST; a node's claim read afterwards can only be
 * older-or-equal to the table's tenure if it overlaps it. */
static void poll_once(poller *p) {
  row rows[MAXS] = {0};
  if (stead__lease_list(p->b, collect, rows) != 0)
    return;
  for (uint32_t s = 0; s < p->S; s++) {
    if (rows[s].seen && p->last[s].seen) {
      if (rows[s].epoch < p->last[s].epoch)
        violation(p, "shard %u epoch went back from %llu to %llu", s,
                  (unsigned long long)p->last[s].epoch,
                  (unsigned long long)rows[s].epoch);
      if (rows[s].epoch == p->last[s].epoch && strcmp(rows[s].owner, p->last[s].owner))
        violation(p, "shard %u epoch %llu has two owners %s and %s", s,
                  (unsigned long long)rows[s].epoch, p->last[s].owner, rows[s].owner);
    }
  }
  pthread_mutex_lock(&p->mu);
  for (int i = 0; p->nodes[i]; i++) {
    for (uint32_t s = 0; s < p->S; s++) {
      uint64_t e;
      if (stead__node_owner_epoch(p->nodes[i]->n, s, &e) != 0 || !rows[s].seen)
        continue;
      if (e < rows[s].epoch || (e == rows[s].epoch && !rows[s].held))
        violation(p,
                  "%s claims shard %u epoch %llu; the table has epoch %llu (%s, held "
                  "%d)",
                  p->nodes[i]->id, s, (unsigned long long)e,
                  (unsigned long long)rows[s].epoch, rows[s].owner, rows[s].held);
      else if (e == rows[s].epoch && strcmp(rows[s].owner, p->nodes[i]->id) != 0)
        violation(p, "%s claims shard %u epoch %llu owned by %s", p->nodes[i]->id, s,
                  (unsigned long long)e, rows[s].owner);
    }
  }
  pthread_mutex_unlock(&p->mu);
  memcpy(p->last, rows, sizeof rows);
  p->polls++;
}

static void *poll_main(void *arg) {
  poller *p = arg;
  while (!atomic_load(&p->stop)) {
    poll_once(p);
    sleep_ms(10);
  }
  return NULL;
}

static void poller_start(poller *p, stead__backend *b, uint32_t S) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
  p->b = b;
  p->S = S;
  pthread_create(&p->thr, NULL, poll_main, p);
}

static void poller_set(poller *p, tnode **nodes, size_t nn) {
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i <= MAXN; i++)
    p->nodes[i] = i < nn ? nodes[i] : NULL;
  pthread_mutex_unlock(&p->mu);
}

static void poller_stop(poller *p) {
  atomic_store(&p->stop, 1);
  pthread_join(p->thr, NULL);
  pthread_mutex_destroy(&p->mu);
  if (p->violations)
    fail_msg("%d single-owner violations; last: %s", p->violations, p->why);
  assert_true(p->polls > 10);
}

/* Lease table entries by shard. */
static void lease_rows(stead__backend *b, row *rows) {
  memset(rows, 0, sizeof(row) * MAXS);
  assert_int_equal(stead__lease_list(b, collect, rows), 0);
}

/* ---------------------------------------------------------------------
 * Calls.
 * ------------------------------------------------------------------- */

typedef struct result {
  atomic_int done;
  int status;
  int had_reply;
  char payload[64];
  char msg[256];
} result;

static void on_result(int status, const stead__env *reply, void *udata) {
  result *r = udata;
  r->status = status;
  r->had_reply = reply != NULL;
  if (reply && reply->payload && reply->payload_len < sizeof r->payload) {
    memcpy(r->payload, reply->payload, reply->payload_len);
    r->payload[reply->payload_len] = 0;
  }
  snprintf(r->msg, sizeof r->msg, "%s", stead_errmsg());
  atomic_store(&r->done, 1);
}

static void wait_result(result *r, int ms) {
  for (int i = 0; i < ms && !atomic_load(&r->done); i++)
    sleep_ms(1);
  assert_true(atomic_load(&r->done));
}

static int call_sync(stead__node *n, const char *cls, const char *id, const char *method,
                     int ms, result *r) {
  memset(r, 0, sizeof *r);
  stead__env e = {
      .cls = cls, .id = id, .method = method, .payload = "x", .payload_len = 1};
  int rc = stead__node_call(n, &e, stead__wall_ms() + ms, on_result, r);
  if (rc != 0)
    return rc;
  wait_result(r, ms + 2000);
  return r->status;
}

/* An object id of class "c" in shard s. */
static void id_in_shard(uint32_t s, uint32_t S, char *out, size_t cap) {
  for (int i = 0;; i++) {
    snprintf(out, cap, "obj-%d", i);
    if (stead_shard_for_key("c", out, S, "test-seed") == (int)s)
      return;
  }
}

/* ---------------------------------------------------------------------
 * Tests.
 * ------------------------------------------------------------------- */

static void test_options_and_deployment_record(void **state) {
  stead__backend *b = open_backend("tcfg");
  fake *f = fake_new("a");
  stead__node_opts o;
  stead__node *n = NULL;

  fill_opts(&o, "tcfg", "bad id!", 16, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);
  assert_null(n);
  fill_opts(&o, "t.cfg", "a", 16, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);
  fill_opts(&o, "tcfg", "a", 70000, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);
  fill_opts(&o, "tcfg", "a", 16, "s1", b, f);
  o.renew_ms = TTL_MS;
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);
  fill_opts(&o, "tcfg", "a", 16, "s1", b, f);
  o.rt.drain = NULL;
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "drain"));
  fill_opts(&o, "tcfg", "a", 16, "s1", b, f);
  o.nats_url = NULL;
  assert_int_equal(stead__node_open(&o, &n), STEAD_EINVAL);

  stead__backend *mem = NULL;
  assert_int_equal(stead__backend_open("memory", &mem), 0);
  fill_opts(&o, "tcfg", "a", 16, "s1", mem, f);
  assert_int_equal(stead__node_open(&o, &n), STEAD_ENOTSUP);
  stead__backend_close(mem);

  /* Unreachable NATS: the record is written, the open fails cleanly. */
  fill_opts(&o, "tcfg", "a", 16, "s1", b, f);
  o.nats_url = "nats://127.0.0.1:1";
  assert_int_equal(stead__node_open(&o, &n), STEAD_EIO);

  /* The first node fixed S=16, seed s1: others must match. */
  fill_opts(&o, "tcfg", "a", 16, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n), 0);
  stead__node *n2 = NULL;
  fill_opts(&o, "tcfg", "b", 32, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n2), STEAD_ECONFLICT);
  assert_non_null(strstr(stead_errmsg(), "shards=16"));
  fill_opts(&o, "tcfg", "b", 16, "s2", b, f);
  assert_int_equal(stead__node_open(&o, &n2), STEAD_ECONFLICT);
  fill_opts(&o, "tcfg", "b", 16, NULL, b, f);
  assert_int_equal(stead__node_open(&o, &n2), STEAD_ECONFLICT);
  fill_opts(&o, "tcfg", "b", 16, "s1", b, f);
  assert_int_equal(stead__node_open(&o, &n2), 0);
  /* Another deployment in the same tables has its own record. */
  stead__node *n3 = NULL;
  fill_opts(&o, "tcfg2", "c", 8, NULL, b, f);
  assert_int_equal(stead__node_open(&o, &n3), 0);
  stead__node_close(n3);
  stead__node_close(n2);
  stead__node_close(n);
  fake_free(f);
  stead__backend_close(b);
}

/* Three nodes share the shards; a fourth joins (shards move, drained
 * before release); the fourth dies (its shards move after the ttl). */
static void test_join_and_kill(void **state) {
  const uint32_t S = 32;
  tnode a, bn, c, d;
  tn_open(&a, "tjoin", "node-a", S);
  tn_open(&bn, "tjoin", "node-b", S);
  tn_open(&c, "tjoin", "node-c", S);
  tnode *three[] = {&a, &bn, &c};
  poller p;
  poller_start(&p, a.b, S);
  poller_set(&p, three, 3);
  converge(three, 3, S, 8000);

  /* Every shard: one lease, held by its owner, with the owner's epoch. */
  row rows[MAXS];
  lease_rows(a.b, rows);
  for (uint32_t s = 0; s < S; s++) {
    tnode *o = NULL;
    for (int i = 0; i < 3; i++)
      if (stead__node_owns(three[i]->n, s))
        o = three[i];
    assert_non_null(o);
    uint64_t e;
    assert_int_equal(stead__node_owner_epoch(o->n, s, &e), 0);
    assert_true(rows[s].held);
    assert_string_equal(rows[s].owner, o->id);
    assert_int_equal(rows[s].epoch, e);
  }
  stead__node_status *st;
  assert_int_equal(stead__node_status_get(a.n, &st), 0);
  assert_int_equal(st->nmembers, 3);
  assert_string_equal(st->members[0], "node-a");
  assert_string_equal(st->node_id, "node-a");
  assert_int_equal(st->nshards, S);
  size_t total = st->nowned;
  for (size_t i = 0; i < st->nowned; i++) {
    assert_true(stead__node_owns(a.n, st->owned[i].shard));
    assert_true(st->owned[i].lease_left_ms > 0 && st->owned[i].lease_left_ms <= TTL_MS);
  }
  stead_free(st);
  assert_int_equal(stead__node_status_get(bn.n, &st), 0);
  total += st->nowned;
  stead_free(st);
  assert_int_equal(stead__node_status_get(c.n, &st), 0);
  total += st->nowned;
  stead_free(st);
  assert_int_equal(total, S);

  /* A fourth node joins. */
  uint64_t before[MAXS];
  for (uint32_t s = 0; s < S; s++)
    before[s] = rows[s].epoch;
  tn_open(&d, "tjoin", "node-d", S);
  tnode *four[] = {&a, &bn, &c, &d};
  poller_set(&p, four, 4);
  converge(four, 4, S, 8000);
  const char *ids3[] = {"node-a", "node-b", "node-c"};
  const char *ids4[] = {"node-a", "node-b", "node-c", "node-d"};
  int moved = 0;
  for (uint32_t s = 0; s < S; s++) {
    const char *was = hrw(s, ids3, 3), *now = hrw(s, ids4, 4);
    if (strcmp(was, now) == 0)
      continue;
    moved++;
    assert_string_equal(now, "node-d");
    fake *old = strcmp(was, "node-a") == 0   ? a.f
                : strcmp(was, "node-b") == 0 ? bn.f
                                             : c.f;
    /* drain began -> the runtime said done -> released -> the new owner
     * acquired: never two at once. */
    assert_true(old->seq_drain[s] > 0);
    assert_true(old->seq_drain[s] < old->seq_done[s]);
    assert_true(old->seq_done[s] < old->seq_released[s]);
    assert_true(old->seq_released[s] < d.f->seq_acquired[s]);
    assert_true(d.f->epoch[s] > before[s]);
  }
  assert_true(moved > 0);
  assert_int_equal(d.f->acquires, moved);
  assert_int_equal(a.f->losts + bn.f->losts + c.f->losts + d.f->losts, 0);

  /* node-d dies: no heartbeat, no leave, no release. */
  lease_rows(a.b, rows);
  int64_t killed_at = stead__mono_ms();
  stead__node_test_kill(d.n);
  converge(three, 3, S, 8000);
  int64_t settled = stead__mono_ms() - killed_at;
  row after[MAXS];
  lease_rows(a.b, after);
  for (uint32_t s = 0; s < S; s++) {
    if (strcmp(hrw(s, ids4, 4), "node-d") != 0)
      continue;
    fake *nw = strcmp(hrw(s, ids3, 3), "node-a") == 0   ? a.f
               : strcmp(hrw(s, ids3, 3), "node-b") == 0 ? bn.f
                                                        : c.f;
    assert_true(after[s].epoch > rows[s].epoch);
    /* Taken only once d's lease ran out: at least ttl - renew after the
     * kill (d renewed at most renew_ms before it). */
    assert_true(nw->acquired_ms[s] - killed_at >= TTL_MS - RENEW_MS - 50);
  }
  fprintf(stderr, "  kill: ownership settled in %lld ms (ttl %d)\n", (long long)settled,
          TTL_MS);
  assert_int_equal(a.f->violations + bn.f->violations + c.f->violations, 0);
  poller_set(&p, three, 3);
  tn_close(&d);
  poller_stop(&p);
  tn_close(&c);
  tn_close(&bn);
  tn_close(&a);
}

/* Calls through any node reach the owner's handler. */
static void test_routing(void **state) {
  const uint32_t S = 16;
  tnode a, bn, c;
  tn_open(&a, "troute", "r-a", S);
  tn_open(&bn, "troute", "r-b", S);
  tn_open(&c, "troute", "r-c", S);
  tnode *three[] = {&a, &bn, &c};
  converge(three, 3, S, 8000);
  const char *ids[] = {"r-a", "r-b", "r-c"};
  for (int i = 0; i < 60; i++) {
    char id[32];
    snprintf(id, sizeof id, "user-%d", i);
    uint32_t s = (uint32_t)stead_shard_for_key("c", id, S, "test-seed");
    const char *owner = hrw(s, ids, 3);
    tnode *via = three[i % 3];
    stead__node_route_info ri;
    assert_int_equal(stead__node_route(via->n, "c", id, &ri), 0);
    assert_int_equal(ri.shard, s);
    assert_string_equal(ri.owner, owner);
    assert_int_equal(ri.kind, strcmp(owner, via->id) == 0 ? STEAD__ROUTE_LOCAL
                                                          : STEAD__ROUTE_REMOTE);
    result r;
    assert_int_equal(call_sync(via->n, "c", id, "get", 3000, &r), 0);
    assert_string_equal(r.payload, owner);
  }
  /* The handler's error comes back with its message. */
  result r;
  assert_int_equal(call_sync(a.n, "c", "user-1", "fail", 3000, &r), STEAD_EHANDLER);
  assert_true(r.had_reply);
  assert_non_null(strstr(r.msg, "fake handler failed"));
  /* Bad input is refused before anything is sent. */
  stead__env e = {.cls = "c", .id = "x", .method = "get"};
  assert_int_equal(stead__node_call(a.n, &e, stead__wall_ms() - 1, on_result, &r),
                   STEAD_EINVAL);
  /* (Reserved x-stead- keys are allowed: the runtime is the caller.) */
  stead__env_header h = {"bad key", "me"};
  e.headers = &h;
  e.nheaders = 1;
  assert_int_equal(stead__node_call(a.n, &e, stead__wall_ms() + 1000, on_result, &r),
                   STEAD_EINVAL);
  stead__env bad = {.cls = "no/slash", .id = "x", .method = "get"};
  assert_int_equal(stead__node_call(a.n, &bad, stead__wall_ms() + 1000, on_result, &r),
                   STEAD_EINVAL);
  stead__node_route_info ri;
  assert_int_equal(stead__node_route(a.n, "c", "", &ri), STEAD_EINVAL);
  assert_int_equal(a.f->violations + bn.f->violations + c.f->violations, 0);
  int handled = atomic_load(&a.f->handled) + atomic_load(&bn.f->handled) +
                atomic_load(&c.f->handled);
  assert_int_equal(handled, 61);

  /* A graceful leave drains and releases: the others take its shards
   * without waiting for the ttl. */
  int64_t t0 = stead__mono_ms();
  stead__node_close(c.n);
  c.n = NULL;
  tnode *two[] = {&a, &bn};
  converge(two, 2, S, 8000);
  int64_t took = stead__mono_ms() - t0;
  fprintf(stderr, "  leave: ownership settled in %lld ms (ttl %d)\n", (long long)took,
          TTL_MS);
  assert_true(took < TTL_MS);
  assert_int_equal(c.f->losts, 0);
  assert_true(c.f->drains > 0);
  assert_int_equal(c.f->drains, c.f->releases);
  assert_int_equal(c.f->acquires, c.f->releases);
  fake_free(c.f);
  stead__backend_close(c.b);
  tn_close(&bn);
  tn_close(&a);
}

typedef struct rawres {
  atomic_int done;
  int status;
  uint8_t data[512];
  size_t len;
} rawres;

static void on_raw(int status, const void *data, size_t len, void *u) {
  rawres *rr = u;
  rr->status = status;
  rr->len = len < sizeof rr->data ? len : sizeof rr->data;
  if (data)
    memcpy(rr->data, data, rr->len);
  atomic_store(&rr->done, 1);
}

static void raw_request(stead__nats *t, const char *subject, const void *data, size_t len,
                        stead__env *out) {
  rawres rr = {0};
  assert_int_equal(stead__nats_request(t, subject, data, len, 2000, on_raw, &rr), 0);
  for (int i = 0; i < 3000 && !atomic_load(&rr.done); i++)
    sleep_ms(1);
  assert_int_equal(rr.status, 0);
  assert_int_equal(stead__env_decode(rr.data, rr.len, 0, STEAD__ENV_COPY_PAYLOAD, out),
                   0);
}

/* A request reaching a node that is draining the shard is answered "not
 * owner" with a hint; the caller retries until the new owner serves it. */
static void test_not_owner_redirect(void **state) {
  const uint32_t S = 8;
  tnode a, bn;
  tn_open(&a, "tredir", "x-a", S);
  tnode *one[] = {&a};
  converge(one, 1, S, 8000);
  fake_hold(a.f, 1);
  tn_open(&bn, "tredir", "x-b", S);
  /* Wait until node a drains something it must hand to b. */
  uint32_t moving = S;
  for (int i = 0; i < 5000 && moving == S; i++) {
    pthread_mutex_lock(&a.f->mu);
    if (a.f->npend > 0)
      moving = a.f->pend[0].shard;
    pthread_mutex_unlock(&a.f->mu);
    sleep_ms(1);
  }
  assert_true(moving < S);
  assert_false(stead__node_owns(a.n, moving));
  uint64_t e;
  assert_int_equal(stead__node_owner_epoch(a.n, moving, &e), 0); /* may still commit */
  char id[32];
  id_in_shard(moving, S, id, sizeof id);
  stead__node_route_info ri;
  assert_int_equal(stead__node_route(a.n, "c", id, &ri), 0);
  assert_int_equal(ri.kind, STEAD__ROUTE_REMOTE);
  assert_string_equal(ri.owner, "x-b");

  /* Raw: a's answer is the error envelope with the hint. */
  stead__nats_opts no;
  stead__nats_opts_init(&no);
  no.url = nsrv.url;
  stead__nats *t;
  assert_int_equal(stead__nats_open(&no, &t), 0);
  stead__env req = {.kind = STEAD__ENV_REQUEST,
                    .shard = moving,
                    .corr = 77,
                    .created_ms = stead__wall_ms(),
                    .cls = "c",
                    .id = id,
                    .method = "get"};
  stead__buf wire = {0};
  assert_int_equal(stead__env_encode(&req, 0, 0, &wire), 0);
  char subject[96];
  assert_int_equal(stead__nats_shard_subject(subject, sizeof subject, "tredir", moving),
                   0);
  stead__env rep;
  raw_request(t, subject, wire.data, wire.len, &rep);
  assert_int_equal(rep.kind, STEAD__ENV_ERROR);
  assert_int_equal(rep.status, STEAD_ENOTOWNER);
  assert_int_equal(rep.corr, 77);
  assert_string_equal(stead__env_header_get(&rep, "x-stead-owner"), "x-b");
  stead__env_free(&rep);

  /* A call with a short deadline gives up with ENOTOWNER: it did not run. */
  result r;
  assert_int_equal(call_sync(bn.n, "c", id, "get", 150, &r), STEAD_ENOTOWNER);
  assert_false(r.had_reply);

  /* A call with room to wait is served by b once a finished draining. */
  memset(&r, 0, sizeof r);
  stead__env ce = {.cls = "c", .id = id, .method = "get"};
  assert_int_equal(stead__node_call(bn.n, &ce, stead__wall_ms() + 5000, on_result, &r),
                   0);
  sleep_ms(200);
  assert_false(atomic_load(&r.done));
  fake_hold(a.f, 0);
  wait_result(&r, 7000);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.payload, "x-b");
  stead__node_status *st;
  assert_int_equal(stead__node_status_get(bn.n, &st), 0);
  assert_true(st->call_retries >= 2);
  stead_free(st);
  assert_int_equal(stead__node_status_get(a.n, &st), 0);
  assert_true(st->not_owner >= 2);
  stead_free(st);
  assert_int_equal(a.f->violations + bn.f->violations, 0);
  stead__buf_free(&wire);
  stead__nats_close(t);
  tn_close(&bn);
  tn_close(&a);
}

/* Garbage on a shard subject is answered with an error and counted; the
 * node keeps serving. */
static void test_malformed(void **state) {
  const uint32_t S = 4;
  tnode a;
  tn_open(&a, "tmal", "m-a", S);
  tnode *one[] = {&a};
  converge(one, 1, S, 8000);
  stead__nats_opts no;
  stead__nats_opts_init(&no);
  no.url = nsrv.url;
  stead__nats *t;
  assert_int_equal(stead__nats_open(&no, &t), 0);
  char id[32], subject[96];
  id_in_shard(2, S, id, sizeof id);
  assert_int_equal(stead__nats_shard_subject(subject, sizeof subject, "tmal", 2), 0);

  stead__env rep;
  raw_request(t, subject, "garbage", 7, &rep);
  assert_int_equal(rep.kind, STEAD__ENV_ERROR);
  assert_int_equal(rep.status, STEAD_EPROTO);
  stead__env_free(&rep);

  stead__env req = {.kind = STEAD__ENV_REQUEST,
                    .shard = 2,
                    .corr = 5,
                    .created_ms = stead__wall_ms(),
                    .cls = "c",
                    .id = id,
                    .method = "get"};
  /* Truncated. */
  stead__buf w = {0};
  assert_int_equal(stead__env_encode(&req, 0, 0, &w), 0);
  raw_request(t, subject, w.data, w.len - 1, &rep);
  assert_int_equal(rep.status, STEAD_EPROTO);
  stead__env_free(&rep);
  stead__buf_free(&w);
  /* The key is not in this shard. */
  char other[32];
  id_in_shard(3, S, other, sizeof other);
  req.id = other;
  assert_int_equal(stead__env_encode(&req, 0, 0, &w), 0);
  raw_request(t, subject, w.data, w.len, &rep);
  assert_int_equal(rep.status, STEAD_EPROTO);
  assert_int_equal(rep.corr, 5);
  stead__env_free(&rep);
  stead__buf_free(&w);
  /* A reply sent as a request. */
  stead__env notreq = {
      .kind = STEAD__ENV_REPLY, .shard = 2, .corr = 6, .created_ms = stead__wall_ms()};
  assert_int_equal(stead__env_encode(&notreq, 0, 0, &w), 0);
  raw_request(t, subject, w.data, w.len, &rep);
  assert_int_equal(rep.status, STEAD_EPROTO);
  stead__env_free(&rep);
  stead__buf_free(&w);
  /* Expired. */
  req.id = id;
  req.created_ms = stead__wall_ms() - 5000;
  req.ttl_ms = 100;
  assert_int_equal(stead__env_encode(&req, 0, 0, &w), 0);
  raw_request(t, subject, w.data, w.len, &rep);
  assert_int_equal(rep.status, STEAD_ETIMEDOUT);
  stead__env_free(&rep);
  stead__buf_free(&w);
  /* One-way garbage: nothing to answer, still counted. */
  assert_int_equal(stead__nats_publish(t, subject, "\x53\x45\x01", 3), 0);

  stead__node_status *st = NULL;
  for (int i = 0; i < 2000; i++) {
    stead_free(st);
    assert_int_equal(stead__node_status_get(a.n, &st), 0);
    if (st->malformed >= 5)
      break;
    sleep_ms(1);
  }
  assert_int_equal(st->malformed, 5);
  assert_int_equal(st->expired, 1);
  stead_free(st);
  assert_int_equal(atomic_load(&a.f->handled), 0);
  result r;
  assert_int_equal(call_sync(a.n, "c", id, "get", 3000, &r), 0);
  assert_string_equal(r.payload, "m-a");
  stead__nats_close(t);
  tn_close(&a);
}

/* A node that stops renewing loses its shards by the ttl; commits with the
 * old epoch are refused by PostgreSQL; it takes the shard back later with
 * a new epoch. */
static void test_lease_loss_and_fencing(void **state) {
  const uint32_t S = 4;
  tnode a;
  tn_open(&a, "tloss", "l-a", S);
  tnode *one[] = {&a};
  converge(one, 1, S, 8000);
  const uint32_t s = 1;
  char id[32];
  id_in_shard(s, S, id, sizeof id);
  uint64_t e1;
  assert_int_equal(stead__node_owner_epoch(a.n, s, &e1), 0);
  stead__wset *ws = stead__wset_new("c", id);
  ws->shard = s;
  ws->epoch = e1;
  assert_int_equal(stead__wset_put(ws, STEAD__NS_USER, "k", 1, "v1", 2), 0);
  assert_int_equal(a.b->vt->commit(a.b, &ws, 1), 0);

  /* Paused past the ttl: lost fires, the node stops claiming. */
  int64_t t0 = stead__mono_ms();
  stead__node_test_pause_leases(a.n, 1);
  for (int i = 0; i < 4000; i++) {
    pthread_mutex_lock(&a.f->mu);
    int lost = a.f->lost_epoch[s] == e1;
    pthread_mutex_unlock(&a.f->mu);
    if (lost)
      break;
    sleep_ms(1);
  }
  int64_t waited = stead__mono_ms() - t0;
  assert_int_equal(a.f->lost_epoch[s], e1);
  assert_true(waited >= TTL_MS - RENEW_MS - 50 && waited <= TTL_MS + 500);
  assert_false(stead__node_owns(a.n, s));
  uint64_t e;
  assert_int_equal(stead__node_owner_epoch(a.n, s, &e), STEAD_ENOTOWNER);
  stead__node_route_info ri;
  assert_int_equal(stead__node_route(a.n, "c", id, &ri), 0);
  assert_int_equal(ri.kind, STEAD__ROUTE_UNKNOWN);

  /* Someone else takes the shard; the old tenure cannot commit. */
  uint64_t e2;
  assert_int_equal(stead__lease_acquire(a.b, s, "intruder", 400, &e2), 0);
  assert_true(e2 > e1);
  stead__wset_unref(ws);
  ws = stead__wset_new("c", id);
  ws->shard = s;
  ws->epoch = e1;
  assert_int_equal(stead__wset_put(ws, STEAD__NS_USER, "k", 1, "v2", 2), 0);
  assert_int_equal(a.b->vt->commit(a.b, &ws, 1), STEAD_ENOTOWNER);
  stead__wset_unref(ws);
  void *val;
  size_t vlen;
  assert_int_equal(a.b->vt->get(a.b, "c", id, STEAD__NS_USER, "k", 1, &val, &vlen), 0);
  assert_memory_equal(val, "v1", 2);
  free(val);

  /* Resumed: it takes the shard back once the intruder's lease ends. */
  stead__node_test_pause_leases(a.n, 0);
  converge(one, 1, S, 5000);
  uint64_t e3;
  assert_int_equal(stead__node_owner_epoch(a.n, s, &e3), 0);
  assert_true(e3 > e2);
  ws = stead__wset_new("c", id);
  ws->shard = s;
  ws->epoch = e3;
  assert_int_equal(stead__wset_put(ws, STEAD__NS_USER, "k", 1, "v3", 2), 0);
  assert_int_equal(a.b->vt->commit(a.b, &ws, 1), 0);
  stead__wset_unref(ws);
  assert_int_equal(a.f->violations, 0);
  tn_close(&a);
}

/* A static host list: no heartbeats; each node owns its HRW share. */
static void test_static_hosts(void **state) {
  const uint32_t S = 8;
  tnode a, bn;
  tnode *two[] = {&a, &bn};
  for (int i = 0; i < 2; i++) {
    tnode *t = two[i];
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "h-%d", i);
    t->b = open_backend("tstatic");
    t->f = fake_new(t->id);
    stead__node_opts o;
    fill_opts(&o, "tstatic", t->id, S, "test-seed", t->b, t->f);
    o.static_hosts = "h-{0..1}";
    assert_int_equal(stead__node_open(&o, &t->n), 0);
  }
  converge(two, 2, S, 8000);
  result r;
  char id[32];
  id_in_shard(5, S, id, sizeof id);
  const char *ids[] = {"h-0", "h-1"};
  assert_int_equal(call_sync(a.n, "c", id, "get", 3000, &r), 0);
  assert_string_equal(r.payload, hrw(5, ids, 2));
  tn_close(&bn);
  tn_close(&a);
}

/* The database goes away: renewals fail, every shard is lost by its ttl
 * (nothing can be fenced-checked, so nothing may be claimed); when it
 * comes back the node takes its shards again with new epochs. Runs last:
 * it restarts the server. */
static void test_database_down(void **state) {
  if (!pgh_server.started) {
    skip();
  }
  const uint32_t S = 4;
  tnode a;
  tn_open(&a, "tdown", "d-a", S);
  tnode *one[] = {&a};
  converge(one, 1, S, 8000);
  uint64_t before[S];
  for (uint32_t s = 0; s < S; s++)
    assert_int_equal(stead__node_owner_epoch(a.n, s, &before[s]), 0);
  int64_t t0 = stead__mono_ms();
  assert_int_equal(pgh_pg_stop("fast"), 0);
  for (int i = 0; i < 4000; i++) {
    pthread_mutex_lock(&a.f->mu);
    int n = a.f->losts;
    pthread_mutex_unlock(&a.f->mu);
    if (n == (int)S)
      break;
    sleep_ms(1);
  }
  int64_t waited = stead__mono_ms() - t0;
  assert_int_equal(a.f->losts, S);
  assert_true(waited <= TTL_MS + 500);
  for (uint32_t s = 0; s < S; s++)
    assert_false(stead__node_owns(a.n, s));
  assert_int_equal(pgh_pg_start(), 0);
  converge(one, 1, S, 10000);
  for (uint32_t s = 0; s < S; s++) {
    uint64_t e;
    assert_int_equal(stead__node_owner_epoch(a.n, s, &e), 0);
    assert_true(e > before[s]);
  }
  assert_int_equal(a.f->violations, 0);
  tn_close(&a);
}

int main(void) {
  int rc = pgh_start(0);
  if (rc)
    return rc < 0 ? 1 : 0;
  if (natsrv_start(&nsrv) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_and_deployment_record),
      cmocka_unit_test(test_join_and_kill),
      cmocka_unit_test(test_routing),
      cmocka_unit_test(test_not_owner_redirect),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_lease_loss_and_fencing),
      cmocka_unit_test(test_static_hosts),
      cmocka_unit_test(test_database_down),
  };
  rc = cmocka_run_group_tests_name("cluster_node", tests, NULL, NULL);
  natsrv_stop(&nsrv);
  return rc;
}
