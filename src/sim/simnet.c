/*
 * simnet.c -- the cluster under deterministic simulation: K runtimes (2..4)
 * in manual mode, each a cluster node whose node is simulated here, all
 * driven by one seed on one thread.
 *
 * What is real: every runtime's cluster code (src/core/cluster.c: routing,
 * forwarding, "not owner" re-routing of local calls, the activation fence,
 * draining and emptying shards, the duplicate defence, cross-node events),
 * the envelope encoding of every message, the committer and the store.
 * What is simulated: the node (src/cluster/node.c's role) and everything
 * under it --
 *   - leases: a store of (owner, epoch, expires) rows with node.c's
 *     compare-and-set rules, expiry by the virtual clock; each node's
 *     manager pass acquires what rendezvous hashing over the live members
 *     gives it, renews at ttl/3, drains (drain -> done -> released ->
 *     release) what it no longer should own, and loses a shard past its
 *     validity without asking;
 *   - the store: one shared backend (simbe.c) fenced by the lease rows,
 *     as PostgreSQL is;
 *   - the network: every request, reply and event is a message on a
 *     connection (sender node, receiver node). A connection is FIFO, as a
 *     NATS connection is; the driver delivers the head of a connection it
 *     picks by the seed, so messages of different connections overtake
 *     each other, some are dropped and some delivered twice. Requests to a
 *     shard nobody serves ("no responders") and "not owner" answers are
 *     retried with node.c's backoff until the caller's deadline;
 *   - faults: kills (the process is gone: its store handle fails, its
 *     messages vanish, its leases run out), clean restarts (leave: drain
 *     and release), pauses (nothing of the node runs, its messages wait,
 *     its leases expire), commit failures.
 *
 * Invariants: no acknowledged increment is lost, none failed is stored, no
 * increment runs twice (the handler sees its own op key), counters equal
 * their stored ops; the store accepts a commit only from the current,
 * unexpired tenure and never from two nodes for one (shard, epoch); per
 * sender FIFO between objects while neither side's shard moved (see
 * docs/semantics.md); an event reaches a subscriber at most once, only
 * from an emit that was not refused, and only if its pattern matches.
 *
 * Threads: none; everything runs on the caller's thread.
 */
#include "cluster/envelope.h"
#include "cluster/node.h"
#include "sim/sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAXN         4
#define NSHARDS      8
#define TTL_MS       1000
#define WALL_BASE_MS INT64_C(1700000000000)
#define MAX_RUNNABLE 1024
#define MS           INT64_C(1000000)
#define NCTR         4
#define NRELAY       2
#define NSND         3
#define NRCV         3
#define NPUB         2
#define NSUB         3
#define NSENDERS     (NSND + MAXN) /* snd objects, then the client via node i */
#define MAXOPS       65536
#define MAX_PAYLOAD  STEAD__ENV_DEFAULT_MAX_PAYLOAD

typedef struct simnet simnet;

/* ---- state ----------------------------------------------------------- */

typedef enum { SH_FREE, SH_OWNED, SH_DRAINING } shstate;

typedef struct shard_st {
  shstate st;
  uint64_t epoch;
  int64_t valid_until, renew_at; /* ns */
  int drain_done;
} shard_st;

/* A call in flight from a node (stead__node_call). */
typedef struct pcall {
  struct pcall *next;
  uint64_t corr;
  uint32_t shard;
  stead__buf wire; /* the encoded request */
  int64_t deadline_ms;
  int64_t retry_at_ms; /* > 0: refused, waiting to go again */
  int backoff_ms;
  int attempt; /* answers to earlier attempts are stale */
  stead__node_call_fn cb;
  void *udata;
} pcall;

typedef struct snode {
  simnet *net;
  int idx;
  char id[16];
  stead_rt *rt;
  stead__backend *be; /* the runtime's store handle (it owns it) */
  stead__node_runtime cb;
  int joined;  /* node open and not left */
  int dying;   /* being killed: nothing it does reaches anyone */
  int leaving; /* leaving cleanly: no longer a member */
  int incarnation;
  int64_t paused_to;  /* ns; nothing of it runs before */
  int64_t restart_at; /* ns; down until (0: up) */
  shard_st sh[NSHARDS];
  pcall *calls;
  uint64_t corr;
} snode;

typedef enum { M_REQ, M_REP, M_EVT } mkind;

typedef struct nmsg {
  struct nmsg *next;
  mkind kind;
  int src, dst, dst_inc, attempt;
  uint64_t seq, corr;
  int64_t sent_ns;
  stead__buf wire; /* envelope; events: topic, NUL, payload */
} nmsg;

typedef struct chan {
  nmsg *head, *tail;
} chan;

/* The replier handed to handle(): where the answer goes. */
typedef struct sreply {
  int caller, caller_inc, responder, attempt;
  uint64_t corr;
  uint32_t shard;
} sreply;

typedef struct lrow {
  int owner; /* -1: never held */
  uint64_t epoch;
  int64_t expires; /* ns */
} lrow;

typedef enum { OP_PENDING, OP_ACKED, OP_FAILED, OP_UNKNOWN } op_state;
typedef enum { K_INC, K_RELAY, K_PUSH, K_EMIT, K_SUB } op_kind;

typedef struct op {
  simnet *net;
  uint64_t uid;
  op_kind kind;
  int obj, node, topic;
  op_state st;
  uint8_t got[NSUB];
  int got_node[NSUB];       /* K_EMIT: who delivered it first */
  uint64_t got_epoch[NSUB]; /* and under which tenure of the subscriber */
} op;

struct simnet {
  stead__sim_opts o;
  stead__sim_report *r;
  uint64_t rng;
  int64_t now; /* ns */
  int k;       /* nodes */
  int faults, load, settling;
  int drop_permille, dup_permille, fail_permille;
  stead__simdisk *disk;
  snode n[MAXN];
  lrow row[NSHARDS];
  uint64_t gen[NSHARDS]; /* bumped whenever a shard's routing is disturbed */
  int committer[NSHARDS][64];
  uint64_t committer_epoch[NSHARDS][64];
  chan ch[MAXN][MAXN];
  uint64_t seq, max_delivered;
  op **ops;
  size_t nops, cap;
  uint64_t client_seq[MAXN][NRCV];
  uint64_t last_seq[NSENDERS][NRCV], last_stamp[NSENDERS][NRCV];
  stead__act *runnable[MAX_RUNNABLE];
};

/* ---- generator, clock, trace, checks --------------------------------- */

static uint64_t rnd(simnet *s, uint64_t n) {
  uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return n ? z % n : 0;
}

static int chance(simnet *s, int permille) {
  return (int)rnd(s, 1000) < permille;
}

static int64_t now_ms(const simnet *s) {
  return WALL_BASE_MS + s->now / MS;
}

