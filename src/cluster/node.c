/*
 * node.c -- the cluster node: which shards this process owns, proven by
 * PostgreSQL leases, and how calls reach the owner over NATS.
 *
 * Ownership. The wanted set is the shards that rendezvous hashing gives
 * this node over the live members. For a wanted shard the manager takes the
 * lease (stead__lease_acquire: CAS, the epoch names the tenure); for an
 * owned one it renews every renew_ms; an owned shard no longer wanted is
 * drained (runtime drain() -> done) and only then released. A shard whose
 * renewal is refused, or whose local bound passes (t0 + ttl, t0 taken
 * before the statement was sent, so the bound ends no later than the
 * database's expiry), is lost at once: marked free, unsubscribed, lost()
 * told. Safety does not rest on these clocks: every commit carries the
 * epoch and PostgreSQL refuses it once the tenure is over (fencing).
 *
 * Per-shard states: FREE -> OWNED -> DRAINING -> FREE (released), and
 * OWNED/DRAINING -> FREE (lost). Invariants:
 *   - only the manager thread changes state, epoch and bounds, always
 *     under `mu`; other threads only read them under `mu`;
 *   - a shard's claim (owns/owner_epoch) starts after its lease was taken
 *     and ends before its lease is released, so two nodes never claim one
 *     shard at once while their clocks run at the same rate;
 *   - `dispatching` counts serve handlers between the ownership check and
 *     the end of handle(); drain()/lost() wait for it to reach 0, so no
 *     message reaches the runtime after them.
 *
 * Routing. Each owner subscribes to "<deployment>.shard.<n>" in the queue
 * group "owner" (one delivery per request even while an old and a new owner
 * overlap). A non-owner answers an error envelope ENOTOWNER with the owner
 * it believes in (header x-stead-owner); stead__node_call retries that, and
 * NATS' "no responders", with backoff until the caller's deadline.
 *
 * Threads: the manager (leases, runtime callbacks), the retry thread
 * (delayed resends of calls), the membership thread (on_change), NATS
 * delivery threads (served messages, call replies) and the callers'.
 */
#include "cluster/node.h"
#include "cluster/nats.h"
#include "storage/lease.h"
#include "storage/pg_backend.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OWNER_HEADER   "x-stead-owner"
#define OWNER_QUEUE    "owner"
#define CONFIG_CLASS   "stead/cluster" /* no user class can hold a '/' */
#define CONFIG_KEY     "config"
#define CONFIG_LOCK    0xFFFFFFFFu /* lease "shard" guarding the record */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 200

enum { SH_FREE, SH_OWNED, SH_DRAINING };

typedef struct shard_st {
  int state;
  uint64_t epoch;
  int64_t valid_until_ns; /* local bound of the lease */
  int64_t renew_at_ns;
  int64_t retry_at_ns; /* next acquire attempt */
  int dispatching;
  int drain_done;
  uint64_t drain_gen;
  stead__nats_sub *sub;
} shard_st;

typedef struct shard_ctx {
  stead__node *n;
  uint32_t shard;
} shard_ctx;

typedef struct drain_ticket {
  stead__node *n;
  uint32_t shard;
  uint64_t gen;
} drain_ticket;

typedef struct call {
  stead__node *n;
  stead__buf wire;
  char subject[96];
  uint32_t shard;
  uint64_t corr;
  int64_t deadline_ns; /* monotonic */
  int backoff_ms;
  int attempts;
  int64_t due_ns;
  struct call *next;
  stead__node_call_fn cb;
  void *udata;
  char hint[STEAD__MAX_NAME + 1];
} call;

struct stead__node_replier {
  stead__nats_replier *nr;
  uint64_t corr;
  uint32_t shard;
  size_t max_payload;
};

struct stead__node {
  char *deployment, *node_id, *seed;
  uint32_t nshards;
  stead__backend *b;
  stead__nats *t;
  stead__nats_sub *anchor; /* keeps the transport's memory until the end */
  stead__nats_sub *events; /* "<deployment>.events", when rt.event is set */
  stead__nats_sub *direct; /* "<deployment>.node.<id>.conn", when rt.direct is set */
  char events_subject[96];
  stead__members *m;
  int64_t ttl_ms, renew_ns, retry_ns;
  int64_t settle_until_ns; /* no acquire before: let the live set fill first */
  size_t max_payload;
  stead__node_runtime rt;

  pthread_mutex_t mu;
  pthread_cond_t cv;      /* manager: something changed */
  pthread_cond_t idle_cv; /* dispatching reached 0, a pass ended, a drain ended */
  shard_st *sh;
  shard_ctx *sctx;
  uint8_t *want;
  uint32_t *scratch; /* nshards entries for stead_shards_for_node */
  char **live;       /* sorted live set, one allocation */
  size_t nlive;
  int live_dirty, stop, leaving, killed, parked, paused;
  uint64_t kicks;
  size_t tickets;
  pthread_t mgr;
  int has_mgr;

  pthread_mutex_t rmu;
  pthread_cond_t rcv;
  call *retries; /* by due time */
  int rstop;
  pthread_t rtr;
  int has_rtr;

  atomic_uint_fast64_t corr;
  atomic_int left;     /* stead__node_leave ran (or runs) */
  uint32_t acq_cursor; /* manager: where the next acquire round starts */
  atomic_uint_fast64_t n_acquired, n_released, n_lost, n_acq_fail;
  atomic_uint_fast64_t n_malformed, n_expired, n_not_owner, n_calls, n_retries;
};

