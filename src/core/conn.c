/*
 * conn.c -- connections: duplex message streams between a client and an
 * object, kept by the runtime so that they outlive the object's
 * activation (hibernation).
 *
 * Owns: every connection record (`rec`), the per-object lists that
 * stead_conn_list walks (a hash table keyed by class and id, independent
 * of the activation table), each connection's bounded outgoing queue, and
 * the delivery thread that hands queued messages to clients.
 *
 * A record has two ends (stead_conn): [0] the client's, [1] the
 * object's. Client -> object traffic is a CONN message in the object's
 * mailbox (connect, message, close), run as a turn by stead__conn_turn.
 * Object -> client traffic is a turn effect (released after the commit,
 * in commit order) that appends to the record's queue; the delivery
 * thread drains queues, one connection at a time, so a client's callbacks
 * never run concurrently for one connection and always in order.
 *
 * State machine (under mod->mu): CONNECTING -> OPEN -> CLOSED, or
 * CONNECTING -> CLOSED (rejected, timed out, runtime closing). A record
 * is in the object's list ("linked") exactly while it is OPEN, and in
 * the module's `all` list while it is not CLOSED (stead_close finds the
 * open ones there).
 *
 * Lifetime: records are reference counted -- the client's handle (from
 * the connect until stead_conn_close), the object's list, each message
 * and effect that names it, the ready list. The module itself is
 * reference counted by the runtime and by every record, so a client may
 * close its handle after stead_close freed the runtime.
 *
 * Locking: one mutex (mod->mu) for all of the above; it is never held
 * while calling out (user callbacks, stead__enqueue, unref), so there is
 * no lock order with the core's stripe locks.
 *
 * Threads: client API on any thread; turns on workers; effects released
 * on the object's worker; connect completions on a worker or the timer
 * thread; client callbacks on the delivery thread.
 *
 * Across nodes (cluster mode, the object's shard owned elsewhere): the
 * connection is two records, one per node, that play the missing end
 * for each other over cluster.c's transport:
 *   - the entry node's record (REMOTE_OBJ) has the real client end; its
 *     client -> object traffic is sent to the owner as requests routed by
 *     shard (stead__cluster_conn_request), numbered per connection;
 *   - the owner's record (REMOTE_CLI) has the real object end; its
 *     "client" is the delivery thread publishing each queued message to
 *     the entry node (stead__cluster_conn_push), numbered too.
 * Both ends check the numbers: a gap (a message NATS lost in a
 * reconnect) closes the connection instead of skipping. Records of either
 * kind are also in a table keyed by (entry node, entry node's id) that
 * incoming traffic looks up. A shard that leaves this node closes its
 * objects' connections (STEAD_CLOSE_MOVED; the object is not told: its
 * shard is gone), and a peer node leaving closes the records bound to it.
 */
#include "cluster/envelope.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OP_CONNECT = 1, OP_MESSAGE, OP_CLOSE };
enum { ST_CONNECTING = 0, ST_OPEN, ST_CLOSED };
/* Which end is on another node (cluster mode). */
enum { END_LOCAL = 0, REMOTE_OBJ, REMOTE_CLI };

/* Headers of connection traffic between nodes. */
#define H_FROM "x-stead-from" /* the entry node */
#define H_CONN "x-stead-conn" /* the entry node's connection id */
#define H_OP   "x-stead-op"   /* "msg" or "close" */
#define H_SEQ  "x-stead-seq"  /* per connection and direction, from 1 */
#define H_CODE "x-stead-code" /* message flags or close code */

#define DEFAULT_QUEUE_MSGS  1024
#define DEFAULT_QUEUE_BYTES ((size_t)4 << 20)
/* How long stead_close waits for the last closes to be told. */
#define CLOSE_FLUSH_S 2
/* Messages one connection gets per turn of the delivery thread. */
#define DELIVER_BATCH 64

typedef struct stead__conn_rec rec;
typedef struct objconns objconns;
typedef struct conn_mod conn_mod;

struct stead_conn {
  rec *r;
  int side; /* 0: the client's end, 1: the object's */
};

/* A message (or close) from the object on its way to the client. */
typedef struct out_msg {
  struct out_msg *next;
  rec *r;
  int close; /* a close effect: code and reason in flags/data */
  unsigned flags;
  size_t len;
  uint8_t data[];
} out_msg;

struct stead__conn_rec {
  stead_conn ends[2];
  atomic_int refs;
  conn_mod *mod;
  stead_rt *rt;
  const stead__class_rec *crec;
  uint64_t id;
  stead_conn_opts opts;
  stead_connect_cb cb;
  void *cb_udata;
  /* Guarded by mod->mu: */
  int state;
  bool handed;         /* the client has its end: delivery may start */
  bool cli_released;   /* the client closed its handle */
  bool cli_notified;   /* the client's on_close ran or is running */
  bool obj_knows;      /* the object accepted it */
  bool obj_close_sent; /* on_conn_close queued (or the object closed it) */
  bool linked;
  bool ready; /* on the delivery thread's list */
  bool delivering;
  pthread_t deliverer;
  bool close_pending; /* a close waits to be told to the client */
  int close_code;
  char close_reason[STEAD_MAX_CONN_REASON + 1];
  objconns *obj;
  rec *oprev, *onext; /* the object's list */
  rec *aprev, *anext; /* mod->all */
  rec *rnext;         /* ready list */
  out_msg *qhead, *qtail;
  size_t qmsgs, qbytes;
  void *attach;
  size_t attach_len;
  char *tags[STEAD_MAX_CONN_TAGS];
  int ntags;
  /* Cluster mode. */
  uint32_t shard; /* the object's */
  int remote;     /* END_LOCAL, REMOTE_OBJ or REMOTE_CLI */
  bool in_table;  /* guarded by mod->mu */
  bool peer_gone; /* REMOTE_CLI: the client left while connecting */
  rec *tnext;
  uint64_t key;                   /* the entry node's id of the connection */
  char peer[STEAD__MAX_NAME + 1]; /* the node at the other end ("" unknown) */
  /* REMOTE_OBJ: orders numbering with sending, so numbers arrive in order. */
  pthread_mutex_t smu;
  uint64_t seq_out; /* REMOTE_OBJ: under smu; REMOTE_CLI: delivery thread */
  uint64_t seq_in;  /* under mod->mu */
  /* REMOTE_CLI: answers the forwarded connect. */
  stead__conn_answer_fn answer;
  void *answer_arg;
  size_t oid_len;
  char oid[]; /* the object's id */
};

/* One object's open connections, oldest first. */
struct objconns {
  objconns *hnext;
  const stead__class_rec *crec;
  uint64_t h;
  rec *head, *tail;
  size_t n;
  size_t id_len;
  char id[];
};

struct conn_mod {
  atomic_int refs; /* the runtime + one per record */
  pthread_mutex_t mu;
  pthread_cond_t done_cv; /* a delivery finished */
  pthread_cond_t work_cv; /* the ready list grew, or stop */
  stead_rt *rt;
  bool closing, stop, started;
  bool busy; /* the delivery thread is telling some record's client */
  int users; /* client calls about to enqueue; stead_close waits for 0 */
  pthread_t thread;
  objconns **buckets;
  size_t nbuckets, nobjs;
  rec *all;
  rec *rhead, *rtail;
  rec **table; /* records with a remote end, by (entry node, key) */
  size_t ntable, tcount;
  uint64_t next_id;
  stead_conn_stats st;
};

static void remote_tell_close(rec *r, int code, const char *reason);
static void remote_client_gone(rec *r, int code, const char *reason);

/* ---- references ------------------------------------------------------ */

static void mod_unref(conn_mod *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->done_cv);
  pthread_cond_destroy(&m->work_cv);
  free(m->buckets);
  free(m->table);
  free(m);
}

static void rec_ref(rec *r) {
  atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

static void queue_free(rec *r) {
  while (r->qhead) {
    out_msg *o = r->qhead;
    r->qhead = o->next;
    free(o);
  }
  r->qtail = NULL;
  r->qmsgs = r->qbytes = 0;
}

static void rec_unref(rec *r) {
  if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
    return;
  conn_mod *m = r->mod;
  queue_free(r);
  free(r->attach);
  for (int i = 0; i < r->ntags; i++)
    free(r->tags[i]);
  pthread_mutex_destroy(&r->smu);
  free(r);
  mod_unref(m);
}

static void unref_n(rec *r, int n) {
  while (n-- > 0)
    rec_unref(r);
}

static conn_mod *mod_of(stead_rt *rt) {
  return *stead__rt_slot(rt, STEAD__SLOT_CONN);
}

/* ---- the per-object table (mod->mu held) ------------------------------ */

static uint64_t obj_hash(const stead__class_rec *c, const char *id, size_t len) {
  return stead__hash64(id, len, (uint64_t)(uintptr_t)c);
}

static objconns *obj_find(conn_mod *m, const stead__class_rec *c, const char *id,
                          size_t len) {
  uint64_t h = obj_hash(c, id, len);
  for (objconns *o = m->buckets[h % m->nbuckets]; o; o = o->hnext)
    if (o->h == h && o->crec == c && o->id_len == len && memcmp(o->id, id, len) == 0)
      return o;
  return NULL;
}

static void obj_grow(conn_mod *m) {
  size_t nb = m->nbuckets * 2;
  objconns **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < m->nbuckets; i++)
    for (objconns *o = m->buckets[i], *next; o; o = next) {
      next = o->hnext;
      o->hnext = b[o->h % nb];
      b[o->h % nb] = o;
    }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
}