static void trace(simnet *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void trace(simnet *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  stead__sim_trace_v(&s->r->trace_hash, s->o.trace, s->now / 1000, fmt, ap);
  va_end(ap);
}

static void check(simnet *s, int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void check(simnet *s, int ok, const char *fmt, ...) {
  s->r->checks++;
  if (ok)
    return;
  if (s->r->violations++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->r->first_violation, sizeof s->r->first_violation, fmt, ap);
    va_end(ap);
  }
  trace(s, "VIOLATION %s", s->r->first_violation);
}

static int64_t clock_ms(void *u) {
  return now_ms(((snode *)u)->net);
}

static int64_t mono_ns(void *u) {
  return ((snode *)u)->net->now;
}

static int paused(const snode *nd) {
  return nd->paused_to > nd->net->now;
}

/* The node can run (its process exists and is not stopped). */
static int running(const snode *nd) {
  return nd->rt && !paused(nd);
}

static uint32_t shard_of(const char *cls, const char *id) {
  int s = stead_shard_for_key(cls, id, NSHARDS, NULL);
  return s < 0 ? 0 : (uint32_t)s;
}

/* ---- membership and leases ------------------------------------------- */

/* Members every node agrees on: joined, not leaving, not dying, not
 * paused (a paused node misses its heartbeats). */
static int is_member(const snode *nd) {
  return nd->joined && !nd->leaving && !nd->dying && !paused(nd);
}

static int owner_by_hrw(simnet *s, uint32_t shard) {
  const char *ids[MAXN];
  int idx[MAXN], k = 0;
  for (int i = 0; i < s->k; i++)
    if (is_member(&s->n[i])) {
      ids[k] = s->n[i].id;
      idx[k++] = i;
    }
  if (k == 0)
    return -1;
  int w = stead_shard_owner(shard, ids, (size_t)k, NULL);
  return w < 0 ? -1 : idx[w];
}

static int node_owns(const snode *nd, uint32_t s) {
  return nd->joined && !nd->dying && !nd->leaving && nd->sh[s].st == SH_OWNED &&
         nd->net->now < nd->sh[s].valid_until;
}

static void lose(snode *nd, uint32_t s) {
  simnet *net = nd->net;
  uint64_t e = nd->sh[s].epoch;
  nd->sh[s].st = SH_FREE;
  net->gen[s]++;
  net->r->net_lost++;
  trace(net, "n%d lost shard %u epoch %" PRIu64, nd->idx, s, e);
  nd->cb.lost(nd->cb.udata, s, e);
}

static void drain_done(void *arg) {
  *(int *)arg = 1;
}

static void renew(snode *nd, uint32_t s) {
  simnet *net = nd->net;
  lrow *w = &net->row[s];
  if (w->owner == nd->idx && w->epoch == nd->sh[s].epoch && net->now < w->expires) {
    w->expires = net->now + TTL_MS * MS;
    nd->sh[s].valid_until = w->expires;
    nd->sh[s].renew_at = net->now + TTL_MS * MS / 3;
  } else {
    lose(nd, s);
  }
}

static void acquire(snode *nd, uint32_t s) {
  simnet *net = nd->net;
  lrow *w = &net->row[s];
  int held = w->owner >= 0 && net->now < w->expires;
  if (held && w->owner != nd->idx)
    return; /* ENOTOWNER: retried at a later pass */
  if (!held) {
    w->epoch++;
    net->r->net_tenures++;
  }
  w->owner = nd->idx;
  w->expires = net->now + TTL_MS * MS;
  shard_st *st = &nd->sh[s];
  *st = (shard_st){SH_OWNED, w->epoch, w->expires, net->now + TTL_MS * MS / 3, 0};
  net->gen[s]++;
  trace(net, "n%d acquired shard %u epoch %" PRIu64, nd->idx, s, w->epoch);
  if (nd->cb.acquired)
    nd->cb.acquired(nd->cb.udata, s, w->epoch);
}

static void start_drain(snode *nd, uint32_t s) {
  nd->sh[s].st = SH_DRAINING;
  nd->sh[s].drain_done = 0;
  nd->net->gen[s]++;
  trace(nd->net, "n%d drains shard %u", nd->idx, s);
  nd->cb.drain(nd->cb.udata, s, drain_done, &nd->sh[s].drain_done);
}

static void release(snode *nd, uint32_t s) {
  simnet *net = nd->net;
  uint64_t e = nd->sh[s].epoch;
  nd->sh[s].st = SH_FREE;
  net->gen[s]++;
  net->r->net_moves++;
  if (nd->cb.released)
    nd->cb.released(nd->cb.udata, s, e);
  lrow *w = &net->row[s];
  if (w->owner == nd->idx && w->epoch == e && net->now < w->expires)
    w->expires = net->now;
  trace(net, "n%d released shard %u epoch %" PRIu64, nd->idx, s, e);
}

/* One pass of the node's lease manager over every shard. */
static void manage(snode *nd) {
  simnet *net = nd->net;
  for (uint32_t s = 0; s < NSHARDS; s++) {
    shard_st *st = &nd->sh[s];
    if (st->st != SH_FREE && net->now >= st->valid_until) {
      lose(nd, s);
      continue;
    }
    int want = !nd->leaving && owner_by_hrw(net, s) == nd->idx;
    if (st->st == SH_OWNED && !want)
      start_drain(nd, s);
    else if (st->st == SH_DRAINING && st->drain_done)
      release(nd, s);
    else if (st->st != SH_FREE && net->now >= st->renew_at)
      renew(nd, s);
    else if (st->st == SH_FREE && want)
      acquire(nd, s);
  }
}

/* The store's fence (simbe.c): PostgreSQL's FOR SHARE check of the lease
 * row, plus the invariants on what it lets through. */
static int fence(void *u, int who, uint32_t s, uint64_t epoch) {
  simnet *net = u;
  lrow *w = &net->row[s];
  int current = w->epoch == epoch && net->now < w->expires;
  if (!(current && w->owner == who)) {
    net->r->net_fenced++;
    trace(net, "fenced n%d shard %u epoch %" PRIu64, who, s, epoch);
    if (net->o.net_bug != STEAD__NETBUG_NO_FENCE)
      return STEAD_ENOTOWNER;
  }
  net->r->net_commits++;
  check(net, current,
        "n%d committed on shard %u with ended tenure %" PRIu64 " (current %" PRIu64 ")",
        who, s, epoch, w->epoch);
  int slot = (int)(epoch % 64);
  if (net->committer_epoch[s][slot] != epoch) {
    net->committer_epoch[s][slot] = epoch;
    net->committer[s][slot] = who + 1;
  }
  check(net, net->committer[s][slot] == who + 1,
        "nodes n%d and n%d both committed for shard %u epoch %" PRIu64,
        net->committer[s][slot] - 1, who, s, epoch);
  return 0;
}

/* ---- the network ----------------------------------------------------- */

static nmsg *msg_new(simnet *s, mkind k, int src, int dst) {
  nmsg *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->kind = k;
  m->src = src;
  m->dst = dst;
  m->dst_inc = s->n[dst].incarnation;
  return m;
}

static void msg_free(nmsg *m) {
  stead__buf_free(&m->wire);
  free(m);
}

static void chan_push(chan *c, nmsg *m) {
  m->next = NULL;
  if (c->tail)
    c->tail->next = m;
  else
    c->head = m;
  c->tail = m;
}

static void net_send(simnet *s, nmsg *m) {
  m->seq = ++s->seq;
  m->sent_ns = s->now;
  s->r->net_messages++;
  chan_push(&s->ch[m->src][m->dst], m);
}

/* Takes message k (0 = head) of channel c. */
static nmsg *chan_take(chan *c, size_t k) {
  nmsg **p = &c->head, *prev = NULL;
  while (k-- && (*p)->next) {
    prev = *p;
    p = &(*p)->next;
  }
  nmsg *m = *p;
  *p = m->next;
  if (c->tail == m)
    c->tail = prev;
  m->next = NULL;
  return m;
}

static size_t chan_len(const chan *c) {
  size_t n = 0;
  for (nmsg *m = c->head; m; m = m->next)
    n++;
  return n;
}

/* A request goes to a node serving its shard (NATS delivers to a
 * subscriber), or is retried later if none does ("no responders"). */
static void call_route(snode *nd, pcall *c) {
  simnet *s = nd->net;
  int cand[MAXN], k = 0;
  for (int i = 0; i < s->k; i++)
    if (s->n[i].joined && !s->n[i].dying && s->n[i].sh[c->shard].st != SH_FREE)
      cand[k++] = i;
  if (k == 0) {
    c->retry_at_ms = now_ms(s) + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > 200 ? 200 : c->backoff_ms * 2;
    s->gen[c->shard]++;
    s->r->net_retries++;
    return;
  }
  nmsg *m = msg_new(s, M_REQ, nd->idx, cand[rnd(s, (uint64_t)k)]);
  if (!m || stead__buf_append(&m->wire, c->wire.data, c->wire.len) != 0) {
    if (m)
      msg_free(m);
    return; /* lost: the call times out */
  }
  m->corr = c->corr;
  m->attempt = ++c->attempt;
  c->retry_at_ms = 0;
  net_send(s, m);
}

static void refused(snode *nd, pcall *c) {
  nd->net->gen[c->shard]++;
  nd->net->r->net_retries++;
  c->retry_at_ms = now_ms(nd->net) + c->backoff_ms;
  c->backoff_ms = c->backoff_ms * 2 > 200 ? 200 : c->backoff_ms * 2;
}

static pcall *call_unlink(snode *nd, uint64_t corr) {
  for (pcall **p = &nd->calls; *p; p = &(*p)->next)
    if ((*p)->corr == corr) {
      pcall *c = *p;
      *p = c->next;
      return c;
    }
  return NULL;
}

static void call_free(pcall *c) {
  stead__buf_free(&c->wire);
  free(c);
}

static void send_reply(simnet *s, const sreply *q, int status, const void *payload,
                       size_t len, const char *message) {
  stead__env e;
  memset(&e, 0, sizeof e);
  e.kind = status ? STEAD__ENV_ERROR : STEAD__ENV_REPLY;
  e.shard = q->shard;
  e.corr = q->corr;
  e.created_ms = now_ms(s);
  e.status = status;
  char msg[STEAD__ENV_MAX_MESSAGE + 1];
  if (status) {
    snprintf(msg, sizeof msg, "%s", message ? message : stead_strerror(status));
    e.message = msg;
  } else {
    e.payload = payload;
    e.payload_len = len;
  }
  nmsg *m = msg_new(s, M_REP, q->responder, q->caller);
  if (!m)
    return;
  m->dst_inc = q->caller_inc;
  m->corr = q->corr;
  m->attempt = q->attempt;
  if (stead__env_encode(&e, MAX_PAYLOAD, STEAD__ENV_INTERNAL, &m->wire) != 0) {
    msg_free(m);
    return;
  }
  net_send(s, m);
}

/* Traces a request as it arrives: which copy of which forward (the
 * request id's sequence; its boot part holds a real clock, so it is left
 * out to keep traces deterministic), and whether the receiver owns it. */
static void trace_request(simnet *s, const nmsg *m, snode *nd, const stead__env *env) {
  const char *rid = stead__env_header_get(env, "x-stead-rid");
  const char *seq = rid ? strrchr(rid, ':') : NULL;
  trace(s, "req n%d->n%d corr %llu rid n%d:%s %s/%s.%s(%.*s) owns %d", m->src, nd->idx,
        (unsigned long long)env->corr, m->src, seq ? seq + 1 : "-", env->cls, env->id,
        env->method ? env->method : "-",
        (int)(env->payload_len < 20 ? env->payload_len : 20), (const char *)env->payload,
        node_owns(nd, env->shard));
}

static void deliver_request(snode *nd, nmsg *m) {
  simnet *s = nd->net;
  stead__env env;
  if (stead__env_decode(m->wire.data, m->wire.len, MAX_PAYLOAD, 0, &env) != 0) {
    check(s, 0, "the network corrupted a request");
    return;
  }
  sreply q = {m->src, m->dst_inc, nd->idx, m->attempt, env.corr, env.shard};
  trace_request(s, m, nd, &env);
  q.caller_inc = s->n[m->src].incarnation;
  if (!node_owns(nd, env.shard)) {
    /* As node.c: a copy of a request this runtime ran gets its outcome. */
    sreply *r = malloc(sizeof *r);
    if (r)
      *r = q;
    if (r && nd->cb.duplicate &&
        nd->cb.duplicate(nd->cb.udata, &env, (stead__node_replier *)r))
      r = NULL;
    else
      send_reply(s, &q, STEAD_ENOTOWNER, NULL, 0, "not the owner of this shard");
    free(r);
  } else {
    sreply *r = malloc(sizeof *r);
    if (r) {
      *r = q;
      nd->cb.handle(nd->cb.udata, &env, (stead__node_replier *)r);
    }
  }
  stead__env_free(&env);
}

static void deliver_reply(snode *nd, nmsg *m) {
  simnet *s = nd->net;
  pcall *c = NULL;
  for (c = nd->calls; c && c->corr != m->corr; c = c->next)
    ;
  if (!c || c->retry_at_ms || c->attempt != m->attempt)
    return; /* answered already (a duplicate), or a stale attempt's answer */
  stead__env env;
  if (stead__env_decode(m->wire.data, m->wire.len, MAX_PAYLOAD, 0, &env) != 0) {
    check(s, 0, "the network corrupted a reply");
    return;
  }
  if (env.kind == STEAD__ENV_ERROR && env.status == STEAD_ENOTOWNER) {
    refused(nd, c);
    stead__env_free(&env);
    return;
  }
  call_unlink(nd, c->corr);
  int st = env.kind == STEAD__ENV_ERROR ? env.status : 0;
  if (st)
    stead__err(st, "%s",
               env.message && env.message[0] ? env.message : stead_strerror(st));
  c->cb(st, &env, c->udata);
  stead__env_free(&env);
  call_free(c);
}

static void deliver(simnet *s, nmsg *m) {
  snode *nd = &s->n[m->dst];
  /* A message to a process that died (or restarted) since it was sent
   * went with its connection. */
  if (!nd->joined || nd->dying || nd->incarnation != m->dst_inc)
    return;
  if (m->kind == M_REQ)
    deliver_request(nd, m);
  else if (m->kind == M_REP)
    deliver_reply(nd, m);
  else if (nd->cb.event) {
    size_t tl = strlen((const char *)m->wire.data);
    nd->cb.event(nd->cb.udata, (const char *)m->wire.data, m->wire.data + tl + 1,
                 m->wire.len - tl - 1);
  }
}

/* Delivers (or drops, or duplicates) one message of a connection drawn by
 * the seed. A connection is FIFO; a paused receiver's messages wait. */
static int net_step(simnet *s, int faults) {
  int cand[MAXN * MAXN], k = 0;
  for (int a = 0; a < s->k; a++)
    for (int b = 0; b < s->k; b++)
      if (s->ch[a][b].head && !paused(&s->n[b]))
        cand[k++] = a * MAXN + b;
  if (k == 0)
    return 0;
  int c = cand[rnd(s, (uint64_t)k)];
  chan *ch = &s->ch[c / MAXN][c % MAXN];
  size_t at = s->o.net_bug == STEAD__NETBUG_REORDER ? (size_t)rnd(s, chan_len(ch)) : 0;
  nmsg *m = chan_take(ch, at);
  if (faults && chance(s, s->drop_permille)) {
    s->r->net_dropped++;
    trace(s, "drop %d %d->%d corr %" PRIu64, m->kind, m->src, m->dst, m->corr);
    msg_free(m);
    return 1;
  }
  if (faults && chance(s, s->dup_permille)) {
    nmsg *d = calloc(1, sizeof *d);
    if (d && stead__buf_append(&d->wire, m->wire.data, m->wire.len) == 0) {
      stead__buf w = d->wire;
      *d = *m;
      d->wire = w;
      chan_push(ch, d);
      s->r->net_duplicated++;
    } else if (d) {
      msg_free(d);
    }
  }
  if (m->seq < s->max_delivered)
    s->r->net_reordered++;
  else
    s->max_delivered = m->seq;
  if (s->now - m->sent_ns >= MS)
    s->r->net_delayed++;
  s->r->net_delivered++;
  trace(s, "deliver %d n%d->n%d corr %" PRIu64, m->kind, m->src, m->dst, m->corr);
  deliver(s, m);
  msg_free(m);
  return 1;
}

/* Calls whose deadline passed, and refused calls due to go again. */
static void calls_due(snode *nd) {
  simnet *s = nd->net;
  for (int again = 1; again;) {
    again = 0;
    for (pcall *c = nd->calls; c; c = c->next) {
      if (now_ms(s) >= c->deadline_ms) {
        call_unlink(nd, c->corr);
        int st = c->retry_at_ms ? STEAD_ENOTOWNER : STEAD_ETIMEDOUT;
        stead__err(st, "call to shard %u: %s", c->shard,
                   st == STEAD_ETIMEDOUT
                       ? "no reply before the deadline (it may have run)"
                       : "no owner accepted it before the deadline");
        c->cb(st, NULL, c->udata);
        call_free(c);
        again = 1;
        break;
      }
      if (c->retry_at_ms && now_ms(s) >= c->retry_at_ms) {
        call_route(nd, c);
        again = c->retry_at_ms == 0;
        if (again)
          break;
      }
    }
  }
}

/* ---- the node's operations (node.h's stead__node_ops) ---------------- */

static int op_owns(void *self, uint32_t shard) {
  return shard < NSHARDS && node_owns(self, shard);
}

static int op_owner_epoch(void *self, uint32_t shard, uint64_t *epoch) {
  snode *nd = self;
  if (shard >= NSHARDS)
    return stead__err(STEAD_EINVAL, "no shard %u", shard);
  shard_st *st = &nd->sh[shard];
  if (nd->joined && !nd->dying && st->st != SH_FREE && nd->net->now < st->valid_until) {
    *epoch = st->epoch;
    return 0;
  }
  return stead__err(STEAD_ENOTOWNER, "n%d holds no lease on shard %u", nd->idx, shard);
}

static int op_route(void *self, const char *cls, const char *id,
                    stead__node_route_info *out) {
  snode *nd = self;
  memset(out, 0, sizeof *out);
  out->shard = shard_of(cls, id);
  int w = owner_by_hrw(nd->net, out->shard);
  if (w >= 0)
    snprintf(out->owner, sizeof out->owner, "%s", nd->net->n[w].id);
  if (node_owns(nd, out->shard)) {
    out->kind = STEAD__ROUTE_LOCAL;
    out->epoch = nd->sh[out->shard].epoch;
  } else {
    out->kind = w == nd->idx ? STEAD__ROUTE_UNKNOWN : STEAD__ROUTE_REMOTE;
  }
  return 0;
}

static int op_call(void *self, const stead__env *req, int64_t deadline_ms,
                   stead__node_call_fn cb, void *udata) {
  snode *nd = self;
  simnet *s = nd->net;
  if (!nd->joined || nd->dying || nd->leaving)
    return stead__err(STEAD_ECLOSED, "n%d has left the deployment", nd->idx);
  if (!cb || deadline_ms <= now_ms(s))
    return stead__err(STEAD_EINVAL, "call needs a callback and a future deadline");
  pcall *c = calloc(1, sizeof *c);
  if (!c)
    return stead__err(STEAD_ENOMEM, "out of memory");
  stead__env e = *req;
  e.kind = STEAD__ENV_REQUEST;
  e.shard = shard_of(req->cls, req->id);
  e.corr = ++nd->corr;
  e.created_ms = now_ms(s);
  e.deadline_ms = deadline_ms;
  e.owned_ = NULL;
  int rc = stead__env_encode(&e, MAX_PAYLOAD, STEAD__ENV_INTERNAL, &c->wire);
  if (rc) {
    free(c);
    return rc;
  }
  *c = (pcall){nd->calls, e.corr, e.shard, c->wire, deadline_ms, 0, 10, 0, cb, udata};
  nd->calls = c;
  call_route(nd, c);
  return 0;
}

static int op_respond(void *self, stead__node_replier *r, int status, const void *payload,
                      size_t len, const char *message) {
  snode *nd = self;
  sreply *q = (sreply *)r;
  if (!nd->dying)
    send_reply(nd->net, q, status, payload, len, message);
  free(q);
  return 0;
}

static int op_emit(void *self, const char *topic, const void *payload, size_t len) {
  snode *nd = self;
  simnet *s = nd->net;
  if (!nd->joined || nd->dying)
    return stead__err(STEAD_ECLOSED, "n%d has left the deployment", nd->idx);
  for (int i = 0; i < s->k; i++) {
    if (i == nd->idx || !s->n[i].joined)
      continue;
    nmsg *m = msg_new(s, M_EVT, nd->idx, i);
    if (!m)
      return stead__err(STEAD_ENOMEM, "out of memory");
    if (stead__buf_append(&m->wire, topic, strlen(topic) + 1) ||
        stead__buf_append(&m->wire, payload, len)) {
      msg_free(m);
      return stead__err(STEAD_ENOMEM, "out of memory");
    }
    net_send(s, m);
  }
  return 0;
}

static int op_status_get(void *self, stead__node_status **out) {
  (void)self;
  *out = NULL;
  return stead__err(STEAD_ENOTSUP, "the simulated node keeps no status");
}

static int sim_step(simnet *s);
static void fail_calls(snode *nd);

/* Leaving cleanly: no longer a member; drain and release every shard,
 * letting the deployment run meanwhile. A dying node leaves nothing. */
static void op_leave(void *self) {
  snode *nd = self;
  simnet *s = nd->net;
  if (!nd->joined || nd->leaving)
    return;
  nd->leaving = 1;
  if (nd->dying) {
    fail_calls(nd);
    return;
  }
  nd->paused_to = 0;
  s->settling++;
  for (int guard = 0; guard < 200000; guard++) {
    int busy = 0;
    for (uint32_t sh = 0; sh < NSHARDS; sh++) {
      if (nd->sh[sh].st == SH_OWNED)
        start_drain(nd, sh);
      if (nd->sh[sh].st == SH_DRAINING && nd->sh[sh].drain_done)
        release(nd, sh);
      else if (nd->sh[sh].st != SH_FREE && s->now >= nd->sh[sh].valid_until)
        lose(nd, sh);
      else if (nd->sh[sh].st != SH_FREE && s->now >= nd->sh[sh].renew_at)
        renew(nd, sh);
      busy |= nd->sh[sh].st != SH_FREE;
    }
    if (!busy)
      break;
    stead__cluster_keeper_step(nd->rt);
    sim_step(s);
  }
  s->settling--;
  fail_calls(nd);
}

/* Fails the calls still in flight (the end of a leave, as node.c's). */
static void fail_calls(snode *nd) {
  while (nd->calls) {
    pcall *c = nd->calls;
    nd->calls = c->next;
    stead__err(STEAD_ECLOSED, "the node closed");
    c->cb(STEAD_ECLOSED, NULL, c->udata);
    call_free(c);
  }
}

static void op_close(void *self) {
  snode *nd = self;
  fail_calls(nd); /* none: leave failed them and refuses new ones */
  nd->joined = 0;
}

/* Connections are not part of the simulated workload. */
static int op_send(void *self, const char *node_id, const stead__env *env) {
  (void)self;
  (void)node_id;
  (void)env;
  return stead__err(STEAD_ENOTSUP, "the simulated node carries no connections");
}

static const char *op_id(void *self) {
  return ((snode *)self)->id;
}

static const stead__node_ops simnode_ops = {
    .owns = op_owns,
    .owner_epoch = op_owner_epoch,
    .route = op_route,
    .call = op_call,
    .respond = op_respond,
    .emit = op_emit,
    .status_get = op_status_get,
    .leave = op_leave,
    .close = op_close,
    .send = op_send,
    .id = op_id,
};

static int node_open(void *u, stead_rt *rt, const stead__node_runtime *cb,
                     const stead__node_ops **ops, void **self) {
  snode *nd = u;
  (void)rt;
  nd->cb = *cb;
  nd->joined = 1;
  nd->leaving = 0;
  memset(nd->sh, 0, sizeof nd->sh);
  *ops = &simnode_ops;
  *self = nd;
  return 0;
}

/* ---- driving one node's runtime -------------------------------------- */

static int by_name(const void *a, const void *b) {
  const stead__act *x = *(stead__act *const *)a, *y = *(stead__act *const *)b;
  int c = strcmp(x->crec->cls->name, y->crec->cls->name);
  return c ? c : strcmp(x->id, y->id);
}

static int run_slice(snode *nd) {
  simnet *s = nd->net;
  size_t n = stead__rq_snapshot(nd->rt, s->runnable, MAX_RUNNABLE);
  if (n == 0)
    return 0;
  if (n > MAX_RUNNABLE)
    n = MAX_RUNNABLE;
  qsort(s->runnable, n, sizeof *s->runnable, by_name);
  stead__act *a = s->runnable[rnd(s, n)];
  trace(s, "n%d slice %s/%s", nd->idx, a->crec->cls->name, a->id);
  stead__rq_take(nd->rt, a);
  stead__set_current_rt(nd->rt);
  stead__run_slice(nd->rt, a);
  stead__set_current_rt(NULL);
  s->r->slices++;
  return 1;
}

static int commit_batch(snode *nd, int faults) {
  simnet *s = nd->net;
  size_t q = stead__committer_queued(nd->rt->committer);
  if (q == 0)
    return 0;
  size_t max = 1 + (size_t)rnd(s, q < 8 ? q : 8);
  int fail = faults && chance(s, s->fail_permille);
  if (fail) {
    stead__simdisk_fail_next(s->disk, 1);
    s->r->commit_failures++;
  }
  size_t n = stead__committer_step(nd->rt->committer, max);
  stead__simdisk_fail_next(s->disk, 0);
  trace(s, "n%d commit %zu%s", nd->idx, n, fail ? " FAIL" : "");
  s->r->commit_batches++;
  return 1;
}

static void fire_due(simnet *s) {
  for (int i = 0; i < s->k; i++) {
    snode *nd = &s->n[i];
    if (!running(nd))
      continue;
    /* node.c's manager thread wakes on its own (renewals are due at
     * ttl/3): only a paused node misses its renewals. */
    if (nd->joined && !nd->leaving)
      manage(nd);
    s->r->timers_fired += (uint64_t)stead__timerq_fire_due(&nd->rt->timers, s->now);
    calls_due(nd);
  }
}

static void advance(simnet *s, int64_t ns) {
  s->now += ns;
  s->r->clock_advances++;
  trace(s, "clock +%lldus", (long long)(ns / 1000));
  fire_due(s);
}

/* What the runtime's wait_idle waits for in manual mode: the deployment
 * runs (without faults or load) until this node has nothing in flight. */
static void node_drain(void *u) {
  snode *nd = u;
  simnet *s = nd->net;
  s->settling++;
  for (int guard = 0; guard < 200000 && atomic_load(&nd->rt->inflight) > 0; guard++)
    sim_step(s);
  s->settling--;
}

/* ---- the workload ---------------------------------------------------- */

static simnet *net_of(stead_ctx *ctx) {
  stead_rt *rt = stead__ctx_rt(ctx);
  return rt && rt->manual ? ((snode *)rt->manual->u)->net : NULL;
}

static op *op_find(simnet *s, uint64_t uid) {
  return uid >= 1 && uid <= s->nops ? s->ops[uid - 1] : NULL;
}

static int ctr_inc(stead_ctx *ctx, const void *arg, size_t len) {
  char key[48];
  snprintf(key, sizeof key, "op/%.*s", (int)(len < 24 ? len : 24), (const char *)arg);
  int err = 0;
  uint64_t v = stead__sim_get_u64(ctx, "v", &err);
  if (err)
    return stead_fail_code(ctx, err, "reading v: %s", stead_errmsg());
  void *had = NULL;
  int rc = stead_get(ctx, key, strlen(key), &had, NULL);
  stead_free(had);
  {
    stead_rt *rt = stead__ctx_rt(ctx);
    trace(net_of(ctx), "inc %s of ctr/%s at n%d", key, stead_object_id(ctx),
          ((snode *)rt->manual->u)->idx);
  }
  check(net_of(ctx), rc != 0, "increment %s of ctr/%s applied twice", key,
        stead_object_id(ctx));
  if ((rc = stead__sim_put_u64(ctx, "v", v + 1)) != 0 ||
      (rc = stead_put(ctx, key, strlen(key), "1", 1)) != 0)
    return stead_fail_code(ctx, rc, "writing: %s", stead_errmsg());
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRIu64, v + 1);
  return stead_reply(ctx, b, (size_t)n);
}