static void cnt(atomic_uint_fast64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t cnt_get(atomic_uint_fast64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

static int64_t ms_to_ns(int64_t ms) {
  return ms * 1000000;
}

static void abs_ts(struct timespec *ts, int64_t ns) {
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
}

void stead__node_opts_init(stead__node_opts *o) {
  memset(o, 0, sizeof *o);
  o->nshards = STEAD_DEFAULT_SHARDS;
  o->lease_ttl_ms = 10000;
  o->acquire_retry_ms = 250;
  o->heartbeat_ms = 1000;
  o->config_wait_ms = 10000;
  o->delivery_threads = 4;
}

/* ---------------------------------------------------------------------
 * The deployment record: shard count and seed fingerprint, written by the
 * first node, checked by every later one. The backend has no generic
 * compare-and-set record, so a lease on a shard number no real shard uses
 * serialises the read-then-write, and the write is fenced by that lease.
 * ------------------------------------------------------------------- */

static void config_value(const stead__node *n, char *out, size_t cap) {
  char fp[33] = "none";
  if (n->seed && n->seed[0]) {
    unsigned char h[16];
    if (sodium_init() < 0) { /* cannot happen after shard.c ran; be safe */
    }
    crypto_generichash(h, sizeof h, (const unsigned char *)n->seed, strlen(n->seed), NULL,
                       0);
    for (size_t i = 0; i < sizeof h; i++)
      snprintf(fp + 2 * i, 3, "%02x", h[i]);
  }
  snprintf(out, cap, "stead-cluster/1 shards=%u seed=%s", n->nshards, fp);
}

static int config_lock(stead__node *n, int wait_ms, uint64_t *epoch) {
  int64_t until = stead__mono_ms() + wait_ms;
  for (;;) {
    int rc = stead__lease_acquire(n->b, CONFIG_LOCK, n->node_id, 5000, epoch);
    if (rc != STEAD_ENOTOWNER)
      return rc;
    if (stead__mono_ms() >= until)
      return stead__err(STEAD_ETIMEDOUT,
                        "the deployment record of '%s' stayed locked by another node "
                        "for %d ms",
                        n->deployment, wait_ms);
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

static int config_write(stead__node *n, const char *want, uint64_t epoch) {
  stead__wset *ws = stead__wset_new(CONFIG_CLASS, n->deployment);
  if (!ws)
    return stead__err(STEAD_ENOMEM, "out of memory writing the deployment record");
  ws->shard = CONFIG_LOCK;
  ws->epoch = epoch;
  int rc = stead__wset_put(ws, STEAD__NS_STATE, CONFIG_KEY, strlen(CONFIG_KEY), want,
                           strlen(want));
  if (rc == 0)
    rc = n->b->vt->commit(n->b, &ws, 1);
  stead__wset_unref(ws);
  return rc;
}

static int config_check(stead__node *n, int wait_ms) {
  uint64_t epoch;
  int rc = config_lock(n, wait_ms, &epoch);
  if (rc != 0)
    return rc;
  char want[128];
  config_value(n, want, sizeof want);
  void *val = NULL;
  size_t vlen = 0;
  rc = n->b->vt->get(n->b, CONFIG_CLASS, n->deployment, STEAD__NS_STATE, CONFIG_KEY,
                     strlen(CONFIG_KEY), &val, &vlen);
  if (rc == STEAD_ENOTFOUND)
    rc = config_write(n, want, epoch);
  else if (rc == 0 && (vlen != strlen(want) || memcmp(val, want, vlen) != 0))
    rc = stead__err(STEAD_ECONFLICT,
                    "deployment '%s' was created as \"%.*s\"; this node has \"%s\" "
                    "(every node must use the same shard count and seed)",
                    n->deployment, (int)(vlen > 100 ? 100 : vlen), (char *)val, want);
  free(val);
  char msg[512];
  snprintf(msg, sizeof msg, "%s", stead_errmsg());
  (void)stead__lease_release(n->b, CONFIG_LOCK, n->node_id, epoch);
  if (rc != 0)
    stead__err(rc, "%s", msg);
  return rc;
}

/* ---------------------------------------------------------------------
 * Serving a shard's subject.
 * ------------------------------------------------------------------- */

/* The owner of `shard` by HRW over the live set, or "" when it is this
 * node or unknown. Under mu. */
static void hint_locked(stead__node *n, uint32_t shard, char *out, size_t cap) {
  out[0] = 0;
  if (n->nlive == 0)
    return;
  int i = stead_shard_owner(shard, (const char *const *)n->live, n->nlive, n->seed);
  if (i >= 0 && strcmp(n->live[i], n->node_id) != 0)
    snprintf(out, cap, "%s", n->live[i]);
}

static int send_error(stead__nats_replier *r, uint64_t corr, uint32_t shard, int status,
                      const char *message, const char *hint) {
  stead__env_header h = {OWNER_HEADER, hint};
  stead__env e = {
      .kind = STEAD__ENV_ERROR,
      .shard = shard,
      .corr = corr,
      .created_ms = stead__wall_ms(),
      .status = status,
      .message = message,
      .headers = hint && hint[0] ? &h : NULL,
      .nheaders = hint && hint[0] ? 1 : 0,
  };
  stead__buf b = {0};
  if (stead__env_encode(&e, 0, STEAD__ENV_INTERNAL, &b) != 0) {
    /* A message that does not encode (too long, bad UTF-8): say less. */
    e.message = NULL;
    if (stead__env_encode(&e, 0, STEAD__ENV_INTERNAL, &b) != 0) {
      stead__nats_replier_drop(r);
      return STEAD_ENOMEM;
    }
  }
  int rc = stead__nats_respond(r, b.data, b.len);
  stead__buf_free(&b);
  return rc;
}

/* Answers a message that will not reach the runtime (r may be NULL). */
static void refuse(stead__nats_replier *r, uint64_t corr, uint32_t shard, int status,
                   const char *message, const char *hint) {
  if (r)
    (void)send_error(r, corr, shard, status, message, hint);
}

/* Checks a decoded envelope against the subject it came on. */
static int check_addressed(stead__node *n, uint32_t shard, const stead__env *e) {
  if (e->kind != STEAD__ENV_REQUEST && e->kind != STEAD__ENV_ONEWAY)
    return stead__err(STEAD_EPROTO,
                      "a shard subject takes requests and one-ways, not "
                      "kind %d",
                      (int)e->kind);
  int ks = stead_shard_for_key(e->cls, e->id, n->nshards, n->seed);
  if (ks < 0)
    return stead__err(STEAD_EPROTO, "bad class or id: %s", stead_errmsg());
  if (e->shard != shard || (uint32_t)ks != shard)
    return stead__err(STEAD_EPROTO,
                      "envelope for shard %u (key in shard %d) sent to the subject of "
                      "shard %u",
                      e->shard, ks, shard);
  return 0;
}

static void on_shard_msg(stead__nats_replier *r, const void *data, size_t len, void *u) {
  shard_ctx *sc = u;
  stead__node *n = sc->n;
  uint32_t s = sc->shard;
  stead__env env;
  int rc = stead__env_decode(data, len, n->max_payload, 0, &env);
  if (rc == 0)
    rc = check_addressed(n, s, &env);
  if (rc != 0) {
    cnt(&n->n_malformed);
    refuse(r, env.corr, s, rc, stead_errmsg(), NULL); /* corr is 0 if undecoded */
    stead__env_free(&env);
    return;
  }
  if (stead__env_expired(&env, stead__wall_ms())) {
    cnt(&n->n_expired);
    refuse(r, env.corr, s, STEAD_ETIMEDOUT, "the request expired before it was handled",
           NULL);
    stead__env_free(&env);
    return;
  }
  char hint[STEAD__MAX_NAME + 1];
  pthread_mutex_lock(&n->mu);
  shard_st *st = &n->sh[s];
  int mine = st->state == SH_OWNED && stead__mono_ns() < st->valid_until_ns;
  if (mine)
    st->dispatching++;
  else
    hint_locked(n, s, hint, sizeof hint);
  pthread_mutex_unlock(&n->mu);
  if (!mine && n->rt.duplicate) {
    /* A copy of a request this node ran before the shard moved: the
     * runtime answers it with the first outcome (never "not owner"). */
    stead__node_replier *rep = r ? malloc(sizeof *rep) : NULL;
    if (rep)
      *rep = (stead__node_replier){r, env.corr, s, n->max_payload};
    if ((!r || rep) && n->rt.duplicate(n->rt.udata, &env, rep)) {
      stead__env_free(&env);
      return;
    }
    free(rep);
  }
  if (!mine) {
    cnt(&n->n_not_owner);
    char msg[256];
    snprintf(msg, sizeof msg, "node %s does not own shard %u%s%s", n->node_id, s,
             hint[0] ? "; owner: " : "", hint);
    refuse(r, env.corr, s, STEAD_ENOTOWNER, msg, hint);
    stead__env_free(&env);
    return;
  }
  stead__node_replier *rep = NULL;
  if (r) {
    rep = malloc(sizeof *rep);
    if (!rep) {
      refuse(r, env.corr, s, STEAD_ENOMEM, "out of memory", NULL);
    } else {
      *rep = (stead__node_replier){r, env.corr, s, n->max_payload};
    }
  }
  if (!r || rep)
    n->rt.handle(n->rt.udata, &env, rep);
  stead__env_free(&env);
  pthread_mutex_lock(&n->mu);
  if (--st->dispatching == 0)
    pthread_cond_broadcast(&n->idle_cv);
  pthread_mutex_unlock(&n->mu);
}

int stead__node_respond(stead__node_replier *r, int status, const void *payload,
                        size_t len, const char *message) {
  if (!r)
    return stead__err(STEAD_EINVAL, "replier must not be NULL");
  stead__nats_replier *nr = r->nr;
  uint64_t corr = r->corr;
  uint32_t shard = r->shard;
  size_t maxp = r->max_payload;
  free(r);
  if (status > 0) {
    send_error(nr, corr, shard, STEAD_EHANDLER, "the handler answered a positive status",
               NULL);
    return stead__err(STEAD_EINVAL, "status must be 0 or a negative STEAD_E* code");
  }
  stead__env e = {
      .kind = status == 0 ? STEAD__ENV_REPLY : STEAD__ENV_ERROR,
      .shard = shard,
      .corr = corr,
      .created_ms = stead__wall_ms(),
      .status = status,
      .message = status == 0 ? NULL : message,
      .payload = payload,
      .payload_len = len,
  };
  stead__buf b = {0};
  int rc = stead__env_encode(&e, maxp, 0, &b);
  if (rc != 0 && status != 0 && message) {
    e.message = NULL; /* an unencodable message must not lose the error */
    rc = stead__env_encode(&e, maxp, 0, &b);
  }
  if (rc != 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    send_error(nr, corr, shard, rc, msg, NULL);
    return stead__err(rc, "%s", msg);
  }
  rc = stead__nats_respond(nr, b.data, b.len);
  stead__buf_free(&b);
  return rc;
}

/* ---------------------------------------------------------------------
 * The manager: leases and runtime callbacks for every shard.
 * ------------------------------------------------------------------- */

static void kick_locked(stead__node *n) {
  n->kicks++;
  pthread_cond_signal(&n->cv);
}

static void wait_dispatch(stead__node *n, shard_st *st) {
  while (st->dispatching > 0)
    pthread_cond_wait(&n->idle_cv, &n->mu);
}

static void recompute_want(stead__node *n) {
  n->live_dirty = 0;
  memset(n->want, 0, n->nshards);
  if (n->leaving || n->killed || n->nlive == 0)
    return;
  int k = stead_shards_for_node(n->node_id, (const char *const *)n->live, n->nlive,
                                n->nshards, n->seed, n->scratch, n->nshards);
  for (int i = 0; i < k; i++)
    n->want[n->scratch[i]] = 1;
}

/* Under mu; returns with mu held. */
static void lose(stead__node *n, uint32_t s) {
  shard_st *st = &n->sh[s];
  uint64_t epoch = st->epoch;
  st->state = SH_FREE;
  wait_dispatch(n, st);
  stead__nats_sub *sub = st->sub;
  st->sub = NULL;
  st->retry_at_ns = 0;
  pthread_mutex_unlock(&n->mu);
  stead__nats_unserve(sub);
  cnt(&n->n_lost);
  n->rt.lost(n->rt.udata, s, epoch);
  pthread_mutex_lock(&n->mu);
}

static void drain_done(void *arg) {
  drain_ticket *t = arg;
  stead__node *n = t->n;
  pthread_mutex_lock(&n->mu);
  shard_st *st = &n->sh[t->shard];
  if (st->state == SH_DRAINING && st->drain_gen == t->gen)
    st->drain_done = 1;
  n->tickets--;
  kick_locked(n);
  pthread_cond_broadcast(&n->idle_cv);
  pthread_mutex_unlock(&n->mu);
  free(t);
}

static void start_drain(stead__node *n, uint32_t s) {
  shard_st *st = &n->sh[s];
  drain_ticket *t = malloc(sizeof *t);
  if (!t)
    return; /* stays owned; the next pass tries again */
  st->state = SH_DRAINING;
  st->drain_done = 0;
  *t = (drain_ticket){n, s, ++st->drain_gen};
  n->tickets++;
  wait_dispatch(n, st);
  pthread_mutex_unlock(&n->mu);
  n->rt.drain(n->rt.udata, s, drain_done, t);
  pthread_mutex_lock(&n->mu);
}

static void give_up(stead__node *n, uint32_t s) {
  shard_st *st = &n->sh[s];
  uint64_t epoch = st->epoch;
  st->state = SH_FREE;
  stead__nats_sub *sub = st->sub;
  st->sub = NULL;
  st->retry_at_ns = 0;
  pthread_mutex_unlock(&n->mu);
  if (n->rt.released)
    n->rt.released(n->rt.udata, s, epoch);
  /* ENOTOWNER: it expired meanwhile; ESTORAGE: it will expire. Either way
   * the shard is free for the next owner. */
  (void)stead__lease_release(n->b, s, n->node_id, epoch);
  stead__nats_unserve(sub);
  cnt(&n->n_released);
  pthread_mutex_lock(&n->mu);
}

static void acquire(stead__node *n, uint32_t s) {
  shard_st *st = &n->sh[s];
  char subject[96];
  pthread_mutex_unlock(&n->mu);
  int64_t t0 = stead__mono_ns();
  uint64_t epoch = 0;
  stead__nats_sub *sub = NULL;
  int rc = stead__lease_acquire(n->b, s, n->node_id, n->ttl_ms, &epoch);
  if (rc == 0)
    rc = stead__nats_shard_subject(subject, sizeof subject, n->deployment, s);
  if (rc == 0) {
    rc = stead__nats_serve(n->t, subject, OWNER_QUEUE, on_shard_msg, &n->sctx[s], &sub);
    if (rc != 0) /* cannot serve it: let someone else have it */
      (void)stead__lease_release(n->b, s, n->node_id, epoch);
  }
  if (rc == 0 && n->rt.acquired)
    n->rt.acquired(n->rt.udata, s, epoch);
  pthread_mutex_lock(&n->mu);
  if (rc != 0) {
    cnt(&n->n_acq_fail);
    st->retry_at_ns = stead__mono_ns() + n->retry_ns;
    return;
  }
  cnt(&n->n_acquired);
  st->state = SH_OWNED;
  st->epoch = epoch;
  st->valid_until_ns = t0 + ms_to_ns(n->ttl_ms);
  st->renew_at_ns = t0 + n->renew_ns;
  st->sub = sub;
}

static void renew(stead__node *n, uint32_t s) {
  shard_st *st = &n->sh[s];
  uint64_t epoch = st->epoch;
  pthread_mutex_unlock(&n->mu);
  int64_t t0 = stead__mono_ns();
  int rc = stead__lease_renew(n->b, s, n->node_id, epoch, n->ttl_ms);
  pthread_mutex_lock(&n->mu);
  if (rc == 0) {
    st->valid_until_ns = t0 + ms_to_ns(n->ttl_ms);
    st->renew_at_ns = t0 + n->renew_ns;
  } else if (rc == STEAD_ENOTOWNER) {
    lose(n, s);
  } else {
    /* The database is unreachable: keep trying until the bound passes. */
    st->renew_at_ns = stead__mono_ns() + n->retry_ns;
  }
}

/* One shard's step; returns when it next needs attention. Under mu. */
static int64_t manage_shard(stead__node *n, uint32_t s, int may_acquire) {
  shard_st *st = &n->sh[s];
  int64_t now = stead__mono_ns();
  if (st->state != SH_FREE && now >= st->valid_until_ns)
    lose(n, s);
  if (st->state == SH_OWNED && !n->want[s])
    start_drain(n, s);
  if (st->state == SH_DRAINING && st->drain_done)
    give_up(n, s);
  if (n->paused) {
    return st->state == SH_FREE ? INT64_MAX : st->valid_until_ns;
  }
  if (st->state != SH_FREE) {
    if (stead__mono_ns() >= st->renew_at_ns)
      renew(n, s);
  } else if (may_acquire && n->want[s] && stead__mono_ns() >= st->retry_at_ns &&
             stead__mono_ns() >= n->settle_until_ns) {
    acquire(n, s);
  }
  if (st->state != SH_FREE)
    return st->renew_at_ns < st->valid_until_ns ? st->renew_at_ns : st->valid_until_ns;
  if (!n->want[s])
    return INT64_MAX;
  return st->retry_at_ns > n->settle_until_ns ? st->retry_at_ns : n->settle_until_ns;
}

static void *manager_main(void *arg) {
  stead__node *n = arg;
  pthread_mutex_lock(&n->mu);
  while (!n->stop) {
    if (n->killed) {
      n->parked = 1;
      pthread_cond_broadcast(&n->idle_cv);
      pthread_cond_wait(&n->cv, &n->mu);
      continue;
    }
    uint64_t kicks = n->kicks;
    if (n->live_dirty || n->leaving)
      recompute_want(n);
    int64_t next = stead__mono_ns() + ms_to_ns(1000);
    /* Renewals first: an acquire may wait on a lease row another node's
     * transaction still locks (bounded by the lock timeout), and the
     * leases held must not expire meanwhile. Then acquires, for at most
     * half a renew interval per round, starting where the last round
     * stopped so every wanted shard gets its turn. */
    for (uint32_t s = 0; s < n->nshards && !n->stop && !n->killed; s++) {
      int64_t w = manage_shard(n, s, 0);
      if (w < next)
        next = w;
    }
    int64_t budget_end = stead__mono_ns() + n->renew_ns / 2;
    for (uint32_t k = 0; k < n->nshards && !n->stop && !n->killed; k++) {
      if (stead__mono_ns() >= budget_end) {
        next = stead__mono_ns(); /* go round again at once */
        break;
      }
      uint32_t s = (n->acq_cursor + k) % n->nshards;
      int64_t w = manage_shard(n, s, 1);
      if (w < next)
        next = w;
      n->acq_cursor = (s + 1) % n->nshards;
    }
    pthread_cond_broadcast(&n->idle_cv);
    if (n->kicks != kicks || n->stop || n->killed)
      continue;
    struct timespec ts;
    abs_ts(&ts, next);
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

static void on_members(const char *const *nodes, size_t count, void *udata) {
  stead__node *n = udata;
  size_t total = (count + 1) * sizeof(char *);
  for (size_t i = 0; i < count; i++)
    total += strlen(nodes[i]) + 1;
  char **set = malloc(total);
  if (!set)
    return; /* keep the old view; the next change brings a new one */
  char *w = (char *)(set + count + 1);
  for (size_t i = 0; i < count; i++) {
    size_t l = strlen(nodes[i]) + 1;
    memcpy(w, nodes[i], l);
    set[i] = w;
    w += l;
  }
  set[count] = NULL;
  pthread_mutex_lock(&n->mu);
  char **old = n->live;
  n->live = set;
  n->nlive = count;
  n->live_dirty = 1;
  kick_locked(n);
  pthread_mutex_unlock(&n->mu);
  free(old);
  if (n->rt.members)
    n->rt.members(n->rt.udata, nodes, count);
}

/* ---------------------------------------------------------------------
 * Questions the runtime asks.
 * ------------------------------------------------------------------- */

int stead__node_owns(stead__node *n, uint32_t shard) {
  if (!n || shard >= n->nshards)
    return 0;
  pthread_mutex_lock(&n->mu);
  shard_st *st = &n->sh[shard];
  int yes = st->state == SH_OWNED && stead__mono_ns() < st->valid_until_ns;
  pthread_mutex_unlock(&n->mu);
  return yes;
}

int stead__node_owner_epoch(stead__node *n, uint32_t shard, uint64_t *epoch) {
  if (!n || !epoch || shard >= n->nshards)
    return stead__err(STEAD_EINVAL, "bad node, shard or epoch pointer");
  pthread_mutex_lock(&n->mu);
  shard_st *st = &n->sh[shard];
  int held = st->state != SH_FREE && stead__mono_ns() < st->valid_until_ns;
  if (held)
    *epoch = st->epoch;
  pthread_mutex_unlock(&n->mu);
  if (!held)
    return stead__err(STEAD_ENOTOWNER, "node %s holds no lease on shard %u", n->node_id,
                      shard);
  return 0;
}

int stead__node_route(stead__node *n, const char *cls, const char *id,
                      stead__node_route_info *out) {
  if (!n || !out)
    return stead__err(STEAD_EINVAL, "node and out must not be NULL");
  int s = stead_shard_for_key(cls, id, n->nshards, n->seed);
  if (s < 0)
    return s;
  memset(out, 0, sizeof *out);
  out->shard = (uint32_t)s;
  pthread_mutex_lock(&n->mu);
  shard_st *st = &n->sh[s];
  if (st->state == SH_OWNED && stead__mono_ns() < st->valid_until_ns) {
    out->kind = STEAD__ROUTE_LOCAL;
    out->epoch = st->epoch;
    snprintf(out->owner, sizeof out->owner, "%s", n->node_id);
  } else {
    hint_locked(n, (uint32_t)s, out->owner, sizeof out->owner);
    out->kind = out->owner[0] ? STEAD__ROUTE_REMOTE : STEAD__ROUTE_UNKNOWN;
    if (!out->owner[0])
      snprintf(out->owner, sizeof out->owner, "%s", n->nlive ? n->node_id : "");
  }
  pthread_mutex_unlock(&n->mu);
  return 0;
}

/* ---------------------------------------------------------------------
 * Calls: send, retry "not owner" with backoff until the deadline.
 * ------------------------------------------------------------------- */

static void call_free(call *c) {
  stead__buf_free(&c->wire);
  free(c);
}

static void call_finish(call *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void call_finish(call *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  stead__verr(status, fmt, ap);
  va_end(ap);
  c->cb(status, NULL, c->udata);
  call_free(c);
}

static void on_call_reply(int status, const void *data, size_t len, void *udata);

/* A publish that failed with EIO (the connection broke while sending, as
 * when nats-server restarts) may still have reached the owner -- nats.c can
 * have flushed part of it, or resend it from its reconnect buffer -- so it
 * is neither "not sent" nor safe to resend: the caller is told the outcome
 * is unknown. */
static int publish_outcome(int rc) {
  if (rc != STEAD_EIO)
    return rc;
  return stead__err(STEAD_EUNKNOWN, "the request may or may not have been delivered: %s",
                    stead_errmsg());
}

static int call_send(call *c) {
  int64_t left_ms = (c->deadline_ns - stead__mono_ns()) / 1000000;
  if (left_ms <= 0)
    return STEAD_ETIMEDOUT;
  if (left_ms > INT32_MAX)
    left_ms = INT32_MAX;
  c->attempts++;
  return stead__nats_request(c->n->t, c->subject, c->wire.data, c->wire.len, (int)left_ms,
                             on_call_reply, c);
}

/* Queues a resend after the backoff, or ends the call if the deadline
 * comes first. Any thread. */
static void call_retry(call *c) {
  stead__node *n = c->n;
  int64_t now = stead__mono_ns();
  int64_t due = now + ms_to_ns(c->backoff_ms);
  if (due >= c->deadline_ns) {
    call_finish(c, STEAD_ENOTOWNER,
                "no owner of shard %u accepted the call before its deadline (%d "
                "attempts; last owner hint: %s)",
                c->shard, c->attempts, c->hint[0] ? c->hint : "none");
    return;
  }
  c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
  c->due_ns = due;
  cnt(&n->n_retries);
  pthread_mutex_lock(&n->rmu);
  if (n->rstop) {
    pthread_mutex_unlock(&n->rmu);
    call_finish(c, STEAD_ECLOSED, "the node closed before the call was answered");
    return;
  }
  call **p = &n->retries;
  while (*p && (*p)->due_ns <= due)
    p = &(*p)->next;
  c->next = *p;
  *p = c;
  pthread_cond_signal(&n->rcv);
  pthread_mutex_unlock(&n->rmu);
}

static void on_call_reply(int status, const void *data, size_t len, void *udata) {
  call *c = udata;
  if (status == STEAD_ENOTOWNER) { /* no subscriber: nothing was delivered */
    call_retry(c);
    return;
  }
  if (status != 0) {
    call_finish(c, status, "call to shard %u: %s", c->shard,
                status == STEAD_ETIMEDOUT
                    ? "no reply before the deadline (it may have run)"
                    : stead_strerror(status));
    return;
  }
  stead__env env;
  int rc = stead__env_decode(data, len, c->n->max_payload, 0, &env);
  if (rc == 0 && (env.corr != c->corr ||
                  (env.kind != STEAD__ENV_REPLY && env.kind != STEAD__ENV_ERROR)))
    rc = stead__err(STEAD_EPROTO, "reply of kind %d for call %llu answers call %llu",
                    (int)env.kind, (unsigned long long)env.corr,
                    (unsigned long long)c->corr);
  if (rc != 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    stead__env_free(&env);
    call_finish(c, rc == STEAD_ETOOBIG ? rc : STEAD_EPROTO, "bad reply: %s", msg);
    return;
  }
  if (env.kind == STEAD__ENV_ERROR && env.status == STEAD_ENOTOWNER) {
    const char *h = stead__env_header_get(&env, OWNER_HEADER);
    snprintf(c->hint, sizeof c->hint, "%s", h ? h : "");
    stead__env_free(&env);
    call_retry(c);
    return;
  }
  int st = env.kind == STEAD__ENV_ERROR ? env.status : 0;
  if (st != 0)
    stead__err(st, "%s",
               env.message && env.message[0] ? env.message : stead_strerror(st));
  c->cb(st, &env, c->udata);
  stead__env_free(&env);
  call_free(c);
}

static void *retry_main(void *arg) {
  stead__node *n = arg;
  pthread_mutex_lock(&n->rmu);
  while (!n->rstop) {
    call *c = n->retries;
    if (!c) {
      pthread_cond_wait(&n->rcv, &n->rmu);
      continue;
    }
    if (stead__mono_ns() < c->due_ns) {
      struct timespec ts;
      abs_ts(&ts, c->due_ns);
      pthread_cond_timedwait(&n->rcv, &n->rmu, &ts);
      continue;
    }
    n->retries = c->next;
    pthread_mutex_unlock(&n->rmu);
    int rc = call_send(c);
    if (rc == STEAD_ETIMEDOUT)
      call_finish(c, STEAD_ENOTOWNER,
                  "no owner of shard %u accepted the call before its deadline (%d "
                  "attempts)",
                  c->shard, c->attempts);
    else if (rc != 0) {
      rc = publish_outcome(rc);
      call_finish(c, rc, "call to shard %u: %s", c->shard, stead_errmsg());
    }
    pthread_mutex_lock(&n->rmu);
  }
  /* Closing: what waits for a resend ends now. */
  call *list = n->retries;
  n->retries = NULL;
  pthread_mutex_unlock(&n->rmu);
  while (list) {
    call *next = list->next;
    call_finish(list, STEAD_ECLOSED, "the node closed before the call was answered");
    list = next;
  }
  return NULL;
}

int stead__node_call(stead__node *n, const stead__env *req, int64_t deadline_ms,
                     stead__node_call_fn cb, void *udata) {
  if (!n || !req || !cb)
    return stead__err(STEAD_EINVAL, "node, request and callback must not be NULL");
  if (atomic_load(&n->left))
    return stead__err(STEAD_ECLOSED, "node %s has left the deployment", n->node_id);
  int64_t now_ms = stead__wall_ms();
  if (deadline_ms <= now_ms)
    return stead__err(STEAD_EINVAL, "the deadline must be in the future");
  int s = stead_shard_for_key(req->cls, req->id, n->nshards, n->seed);
  if (s < 0)
    return s;
  call *c = calloc(1, sizeof *c);
  if (!c)
    return stead__err(STEAD_ENOMEM, "out of memory starting a call");
  *c = (call){.n = n,
              .shard = (uint32_t)s,
              .cb = cb,
              .udata = udata,
              .backoff_ms = BACKOFF_MIN_MS};
  c->corr = atomic_fetch_add(&n->corr, 1) + 1;
  c->deadline_ns = stead__mono_ns() + ms_to_ns(deadline_ms - now_ms);
  stead__env e = *req;
  e.kind = STEAD__ENV_REQUEST;
  e.shard = (uint32_t)s;
  e.epoch = 0;
  e.corr = c->corr;
  e.created_ms = now_ms;
  e.deadline_ms = deadline_ms;
  e.ttl_ms = 0;
  e.status = 0;
  e.message = NULL;
  e.owned_ = NULL;
  /* The runtime is the only caller, and it marks what it forwards (events,
   * one-way sends) with reserved headers. */
  int rc = stead__env_encode(&e, n->max_payload, STEAD__ENV_INTERNAL, &c->wire);
  if (rc == 0)
    rc = stead__nats_shard_subject(c->subject, sizeof c->subject, n->deployment,
                                   (uint32_t)s);
  if (rc == 0 && (rc = call_send(c)) != 0 && rc != STEAD_ETIMEDOUT)
    rc = publish_outcome(rc);
  if (rc != 0) {
    call_free(c);
    return rc == STEAD_ETIMEDOUT ? stead__err(STEAD_EINVAL, "the deadline has passed")
                                 : rc;
  }
  cnt(&n->n_calls);
  return 0;
}

/* ---------------------------------------------------------------------
 * Status.
 * ------------------------------------------------------------------- */

int stead__node_status_get(stead__node *n, stead__node_status **out) {
  if (!n || !out)
    return stead__err(STEAD_EINVAL, "node and out must not be NULL");
  pthread_mutex_lock(&n->mu);
  int64_t now = stead__mono_ns();
  size_t nowned = 0, strs = strlen(n->node_id) + strlen(n->deployment) + 2;
  for (uint32_t s = 0; s < n->nshards; s++)
    nowned += n->sh[s].state != SH_FREE && now < n->sh[s].valid_until_ns;
  for (size_t i = 0; i < n->nlive; i++)
    strs += strlen(n->live[i]) + 1;
  size_t total = sizeof(stead__node_status) + nowned * sizeof(stead__node_shard_info) +
                 n->nlive * sizeof(char *) + strs;
  stead__node_status *st = calloc(1, total);
  if (!st) {
    pthread_mutex_unlock(&n->mu);
    return stead__err(STEAD_ENOMEM, "out of memory building the node status");
  }
  st->owned = (stead__node_shard_info *)(st + 1);
  char **members = (char **)(st->owned + nowned);
  char *w = (char *)(members + n->nlive);
  for (uint32_t s = 0; s < n->nshards; s++) {
    shard_st *sh = &n->sh[s];
    if (sh->state == SH_FREE || now >= sh->valid_until_ns)
      continue;
    st->owned[st->nowned++] = (stead__node_shard_info){
        s, sh->epoch, sh->state == SH_DRAINING, (sh->valid_until_ns - now) / 1000000};
  }
  for (size_t i = 0; i < n->nlive; i++) {
    size_t l = strlen(n->live[i]) + 1;
    memcpy(w, n->live[i], l);
    members[i] = w;
    w += l;
  }
  st->members = (const char *const *)members;
  st->nmembers = n->nlive;
  pthread_mutex_unlock(&n->mu);
  size_t l = strlen(n->node_id) + 1;
  memcpy(w, n->node_id, l);
  st->node_id = w;
  w += l;
  memcpy(w, n->deployment, strlen(n->deployment) + 1);
  st->deployment = w;
  st->nshards = n->nshards;
  st->acquired = cnt_get(&n->n_acquired);
  st->released = cnt_get(&n->n_released);
  st->lost = cnt_get(&n->n_lost);
  st->acquire_failures = cnt_get(&n->n_acq_fail);
  st->malformed = cnt_get(&n->n_malformed);
  st->expired = cnt_get(&n->n_expired);
  st->not_owner = cnt_get(&n->n_not_owner);
  st->calls = cnt_get(&n->n_calls);
  st->call_retries = cnt_get(&n->n_retries);
  *out = st;
  return 0;
}

/* ---------------------------------------------------------------------
 * Open and close.
 * ------------------------------------------------------------------- */

static int check_opts(const stead__node_opts *o) {
  if (!o)
    return stead__err(STEAD_EINVAL, "options must not be NULL");
  int rc = stead__nats_check_deployment(o->deployment);
  if (rc == 0)
    rc = stead__check_name("node_id", o->node_id);
  if (rc != 0)
    return rc;
  if (o->nshards < 1 || o->nshards > STEAD_MAX_SHARDS)
    return stead__err(STEAD_EINVAL, "nshards must be 1..%d, not %u", STEAD_MAX_SHARDS,
                      o->nshards);
  if (!o->nats_url || !o->nats_url[0])
    return stead__err(STEAD_EINVAL, "nats_url is required");
  if (!o->backend)
    return stead__err(STEAD_EINVAL, "a backend is required (it holds the leases)");
  if (!stead__pg_is(o->backend))
    return stead__err(STEAD_ENOTSUP,
                      "cluster nodes need a postgres backend for shard "
                      "leases, not %s",
                      o->backend->vt->name);
  if (o->lease_ttl_ms < 100 || o->lease_ttl_ms > 1000000000)
    return stead__err(STEAD_EINVAL, "lease_ttl_ms must be 100..1000000000, not %d",
                      o->lease_ttl_ms);
  if (o->renew_ms < 0 || o->renew_ms >= o->lease_ttl_ms)
    return stead__err(STEAD_EINVAL, "renew_ms (%d) must be below lease_ttl_ms (%d)",
                      o->renew_ms, o->lease_ttl_ms);
  if (o->acquire_retry_ms <= 0 || o->config_wait_ms <= 0 || o->delivery_threads < 0)
    return stead__err(STEAD_EINVAL, "acquire_retry_ms and config_wait_ms must be > 0, "
                                    "delivery_threads >= 0");
  if (!o->rt.handle || !o->rt.drain || !o->rt.lost)
    return stead__err(STEAD_EINVAL, "the runtime must provide handle, drain and lost");
  return 0;
}

static void on_ping(stead__nats_replier *r, const void *data, size_t len, void *u) {
  stead__node *n = u;
  if (r)
    (void)stead__nats_respond(r, n->node_id, strlen(n->node_id));
}

static void node_free(stead__node *n) {
  free(n->sh);
  free(n->sctx);
  free(n->want);
  free(n->scratch);
  free(n->live);
  free(n->deployment);
  free(n->node_id);
  free(n->seed);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  pthread_cond_destroy(&n->idle_cv);
  pthread_mutex_destroy(&n->rmu);
  pthread_cond_destroy(&n->rcv);
  free(n);
}

static stead__node *node_alloc(const stead__node_opts *o) {
  stead__node *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, &ca);
  pthread_cond_init(&n->idle_cv, &ca);
  pthread_mutex_init(&n->rmu, NULL);
  pthread_cond_init(&n->rcv, &ca);
  pthread_condattr_destroy(&ca);
  n->nshards = o->nshards;
  n->deployment = stead__strdup(o->deployment);
  n->node_id = stead__strdup(o->node_id);
  n->seed = o->seed ? stead__strdup(o->seed) : NULL;
  n->sh = calloc(o->nshards, sizeof *n->sh);
  n->sctx = calloc(o->nshards, sizeof *n->sctx);
  n->want = calloc(o->nshards, 1);
  n->scratch = calloc(o->nshards, sizeof *n->scratch);
  if (!n->deployment || !n->node_id || (o->seed && !n->seed) || !n->sh || !n->sctx ||
      !n->want || !n->scratch) {
    node_free(n);
    return NULL;
  }
  for (uint32_t s = 0; s < o->nshards; s++)
    n->sctx[s] = (shard_ctx){n, s};
  n->b = o->backend;
  n->rt = o->rt;
  n->ttl_ms = o->lease_ttl_ms;
  n->renew_ns = ms_to_ns(o->renew_ms ? o->renew_ms : o->lease_ttl_ms / 3);
  n->retry_ns = ms_to_ns(o->acquire_retry_ms);
  /* A node that just started sees only itself until the peers' next
   * heartbeats; acquiring then would grab every free shard only to drain
   * most of them a moment later. */
  if (!o->static_hosts)
    n->settle_until_ns = stead__mono_ns() + 2 * ms_to_ns(o->heartbeat_ms);
  n->max_payload = o->max_payload ? o->max_payload : STEAD__ENV_DEFAULT_MAX_PAYLOAD;
  return n;
}

/* ---------------------------------------------------------------------
 * Events: every node publishes its bus events on "<deployment>.events"
 * and hears everyone's (its own are skipped by origin).
 * ------------------------------------------------------------------- */

#define ORIGIN_HEADER "x-stead-origin"
#define EVENT_CLASS   "stead.event"

static void on_event_msg(stead__nats_replier *r, const void *data, size_t len, void *u) {
  stead__node *n = u;
  if (r)
    stead__nats_replier_drop(r); /* events are one-way */
  stead__env env;
  int rc = stead__env_decode(data, len, n->max_payload, 0, &env);
  if (rc == 0 && (env.kind != STEAD__ENV_ONEWAY || strcmp(env.cls, EVENT_CLASS) != 0))
    rc = STEAD_EPROTO;
  if (rc != 0) {
    cnt(&n->n_malformed);
    stead__env_free(&env);
    return;
  }
  const char *origin = stead__env_header_get(&env, ORIGIN_HEADER);
  if (!origin || strcmp(origin, n->node_id) != 0)
    n->rt.event(n->rt.udata, env.id, env.payload, env.payload_len);
  stead__env_free(&env);
}

int stead__node_emit(stead__node *n, const char *topic, const void *payload, size_t len) {
  if (!n || !topic)
    return stead__err(STEAD_EINVAL, "node and topic must not be NULL");
  if (atomic_load(&n->left))
    return stead__err(STEAD_ECLOSED, "node %s has left the deployment", n->node_id);
  stead__env_header h = {ORIGIN_HEADER, n->node_id};
  stead__env e;
  memset(&e, 0, sizeof e);
  e.kind = STEAD__ENV_ONEWAY;
  e.cls = EVENT_CLASS;
  e.id = topic;
  e.method = "emit";
  e.headers = &h;
  e.nheaders = 1;
  e.created_ms = stead__wall_ms();
  e.payload = payload;
  e.payload_len = len;
  stead__buf wire = {0};
  int rc = stead__env_encode(&e, n->max_payload, STEAD__ENV_INTERNAL, &wire);
  if (rc == 0)
    rc = stead__nats_publish(n->t, n->events_subject, wire.data, wire.len);
  stead__buf_free(&wire);
  return rc;
}

/* ---------------------------------------------------------------------
 * Direct one-ways: "<deployment>.node.<id>.conn" carries what one node
 * sends another by name (a connection's traffic towards its client).
 * ------------------------------------------------------------------- */

static int direct_subject(char *buf, size_t cap, const stead__node *n, const char *id) {
  int w = snprintf(buf, cap, "%s.node.%s.conn", n->deployment, id);
  return w > 0 && (size_t)w < cap ? 0 : STEAD_ETOOBIG;
}

static void on_direct_msg(stead__nats_replier *r, const void *data, size_t len, void *u) {
  stead__node *n = u;
  if (r)
    stead__nats_replier_drop(r);
  stead__env env;
  int rc = stead__env_decode(data, len, n->max_payload, 0, &env);
  if (rc == 0 && env.kind != STEAD__ENV_ONEWAY)
    rc = STEAD_EPROTO;
  if (rc == 0)
    n->rt.direct(n->rt.udata, &env);
  else
    cnt(&n->n_malformed);
  stead__env_free(&env);
}

int stead__node_send(stead__node *n, const char *node_id, const stead__env *env) {
  if (!n || !env)
    return stead__err(STEAD_EINVAL, "node and envelope must not be NULL");
  int rc = stead__check_name("node id", node_id);
  if (rc)
    return rc;
  if (atomic_load(&n->left))
    return stead__err(STEAD_ECLOSED, "node %s has left the deployment", n->node_id);
  char subject[STEAD__MAX_NAME + 192];
  if (direct_subject(subject, sizeof subject, n, node_id) != 0)
    return stead__err(STEAD_ETOOBIG, "node id \"%s\" is too long", node_id);
  stead__env e = *env;
  e.kind = STEAD__ENV_ONEWAY;
  if (!e.created_ms)
    e.created_ms = stead__wall_ms();
  stead__buf wire = {0};
  rc = stead__env_encode(&e, n->max_payload, STEAD__ENV_INTERNAL, &wire);
  if (rc == 0)
    rc = stead__nats_publish(n->t, subject, wire.data, wire.len);
  stead__buf_free(&wire);
  return rc;
}

const char *stead__node_id(const stead__node *n) {
  return n->node_id;
}

static int start_transport(stead__node *n, const stead__node_opts *o) {
  stead__nats_opts no;
  stead__nats_opts_init(&no);
  no.url = o->nats_url;
  no.name = o->node_id;
  no.delivery_pool = o->delivery_threads;
  /* A node lives as long as its process: after nats-server comes back it
   * must rejoin, however long the outage. With a bounded number of
   * attempts nats.c closes the connection for good (60 x 250 ms: an outage
   * of 15 s) and the node stays cut off, alone in its membership view,
   * until restarted (found by the cluster fault campaign). */
  no.max_reconnect = -1;
  int rc = stead__nats_open(&no, &n->t);
  if (rc != 0)
    return rc;
  char subject[256];
  snprintf(subject, sizeof subject, "%s.node.%s", n->deployment, n->node_id);
  rc = stead__nats_serve(n->t, subject, NULL, on_ping, n, &n->anchor);
  snprintf(n->events_subject, sizeof n->events_subject, "%s.events", n->deployment);
  if (rc == 0 && n->rt.event)
    rc = stead__nats_serve(n->t, n->events_subject, NULL, on_event_msg, n, &n->events);
  if (rc == 0 && n->rt.direct) {
    if (direct_subject(subject, sizeof subject, n, n->node_id) != 0)
      return stead__err(STEAD_ETOOBIG, "node id \"%s\" is too long", n->node_id);
    rc = stead__nats_serve(n->t, subject, NULL, on_direct_msg, n, &n->direct);
  }
  return rc;
}

static int start_threads(stead__node *n, const stead__node_opts *o) {
  if (pthread_create(&n->rtr, NULL, retry_main, n) != 0)
    return stead__err(STEAD_EIO, "cannot start the call retry thread");
  n->has_rtr = 1;
  if (pthread_create(&n->mgr, NULL, manager_main, n) != 0)
    return stead__err(STEAD_EIO, "cannot start the shard manager thread");
  n->has_mgr = 1;
  stead__members_opts mo;
  stead__members_opts_init(&mo);
  mo.deployment = o->deployment;
  mo.node_id = o->node_id;
  mo.heartbeat_ms = o->heartbeat_ms;
  mo.expire_ms = o->expire_ms;
  mo.static_hosts = o->static_hosts;
  mo.on_change = on_members;
  mo.udata = n;
  return stead__members_open(n->t, &mo, &n->m);
}

int stead__node_open(const stead__node_opts *o, stead__node **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out must not be NULL");
  *out = NULL;
  int rc = check_opts(o);
  if (rc != 0)
    return rc;
  stead__node *n = node_alloc(o);
  if (!n)
    return stead__err(STEAD_ENOMEM, "out of memory opening the cluster node");
  rc = config_check(n, o->config_wait_ms);
  if (rc == 0)
    rc = start_transport(n, o);
  if (rc == 0)
    rc = start_threads(n, o);
  if (rc != 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    stead__node_close(n);
    return stead__err(rc, "%s", msg);
  }
  *out = n;
  return 0;
}

void stead__node_test_pause_leases(stead__node *n, int on) {
  pthread_mutex_lock(&n->mu);
  n->paused = on;
  kick_locked(n);
  pthread_mutex_unlock(&n->mu);
}

void stead__node_test_kill(stead__node *n) {
  pthread_mutex_lock(&n->mu);
  n->killed = 1;
  kick_locked(n);
  while (n->has_mgr && !n->parked)
    pthread_cond_wait(&n->idle_cv, &n->mu);
  pthread_mutex_unlock(&n->mu);
  stead__nats_close(n->t);
}

static int busy_locked(stead__node *n) {
  if (n->tickets > 0)
    return 1;
  if (n->killed)
    return 0;
  for (uint32_t s = 0; s < n->nshards; s++)
    if (n->sh[s].state != SH_FREE)
      return 1;
  return 0;
}

void stead__node_leave(stead__node *n) {
  if (!n || atomic_exchange(&n->left, 1))
    return;
  /* Leave first: peers stop routing here and start acquiring, and get the
   * leases as soon as the drains below release them. */
  stead__members_close(n->m);
  n->m = NULL;
  pthread_mutex_lock(&n->mu);
  n->leaving = 1;
  /* Hints name the next owner, never this node. */
  size_t k = 0;
  for (size_t i = 0; i < n->nlive; i++)
    if (strcmp(n->live[i], n->node_id) != 0)
      n->live[k++] = n->live[i];
  n->nlive = k;
  n->paused = 0;
  kick_locked(n);
  while (n->has_mgr && busy_locked(n))
    pthread_cond_wait(&n->idle_cv, &n->mu);
  n->stop = 1;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
  if (n->has_mgr)
    pthread_join(n->mgr, NULL);
  pthread_mutex_lock(&n->rmu);
  n->rstop = 1;
  pthread_cond_signal(&n->rcv);
  pthread_mutex_unlock(&n->rmu);
  if (n->has_rtr)
    pthread_join(n->rtr, NULL);
  if (!n->killed)
    stead__nats_close(n->t); /* pending calls end with ECLOSED */
  for (uint32_t s = 0; s < n->nshards; s++) {
    stead__nats_unserve(n->sh[s].sub);
    n->sh[s].sub = NULL;
  }
  stead__nats_unserve(n->events);
  n->events = NULL;
  stead__nats_unserve(n->direct);
  n->direct = NULL;
}

void stead__node_close(stead__node *n) {
  if (!n)
    return;
  stead__node_leave(n);
  /* Only now: a call racing with leave may still touch the (closed)
   * transport, whose memory the anchor keeps. */
  if (n->anchor)
    stead__nats_unserve(n->anchor);
  node_free(n);
}

/* ---- the runtime's seam (node.h) ---------------------------------------- */

static int ops_owns(void *self, uint32_t shard) {
  return stead__node_owns(self, shard);
}

static int ops_owner_epoch(void *self, uint32_t shard, uint64_t *epoch) {
  return stead__node_owner_epoch(self, shard, epoch);
}

static int ops_route(void *self, const char *cls, const char *id,
                     stead__node_route_info *out) {
  return stead__node_route(self, cls, id, out);
}

static int ops_call(void *self, const stead__env *req, int64_t deadline_ms,
                    stead__node_call_fn cb, void *udata) {
  return stead__node_call(self, req, deadline_ms, cb, udata);
}

static int ops_respond(void *self, stead__node_replier *r, int status,
                       const void *payload, size_t len, const char *message) {
  (void)self;
  return stead__node_respond(r, status, payload, len, message);
}

static int ops_emit(void *self, const char *topic, const void *payload, size_t len) {
  return stead__node_emit(self, topic, payload, len);
}

static int ops_status_get(void *self, stead__node_status **out) {
  return stead__node_status_get(self, out);
}

static void ops_leave(void *self) {
  stead__node_leave(self);
}

static void ops_close(void *self) {
  stead__node_close(self);
}

static int ops_send(void *self, const char *node_id, const stead__env *env) {
  return stead__node_send(self, node_id, env);
}

static const char *ops_id(void *self) {
  return stead__node_id(self);
}

const stead__node_ops stead__node_real_ops = {
    .owns = ops_owns,
    .owner_epoch = ops_owner_epoch,
    .route = ops_route,
    .call = ops_call,
    .respond = ops_respond,
    .emit = ops_emit,
    .status_get = ops_status_get,
    .leave = ops_leave,
    .close = ops_close,
    .send = ops_send,
    .id = ops_id,
};