static objconns *obj_get(conn_mod *m, const stead__class_rec *c, const char *id,
                         size_t len) {
  objconns *o = obj_find(m, c, id, len);
  if (o)
    return o;
  o = calloc(1, sizeof *o + len + 1);
  if (!o)
    return NULL;
  o->crec = c;
  o->h = obj_hash(c, id, len);
  o->id_len = len;
  memcpy(o->id, id, len);
  o->hnext = m->buckets[o->h % m->nbuckets];
  m->buckets[o->h % m->nbuckets] = o;
  if (++m->nobjs > m->nbuckets)
    obj_grow(m);
  return o;
}

static void obj_drop_if_empty(conn_mod *m, objconns *o) {
  if (o->head)
    return;
  objconns **pp = &m->buckets[o->h % m->nbuckets];
  while (*pp && *pp != o)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = o->hnext;
  m->nobjs--;
  free(o);
}

/* Links r into its object's list; the list takes a reference. */
static int link_obj(conn_mod *m, rec *r) {
  objconns *o = obj_get(m, r->crec, r->oid, r->oid_len);
  if (!o)
    return STEAD_ENOMEM;
  r->obj = o;
  r->oprev = o->tail;
  r->onext = NULL;
  if (o->tail)
    o->tail->onext = r;
  else
    o->head = r;
  o->tail = r;
  o->n++;
  r->linked = true;
  rec_ref(r);
  return 0;
}

/* Unlinks r; returns the references the caller drops after unlocking. */
static int unlink_obj(conn_mod *m, rec *r) {
  if (!r->linked)
    return 0;
  objconns *o = r->obj;
  if (r->oprev)
    r->oprev->onext = r->onext;
  else
    o->head = r->onext;
  if (r->onext)
    r->onext->oprev = r->oprev;
  else
    o->tail = r->oprev;
  o->n--;
  r->linked = false;
  r->obj = NULL;
  r->oprev = r->onext = NULL;
  obj_drop_if_empty(m, o);
  return 1;
}

static void all_unlink(conn_mod *m, rec *r) {
  if (r->aprev)
    r->aprev->anext = r->anext;
  else if (m->all == r)
    m->all = r->anext;
  else
    return; /* not in the list */
  if (r->anext)
    r->anext->aprev = r->aprev;
  r->aprev = r->anext = NULL;
}

/* ---- the table of records with a remote end (mod->mu held) ------------ */

/* A record is in the table while its far end may still send to it: an
 * entry node's until it closes, an owner's until its client's handle is
 * released (so a message racing with the object's close is discarded,
 * not refused). Either way a reference is held meanwhile, so a lookup may
 * take one of its own. */

static const char *tab_node(const rec *r) {
  return r->remote == REMOTE_OBJ ? "" : r->peer;
}

static size_t tab_slot(const conn_mod *m, const char *node, uint64_t key) {
  return stead__hash64(node, strlen(node), key) % m->ntable;
}

static rec *tab_find(conn_mod *m, const char *node, uint64_t key) {
  if (!m->ntable)
    return NULL;
  for (rec *r = m->table[tab_slot(m, node, key)]; r; r = r->tnext)
    if (r->key == key && strcmp(tab_node(r), node) == 0)
      return r;
  return NULL;
}

static void tab_grow(conn_mod *m) {
  size_t old = m->ntable, nb = old ? old * 2 : 64;
  rec **t = calloc(nb, sizeof *t);
  if (!t)
    return; /* longer chains, still correct */
  rec **prev = m->table;
  m->table = t;
  m->ntable = nb;
  for (size_t i = 0; i < old; i++)
    for (rec *r = prev[i], *next; r; r = next) {
      next = r->tnext;
      size_t k = tab_slot(m, tab_node(r), r->key);
      r->tnext = t[k];
      t[k] = r;
    }
  free(prev);
}

static int tab_add(conn_mod *m, rec *r) {
  if (m->tcount >= m->ntable)
    tab_grow(m);
  if (!m->ntable)
    return stead__err(STEAD_ENOMEM, "out of memory");
  if (tab_find(m, tab_node(r), r->key))
    return stead__err(STEAD_ECONFLICT, "connection %llu from node %s is already open",
                      (unsigned long long)r->key, tab_node(r));
  size_t k = tab_slot(m, tab_node(r), r->key);
  r->tnext = m->table[k];
  m->table[k] = r;
  r->in_table = true;
  m->tcount++;
  return 0;
}

static void tab_del(conn_mod *m, rec *r) {
  if (!r->in_table)
    return;
  rec **pp = &m->table[tab_slot(m, tab_node(r), r->key)];
  while (*pp && *pp != r)
    pp = &(*pp)->tnext;
  if (*pp)
    *pp = r->tnext;
  r->tnext = NULL;
  r->in_table = false;
  m->tcount--;
}

/* ---- delivery --------------------------------------------------------- */

/* Puts r on the delivery thread's list if there is something to tell its
 * client (mod->mu held). */
static void make_ready(conn_mod *m, rec *r) {
  if (r->ready || !r->handed || r->cli_released)
    return;
  if (!r->qhead && !(r->close_pending && !r->cli_notified))
    return;
  r->ready = true;
  r->rnext = NULL;
  rec_ref(r);
  if (m->rtail)
    m->rtail->rnext = r;
  else
    m->rhead = r;
  m->rtail = r;
  pthread_cond_signal(&m->work_cv);
}

static void copy_reason(char *dst, const char *reason) {
  size_t n = 0;
  if (reason) {
    size_t len = strlen(reason);
    /* Cut at a character boundary so the reason stays UTF-8. */
    while (n < len && n < STEAD_MAX_CONN_REASON) {
      size_t k = stead__utf8_seq((const unsigned char *)reason + n, len - n);
      if (k == 0 || n + k > STEAD_MAX_CONN_REASON)
        break;
      n += k;
    }
    memcpy(dst, reason, n);
  }
  dst[n] = 0;
}

/* Closes r (mod->mu held): CLOSED, out of the lists, the client to be
 * told. Sets *tell_obj when the object must get on_conn_close (the
 * caller queues it after unlocking). Returns references to drop. */
static int close_locked(conn_mod *m, rec *r, int code, const char *reason,
                        bool drop_queue, bool *tell_obj) {
  if (r->state == ST_CLOSED)
    return 0;
  r->state = ST_CLOSED;
  all_unlink(m, r);
  if (r->remote == REMOTE_OBJ)
    tab_del(m, r);
  int drops = unlink_obj(m, r);
  if (drop_queue)
    queue_free(r);
  r->close_pending = true;
  r->close_code = code;
  copy_reason(r->close_reason, reason);
  m->st.closed++;
  if (r->obj_knows)
    m->st.open--;
  if (r->obj_knows && !r->obj_close_sent) {
    r->obj_close_sent = true;
    *tell_obj = true;
  }
  make_ready(m, r);
  return drops;
}

/* Queues on_conn_close for the object (no lock held). */
static void tell_object_closed(rec *r, int code, const char *reason) {
  if (r->remote == REMOTE_OBJ) {
    remote_tell_close(r, code, reason);
    return;
  }
  stead__msg *msg = stead__msg_new(STEAD__MSG_CONN, reason, strlen(reason));
  if (msg) {
    msg->conn = r;
    msg->conn_op = OP_CLOSE;
    msg->conn_code = code;
    rec_ref(r);
    /* Past the mailbox limit: it answers a connection already accepted. */
    if (stead__enqueue(r->rt, r->crec, r->oid, r->oid_len, msg, true) == 0)
      return;
    stead__msg_free(msg);
  }
  stead__log(r->rt, STEAD_LOG_ERROR, "cannot tell %s/%s that connection %llu closed",
             r->crec->cls->name, r->oid, (unsigned long long)r->id);
}