static int relay_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  stead_deferred *d = udata;
  return res->status == 0 ? stead_deferred_reply(ctx, d, res->data, res->len)
                          : stead_deferred_fail(ctx, d, res->status, res->message);
}

static int relay_inc(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[64], ctr[16];
  unsigned long long opid;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  if (sscanf(buf, "%15s %llu", ctr, &opid) != 2)
    return stead_fail(ctx, "bad relay payload");
  char p[32];
  int n = snprintf(p, sizeof p, "%llu", opid);
  stead_deferred *d = stead_defer_reply(ctx);
  if (!d)
    return stead_fail(ctx, "defer: %s", stead_errmsg());
  int rc = stead_ctx_call(ctx, "ctr", ctr, "inc", p, (size_t)n, 1500, relay_then, d);
  return rc ? stead_fail(ctx, "call: %s", stead_errmsg()) : 0;
}

/* The FIFO stamp of a message: the routing generations of the sender's
 * and the receiver's shards. Two messages are compared only when both
 * were sent, and the second handled, under one stamp. */
static uint64_t stamp(simnet *s, const char *snd, const char *rcv) {
  uint64_t a = snd ? s->gen[shard_of("snd", snd)] : 0;
  return (a << 32) ^ s->gen[shard_of("rcv", rcv)];
}

