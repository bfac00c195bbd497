/*
 * lease.c -- the cluster's shard leases under simulation: nodes that join,
 * die, pause (SIGSTOP) and resume, against an in-simulation model of the
 * shared store's compare-and-set, with message delays and lost replies.
 *
 * This is a MODEL of src/cluster/node.c's per-shard state machine, not
 * node.c itself: node.c interleaves its decisions with blocking calls to
 * PostgreSQL and NATS under its mutex, and extracting them would have
 * meant rewriting it. The model keeps node.c's rules exactly:
 *   - acquire when the shard is wanted (rendezvous hashing over the nodes
 *     this node believes alive) and free; on success the tenure is valid
 *     until t0 + ttl and renewed at t0 + ttl/3, where t0 is when the
 *     request was SENT (lease.h: the store's expiry is at least t0 + ttl);
 *   - renew at renew_at; ENOTOWNER loses the shard, a lost reply retries;
 *   - past valid_until the node gives the shard up without asking anyone;
 *   - a shard no longer wanted is released (the release is best effort);
 *   - the node acts for a shard (activates, commits) only while it owns it
 *     and its local clock is before valid_until (node.c's owns()).
 * The store (lease.h) is: acquire if free, expired or already ours (then
 * same epoch), else ENOTOWNER; a new tenure bumps the epoch; renew and
 * release only for the current unexpired tenure; expiry by the store's
 * clock; and a commit carrying (shard, epoch) is accepted only while that
 * tenure is current and unexpired (fencing).
 *
 * Invariants, checked after every event: no two owners have commits
 * accepted for one (shard, epoch); an accepted commit is from the current
 * tenure; no commit from a node is accepted while it is paused past its
 * lease; and no two nodes believe they own one shard at the same instant
 * (single activation). Local clocks here run at the store's rate; a
 * clock that runs slow would break the last one, which docs/cluster.md
 * lists as an assumption.
 */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NNODES  4
#define NSHARDS 6
#define TTL_MS  1000
#define MAXMSG  256

typedef enum { SH_FREE, SH_OWNED } shstate;

typedef struct shard_st {
  shstate state;
  uint64_t epoch;
  int64_t valid_until, renew_at, retry_at;
  int pending; /* a request for this shard is in flight */
} shard_st;

typedef struct node {
  int alive;         /* joined and not killed */
  int64_t paused_to; /* paused until this time (0: running) */
  int64_t paused_at;
  /* node.c's manager thread makes one blocking lease call at a time, so a
   * node never has two lease requests in flight (its own requests cannot
   * overtake each other). */
  int busy;
  shard_st sh[NSHARDS];
} node;

typedef struct lrow {
  int owner; /* -1: never held */
  uint64_t epoch;
  int64_t expires;
} lrow;

typedef enum { M_ACQ, M_RENEW, M_REL, M_COMMIT, M_ACQ_R, M_RENEW_R } mkind;

typedef struct msg {
  int64_t at;
  mkind kind;
  int node, shard;
  uint64_t epoch;
  int64_t t0; /* when the request was sent (node's clock) */
  int rc;
} msg;

typedef struct lsim {
  stead__sim *s;
  int64_t now; /* ms; the store's clock and every node's */
  node n[NNODES];
  lrow row[NSHARDS];
  int commit_owner[NSHARDS][64]; /* (shard, epoch % 64) -> node + 1 */
  uint64_t commit_epoch[NSHARDS][64];
  msg q[MAXMSG];
  int nq;
  stead__sim_report *r;
  int bug; /* tests: measure validity from the reply (wrong) */
} lsim;

static int paused(const lsim *l, int i) {
  return l->n[i].paused_to > l->now;
}

/* Rendezvous hashing over the nodes this node counts as members: alive
 * ones that are not paused (a paused node misses heartbeats; the others
 * count it gone -- the model makes that immediate, the harder case). */