static void *deliver_main(void *arg) {
  conn_mod *m = arg;
  stead__set_current_rt(m->rt);
  pthread_t self = pthread_self();
  pthread_mutex_lock(&m->mu);
  for (;;) {
    while (!m->rhead && !m->stop)
      pthread_cond_wait(&m->work_cv, &m->mu);
    rec *r = m->rhead;
    if (!r)
      break; /* stopping, and nothing left to tell */
    m->rhead = r->rnext;
    if (!m->rhead)
      m->rtail = NULL;
    r->ready = false;
    m->busy = true;
    for (int i = 0; i < DELIVER_BATCH && r->qhead && !r->cli_released; i++) {
      out_msg *o = r->qhead;
      r->qhead = o->next;
      if (!r->qhead)
        r->qtail = NULL;
      r->qmsgs--;
      r->qbytes -= o->len;
      r->delivering = true;
      r->deliverer = self;
      m->st.msgs_out++;
      pthread_mutex_unlock(&m->mu);
      r->opts.on_message(&r->ends[0], o->data, o->len, o->flags, r->opts.udata);
      free(o);
      pthread_mutex_lock(&m->mu);
      r->delivering = false;
      pthread_cond_broadcast(&m->done_cv);
    }
    if (r->qhead)
      make_ready(m, r); /* more than a batch: behind the others */
    else if (r->close_pending && !r->cli_notified && !r->cli_released) {
      r->cli_notified = true;
      r->delivering = true;
      r->deliverer = self;
      pthread_mutex_unlock(&m->mu);
      if (r->opts.on_close)
        r->opts.on_close(&r->ends[0], r->close_code, r->close_reason, r->opts.udata);
      pthread_mutex_lock(&m->mu);
      r->delivering = false;
    }
    m->busy = false;
    pthread_cond_broadcast(&m->done_cv);
    pthread_mutex_unlock(&m->mu);
    rec_unref(r); /* the ready list's reference */
    pthread_mutex_lock(&m->mu);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

/* Starts the delivery thread on the first connect (mod->mu held). */
static int start_delivery(conn_mod *m) {
  if (m->started)
    return 0;
  if (pthread_create(&m->thread, NULL, deliver_main, m) != 0)
    return stead__err(STEAD_EIO, "cannot start the connection delivery thread");
  m->started = true;
  return 0;
}

/* ---- runtime hooks ---------------------------------------------------- */

int stead__conn_rt_open(stead_rt *rt) {
  conn_mod *m = calloc(1, sizeof *m);
  if (m)
    m->buckets = calloc(64, sizeof *m->buckets);
  if (!m || !m->buckets) {
    free(m);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  m->nbuckets = 64;
  atomic_init(&m->refs, 1);
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->done_cv, NULL);
  pthread_cond_init(&m->work_cv, NULL);
  m->rt = rt;
  m->next_id = 1;
  *stead__rt_slot(rt, STEAD__SLOT_CONN) = m;
  return 0;
}

void stead__conn_rt_close(stead_rt *rt) {
  conn_mod *m = mod_of(rt);
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->closing = true;
  while (m->users > 0)
    pthread_cond_wait(&m->done_cv, &m->mu);
  /* One at a time: each close leaves `all`, and telling the object
   * needs the lock released. Connects in flight are closed when their
   * object accepts them (link_release sees `closing`). */
  for (;;) {
    rec *r = m->all;
    while (r && r->state != ST_OPEN)
      r = r->anext;
    if (!r)
      break;
    bool tell_obj = false;
    rec_ref(r);
    int drops =
        close_locked(m, r, STEAD_CLOSE_GOING_AWAY, "runtime closing", false, &tell_obj);
    pthread_mutex_unlock(&m->mu);
    if (tell_obj)
      tell_object_closed(r, STEAD_CLOSE_GOING_AWAY, "runtime closing");
    unref_n(r, drops + 1);
    pthread_mutex_lock(&m->mu);
  }
  /* In a cluster the closes of remote clients are pushes the delivery
   * thread makes; they must leave before the node does. A local client
   * slow to take its messages does not hold stead_close for long. */
  if (m->started) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CLOSE_FLUSH_S;
    while ((m->rhead || m->busy) &&
           pthread_cond_timedwait(&m->done_cv, &m->mu, &until) == 0) {
    }
  }
  pthread_mutex_unlock(&m->mu);
}

void stead__conn_rt_free(stead_rt *rt) {
  conn_mod *m = mod_of(rt);
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->stop = true;
  pthread_cond_broadcast(&m->work_cv);
  bool started = m->started;
  pthread_mutex_unlock(&m->mu);
  if (started)
    pthread_join(m->thread, NULL);
  *stead__rt_slot(rt, STEAD__SLOT_CONN) = NULL;
  mod_unref(m);
}

int stead_conn_get_stats(stead_rt *rt, stead_conn_stats *out) {
  if (!rt || !out)
    return stead__err(STEAD_EINVAL, "runtime or out is NULL");
  conn_mod *m = mod_of(rt);
  if (!m)
    return stead__err(STEAD_ECLOSED, "runtime is closed");
  pthread_mutex_lock(&m->mu);
  *out = m->st;
  pthread_mutex_unlock(&m->mu);
  return 0;
}

int stead__conn_rt_metrics(stead_rt *rt, stead__buf *b) {
  stead_conn_stats s = {0};
  conn_mod *m = mod_of(rt);
  if (m) {
    pthread_mutex_lock(&m->mu);
    s = m->st;
    pthread_mutex_unlock(&m->mu);
  }
  int rc = stead__metric_header(b, "stead_connections_open", "gauge",
                                "Connections accepted and not yet closed.");
  rc |= stead__metric_value(b, "stead_connections_open", NULL, (double)s.open);
  const char *n = "stead_connects_total";
  rc |= stead__metric_header(b, n, "counter", "Connects answered, by outcome.");
  rc |= stead__metric_value(b, n, "outcome=\"accepted\"", (double)s.accepted);
  rc |= stead__metric_value(b, n, "outcome=\"rejected\"", (double)s.rejected);
  n = "stead_connection_closes_total";
  rc |= stead__metric_header(
      b, n, "counter", "Connections closed; cause slow: the client's queue was full.");
  rc |= stead__metric_value(b, n, "cause=\"slow\"", (double)s.closed_slow);
  rc |= stead__metric_value(b, n, "cause=\"other\"", (double)(s.closed - s.closed_slow));
  n = "stead_connection_messages_total";
  rc |= stead__metric_header(b, n, "counter", "Connection messages, by direction.");
  rc |= stead__metric_value(b, n, "direction=\"in\"", (double)s.msgs_in);
  rc |= stead__metric_value(b, n, "direction=\"out\"", (double)s.msgs_out);
  rc |= stead__metric_value(b, n, "direction=\"discarded\"", (double)s.msgs_discarded);
  return rc ? STEAD_ENOMEM : 0;
}

/* ---- connect ---------------------------------------------------------- */

/* The object's answer to a connect: on a worker (after the commit), the
 * timer thread (deadline) or wherever the message is freed (close). */
static void connect_done(const stead_result *res, void *udata) {
  rec *r = udata;
  conn_mod *m = r->mod;
  if (res->status == 0) {
    pthread_mutex_lock(&m->mu);
    if (r->state == ST_CONNECTING)
      r->state = ST_OPEN; /* not linked yet only if the link effect failed */
    pthread_mutex_unlock(&m->mu);
    r->cb(&r->ends[0], 0, NULL, r->cb_udata);
    pthread_mutex_lock(&m->mu);
    r->handed = true;
    bool gone = r->peer_gone;
    make_ready(m, r);
    pthread_mutex_unlock(&m->mu);
    /* A remote client that left while its connect ran: only now, with
     * this thread done with r, may its handle go. */
    if (gone)
      remote_client_gone(r, STEAD_CLOSE_ABNORMAL, "the client left while connecting");
    return; /* the connect's reference is now the client's handle */
  }
  int status = res->status == STEAD_EHANDLER ? STEAD_EREJECTED : res->status;
  char why[STEAD_MAX_CONN_REASON * 4 + 1];
  snprintf(why, sizeof why, "%s", res->message ? res->message : stead_strerror(status));
  bool tell_obj = false;
  pthread_mutex_lock(&m->mu);
  r->cli_released = true;
  r->cli_notified = true;
  tab_del(m, r);
  /* A connect that never opened counts as a rejection, not a close. */
  bool never_opened = r->state != ST_CLOSED && !r->obj_knows;
  int drops =
      close_locked(m, r, STEAD_CLOSE_ABNORMAL, "connect timed out", true, &tell_obj);
  if (never_opened)
    m->st.closed--;
  m->st.rejected++;
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, STEAD_CLOSE_ABNORMAL, "connect timed out");
  r->cb(NULL, status, why, r->cb_udata);
  unref_n(r, drops + 1);
}

/* The connect's turn succeeded and committed: the object accepted. */
static void link_release(void *arg) {
  rec *r = arg;
  conn_mod *m = r->mod;
  bool tell_obj = false;
  int drops = 0;
  int code = STEAD_CLOSE_GOING_AWAY;
  const char *why = "runtime closing";
  pthread_mutex_lock(&m->mu);
  r->obj_knows = true;
  m->st.accepted++;
  m->st.open++;
  if (r->state == ST_CONNECTING && !m->closing && link_obj(m, r) == 0) {
    /* linked */
  } else if (r->state == ST_CONNECTING) {
    if (!m->closing) {
      code = STEAD_CLOSE_INTERNAL;
      why = "out of memory";
    }
    drops = close_locked(m, r, code, why, true, &tell_obj);
  } else {
    /* The client's deadline passed while the object was accepting. */
    m->st.open--;
    code = r->close_code;
    why = "connect timed out";
    if (!r->obj_close_sent) {
      r->obj_close_sent = true;
      tell_obj = true;
    }
  }
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, code, why);
  unref_n(r, drops + 1);
}

static void ref_drop(void *arg) {
  rec_unref(arg);
}

static int api_enter(stead_rt *rt) {
  atomic_fetch_add(&rt->api_refs, 1);
  if (atomic_load(&rt->closing)) {
    atomic_fetch_sub(&rt->api_refs, 1);
    return stead__err(STEAD_ECLOSED, "runtime is closing");
  }
  return 0;
}

static void api_leave(stead_rt *rt) {
  atomic_fetch_sub(&rt->api_refs, 1);
}