static int ignore_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  (void)ctx, (void)res, (void)udata;
  return 0;
}

static int snd_push(stead_ctx *ctx, const void *arg, size_t len) {
  simnet *s = net_of(ctx);
  char buf[64], rcv[16];
  unsigned n;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  if (!s || sscanf(buf, "%15s %u", rcv, &n) != 2)
    return stead_fail(ctx, "bad push payload");
  char key[32];
  snprintf(key, sizeof key, "seq/%s", rcv);
  int err = 0;
  uint64_t seq = stead__sim_get_u64(ctx, key, &err);
  if (err)
    return stead_fail_code(ctx, err, "reading %s: %s", key, stead_errmsg());
  const char *me = stead_object_id(ctx);
  for (unsigned i = 0; i < n; i++) {
    char m[96];
    int ml =
        snprintf(m, sizeof m, "%s %" PRIu64 " %" PRIu64, me, ++seq, stamp(s, me, rcv));
    int rc = rnd(s, 4) == 0 ? stead_ctx_call(ctx, "rcv", rcv, "recv", m, (size_t)ml, 1000,
                                             ignore_then, NULL)
                            : stead_ctx_send(ctx, "rcv", rcv, "recv", m, (size_t)ml);
    if (rc)
      return stead_fail(ctx, "send: %s", stead_errmsg());
  }
  int rc = stead__sim_put_u64(ctx, key, seq);
  return rc ? stead_fail_code(ctx, rc, "writing: %s", stead_errmsg()) : 0;
}