static int want(const lsim *l, int me, int s) {
  uint64_t best = 0;
  int who = -1;
  for (int i = 0; i < NNODES; i++) {
    if (!l->n[i].alive || (i != me && paused(l, i)))
      continue;
    uint64_t h = (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL ^
                 (uint64_t)(s + 1) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    if (who < 0 || h > best) {
      best = h;
      who = i;
    }
  }
  return who == me;
}

static void send_msg(lsim *l, mkind k, int who, int shard, uint64_t epoch) {
  if (l->nq == MAXMSG)
    return; /* the network is saturated: the message is lost */
  msg *m = &l->q[l->nq++];
  m->at = l->now + 1 + (int64_t)stead__sim_rand(l->s, 80);
  m->kind = k;
  m->node = who;
  m->shard = shard;
  m->epoch = epoch;
  m->t0 = l->now;
  m->rc = 0;
}

static void reply(lsim *l, const msg *req, mkind k, int rc, uint64_t epoch) {
  if (stead__sim_rand(l->s, 20) == 0) {
    /* The reply is lost: the call fails (ESTORAGE) and the node retries
     * later. Like a blocking call that timed out, it is over for the node. */
    l->r->lease_lost_replies++;
    l->n[req->node].sh[req->shard].pending = 0;
    l->n[req->node].busy = 0;
    return;
  }
  msg m = *req;
  m.kind = k;
  m.rc = rc;
  m.epoch = epoch;
  m.at = l->now + 1 + (int64_t)stead__sim_rand(l->s, 80);
  if (l->nq < MAXMSG) {
    l->q[l->nq++] = m;
  } else {
    l->n[req->node].sh[req->shard].pending = 0;
    l->n[req->node].busy = 0;
  }
}

/* ---- the store --------------------------------------------------------- */

static int held(const lsim *l, int s) {
  return l->row[s].owner >= 0 && l->now < l->row[s].expires;
}

static void store(lsim *l, const msg *m) {
  lrow *w = &l->row[m->shard];
  switch (m->kind) {
  case M_ACQ:
    if (held(l, m->shard) && w->owner != m->node) {
      reply(l, m, M_ACQ_R, STEAD_ENOTOWNER, 0);
      return;
    }
    if (!held(l, m->shard)) {
      w->epoch++; /* a new tenure */
      w->owner = m->node;
      l->r->lease_epochs++;
    }
    w->expires = l->now + TTL_MS;
    reply(l, m, M_ACQ_R, 0, w->epoch);
    return;
  case M_RENEW:
    if (held(l, m->shard) && w->owner == m->node && w->epoch == m->epoch) {
      w->expires = l->now + TTL_MS;
      reply(l, m, M_RENEW_R, 0, w->epoch);
    } else {
      reply(l, m, M_RENEW_R, STEAD_ENOTOWNER, 0);
    }
    return;
  case M_REL:
    if (held(l, m->shard) && w->owner == m->node && w->epoch == m->epoch)
      w->expires = l->now;  /* free at once */
    l->n[m->node].busy = 0; /* the release call returned */
    return;
  case M_COMMIT: {
    int ok = held(l, m->shard) && w->owner == m->node && w->epoch == m->epoch;
    if (!ok) {
      l->r->lease_commits_fenced++;
      return;
    }
    l->r->lease_commits++;
    int slot = (int)(m->epoch % 64);
    int *own = &l->commit_owner[m->shard][slot];
    if (l->commit_epoch[m->shard][slot] != m->epoch) {
      l->commit_epoch[m->shard][slot] = m->epoch;
      *own = 0;
    }
    stead__sim_check(l->s, *own == 0 || *own == m->node + 1,
                     "two owners committed for shard %d epoch %" PRIu64
                     ": nodes %d and %d",
                     m->shard, m->epoch, *own - 1, m->node);
    *own = m->node + 1;
    /* A node paused (or slow) past its lease commits nothing: whatever
     * reaches the store is from the newest tenure, still unexpired by the
     * store's clock. */
    stead__sim_check(l->s, m->epoch == w->epoch && l->now < w->expires,
                     "node %d committed on shard %d with stale epoch %" PRIu64
                     " (current %" PRIu64 ")",
                     m->node, m->shard, m->epoch, w->epoch);
    return;
  }
  default:
    return;
  }
}

/* ---- the nodes (node.c's rules) ---------------------------------------- */

static void lose(node *nd, int s) {
  nd->sh[s].state = SH_FREE;
  nd->sh[s].retry_at = 0;
}

static void on_reply(lsim *l, const msg *m) {
  node *nd = &l->n[m->node];
  shard_st *st = &nd->sh[m->shard];
  st->pending = 0;
  nd->busy = 0;
  if (!nd->alive)
    return;
  if (m->kind == M_ACQ_R) {
    if (m->rc != 0) {
      st->retry_at = l->now + 100;
      return;
    }
    st->state = SH_OWNED;
    st->epoch = m->epoch;
    /* Measured from the request (lease.h); the planted bug of the tests
     * measures from the reply instead. */
    int64_t from = l->bug ? l->now : m->t0;
    st->valid_until = from + TTL_MS;
    st->renew_at = m->t0 + TTL_MS / 3;
  } else if (m->kind == M_RENEW_R && st->state == SH_OWNED && st->epoch == m->epoch) {
    st->valid_until = (l->bug ? l->now : m->t0) + TTL_MS;
    st->renew_at = m->t0 + TTL_MS / 3;
  } else if (m->kind == M_RENEW_R && m->rc == STEAD_ENOTOWNER && st->state == SH_OWNED) {
    lose(nd, m->shard);
  }
}

static int owns(const lsim *l, int i, int s) {
  const shard_st *st = &l->n[i].sh[s];
  return l->n[i].alive && st->state == SH_OWNED && l->now < st->valid_until;
}

/* manage_shard: one pass of a running node over one shard. */
static void manage(lsim *l, int i, int s) {
  node *nd = &l->n[i];
  shard_st *st = &nd->sh[s];
  if (st->state != SH_FREE && l->now >= st->valid_until)
    lose(nd, s);
  if (st->pending || nd->busy)
    return;
  int w = want(l, i, s);
  if (st->state == SH_OWNED && !w) {
    nd->busy = 1;
    send_msg(l, M_REL, i, s, st->epoch);
    lose(nd, s);
    return;
  }
  if (st->state == SH_OWNED && l->now >= st->renew_at) {
    st->pending = nd->busy = 1;
    send_msg(l, M_RENEW, i, s, st->epoch);
  } else if (st->state == SH_FREE && w && l->now >= st->retry_at) {
    st->pending = nd->busy = 1;
    send_msg(l, M_ACQ, i, s, 0);
  }
}

static void check_single_owner(lsim *l) {
  for (int s = 0; s < NSHARDS; s++) {
    int who = -1;
    for (int i = 0; i < NNODES; i++) {
      if (!owns(l, i, s))
        continue;
      stead__sim_check(l->s, who < 0, "nodes %d and %d both own shard %d at %lld ms", who,
                       i, s, (long long)l->now);
      who = i;
    }
  }
}

/* Delivers every message due by now, in (time, queue order). */
static void deliver(lsim *l) {
  for (;;) {
    int k = -1;
    for (int i = 0; i < l->nq; i++)
      if (l->q[i].at <= l->now && (k < 0 || l->q[i].at < l->q[k].at))
        k = i;
    if (k < 0)
      return;
    msg m = l->q[k];
    memmove(&l->q[k], &l->q[k + 1], (size_t)(l->nq - k - 1) * sizeof m);
    l->nq--;
    if (m.kind == M_ACQ_R || m.kind == M_RENEW_R) {
      if (paused(l, m.node)) { /* handled when it resumes */
        m.at = l->n[m.node].paused_to;
        l->q[l->nq++] = m;
        continue;
      }
      on_reply(l, &m);
    } else {
      store(l, &m);
    }
  }
}

static void event(lsim *l) {
  int i = (int)stead__sim_rand(l->s, NNODES);
  node *nd = &l->n[i];
  uint64_t k = stead__sim_rand(l->s, 1000);
  if (k < 8 && nd->alive) { /* kill -9: its state is gone */
    memset(nd, 0, sizeof *nd);
    for (int j = 0; j < l->nq; j++)
      if (l->q[j].node == i && (l->q[j].kind == M_ACQ_R || l->q[j].kind == M_RENEW_R))
        l->q[j].at = l->now; /* replies to a dead node vanish below */
    l->r->lease_kills++;
  } else if (k < 30 && !nd->alive) { /* (re)join */
    nd->alive = 1;
    l->r->lease_joins++;
  } else if (k < 40 && nd->alive && !paused(l, i)) { /* SIGSTOP for a while */
    nd->paused_at = l->now;
    nd->paused_to = l->now + 100 + (int64_t)stead__sim_rand(l->s, 3 * TTL_MS);
    l->r->lease_pauses++;
  } else if (k < 400 && nd->alive) {
    /* A commit: a turn of an object of a shard this node acts for; it
     * reaches the store after the network's delay -- maybe after a pause
     * began, or after the lease ran out. */
    int s = (int)stead__sim_rand(l->s, NSHARDS);
    if (!paused(l, i) && owns(l, i, s))
      send_msg(l, M_COMMIT, i, s, nd->sh[s].epoch);
  }
}

void stead__sim_lease_run(stead__sim *s, int steps, int bug) {
  lsim *l = calloc(1, sizeof *l);
  if (!l) {
    stead__sim_check(s, 0, "lease model: out of memory");
    return;
  }
  l->s = s;
  l->bug = bug;
  l->r = stead__sim_report_of(s);
  l->now = 1000;
  for (int sh = 0; sh < NSHARDS; sh++)
    l->row[sh].owner = -1;
  for (int i = 0; i < NNODES; i++)
    l->n[i].alive = i < 2;
  for (int step = 0; step < steps; step++) {
    l->now += 1 + (int64_t)stead__sim_rand(s, 40);
    for (int i = 0; i < NNODES; i++)
      if (!l->n[i].alive) /* drop replies owed to the dead */
        for (int j = 0; j < l->nq; j++)
          if (l->q[j].node == i &&
              (l->q[j].kind == M_ACQ_R || l->q[j].kind == M_RENEW_R)) {
            memmove(&l->q[j], &l->q[j + 1], (size_t)(l->nq - j - 1) * sizeof l->q[0]);
            l->nq--;
            j--;
          }
    deliver(l);
    event(l);
    for (int i = 0; i < NNODES; i++)
      if (l->n[i].alive && !paused(l, i))
        for (int sh = 0; sh < NSHARDS; sh++)
          manage(l, i, sh);
    check_single_owner(l);
  }
  stead__sim_trace(s, "lease epochs=%" PRIu64 " commits=%" PRIu64 " fenced=%" PRIu64,
                   l->r->lease_epochs, l->r->lease_commits, l->r->lease_commits_fenced);
  free(l);
}