static int check_connect(stead_rt *rt, const char *cls, const char *id, const void *meta,
                         size_t meta_len, const stead_conn_opts *opts,
                         stead_connect_cb cb, const stead__class_rec **crec) {
  int rc;
  if (!opts || !opts->on_message || !cb)
    return stead__err(STEAD_EINVAL, "on_message and the completion are required");
  if ((rc = stead__check_name("class name", cls)) ||
      (rc = stead__check_utf8("id", id, STEAD__MAX_ID)))
    return rc;
  if (meta_len && !meta)
    return stead__err(STEAD_EINVAL, "meta is NULL but its length is %zu", meta_len);
  if (meta_len > STEAD_MAX_CONN_META)
    return stead__err(STEAD_ETOOBIG, "meta is %zu bytes; the limit is %d", meta_len,
                      STEAD_MAX_CONN_META);
  if (!(*crec = stead__class_find(rt, cls)))
    return stead__err(STEAD_ENOCLASS, "no class \"%s\"", cls);
  if (!(*crec)->cls->on_connect)
    return stead__err(STEAD_ENOTSUP,
                      "class \"%s\" does not accept connections (no on_connect)", cls);
  return 0;
}

static rec *rec_new(conn_mod *m, stead_rt *rt, const stead__class_rec *crec,
                    const char *id, const stead_conn_opts *opts, stead_connect_cb cb,
                    void *cb_udata) {
  size_t len = strlen(id);
  rec *r = calloc(1, sizeof *r + len + 1);
  if (!r)
    return NULL;
  r->ends[0] = (stead_conn){r, 0};
  r->ends[1] = (stead_conn){r, 1};
  atomic_init(&r->refs, 1);
  r->mod = m;
  r->rt = rt;
  r->crec = crec;
  r->opts = *opts;
  if (!r->opts.max_queue_msgs)
    r->opts.max_queue_msgs = DEFAULT_QUEUE_MSGS;
  if (!r->opts.max_queue_bytes)
    r->opts.max_queue_bytes = DEFAULT_QUEUE_BYTES;
  r->cb = cb;
  r->cb_udata = cb_udata;
  r->oid_len = len;
  memcpy(r->oid, id, len + 1);
  r->shard = stead__cluster_shard(rt, crec->cls->name, id);
  pthread_mutex_init(&r->smu, NULL);
  return r;
}

/* Frees a record that never became visible (no reference taken). */
static void rec_discard(rec *r) {
  if (r) {
    pthread_mutex_destroy(&r->smu);
    free(r);
  }
}

/* Makes a new record visible (mod->mu held): in `all`, with an id, in the
 * table if it has a remote end; the record holds the module. */
static int rec_register(conn_mod *m, rec *r) {
  int rc = m->closing ? stead__err(STEAD_ECLOSED, "runtime is closing") : 0;
  if (rc == 0)
    rc = start_delivery(m);
  if (rc)
    return rc;
  r->id = m->next_id++;
  if (r->remote == REMOTE_OBJ)
    r->key = r->id;
  if (r->remote && (rc = tab_add(m, r)) != 0)
    return rc;
  atomic_fetch_add(&m->refs, 1);
  r->anext = m->all;
  if (m->all)
    m->all->aprev = r;
  m->all = r;
  return 0;
}

/* Undoes rec_register for a connect that failed before anything ran. */
static void rec_unregister(conn_mod *m, rec *r) {
  pthread_mutex_lock(&m->mu);
  r->cli_released = r->cli_notified = true;
  r->state = ST_CLOSED;
  all_unlink(m, r);
  tab_del(m, r);
  pthread_mutex_unlock(&m->mu);
}

/* Sends the connect of r (a new record, taken over) to its object in this
 * runtime; r->cb gets the answer unless an error is returned. */
static int connect_local(conn_mod *m, stead_rt *rt, rec *r, const void *meta,
                         size_t meta_len, int tmo) {
  stead__call *c = stead__call_new(rt, connect_done, r, tmo, true, 0, NULL);
  stead__msg *msg = c ? stead__msg_new(STEAD__MSG_CONN, meta, meta_len) : NULL;
  if (!msg) {
    free(c);
    rec_discard(r);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  pthread_mutex_lock(&m->mu);
  int rc = rec_register(m, r);
  pthread_mutex_unlock(&m->mu);
  if (rc) {
    free(c);
    rec_discard(r);
    stead__msg_free(msg);
    return rc;
  }
  msg->conn = r;
  msg->conn_op = OP_CONNECT;
  msg->call = c;
  rec_ref(r); /* the message's */
  if (stead__call_arm(c) != 0)
    rc = stead__err(STEAD_ENOMEM, "out of memory arming the deadline");
  else
    rc = stead__enqueue(rt, r->crec, r->oid, r->oid_len, msg, false);
  if (rc) {
    /* The callback must not run: claim the call before freeing. */
    atomic_store(&c->done, 1);
    if (stead__timer_cancel(&rt->timers, &c->timer))
      stead__call_unref(c);
    rec_unregister(m, r);
    stead__msg_free(msg); /* drops the message's reference and the call */
    rec_unref(r);
  }
  return rc;
}

static int connect_remote(conn_mod *m, stead_rt *rt, rec *r, const void *meta,
                          size_t meta_len, int tmo);

int stead_connect_async(stead_rt *rt, const char *cls, const char *id, const void *meta,
                        size_t meta_len, const stead_conn_opts *opts, stead_connect_cb cb,
                        void *cb_udata) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  conn_mod *m = mod_of(rt);
  if ((rc = check_connect(rt, cls, id, meta, meta_len, opts, cb, &crec)) != 0)
    goto out;
  rec *r = rec_new(m, rt, crec, id, opts, cb, cb_udata);
  if (!r) {
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  int tmo = opts->timeout_ms > 0 ? opts->timeout_ms : rt->cfg.default_timeout_ms;
  /* In a cluster, an object this node does not run is reached through
   * its owner; the connection stays bound to that node. */
  if (rt->cluster && !stead__cluster_owns(rt, cls, id)) {
    r->remote = REMOTE_OBJ;
    rc = connect_remote(m, rt, r, meta, meta_len, tmo);
  } else {
    rc = connect_local(m, rt, r, meta, meta_len, tmo);
  }
out:
  api_leave(rt);
  return rc;
}

typedef struct sync_connect {
  stead__waiter w;
  stead_conn *conn;
  char why[1024];
} sync_connect;

static void sync_connected(stead_conn *conn, int status, const char *reason,
                           void *udata) {
  sync_connect *sc = udata;
  pthread_mutex_lock(&sc->w.mu);
  sc->conn = conn;
  sc->w.rc = status;
  if (reason)
    snprintf(sc->why, sizeof sc->why, "%s", reason);
  sc->w.done = true;
  pthread_cond_signal(&sc->w.cv);
  pthread_mutex_unlock(&sc->w.mu);
}

int stead_connect(stead_rt *rt, const char *cls, const char *id, const void *meta,
                  size_t meta_len, stead_conn_message_fn on_message,
                  stead_conn_close_fn on_close, void *udata, stead_conn **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out is NULL");
  *out = NULL;
  if (stead__current_rt())
    return stead__err(
        STEAD_EMISUSE,
        "stead_connect would block a stead thread; use stead_connect_async");
  stead_conn_opts o = {0};
  o.on_message = on_message;
  o.on_close = on_close;
  o.udata = udata;
  sync_connect sc;
  memset(&sc, 0, sizeof sc);
  pthread_mutex_init(&sc.w.mu, NULL);
  pthread_cond_init(&sc.w.cv, NULL);
  int rc = stead_connect_async(rt, cls, id, meta, meta_len, &o, sync_connected, &sc);
  if (rc == 0) {
    pthread_mutex_lock(&sc.w.mu);
    while (!sc.w.done)
      pthread_cond_wait(&sc.w.cv, &sc.w.mu);
    pthread_mutex_unlock(&sc.w.mu);
    rc = sc.w.rc;
    if (rc)
      stead__err(rc, "%s", sc.why[0] ? sc.why : stead_strerror(rc));
    else
      *out = sc.conn;
  }
  pthread_mutex_destroy(&sc.w.mu);
  pthread_cond_destroy(&sc.w.cv);
  return rc;
}

/* ---- the object's turns ----------------------------------------------- */

static int turn_connect(stead_ctx *ctx, stead__msg *msg, rec *r) {
  conn_mod *m = r->mod;
  pthread_mutex_lock(&m->mu);
  objconns *o = obj_find(m, r->crec, r->oid, r->oid_len);
  size_t n = o ? o->n : 0;
  pthread_mutex_unlock(&m->mu);
  if (n >= STEAD_MAX_CONNS_PER_OBJ)
    return stead__ctx_fail_code(ctx, STEAD_ETOOBIG,
                                "%s/%s has %zu connections open; the limit is %d",
                                r->crec->cls->name, r->oid, n, STEAD_MAX_CONNS_PER_OBJ);
  /* First in the outbox, so that the connection is in the object's list
   * before anything the hook sends is released. */
  rec_ref(r);
  if (stead__ctx_effect(ctx, link_release, ref_drop, r) != 0) {
    rec_unref(r);
    return stead__ctx_fail_code(ctx, STEAD_ENOMEM,
                                "out of memory accepting a connection");
  }
  return r->crec->cls->on_connect(ctx, &r->ends[1], msg->payload, msg->len);
}

int stead__conn_turn(stead_ctx *ctx, stead__msg *msg) {
  rec *r = msg->conn;
  const stead_class *cls = r->crec->cls;
  switch (msg->conn_op) {
  case OP_CONNECT:
    return turn_connect(ctx, msg, r);
  case OP_MESSAGE:
    if (!cls->on_conn_message)
      return stead_fail(ctx, "class \"%s\" has no on_conn_message hook", cls->name);
    return cls->on_conn_message(ctx, &r->ends[1], msg->payload, msg->len,
                                (unsigned)msg->conn_code);
  default:
    return cls->on_conn_close ? cls->on_conn_close(ctx, &r->ends[1], msg->conn_code,
                                                   (const char *)msg->payload)
                              : 0;
  }
}

void stead__conn_msg_release(stead__msg *msg) {
  rec *r = msg->conn;
  msg->conn = NULL;
  rec_unref(r);
}

/* ---- sending ---------------------------------------------------------- */

static int check_data(stead_rt *rt, const void *data, size_t len, unsigned flags) {
  if (len && !data)
    return stead__err(STEAD_EINVAL, "data is NULL but its length is %zu", len);
  if (flags & ~STEAD_CONN_TEXT)
    return stead__err(STEAD_EINVAL, "unknown flags 0x%x", flags);
  if (len > rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "message is %zu bytes; the limit is %zu", len,
                      rt->cfg.max_payload);
  if (flags & STEAD_CONN_TEXT) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len;) {
      size_t k = stead__utf8_seq(p + i, len - i);
      if (!k)
        return stead__err(STEAD_EINVAL, "text message is not UTF-8 (byte %zu)", i);
      i += k;
    }
  }
  return 0;
}