typedef struct fifo_rec {
  simnet *s;
  int si, r;
  uint64_t seq, stamp;
  char sender[16];
} fifo_rec;

static void fifo_applied(void *arg) {
  fifo_rec *f = arg;
  simnet *s = f->s;
  char rcv[16];
  snprintf(rcv, sizeof rcv, "q%d", f->r);
  uint64_t cur = stamp(s, f->si < NSND ? f->sender : NULL, rcv);
  if (f->stamp == cur && s->last_stamp[f->si][f->r] == cur)
    check(s, f->seq > s->last_seq[f->si][f->r],
          "per-sender FIFO: %s -> rcv/%s applied %" PRIu64 " after %" PRIu64, f->sender,
          rcv, f->seq, s->last_seq[f->si][f->r]);
  s->last_seq[f->si][f->r] = f->seq;
  s->last_stamp[f->si][f->r] = f->stamp;
  free(f);
}

static int rcv_recv(stead_ctx *ctx, const void *arg, size_t len) {
  simnet *s = net_of(ctx);
  char buf[96], sender[16];
  unsigned long long seq, st;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 95 ? len : 95), (const char *)arg);
  const char *me = stead_object_id(ctx);
  int r = me[0] == 'q' && me[1] >= '0' && me[1] < '0' + NRCV && !me[2] ? me[1] - '0' : -1;
  if (!s || r < 0 || sscanf(buf, "%15s %llu %llu", sender, &seq, &st) != 3)
    return stead_fail(ctx, "bad recv payload");
  int si = sender[0] == 's' && sender[1] >= '0' && sender[1] < '0' + NSND
               ? sender[1] - '0'
           : sender[0] == 'k' && sender[1] >= '0' && sender[1] < '0' + MAXN
               ? NSND + sender[1] - '0'
               : -1;
  if (si < 0)
    return stead_fail(ctx, "unknown sender");
  trace(s, "recv %s %s %llu", me, sender, seq);
  char key[32];
  snprintf(key, sizeof key, "last/%s", sender);
  int rc = stead__sim_put_u64(ctx, key, seq);
  if (rc)
    return stead_fail_code(ctx, rc, "writing: %s", stead_errmsg());
  /* Checked when the turn commits: a turn whose effects were discarded
   * (fenced, failed commit) was not a delivery, and the runtime runs its
   * message again elsewhere. */
  fifo_rec *f = malloc(sizeof *f);
  if (!f)
    return stead_fail_code(ctx, STEAD_ENOMEM, "out of memory");
  *f = (fifo_rec){s, si, r, seq, st, ""};
  snprintf(f->sender, sizeof f->sender, "%s", sender);
  rc = stead__ctx_effect(ctx, fifo_applied, free, f);
  if (rc)
    free(f);
  return rc ? stead_fail_code(ctx, rc, "effect: %s", stead_errmsg()) : 0;
}

static const char *const sub_pattern[NSUB] = {"t.**", "t.p0.*", "t.*.x"};

static int pattern_matches(int sub, int pub, int t) {
  return sub == 0 || (sub == 1 && pub == 0) || (sub == 2 && t == 0);
}

static int pub_emit(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[64];
  unsigned long long uid;
  int t;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  const char *me = stead_object_id(ctx);
  if (sscanf(buf, "%llu %d", &uid, &t) != 2 || me[0] != 'p')
    return stead_fail(ctx, "bad emit payload");
  char topic[32], ev[64];
  snprintf(topic, sizeof topic, "t.p%c.%c", me[1], t ? 'y' : 'x');
  int n = snprintf(ev, sizeof ev, "%s %llu", me, uid);
  int rc = stead_emit(ctx, topic, ev, (size_t)n);
  if (rc == 0)
    rc = stead_put(ctx, "last", 4, ev, (size_t)n);
  return rc ? stead_fail_code(ctx, rc, "emit: %s", stead_errmsg()) : 0;
}

static int sub_index(const char *id) {
  return id[0] == 'b' && id[1] >= '0' && id[1] < '0' + NSUB && !id[2] ? id[1] - '0' : -1;
}

static int sub_subscribe(stead_ctx *ctx, const void *arg, size_t len) {
  (void)arg, (void)len;
  int i = sub_index(stead_object_id(ctx));
  if (i < 0)
    return stead_fail(ctx, "no such subscriber");
  int rc = stead_subscribe(ctx, sub_pattern[i]);
  return rc ? stead_fail_code(ctx, rc, "subscribe: %s", stead_errmsg()) : 0;
}

static int sub_on_event(stead_ctx *ctx, const char *topic, const void *payload,
                        size_t len) {
  simnet *s = net_of(ctx);
  char buf[64], pubid[16];
  unsigned long long uid;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)payload);
  int si = sub_index(stead_object_id(ctx));
  if (!s || si < 0 || sscanf(buf, "%15s %llu", pubid, &uid) != 2 || pubid[0] != 'p')
    return stead_fail(ctx, "bad event");
  s->r->deliveries++;
  op *o = op_find(s, uid);
  check(s, o && o->kind == K_EMIT, "event %s for an emit never made", buf);
  if (!o || o->kind != K_EMIT)
    return 0;
  check(s, pattern_matches(si, pubid[1] - '0', o->topic),
        "event %s reached sub/%s whose pattern %s does not match", topic,
        stead_object_id(ctx), sub_pattern[si]);
  snode *nd = stead__ctx_rt(ctx)->manual->u;
  uint64_t epoch = nd->sh[shard_of("sub", stead_object_id(ctx))].epoch;
  if (o->got[si] && (o->got_node[si] != nd->idx || o->got_epoch[si] != epoch)) {
    /* Known gap (docs/simulation.md): the subscriber's shard moved between
     * one node's delivery and another's; each decides by its own tenure. */
    s->r->net_event_redelivered++;
    trace(s, "event %s again at sub/%s after a move", buf, stead_object_id(ctx));
  } else {
    check(s, o->got[si] == 0, "event %s delivered twice to sub/%s", buf,
          stead_object_id(ctx));
  }
  o->got_node[si] = nd->idx;
  o->got_epoch[si] = epoch;
  if (o->got[si] < 255)
    o->got[si]++;
  trace(s, "event %s at sub/%s", buf, stead_object_id(ctx));
  return 0;
}

static const stead_method ctr_methods[] = {{"inc", ctr_inc}, {NULL, NULL}};
static const stead_method relay_methods[] = {{"inc", relay_inc}, {NULL, NULL}};
static const stead_method snd_methods[] = {{"push", snd_push}, {NULL, NULL}};
static const stead_method rcv_methods[] = {{"recv", rcv_recv}, {NULL, NULL}};
static const stead_method pub_methods[] = {{"emit", pub_emit}, {NULL, NULL}};
static const stead_method sub_methods[] = {{"subscribe", sub_subscribe}, {NULL, NULL}};
static const stead_class classes[] = {
    {.name = "ctr", .methods = ctr_methods, .shutdown_after_ms = 3000},
    {.name = "relay", .methods = relay_methods},
    {.name = "snd", .methods = snd_methods, .shutdown_after_ms = 5000},
    {.name = "rcv", .methods = rcv_methods},
    {.name = "pub", .methods = pub_methods},
    {.name = "sub", .methods = sub_methods, .on_event = sub_on_event},
};

static op *op_new(simnet *s, op_kind kind, int obj, int node) {
  if (s->nops >= MAXOPS)
    return NULL;
  if (s->nops == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    op **v = realloc(s->ops, cap * sizeof *v);
    if (!v)
      return NULL;
    s->ops = v;
    s->cap = cap;
  }
  op *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  *o = (op){.net = s, .uid = s->nops + 1, .kind = kind, .obj = obj, .node = node};
  s->ops[s->nops++] = o;
  return o;
}

/* Whether a failure means nothing was applied. A relay's never does (its
 * inner call may have); ETIMEDOUT and ECLOSED may have run. */
static int definite(const op *o, int status) {
  if (o->kind == K_RELAY)
    return 0;
  return status == STEAD_ESTORAGE || status == STEAD_EHANDLER ||
         status == STEAD_EOVERLOAD || status == STEAD_ENOTOWNER;
}

static void op_done(const stead_result *res, void *udata) {
  op *o = udata;
  simnet *s = o->net;
  if (s->n[o->node].dying) /* the client's connection died with the node */
    o->st = OP_UNKNOWN;
  else if (res->status == 0)
    o->st = OP_ACKED;
  else
    o->st = definite(o, res->status) ? OP_FAILED : OP_UNKNOWN;
  s->r->acked += o->st == OP_ACKED;
  s->r->failed += o->st == OP_FAILED;
  s->r->unknown += o->st == OP_UNKNOWN;
  trace(s, "done op %" PRIu64 " status %d", o->uid, res->status);
}