/* The turn of r's object running on this thread, or NULL (EMISUSE set). */
static stead_ctx *owner_ctx(rec *r) {
  stead_ctx *ctx = stead__ctx_current();
  stead__act *a = ctx ? stead__ctx_act(ctx) : NULL;
  if (!a || a->crec != r->crec || a->id_len != r->oid_len ||
      memcmp(a->id, r->oid, r->oid_len) != 0) {
    stead__err(STEAD_EMISUSE,
               "the object's end of a connection is used only in a turn of its object");
    return NULL;
  }
  return ctx;
}

/* A client call that may enqueue to the object: only while the
 * connection is open and the runtime is not closing, which also keeps
 * r->rt alive until client_leave (stead_close waits for users). */
static int client_enter(rec *r) {
  conn_mod *m = r->mod;
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  if (r->cli_released)
    rc = stead__err(STEAD_EINVAL, "the connection handle was closed");
  else if (r->state != ST_OPEN || m->closing)
    rc =
        stead__err(STEAD_ECLOSED, "connection %llu is closed", (unsigned long long)r->id);
  else
    m->users++;
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static void client_leave(conn_mod *m) {
  pthread_mutex_lock(&m->mu);
  if (--m->users == 0 && m->closing)
    pthread_cond_broadcast(&m->done_cv);
  pthread_mutex_unlock(&m->mu);
}

static int remote_client_send(rec *r, const void *data, size_t len, unsigned flags);

static int client_send(rec *r, const void *data, size_t len, unsigned flags) {
  stead_rt *rt = r->rt;
  conn_mod *m = r->mod;
  int rc = client_enter(r);
  if (rc)
    return rc;
  if ((rc = check_data(rt, data, len, flags)) != 0)
    goto out;
  if (r->remote == REMOTE_OBJ) {
    rc = remote_client_send(r, data, len, flags);
    goto out;
  }
  stead__msg *msg = stead__msg_new(STEAD__MSG_CONN, data, len);
  if (!msg) {
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  msg->conn = r;
  msg->conn_op = OP_MESSAGE;
  msg->conn_code = (int)flags;
  rec_ref(r);
  if ((rc = stead__enqueue(rt, r->crec, r->oid, r->oid_len, msg, false)) != 0) {
    stead__msg_free(msg);
    goto out;
  }
  pthread_mutex_lock(&m->mu);
  m->st.msgs_in++;
  pthread_mutex_unlock(&m->mu);
out:
  client_leave(m);
  return rc;
}

/* Queues o (taken over) for r's client (mod->mu held), or discards it
 * (closed), or closes a client too slow to keep up. Returns references to
 * drop; sets *tell_obj as close_locked does. */
static int queue_out_locked(conn_mod *m, rec *r, out_msg *o, bool *tell_obj) {
  if (r->state == ST_CLOSED || r->cli_released) {
    m->st.msgs_discarded++;
    free(o);
    return 0;
  }
  if (r->qmsgs + 1 > r->opts.max_queue_msgs ||
      r->qbytes + o->len > r->opts.max_queue_bytes) {
    char why[STEAD_MAX_CONN_REASON + 1];
    snprintf(why, sizeof why, "client too slow: %zu messages (%zu bytes) not taken",
             r->qmsgs, r->qbytes);
    m->st.closed_slow++;
    m->st.msgs_discarded += r->qmsgs + 1;
    free(o);
    return close_locked(m, r, STEAD_CLOSE_SLOW, why, true, tell_obj);
  }
  o->next = NULL;
  if (r->qtail)
    r->qtail->next = o;
  else
    r->qhead = o;
  r->qtail = o;
  r->qmsgs++;
  r->qbytes += o->len;
  make_ready(m, r);
  return 0;
}

/* An object's message or close, released after its turn committed. */
static void out_release(void *arg) {
  out_msg *o = arg;
  rec *r = o->r;
  conn_mod *m = r->mod;
  bool tell_obj = false;
  int drops = 0;
  pthread_mutex_lock(&m->mu);
  if (o->close) {
    r->obj_close_sent = true; /* the object closed it: no on_conn_close */
    drops = close_locked(m, r, (int)o->flags, (const char *)o->data, false, &tell_obj);
    free(o);
  } else {
    drops = queue_out_locked(m, r, o, &tell_obj);
  }
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, r->close_code, r->close_reason);
  unref_n(r, drops + 1);
}

static void out_drop(void *arg) {
  out_msg *o = arg;
  rec_unref(o->r);
  free(o);
}

static int object_out(rec *r, int close, const void *data, size_t len, unsigned flags) {
  stead_ctx *ctx = owner_ctx(r);
  if (!ctx)
    return STEAD_EMISUSE;
  conn_mod *m = r->mod;
  pthread_mutex_lock(&m->mu);
  int st = r->state;
  pthread_mutex_unlock(&m->mu);
  if (st == ST_CLOSED)
    return close ? 0
                 : stead__err(STEAD_ECLOSED, "connection %llu is closed",
                              (unsigned long long)r->id);
  out_msg *o = malloc(sizeof *o + len + 1);
  if (!o)
    return stead__err(STEAD_ENOMEM, "out of memory");
  memset(o, 0, sizeof *o);
  o->r = r;
  o->close = close;
  o->flags = flags;
  o->len = len;
  if (len)
    memcpy(o->data, data, len);
  o->data[len] = 0;
  rec_ref(r);
  if (stead__ctx_effect(ctx, out_release, out_drop, o) != 0) {
    out_drop(o);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  return 0;
}

int stead_conn_send(stead_conn *conn, const void *data, size_t len, unsigned flags) {
  if (!conn)
    return stead__err(STEAD_EINVAL, "connection is NULL");
  rec *r = conn->r;
  if (conn->side == 0)
    return client_send(r, data, len, flags);
  int rc = check_data(r->rt, data, len, flags);
  return rc ? rc : object_out(r, 0, data, len, flags);
}

/* ---- closing ---------------------------------------------------------- */

/* The client's end passes on any code a WebSocket peer may report
 * (1000..4999, 1006 for a lost socket included); the object's end only
 * codes that may be sent in a close frame. */
static int check_code(int *code, int side) {
  if (*code == 0)
    *code = STEAD_CLOSE_NORMAL;
  int c = *code;
  bool ok = side == 0 ? c >= 1000 && c <= 4999
                      : (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                            (c >= 3000 && c <= 4999);
  if (!ok)
    return stead__err(STEAD_EINVAL,
                      "close code %d is not allowed here (see STEAD_CLOSE_*)", c);
  return 0;
}

/* The client's end goes: the object is told (unless it closed first), the
 * handle's reference dropped; `notify`: the client's on_close runs here
 * if it has not run yet. */
static int client_close(rec *r, int code, const char *reason, bool notify_client) {
  conn_mod *m = r->mod;
  bool tell_obj = false;
  int drops = 0;
  pthread_mutex_lock(&m->mu);
  r->cli_released = true;
  tab_del(m, r);
  queue_free(r);
  /* The object is told through its mailbox; once the runtime closes,
   * stead_close tells every object itself (and r->rt may be gone). */
  bool entered = r->state != ST_CLOSED && !m->closing;
  if (entered) {
    m->users++;
    drops = close_locked(m, r, code, reason, true, &tell_obj);
  }
  bool notify = notify_client && !r->cli_notified;
  r->cli_notified = true;
  while (r->delivering && !pthread_equal(r->deliverer, pthread_self()))
    pthread_cond_wait(&m->done_cv, &m->mu);
  int ncode = r->close_pending ? r->close_code : code;
  char why[STEAD_MAX_CONN_REASON + 1];
  if (r->close_pending)
    memcpy(why, r->close_reason, sizeof why);
  else
    copy_reason(why, reason);
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, code, why);
  if (entered)
    client_leave(m);
  if (notify && r->opts.on_close)
    r->opts.on_close(&r->ends[0], ncode, why, r->opts.udata);
  unref_n(r, drops + 1); /* and the handle's */
  return 0;
}

int stead_conn_close(stead_conn *conn, int code, const char *reason) {
  if (!conn)
    return stead__err(STEAD_EINVAL, "connection is NULL");
  int rc = check_code(&code, conn->side);
  if (rc)
    return rc;
  char why[STEAD_MAX_CONN_REASON + 1];
  copy_reason(why, reason);
  if (conn->side == 0)
    return client_close(conn->r, code, why, true);
  return object_out(conn->r, 1, why, strlen(why), (unsigned)code);
}

uint64_t stead_conn_id(const stead_conn *conn) {
  return conn ? conn->r->id : 0;
}

int stead_conn_reject(stead_ctx *ctx, const char *fmt, ...) {
  char why[STEAD_MAX_CONN_REASON * 4 + 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt ? fmt : "rejected", ap);
  va_end(ap);
  char cut[STEAD_MAX_CONN_REASON + 1];
  copy_reason(cut, why);
  return stead_fail_code(ctx, STEAD_EREJECTED, "%s", cut);
}

/* ---- attachments, tags, lists ----------------------------------------- */

/* Checks that ctx runs a turn of conn's object and conn is its end. */
static int owned(stead_ctx *ctx, stead_conn *conn, rec **out) {
  if (!ctx || !conn)
    return stead__err(STEAD_EINVAL, "ctx or connection is NULL");
  stead__act *a = stead__ctx_act(ctx);
  rec *r = conn->r;
  if (conn->side != 1 || !a || a->crec != r->crec || a->id_len != r->oid_len ||
      memcmp(a->id, r->oid, r->oid_len) != 0)
    return stead__err(STEAD_EMISUSE,
                      "not the object's end of one of this object's connections");
  *out = r;
  return 0;
}

int stead_conn_set_attachment(stead_ctx *ctx, stead_conn *conn, const void *data,
                              size_t len) {
  rec *r = NULL;
  int orc = owned(ctx, conn, &r);
  if (orc)
    return orc;
  if (len && !data)
    return stead__err(STEAD_EINVAL, "attachment is NULL but its length is %zu", len);
  if (len > STEAD_MAX_CONN_ATTACHMENT)
    return stead__err(STEAD_ETOOBIG, "attachment is %zu bytes; the limit is %d", len,
                      STEAD_MAX_CONN_ATTACHMENT);
  void *copy = len ? stead__memdup(data, len) : NULL;
  if (len && !copy)
    return stead__err(STEAD_ENOMEM, "out of memory");
  pthread_mutex_lock(&r->mod->mu);
  void *old = r->attach;
  r->attach = copy;
  r->attach_len = len;
  pthread_mutex_unlock(&r->mod->mu);
  free(old);
  return 0;
}

int stead_conn_attachment(stead_ctx *ctx, stead_conn *conn, const void **data,
                          size_t *len) {
  if (!data || !len)
    return stead__err(STEAD_EINVAL, "data or len is NULL");
  *data = NULL;
  *len = 0;
  rec *r = NULL;
  int orc = owned(ctx, conn, &r);
  if (orc)
    return orc;
  pthread_mutex_lock(&r->mod->mu);
  *data = r->attach;
  *len = r->attach_len;
  pthread_mutex_unlock(&r->mod->mu);
  return 0;
}

int stead_conn_tag(stead_ctx *ctx, stead_conn *conn, const char *tag) {
  rec *r = NULL;
  int orc = owned(ctx, conn, &r);
  if (orc)
    return orc;
  int rc = stead__check_utf8("tag", tag, STEAD_MAX_CONN_TAG);
  if (rc)
    return rc;
  char *copy = stead__strdup(tag);
  if (!copy)
    return stead__err(STEAD_ENOMEM, "out of memory");
  pthread_mutex_lock(&r->mod->mu);
  for (int i = 0; i < r->ntags; i++)
    if (strcmp(r->tags[i], tag) == 0) {
      pthread_mutex_unlock(&r->mod->mu);
      free(copy);
      return 0;
    }
  if (r->ntags == STEAD_MAX_CONN_TAGS) {
    pthread_mutex_unlock(&r->mod->mu);
    free(copy);
    return stead__err(STEAD_ETOOBIG, "a connection has at most %d tags",
                      STEAD_MAX_CONN_TAGS);
  }
  r->tags[r->ntags++] = copy;
  pthread_mutex_unlock(&r->mod->mu);
  return 0;
}

static bool has_tag(const rec *r, const char *tag) {
  for (int i = 0; i < r->ntags; i++)
    if (strcmp(r->tags[i], tag) == 0)
      return true;
  return false;
}

/* End of a listing turn: the references that kept the listed alive. */
typedef struct held {
  size_t n;
  rec *r[];
} held;

static void held_release(void *arg) {
  held *h = arg;
  for (size_t i = 0; i < h->n; i++)
    rec_unref(h->r[i]);
  free(h);
}

int stead_conn_list(stead_ctx *ctx, const char *tag, stead_conn ***out, size_t *n) {
  if (!ctx || !out || !n)
    return stead__err(STEAD_EINVAL, "ctx, out or n is NULL");
  *out = NULL;
  *n = 0;
  stead__act *a = stead__ctx_act(ctx);
  if (!a)
    return stead__err(STEAD_EMISUSE, "not in a turn");
  conn_mod *m = mod_of(stead__ctx_rt(ctx));
  pthread_mutex_lock(&m->mu);
  objconns *o = obj_find(m, a->crec, a->id, a->id_len);
  size_t cap = o ? o->n : 0;
  if (!cap) {
    pthread_mutex_unlock(&m->mu);
    return 0;
  }
  stead_conn **arr = malloc(cap * sizeof *arr);
  held *h = malloc(sizeof *h + cap * sizeof(rec *));
  if (!arr || !h) {
    pthread_mutex_unlock(&m->mu);
    free(arr);
    free(h);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  size_t k = 0;
  for (rec *r = o->head; r; r = r->onext)
    if (!tag || has_tag(r, tag)) {
      rec_ref(r);
      h->r[k] = r;
      arr[k++] = &r->ends[1];
    }
  h->n = k;
  pthread_mutex_unlock(&m->mu);
  if (stead__ctx_effect(ctx, held_release, held_release, h) != 0) {
    held_release(h);
    free(arr);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (!k) {
    free(arr);
    arr = NULL;
  }
  *out = arr;
  *n = k;
  return 0;
}

/* ---- across nodes ----------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || strlen(s) > 20)
    return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  *out = v;
  return 0;
}

/* The traffic headers of one connection message. */
typedef struct wire_hdr {
  char conn[24], seq[24], code[16];
  stead__env_header h[5];
  size_t n;
} wire_hdr;

static void wire_fill(wire_hdr *w, const char *from, uint64_t key, const char *op,
                      uint64_t seq, unsigned code) {
  snprintf(w->conn, sizeof w->conn, "%llu", (unsigned long long)key);
  snprintf(w->seq, sizeof w->seq, "%llu", (unsigned long long)seq);
  snprintf(w->code, sizeof w->code, "%u", code);
  w->n = 0;
  if (from)
    w->h[w->n++] = (stead__env_header){H_FROM, from};
  w->h[w->n++] = (stead__env_header){H_CONN, w->conn};
  w->h[w->n++] = (stead__env_header){H_OP, op};
  w->h[w->n++] = (stead__env_header){H_SEQ, w->seq};
  w->h[w->n++] = (stead__env_header){H_CODE, w->code};
}

typedef struct wire_in {
  const char *from, *op;
  uint64_t key, seq, code;
} wire_in;

static int wire_parse(const stead__env *env, bool need_from, wire_in *w) {
  w->from = stead__env_header_get(env, H_FROM);
  w->op = stead__env_header_get(env, H_OP);
  w->seq = w->code = 0;
  if ((need_from && (!w->from || stead__check_name("node id", w->from) != 0)) ||
      parse_u64(stead__env_header_get(env, H_CONN), &w->key) != 0 ||
      (w->op && (parse_u64(stead__env_header_get(env, H_SEQ), &w->seq) != 0 ||
                 parse_u64(stead__env_header_get(env, H_CODE), &w->code) != 0))) {
    return stead__err(STEAD_EPROTO, "connection traffic with bad %s/%s/%s/%s headers",
                      H_FROM, H_CONN, H_SEQ, H_CODE);
  }
  if (w->op && strcmp(w->op, "msg") != 0 && strcmp(w->op, "close") != 0)
    return stead__err(STEAD_EPROTO, "unknown connection operation \"%s\"", w->op);
  return 0;
}

/* A close reason from the wire's payload, cut as copy_reason cuts. */
static void wire_reason(const stead__env *env, char why[STEAD_MAX_CONN_REASON + 1]) {
  char raw[STEAD_MAX_CONN_REASON + 1];
  size_t n = env->payload_len < sizeof raw - 1 ? env->payload_len : sizeof raw - 1;
  if (n)
    memcpy(raw, env->payload, n);
  raw[n] = 0;
  copy_reason(why, raw);
}

/* A close code from the wire: what a client may report, else ABNORMAL. */
static int wire_code(uint64_t c) {
  return c >= 1000 && c <= 4999 ? (int)c : STEAD_CLOSE_ABNORMAL;
}

/* ---- the entry node's side (REMOTE_OBJ) ---- */

static void request_done(int status, const void *data, size_t len, const char *message,
                         void *udata) {
  (void)status;
  (void)data;
  (void)len;
  (void)message;
  rec_unref(udata);
}

static void request_done_none(int status, const void *data, size_t len,
                              const char *message, void *udata) {
  (void)status;
  (void)data;
  (void)len;
  (void)message;
  (void)udata;
}

/* Sends client -> object traffic of r to its owner, numbered; cb gets the
 * answer with the reference taken here. */
static int remote_request(rec *r, const char *op, unsigned code, const void *data,
                          size_t len, stead__cluster_reply_fn cb) {
  stead_rt *rt = r->rt;
  wire_hdr w;
  pthread_mutex_lock(&r->smu);
  wire_fill(&w, stead__cluster_node_name(rt), r->key, op, r->seq_out + 1, code);
  rec_ref(r);
  int rc = stead__cluster_conn_request(rt, r->crec->cls->name, r->oid, "conn", w.h, w.n,
                                       data, len, rt->cfg.default_timeout_ms, cb, r);
  if (rc == 0)
    r->seq_out++;
  pthread_mutex_unlock(&r->smu);
  if (rc)
    rec_unref(r); /* never the last: the caller holds one */
  return rc;
}

/* Tells the owner the client's end closed (best effort: the owner also
 * learns when it next pushes, or when this node leaves). */
static void remote_tell_close(rec *r, int code, const char *reason) {
  (void)remote_request(r, "close", (unsigned)code, reason, strlen(reason), request_done);
}

/* r's object is unreachable or refused a message: close the client's end. */
static void remote_broken(rec *r, int code, const char *why) {
  conn_mod *m = r->mod;
  bool tell_obj = false;
  pthread_mutex_lock(&m->mu);
  int drops = close_locked(m, r, code, why, false, &tell_obj);
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, code, why);
  unref_n(r, drops);
}

static void remote_sent(int status, const void *data, size_t len, const char *message,
                        void *udata) {
  (void)data;
  (void)len;
  rec *r = udata;
  if (status != 0) {
    /* The owner no longer has the object's end (moved, restarted) or
     * could not take the message: the stream has a hole, so it ends. */
    int code = status == STEAD_ENOTOWNER || status == STEAD_ECLOSED ? STEAD_CLOSE_MOVED
               : status == STEAD_EOVERLOAD ? STEAD_CLOSE_TRY_LATER
                                           : STEAD_CLOSE_INTERNAL;
    char why[STEAD_MAX_CONN_REASON + 1];
    snprintf(why, sizeof why, "a message did not reach the object: %s: %s",
             stead_errname(status), message ? message : "");
    remote_broken(r, code, why);
  }
  rec_unref(r);
}

static int remote_client_send(rec *r, const void *data, size_t len, unsigned flags) {
  int rc = remote_request(r, "msg", flags, data, len, remote_sent);
  if (rc == 0) {
    pthread_mutex_lock(&r->mod->mu);
    r->mod->st.msgs_in++;
    pthread_mutex_unlock(&r->mod->mu);
  }
  return rc;
}

static void remote_connected(int status, const void *data, size_t len,
                             const char *message, void *udata) {
  rec *r = udata;
  conn_mod *m = r->mod;
  if (status == 0) {
    pthread_mutex_lock(&m->mu);
    bool ok = r->state == ST_CONNECTING && !m->closing;
    if (ok) {
      size_t n = len < sizeof r->peer - 1 ? len : sizeof r->peer - 1;
      memcpy(r->peer, data, n);
      r->peer[n] = 0;
      r->state = ST_OPEN;
      r->obj_knows = true;
      m->st.accepted++;
      m->st.open++;
    }
    pthread_mutex_unlock(&m->mu);
    if (ok) {
      r->cb(&r->ends[0], 0, NULL, r->cb_udata);
      pthread_mutex_lock(&m->mu);
      r->handed = true;
      make_ready(m, r);
      pthread_mutex_unlock(&m->mu);
      rec_unref(r); /* the request's; the connect's is the client's handle */
      return;
    }
    status = STEAD_ECLOSED;
    message = "runtime closing";
    remote_tell_close(r, STEAD_CLOSE_GOING_AWAY, message);
  } else if (status == STEAD_ETIMEDOUT || status == STEAD_EUNKNOWN ||
             status == STEAD_EIO) {
    /* The owner may have accepted after all: tell it to let go. */
    remote_tell_close(r, STEAD_CLOSE_ABNORMAL, "connect timed out");
  }
  char why[STEAD_MAX_CONN_REASON * 4 + 1];
  snprintf(why, sizeof why, "%s", message ? message : stead_strerror(status));
  bool tell_obj = false;
  pthread_mutex_lock(&m->mu);
  r->cli_released = r->cli_notified = true;
  bool never_opened = r->state != ST_CLOSED;
  int drops = close_locked(m, r, STEAD_CLOSE_ABNORMAL, "connect failed", true, &tell_obj);
  if (never_opened)
    m->st.closed--;
  m->st.rejected++;
  pthread_mutex_unlock(&m->mu);
  r->cb(NULL, status, why, r->cb_udata);
  unref_n(r, drops + 2); /* and the handle's and the request's */
}

static int connect_remote(conn_mod *m, stead_rt *rt, rec *r, const void *meta,
                          size_t meta_len, int tmo) {
  pthread_mutex_lock(&m->mu);
  int rc = rec_register(m, r);
  pthread_mutex_unlock(&m->mu);
  if (rc) {
    rec_discard(r);
    return rc;
  }
  wire_hdr w;
  wire_fill(&w, stead__cluster_node_name(rt), r->key, "open", 0, 0);
  rec_ref(r); /* the request's */
  /* Only from and conn: the open is not numbered. */
  rc = stead__cluster_conn_request(rt, r->crec->cls->name, r->oid, "conn-open", w.h, 2,
                                   meta, meta_len, tmo, remote_connected, r);
  if (rc) {
    rec_unregister(m, r);
    unref_n(r, 2);
  }
  return rc;
}

/* The owner pushed a message or close of the connection numbered key. */
void stead__conn_remote_push(stead_rt *rt, const stead__env *env) {
  conn_mod *m = mod_of(rt);
  wire_in w;
  if (!m || wire_parse(env, false, &w) != 0 || !w.op)
    return; /* malformed: nothing to tie it to */
  bool msg = strcmp(w.op, "msg") == 0;
  out_msg *o = NULL;
  if (msg && (o = malloc(sizeof *o + env->payload_len + 1)) != NULL) {
    memset(o, 0, sizeof *o);
    o->flags = (unsigned)w.code & STEAD_CONN_TEXT;
    o->len = env->payload_len;
    if (o->len)
      memcpy(o->data, env->payload, o->len);
    o->data[o->len] = 0;
  }
  pthread_mutex_lock(&m->mu);
  bool closing = m->closing;
  rec *r = closing ? NULL : tab_find(m, "", w.key);
  if (!r) {
    pthread_mutex_unlock(&m->mu);
    free(o);
    if (msg && !closing) {
      /* The client's end is gone here but the object still talks to it:
       * tell the owner to close its end. */
      wire_hdr h;
      wire_fill(&h, stead__cluster_node_name(rt), w.key, "close", 0,
                STEAD_CLOSE_ABNORMAL);
      (void)stead__cluster_conn_request(rt, env->cls, env->id, "conn", h.h, h.n,
                                        "client gone", 11, rt->cfg.default_timeout_ms,
                                        request_done_none, NULL);
    }
    return;
  }
  rec_ref(r);
  bool tell_obj = false;
  int drops = 0;
  if (w.seq != r->seq_in + 1) {
    free(o);
    drops = close_locked(m, r, STEAD_CLOSE_INTERNAL, "messages lost between nodes", false,
                         &tell_obj);
  } else if (!msg) {
    r->seq_in = w.seq;
    r->obj_close_sent = true; /* the object closed it */
    char why[STEAD_MAX_CONN_REASON + 1];
    wire_reason(env, why);
    drops = close_locked(m, r, wire_code(w.code), why, false, &tell_obj);
  } else if (!o) {
    drops = close_locked(m, r, STEAD_CLOSE_INTERNAL, "out of memory", false, &tell_obj);
  } else {
    r->seq_in = w.seq;
    o->r = r;
    drops = queue_out_locked(m, r, o, &tell_obj);
  }
  pthread_mutex_unlock(&m->mu);
  if (tell_obj)
    tell_object_closed(r, r->close_code, r->close_reason);
  unref_n(r, drops + 1);
}

/* ---- the owner's side (REMOTE_CLI) ---- */

/* Object -> client traffic of r to the client's node, numbered (on the
 * delivery thread, and for a close the owner decides on its own). */
static int remote_push(rec *r, const char *op, unsigned code, const void *data,
                       size_t len) {
  wire_hdr w;
  pthread_mutex_lock(&r->smu);
  wire_fill(&w, NULL, r->key, op, ++r->seq_out, code);
  int rc = stead__cluster_conn_push(r->rt, r->peer, r->crec->cls->name, r->oid, w.h, w.n,
                                    data, len);
  pthread_mutex_unlock(&r->smu);
  return rc;
}

/* The "client" of an owner's record: the delivery thread hands it each
 * message, which goes on to the client's node. */
static void push_message(stead_conn *conn, const void *data, size_t len, unsigned flags,
                         void *udata) {
  (void)udata;
  rec *r = conn->r;
  if (remote_push(r, "msg", flags, data, len) != 0)
    remote_client_gone(r, STEAD_CLOSE_ABNORMAL, "the client's node is unreachable");
}

/* ... and the close, after which the client's node has nothing more to
 * hear: the stand-in client lets go of its handle. */
static void push_closed(stead_conn *conn, int code, const char *reason, void *udata) {
  (void)udata;
  rec *r = conn->r;
  conn_mod *m = r->mod;
  (void)remote_push(r, "close", (unsigned)code, reason, strlen(reason));
  pthread_mutex_lock(&m->mu);
  bool had = !r->cli_released;
  r->cli_released = true;
  tab_del(m, r);
  pthread_mutex_unlock(&m->mu);
  if (had)
    rec_unref(r);
}

/* The remote client closed, left or became unreachable: as if it closed
 * its handle, without telling it. A connect still running is closed by
 * connect_done once it is done with the record (peer_gone). */
static void remote_client_gone(rec *r, int code, const char *reason) {
  conn_mod *m = r->mod;
  pthread_mutex_lock(&m->mu);
  bool defer = !r->handed && !r->cli_released;
  if (defer)
    r->peer_gone = true;
  bool done = defer || r->cli_released;
  pthread_mutex_unlock(&m->mu);
  if (!done)
    client_close(r, code, reason, false);
}

static void accept_answer(stead_conn *conn, int status, const char *reason, void *udata) {
  (void)conn;
  rec *r = udata;
  if (status == 0) {
    const char *me = stead__cluster_node_name(r->rt);
    r->answer(r->answer_arg, 0, me, strlen(me), NULL);
  } else {
    r->answer(r->answer_arg, status, NULL, 0, reason);
  }
}

void stead__conn_remote_open(stead_rt *rt, const stead__class_rec *c,
                             const stead__env *env, stead__conn_answer_fn answer,
                             void *a) {
  conn_mod *m = mod_of(rt);
  wire_in w;
  int rc = m ? wire_parse(env, true, &w) : stead__err(STEAD_ECLOSED, "runtime is closed");
  int64_t dl = stead__env_deadline(env);
  int64_t tmo = dl ? dl - stead__wall_ms() : rt->cfg.default_timeout_ms;
  if (rc == 0 && !c->cls->on_connect)
    rc = stead__err(STEAD_ENOTSUP,
                    "class \"%s\" does not accept connections (no on_connect)", env->cls);
  else if (rc == 0 && env->payload_len > STEAD_MAX_CONN_META)
    rc = stead__err(STEAD_ETOOBIG, "meta is %zu bytes; the limit is %d", env->payload_len,
                    STEAD_MAX_CONN_META);
  else if (rc == 0 && tmo <= 0)
    rc = stead__err(STEAD_ETIMEDOUT, "the connect expired before it ran");
  stead_conn_opts o = {.on_message = push_message, .on_close = push_closed};
  rec *r = rc ? NULL : rec_new(m, rt, c, env->id, &o, accept_answer, NULL);
  if (rc == 0 && !r)
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  if (rc) {
    answer(a, rc, NULL, 0, stead_errmsg());
    return;
  }
  r->cb_udata = r;
  r->remote = REMOTE_CLI;
  r->key = w.key;
  snprintf(r->peer, sizeof r->peer, "%s", w.from);
  r->answer = answer;
  r->answer_arg = a;
  rc = connect_local(m, rt, r, env->payload, env->payload_len,
                     (int)(tmo > INT32_MAX ? INT32_MAX : tmo));
  if (rc)
    answer(a, rc, NULL, 0, stead_errmsg());
}

void stead__conn_remote_in(stead_rt *rt, const stead__env *env,
                           stead__conn_answer_fn answer, void *a) {
  conn_mod *m = mod_of(rt);
  wire_in w;
  int rc = m ? wire_parse(env, true, &w) : stead__err(STEAD_ECLOSED, "runtime is closed");
  if (rc == 0 && !w.op)
    rc = stead__err(STEAD_EPROTO, "connection traffic without %s", H_OP);
  if (rc) {
    answer(a, rc, NULL, 0, stead_errmsg());
    return;
  }
  pthread_mutex_lock(&m->mu);
  rec *r = m->closing ? NULL : tab_find(m, w.from, w.key);
  if (!r) {
    pthread_mutex_unlock(&m->mu);
    rc = stead__err(STEAD_ECLOSED, "connection %llu from node %s is not open here",
                    (unsigned long long)w.key, w.from);
    answer(a, rc, NULL, 0, stead_errmsg());
    return;
  }
  rec_ref(r);
  if (strcmp(w.op, "close") == 0) {
    pthread_mutex_unlock(&m->mu);
    char why[STEAD_MAX_CONN_REASON + 1];
    wire_reason(env, why);
    remote_client_gone(r, wire_code(w.code), why);
    answer(a, 0, NULL, 0, NULL);
    rec_unref(r);
    return;
  }
  bool gap = w.seq != r->seq_in + 1;
  if (!gap)
    r->seq_in = w.seq;
  bool closed = r->state == ST_CLOSED;
  if (closed && !gap)
    m->st.msgs_discarded++;
  pthread_mutex_unlock(&m->mu);
  if (gap) {
    rc = stead__err(STEAD_EPROTO, "message %llu of connection %llu came after %llu",
                    (unsigned long long)w.seq, (unsigned long long)w.key,
                    (unsigned long long)r->seq_in);
    char why[512];
    snprintf(why, sizeof why, "%s", stead_errmsg());
    /* The client's node sent on, unaware: tell it the stream ended. */
    const char *lost = "messages lost between nodes";
    (void)remote_push(r, "close", STEAD_CLOSE_INTERNAL, lost, strlen(lost));
    remote_client_gone(r, STEAD_CLOSE_INTERNAL, lost);
    answer(a, rc, NULL, 0, why);
  } else if (closed) {
    answer(a, 0, NULL, 0, NULL); /* crossed the object's close */
  } else {
    stead__msg *msg = stead__msg_new(STEAD__MSG_CONN, env->payload, env->payload_len);
    if (!msg) {
      rc = stead__err(STEAD_ENOMEM, "out of memory");
    } else {
      msg->conn = r;
      msg->conn_op = OP_MESSAGE;
      msg->conn_code = (int)(w.code & STEAD_CONN_TEXT);
      rec_ref(r);
      if ((rc = stead__enqueue(rt, r->crec, r->oid, r->oid_len, msg, false)) != 0)
        stead__msg_free(msg);
    }
    if (rc == 0) {
      pthread_mutex_lock(&m->mu);
      m->st.msgs_in++;
      pthread_mutex_unlock(&m->mu);
    }
    answer(a, rc, NULL, 0, rc ? stead_errmsg() : NULL);
  }
  rec_unref(r);
}

/* ---- membership and shard moves ---- */

static bool in_set(const char *node, const char *const *nodes, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(nodes[i], node) == 0)
      return true;
  return false;
}

/* Records in `all` that `pick` selects, each with a reference (mod->mu
 * held). NULL when there are none or memory is short (the caller's event
 * comes again: the next change, the next move). */
static rec **collect_locked(conn_mod *m, bool (*pick)(const rec *, const void *),
                            const void *arg, size_t *n) {
  size_t k = 0;
  for (rec *r = m->all; r; r = r->anext)
    k += pick(r, arg);
  *n = 0;
  rec **v = k ? malloc(k * sizeof *v) : NULL;
  if (!v)
    return NULL;
  for (rec *r = m->all; r; r = r->anext)
    if (pick(r, arg)) {
      rec_ref(r);
      v[(*n)++] = r;
    }
  return v;
}

typedef struct peer_set {
  const char *const *nodes;
  size_t n;
} peer_set;

static bool peer_gone(const rec *r, const void *arg) {
  const peer_set *ps = arg;
  return r->remote && r->peer[0] && r->state != ST_CLOSED &&
         !in_set(r->peer, ps->nodes, ps->n);
}

/* The object's end is gone with its node (or its shard): the client is
 * told, the object is not. */
static void close_object_gone(rec *r, const char *why) {
  conn_mod *m = r->mod;
  bool tell_obj = false;
  pthread_mutex_lock(&m->mu);
  r->obj_close_sent = true;
  int drops = close_locked(m, r, STEAD_CLOSE_MOVED, why, false, &tell_obj);
  pthread_mutex_unlock(&m->mu);
  unref_n(r, drops);
}

void stead__conn_peers(stead_rt *rt, const char *const *nodes, size_t n) {
  conn_mod *m = mod_of(rt);
  if (!m)
    return;
  peer_set ps = {nodes, n};
  size_t k = 0;
  pthread_mutex_lock(&m->mu);
  rec **v = collect_locked(m, peer_gone, &ps, &k);
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < k; i++) {
    if (v[i]->remote == REMOTE_OBJ)
      close_object_gone(v[i], "the object's node left");
    else
      remote_client_gone(v[i], STEAD_CLOSE_ABNORMAL, "the client's node left");
    rec_unref(v[i]);
  }
  free(v);
}

static bool in_shard(const rec *r, const void *arg) {
  return r->remote != REMOTE_OBJ && r->state == ST_OPEN &&
         r->shard == *(const uint32_t *)arg;
}

void stead__conn_shard_gone(stead_rt *rt, uint32_t shard) {
  conn_mod *m = mod_of(rt);
  if (!m)
    return;
  size_t k = 0;
  pthread_mutex_lock(&m->mu);
  rec **v = collect_locked(m, in_shard, &shard, &k);
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < k; i++) {
    close_object_gone(v[i], "the object moved to another node");
    rec_unref(v[i]);
  }
  free(v);
}