static void submit(simnet *s, op *o, const char *cls, const char *id, const char *method,
                   const char *payload) {
  int tmo = rnd(s, 10) == 0 ? 50 + (int)rnd(s, 500) : 2000 + (int)rnd(s, 6000);
  int rc = stead_call_async(s->n[o->node].rt, cls, id, method, payload, strlen(payload),
                            tmo, op_done, o);
  trace(s, "call op %" PRIu64 " via n%d %s/%s.%s(%s) -> %d", o->uid, o->node, cls, id,
        method, payload, rc);
  if (rc) {
    o->st = OP_FAILED;
    s->r->failed++;
  }
}

/* One client request through a random running node. */
static void request(simnet *s) {
  int up[MAXN], k = 0;
  for (int i = 0; i < s->k; i++)
    if (running(&s->n[i]) && s->n[i].joined && !s->n[i].leaving)
      up[k++] = i;
  if (k == 0)
    return;
  int node = up[rnd(s, (uint64_t)k)];
  char id[16], p[64];
  uint64_t x = rnd(s, 100);
  s->r->requests++;
  op *o = NULL;
  if (x < 35) {
    if (!(o = op_new(s, K_INC, (int)rnd(s, NCTR), node)))
      return;
    snprintf(id, sizeof id, "c%d", o->obj);
    snprintf(p, sizeof p, "%" PRIu64, o->uid);
    submit(s, o, "ctr", id, "inc", p);
  } else if (x < 50) {
    if (!(o = op_new(s, K_RELAY, (int)rnd(s, NCTR), node)))
      return;
    snprintf(id, sizeof id, "r%d", (int)rnd(s, NRELAY));
    snprintf(p, sizeof p, "c%d %" PRIu64, o->obj, o->uid);
    submit(s, o, "relay", id, "inc", p);
  } else if (x < 65) {
    if (!(o = op_new(s, K_PUSH, 0, node)))
      return;
    snprintf(id, sizeof id, "s%d", (int)rnd(s, NSND));
    snprintf(p, sizeof p, "q%d %d", (int)rnd(s, NRCV), 1 + (int)rnd(s, 4));
    submit(s, o, "snd", id, "push", p);
  } else if (x < 78) {
    /* The client as a sender: one connection per node, in order. */
    int r = (int)rnd(s, NRCV);
    snprintf(id, sizeof id, "q%d", r);
    int n = snprintf(p, sizeof p, "k%d %" PRIu64 " %" PRIu64, node,
                     ++s->client_seq[node][r], stamp(s, NULL, id));
    int rc = stead_send(s->n[node].rt, "rcv", id, "recv", p, (size_t)n);
    trace(s, "send via n%d rcv/%s %s -> %d", node, id, p, rc);
  } else {
    int sub = rnd(s, 6) == 0;
    if (!(o = op_new(s, sub ? K_SUB : K_EMIT, (int)rnd(s, sub ? NSUB : NPUB), node)))
      return;
    if (sub) {
      snprintf(id, sizeof id, "b%d", o->obj);
      submit(s, o, "sub", id, "subscribe", "");
    } else {
      o->topic = (int)rnd(s, 2);
      snprintf(id, sizeof id, "p%d", o->obj);
      snprintf(p, sizeof p, "%" PRIu64 " %d", o->uid, o->topic);
      submit(s, o, "pub", id, "emit", p);
    }
  }
}

/* ---- node lifecycle -------------------------------------------------- */

static int node_start(simnet *s, snode *nd) {
  stead__backend *be;
  int rc = stead__simbe_open_shared(s->disk, nd->idx, fence, s, &be);
  if (rc)
    return rc;
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.clock = clock_ms;
  cfg.clock_udata = nd;
  cfg.turns_per_slice = 1 + (int)rnd(s, 4);
  cfg.mailbox_limit = 64;
  cfg.default_timeout_ms = 2000;
  cfg.cluster_node_id = nd->id;
  cfg.cluster_shards = NSHARDS;
  stead__manual man = {.mono_ns = mono_ns,
                       .drain = node_drain,
                       .u = nd,
                       .backend = be,
                       .node_open = node_open,
                       .no_dedup = s->o.net_bug == STEAD__NETBUG_NO_DEDUP};
  nd->incarnation++;
  nd->dying = 0;
  nd->paused_to = 0;
  nd->restart_at = 0;
  nd->be = be;
  if ((rc = stead__open_manual(&cfg, &man, &nd->rt)) != 0)
    return rc;
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if ((rc = stead_register(nd->rt, &classes[i])) != 0)
      return rc;
  trace(s, "n%d starts, incarnation %d", nd->idx, nd->incarnation);
  return 0;
}

/* Stops a node: cleanly (leave: drain, release) or killed (nothing it
 * does from now on reaches anyone; its leases run out). */
static void node_stop(simnet *s, snode *nd, int kill) {
  if (!nd->rt)
    return;
  trace(s, "n%d %s", nd->idx, kill ? "killed" : "stops");
  if (kill) {
    nd->dying = 1;
    stead__simbe_kill(nd->be);
    s->r->net_kills++;
  }
  nd->paused_to = 0;
  stead_close(nd->rt);
  nd->rt = NULL;
  nd->joined = 0;
  nd->dying = 0;
  for (uint32_t sh = 0; sh < NSHARDS; sh++)
    if (nd->sh[sh].st != SH_FREE) {
      nd->sh[sh].st = SH_FREE;
      s->gen[sh]++;
    }
  nd->restart_at = s->now + (100 + (int64_t)rnd(s, 3 * TTL_MS)) * MS;
}

static void fault(simnet *s) {
  snode *nd = &s->n[rnd(s, (uint64_t)s->k)];
  uint64_t x = rnd(s, 100);
  int live = 0;
  for (int i = 0; i < s->k; i++)
    live += s->n[i].rt != NULL;
  if (x < 30 && nd->rt && live > 1) {
    node_stop(s, nd, 1);
  } else if (x < 50 && nd->rt && live > 1) {
    node_stop(s, nd, 0);
    s->r->net_restarts++;
  } else if (x < 75 && running(nd)) {
    nd->paused_to = s->now + (100 + (int64_t)rnd(s, 2 * TTL_MS)) * MS;
    s->r->net_pauses++;
    trace(s, "n%d paused until %lld", nd->idx, (long long)(nd->paused_to / 1000));
  } else if (running(nd)) {
    static const char *const objs[][2] = {{"ctr", "c0"},  {"ctr", "c1"}, {"snd", "s0"},
                                          {"rcv", "q0"},  {"rcv", "q1"}, {"sub", "b0"},
                                          {"relay", "r0"}};
    size_t k = (size_t)rnd(s, sizeof objs / sizeof objs[0]);
    const stead__class_rec *c = stead__class_find(nd->rt, objs[k][0]);
    int q = c ? stead__queue_deactivate(nd->rt, c, objs[k][1], NULL) : 0;
    s->r->deactivations += q == 1;
    trace(s, "n%d deactivate %s/%s -> %d", nd->idx, objs[k][0], objs[k][1], q);
  }
}

/* Nodes down long enough come back. */
static void restarts(simnet *s) {
  for (int i = 0; i < s->k; i++) {
    snode *nd = &s->n[i];
    if (!nd->rt && nd->restart_at && s->now >= nd->restart_at && !s->settling) {
      if (node_start(s, nd) != 0)
        check(s, 0, "n%d cannot restart: %s", i, stead_errmsg());
    }
  }
}

/* ---- the driver ------------------------------------------------------ */

static void advance_random(simnet *s) {
  uint64_t k = rnd(s, 100);
  int64_t us = k < 70   ? 1 + (int64_t)rnd(s, 2000)
               : k < 95 ? 2000 + (int64_t)rnd(s, 100000)
                        : 100000 + (int64_t)rnd(s, 700000);
  advance(s, us * 1000);
}

static snode *pick_running(simnet *s) {
  snode *nd = &s->n[rnd(s, (uint64_t)s->k)];
  return running(nd) ? nd : NULL;
}

/* One step: an action drawn by the seed; one that cannot run moves the
 * clock instead. Under settling (a node leaving, draining, the final
 * quiesce) there are no faults and no new load. */
static int sim_step(simnet *s) {
  static const int weight[] = {30, 15, 25, 10, 12, 8, 4, 4, 3};
  int load = s->load && !s->settling, faults = s->faults && !s->settling;
  int total = 0;
  for (int i = 0; i < 9; i++)
    total += (i == 4 && !load) || (i == 8 && !faults) ? 0 : weight[i];
  int k = (int)rnd(s, (uint64_t)total), act = 0;
  for (;; act++) {
    if ((act == 4 && !load) || (act == 8 && !faults))
      continue;
    if (k < weight[act])
      break;
    k -= weight[act];
  }
  s->r->steps++;
  snode *nd = NULL;
  switch (act) {
  case 0:
    if ((nd = pick_running(s)) && run_slice(nd))
      return act;
    break;
  case 1:
    if ((nd = pick_running(s)) && commit_batch(nd, faults))
      return act;
    break;
  case 2:
    if (net_step(s, faults))
      return act;
    break;
  case 4:
    request(s);
    return act;
  case 5:
    if ((nd = pick_running(s)) && nd->joined && !nd->leaving) {
      manage(nd);
      return act;
    }
    break;
  case 6:
    if ((nd = pick_running(s)) && stead__cluster_keeper_step(nd->rt) >= 0)
      return act;
    break;
  case 7:
    if ((nd = pick_running(s)) && stead__bus_rt_run_one(nd->rt)) {
      s->r->bus_events++;
      return act;
    }
    break;
  case 8:
    fault(s);
    restarts(s);
    return act;
  default:
    break;
  }
  advance_random(s);
  if (!s->settling)
    restarts(s);
  return 3;
}

static int idle(simnet *s) {
  for (int i = 0; i < s->k; i++) {
    snode *nd = &s->n[i];
    if (nd->calls || (nd->rt && atomic_load(&nd->rt->inflight) > 0))
      return 0;
    if (nd->rt && stead__committer_queued(nd->rt->committer) > 0)
      return 0;
    for (int j = 0; j < s->k; j++)
      if (s->ch[i][j].head)
        return 0;
  }
  for (size_t i = 0; i < s->nops; i++)
    if (s->ops[i]->st == OP_PENDING)
      return 0;
  return 1;
}

/* ---- final checks ---------------------------------------------------- */

static int has_key(stead__backend *b, const char *cls, const char *id, const char *key,
                   uint64_t *val) {
  void *v = NULL;
  size_t len = 0;
  int rc = b ? b->vt->get(b, cls, id, STEAD__NS_USER, key, strlen(key), &v, &len) : -1;
  if (rc == 0 && val)
    *val = strtoull(v, NULL, 10);
  free(v);
  return rc == 0;
}

static void final_checks(simnet *s) {
  stead__backend *b = stead__simdisk_shared(s->disk);
  uint64_t present[NCTR] = {0};
  for (size_t i = 0; i < s->nops; i++) {
    op *o = s->ops[i];
    check(s, o->st != OP_PENDING, "op %" PRIu64 " never answered", o->uid);
    if (o->kind == K_EMIT)
      for (int j = 0; j < NSUB; j++)
        check(s, o->st != OP_FAILED || !o->got[j],
              "event of failed emit %" PRIu64 " reached sub/b%d", o->uid, j);
    if (o->kind != K_INC && o->kind != K_RELAY)
      continue;
    char id[16], key[32];
    snprintf(id, sizeof id, "c%d", o->obj);
    snprintf(key, sizeof key, "op/%" PRIu64, o->uid);
    int there = has_key(b, "ctr", id, key, NULL);
    present[o->obj] += (uint64_t)there;
    check(s, o->st != OP_ACKED || there,
          "acknowledged increment %" PRIu64 " of ctr/%s lost", o->uid, id);
    check(s, o->st != OP_FAILED || !there,
          "failed increment %" PRIu64 " of ctr/%s was applied", o->uid, id);
  }
  for (int c = 0; c < NCTR; c++) {
    char id[16];
    snprintf(id, sizeof id, "c%d", c);
    uint64_t v = 0;
    has_key(b, "ctr", id, "v", &v);
    check(s, v == present[c],
          "ctr/%s: v is %" PRIu64 " but %" PRIu64 " increments are stored", id, v,
          present[c]);
    trace(s, "final ctr/%s v=%" PRIu64, id, v);
  }
}

/* ---- a run ----------------------------------------------------------- */

static void net_free(simnet *s) {
  for (int a = 0; a < MAXN; a++)
    for (int b = 0; b < MAXN; b++)
      while (s->ch[a][b].head)
        msg_free(chan_take(&s->ch[a][b], 0));
  for (size_t i = 0; i < s->nops; i++)
    free(s->ops[i]);
  free(s->ops);
  stead__simdisk_free(s->disk);
  free(s);
}

int stead__simnet_run(const stead__sim_opts *o, stead__sim_report *r) {
  memset(r, 0, sizeof *r);
  r->trace_hash = 0xCBF29CE484222325ULL;
  r->seed = o->seed;
  r->durability = STEAD_DURABILITY_FULL;
  simnet *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory");
  s->o = *o;
  if (s->o.steps <= 0)
    s->o.steps = 2000;
  s->r = r;
  s->rng = o->seed ^ 0xC1A5;
  s->now = INT64_C(1000000000);
  s->k = o->nodes >= 2 && o->nodes <= MAXN ? o->nodes : 2 + (int)rnd(s, MAXN - 1);
  s->faults = o->faults;
  s->load = 1;
  if (s->faults) {
    s->drop_permille = 10 + (int)rnd(s, 41);
    s->dup_permille = 10 + (int)rnd(s, 21);
    s->fail_permille = (int)rnd(s, 50);
  }
  if (o->net_bug == STEAD__NETBUG_NO_DEDUP && s->dup_permille < 100)
    s->dup_permille = 100;
  r->net_nodes = (uint64_t)s->k;
  trace(s, "cluster nodes=%d drop=%d dup=%d fail=%d", s->k, s->drop_permille,
        s->dup_permille, s->fail_permille);
  for (int i = 0; i < NSHARDS; i++)
    s->row[i].owner = -1;
  int rc = stead__simdisk_new(0, &s->disk);
  for (int i = 0; rc == 0 && i < s->k; i++) {
    s->n[i].net = s;
    s->n[i].idx = i;
    snprintf(s->n[i].id, sizeof s->n[i].id, "n%d", i);
    rc = node_start(s, &s->n[i]);
  }
  if (rc == 0) {
    for (int i = 0; i < s->o.steps; i++)
      sim_step(s);
    /* Quiesce: no faults, no load; everyone comes back and settles. */
    s->faults = 0;
    s->load = 0;
    for (int i = 0; i < s->k; i++)
      if (!s->n[i].rt)
        s->n[i].restart_at = s->now;
    for (int i = 0; i < s->k; i++)
      s->n[i].paused_to = 0;
    restarts(s);
    for (int i = 0; i < 100000 && !idle(s); i++)
      sim_step(s);
    check(s, idle(s), "seed %llu: the cluster did not settle",
          (unsigned long long)o->seed);
    final_checks(s);
  } else {
    check(s, 0, "seed %llu: the cluster could not start: %s", (unsigned long long)o->seed,
          stead_errmsg());
  }
  for (int i = 0; i < s->k; i++)
    node_stop(s, &s->n[i], 0);
  net_free(s);
  return rc;
}
