/*
 * cluster.c -- the runtime's side of cluster mode: routes messages to the
 * node that owns their object, runs forwarded requests as ordinary turns,
 * fences activations by the lease tenure they started under, and empties
 * shards the node drains or loses.
 *
 * The node (src/cluster/node.c) owns membership, leases and the NATS
 * transport; this file is the stead__node_runtime it calls back, plus the
 * hooks the rest of core calls. It reaches the node only through a
 * stead__node_ops table (node.h): the real node's, or in manual mode a
 * simulated node's (stead__manual.node_open), so the deterministic
 * simulation runs this file's routing, forwarding and fencing unchanged.
 *
 *   stead__enqueue  -> stead__cluster_enqueue: a message to an object of a
 *                      shard this node owns goes to the local mailbox; a
 *                      call, send or event to any other object is forwarded
 *                      (stead__node_call retries "not owner" answers until
 *                      the caller's deadline); alarms, timers and runtime
 *                      functions are local only and refused with ENOTOWNER.
 *   activate        -> stead__cluster_activate: an activation starts only
 *                      while the node owns the shard (not draining), and
 *                      records that tenure's epoch in the activation.
 *   a turn's end    -> stead__cluster_fence: the turn's outcome is released
 *                      only if the activation's tenure is still the held
 *                      lease; commits carry (shard, epoch) so the database
 *                      refuses them after a takeover even if this check
 *                      raced with it.
 *
 * A local call that fails with ENOTOWNER (the activation check or the
 * fence: the shard moved between routing and running) did not commit, so
 * it is sent again through the node, which finds the new owner. Callers
 * see the call's result or, once the deadline passes, a retryable error.
 *
 * Threads: routing runs on any caller's thread; node callbacks on the
 * node's manager and NATS threads; the keeper thread deactivates the
 * activations of drained or lost shards, polling until they are gone. In
 * manual mode there is no keeper thread: the driver calls
 * stead__cluster_keeper_step.
 */
#include "cluster/envelope.h"
#include "cluster/node.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KIND_HEADER  "x-stead-kind"
#define TOPIC_HEADER "x-stead-topic"
#define RID_HEADER   "x-stead-rid" /* "<boot id>:<sequence>": one per forward */
#define KEEP_POLL_MS 2
/* Recent forwarded requests and events remembered against duplicates. */
#define SEEN_WINDOW    4096
#define SEEN_BUCKETS   8192
#define SEEN_MAX_REPLY 4096 /* bigger replies are not kept for duplicates */
#define EVENT_ID_LEN   16   /* an event on the wire: 16-byte id, then payload */

/* A duplicate's replier, waiting for the first copy's outcome. */
typedef struct seen_wait {
  struct seen_wait *next;
  stead__node_replier *r;
} seen_wait;

/* One remembered request (or event) id. */
typedef struct seen {
  uint64_t key; /* 0: free slot */
  struct seen *hnext;
  bool done;
  int status;
  void *data; /* the reply, if kept */
  size_t len;
  bool kept;
  char *message;
  seen_wait *waiters;
} seen;

/* A shard to empty: deactivate its activations of tenure <= epoch (and
 * those not activated yet), then call done (drains only). */
typedef struct keep_task {
  struct keep_task *next;
  uint32_t shard;
  uint64_t epoch;
  stead__node_done_fn done; /* NULL for a lost shard */
  void *done_arg;
} keep_task;

struct stead__cluster {
  stead_rt *rt;
  void *_Atomic node;         /* the node's self; NULL until joined */
  const stead__node_ops *ops; /* set before node */
  uint32_t nshards;
  char *seed;
  atomic_bool left; /* the node left: nothing routes any more */

  pthread_mutex_t mu;
  pthread_cond_t cv;
  keep_task *tasks;
  size_t *remaining; /* per shard, scratch for the keeper's scan */
  bool stop;
  pthread_t keeper;
  bool has_keeper;

  /* Shards whose event subscriptions must be re-read (bitmaps). */
  unsigned char *refresh, *refresh_work;
  bool refresh_pending;
  bool refreshing; /* the keeper is re-reading, cl->mu released */
  bool no_refresh; /* left: the bus may go away */

  stead__counter forwarded, forwarded_in, rerouted, fenced, events_in, events_lost;
  stead__counter duplicates;

  /* Against duplicated deliveries: ids of the last SEEN_WINDOW forwarded
   * requests and events received, a ring (next evicts) indexed by hash. */
  pthread_mutex_t seen_mu;
  seen *ring;
  seen **buckets;
  size_t next;
  bool no_dedup; /* tests: the defence off (stead__manual.no_dedup) */
  /* This runtime's forwards: "<node>@<boot time>" and a counter. */
  char boot[STEAD__MAX_NAME + 48];
  atomic_uint_fast64_t rid_seq;
};

static uint64_t seen_key(const void *id, size_t len);
static bool seen_first(stead__cluster *cl, uint64_t key, stead__node_replier *r);

static stead__cluster *cl_of(stead_rt *rt) {
  return rt->cluster;
}

uint32_t stead__cluster_shard(stead_rt *rt, const char *cls, const char *id) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  int s = stead_shard_for_key(cls, id, cl->nshards, cl->seed);
  return s < 0 ? 0 : (uint32_t)s;
}

int stead__cluster_tenure(stead_rt *rt, const char *cls, const char *id, uint32_t *shard,
                          uint64_t *epoch) {
  stead__cluster *cl = cl_of(rt);
  *shard = 0;
  *epoch = 0;
  if (!cl)
    return 0;
  void *n = atomic_load(&cl->node);
  *shard = stead__cluster_shard(rt, cls, id);
  if (!n || cl->ops->owner_epoch(n, *shard, epoch) != 0)
    return stead__err(STEAD_ENOTOWNER, "this node holds no lease on shard %u", *shard);
  return 0;
}

int stead__cluster_owns(stead_rt *rt, const char *cls, const char *id) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 1;
  void *n = atomic_load(&cl->node);
  return n && cl->ops->owns(n, stead__cluster_shard(rt, cls, id));
}

/* ---- events ----------------------------------------------------------- */

void stead__cluster_emit(stead_rt *rt, const char *topic, const void *payload,
                         size_t len) {
  stead__cluster *cl = cl_of(rt);
  void *n = cl ? atomic_load(&cl->node) : NULL;
  if (!n || atomic_load(&cl->left))
    return;
  /* The id that lets receivers drop a duplicated delivery: this boot's
   * hash and a sequence number. */
  uint8_t *framed = malloc(EVENT_ID_LEN + len);
  int rc = framed ? 0 : stead__err(STEAD_ENOMEM, "out of memory");
  if (framed) {
    uint64_t id[2] = {stead__hash64(cl->boot, strlen(cl->boot), 0),
                      atomic_fetch_add(&cl->rid_seq, 1) + 1};
    memcpy(framed, id, EVENT_ID_LEN);
    if (len)
      memcpy(framed + EVENT_ID_LEN, payload, len);
    rc = cl->ops->emit(n, topic, framed, EVENT_ID_LEN + len);
    free(framed);
  }
  if (rc != 0) {
    stead__counter_add(&cl->events_lost, 1);
    stead__log(rt, STEAD_LOG_WARN, "event %s not published to the cluster: %s", topic,
               stead_errmsg());
  }
}

static void on_event(void *u, const char *topic, const void *payload, size_t len) {
  stead__cluster *cl = u;
  if (len < EVENT_ID_LEN) { /* not from a peer of this version */
    stead__counter_add(&cl->events_lost, 1);
    return;
  }
  if (!cl->no_dedup && !seen_first(cl, seen_key(payload, EVENT_ID_LEN), NULL))
    return;
  const uint8_t *p = payload;
  if (stead__bus_rt_remote(cl->rt, topic, p + EVENT_ID_LEN, len - EVENT_ID_LEN) != 0)
    stead__counter_add(&cl->events_lost, 1);
  else
    stead__counter_add(&cl->events_in, 1);
}

/* Subscriptions of newly acquired shards are re-read in batches by the
 * keeper (a shard acquired at start comes with hundreds of others). */
static void refresh_request(stead__cluster *cl, uint32_t shard) {
  pthread_mutex_lock(&cl->mu);
  cl->refresh[shard / 8] |= (unsigned char)(1u << (shard % 8));
  cl->refresh_pending = true;
  pthread_cond_signal(&cl->cv);
  pthread_mutex_unlock(&cl->mu);
}

/* Keeper, cl->mu held on entry and exit. Returns the bus's error after
 * putting the shards back for a later retry. */
static int refresh_run(stead__cluster *cl) {
  size_t nb = (cl->nshards + 7) / 8;
  memcpy(cl->refresh_work, cl->refresh, nb);
  memset(cl->refresh, 0, nb);
  cl->refresh_pending = false;
  cl->refreshing = true;
  pthread_mutex_unlock(&cl->mu);
  int rc = stead__bus_rt_refresh(cl->rt, cl->refresh_work);
  pthread_mutex_lock(&cl->mu);
  cl->refreshing = false;
  pthread_cond_broadcast(&cl->cv);
  if (rc != 0) {
    stead__log(cl->rt, STEAD_LOG_ERROR,
               "cannot re-read event subscriptions of acquired shards (retrying): %s",
               stead_errmsg());
    for (size_t i = 0; i < nb; i++)
      cl->refresh[i] |= cl->refresh_work[i];
    cl->refresh_pending = true;
    return STEAD_ESTORAGE;
  }
  return 0;
}

/* ---- forwarding ------------------------------------------------------ */

/* The absolute wall deadline of a monotonic one, rounded up (a call with
 * half a millisecond left still has a future deadline), or 0 if passed. */
static int64_t wall_deadline(stead_rt *rt, int64_t deadline_ns) {
  int64_t left_ns = deadline_ns - stead__rt_mono_ns(rt);
  return left_ns > 0 ? stead__rt_now_ms(rt) + (left_ns + 999999) / 1000000 : 0;
}

/* A forwarded call's completion: its call (one reference), or NULL for a
 * send or event, which only logs a failure. */
typedef struct fwd {
  stead_rt *rt;
  stead__call *call;
  char what[STEAD__MAX_NAME * 2 + 8];
} fwd;

static void fwd_done(int status, const stead__env *reply, void *udata) {
  fwd *f = udata;
  if (f->call) {
    if (status == 0)
      stead__call_complete(f->call, 0, reply->payload, reply->payload_len, NULL);
    else
      stead__call_complete(f->call, status, NULL, 0,
                           reply && reply->message ? reply->message : stead_errmsg());
    stead__call_unref(f->call);
  } else if (status != 0) {
    stead__counter_add(&f->rt->m.sends_dropped, 1);
    stead__log(f->rt, STEAD_LOG_WARN, "forwarded %s failed: %s: %s", f->what,
               stead_errname(status),
               reply && reply->message ? reply->message : stead_errmsg());
  }
  free(f);
}

/* Sends (cls, id, method, payload) to the owner; `call` (borrowed: the
 * forward takes its own reference) is completed with the answer, or NULL
 * for a one-way (`kind`, `topic` mark sends and events). */
static int forward(stead_rt *rt, const char *cls, const char *id, const char *method,
                   const char *kind, const char *topic, const void *payload, size_t len,
                   stead__call *call) {
  stead__cluster *cl = cl_of(rt);
  if (atomic_load(&cl->left))
    return stead__err(STEAD_ECLOSED, "the node has left the cluster");
  stead__env_header h[3];
  size_t nh = 0;
  char rid[sizeof cl->boot + 24];
  snprintf(rid, sizeof rid, "%s:%llu", cl->boot,
           (unsigned long long)(atomic_fetch_add(&cl->rid_seq, 1) + 1));
  h[nh++] = (stead__env_header){RID_HEADER, rid};
  if (kind)
    h[nh++] = (stead__env_header){KIND_HEADER, kind};
  if (topic)
    h[nh++] = (stead__env_header){TOPIC_HEADER, topic};
  stead__env e;
  memset(&e, 0, sizeof e);
  e.cls = cls;
  e.id = id;
  e.method = method;
  e.headers = h;
  e.nheaders = nh;
  e.payload = payload;
  e.payload_len = len;
  int64_t deadline = call ? wall_deadline(rt, call->deadline_ns)
                          : stead__rt_now_ms(rt) + rt->cfg.default_timeout_ms;
  if (!deadline)
    return stead__err(STEAD_ETIMEDOUT, "deadline exceeded before %s/%s was reached", cls,
                      id);
  fwd *f = calloc(1, sizeof *f);
  if (!f)
    return stead__err(STEAD_ENOMEM, "out of memory forwarding to %s/%s", cls, id);
  f->rt = rt;
  f->call = call;
  snprintf(f->what, sizeof f->what, "%s to %s", kind ? kind : "call", cls);
  if (call)
    atomic_fetch_add(&call->refs, 1);
  int rc = cl->ops->call(cl->node, &e, deadline, fwd_done, f);
  if (rc) {
    if (call)
      stead__call_unref(call);
    free(f);
    if (rc == STEAD_EINVAL && deadline <= stead__rt_now_ms(rt))
      return stead__err(STEAD_ETIMEDOUT, "deadline exceeded before %s/%s was reached",
                        cls, id);
    return rc;
  }
  stead__counter_add(&cl->forwarded, 1);
  return 0;
}

/* Forwards message m; on success takes it (frees it, its call moves to
 * the forward), on error leaves it to the caller. */
static int forward_msg(stead_rt *rt, const stead__class_rec *c, const char *id,
                       stead__msg *m) {
  const char *cls = c->cls->name;
  int rc;
  if (m->kind == STEAD__MSG_CALL)
    rc = forward(rt, cls, id, m->method->name, NULL, NULL, m->payload, m->len, m->call);
  else if (m->kind == STEAD__MSG_SEND)
    rc = forward(rt, cls, id, m->method->name, "send", NULL, m->payload, m->len, NULL);
  else
    rc = forward(rt, cls, id, "on_event", "event", m->topic, m->payload, m->len, NULL);
  if (rc)
    return rc;
  if (m->call) {
    stead__call_unref(m->call); /* the forward holds its own reference */
    m->call = NULL;
  }
  stead__msg_free(m);
  return 0;
}

/* A local call that may have to go again elsewhere: its original call and
 * a copy of what to send. */
typedef struct lcall {
  stead_rt *rt;
  stead__call *orig; /* one reference */
  const char *cls;
  const char *method;
  size_t len;
  char *id;
  uint8_t payload[];
} lcall;

static void lcall_done(const stead_result *res, void *udata) {
  lcall *lc = udata;
  stead__call *orig = lc->orig;
  int rc = res->status;
  if (rc == STEAD_ENOTOWNER && !atomic_load(&orig->done) &&
      stead__rt_mono_ns(lc->rt) < orig->deadline_ns) {
    stead__counter_add(&cl_of(lc->rt)->rerouted, 1);
    rc = forward(lc->rt, lc->cls, lc->id, lc->method, NULL, NULL, lc->payload, lc->len,
                 orig);
    if (rc != 0)
      stead__call_complete(orig, rc, NULL, 0, stead_errmsg());
  } else {
    stead__call_complete(orig, res->status, res->data, res->len, res->message);
  }
  stead__call_unref(orig);
  free(lc);
}

/* Replaces m's call by one whose ENOTOWNER answer re-routes. */
static int wrap_local_call(stead_rt *rt, const stead__class_rec *c, const char *id,
                           size_t id_len, stead__msg *m) {
  lcall *lc = malloc(sizeof *lc + m->len + id_len + 1);
  if (!lc)
    return stead__err(STEAD_ENOMEM, "out of memory");
  stead__call *orig = m->call;
  int tmo = (int)((orig->deadline_ns - stead__rt_mono_ns(rt)) / 1000000) + 1;
  stead__call *inner =
      stead__call_new(rt, lcall_done, lc, tmo > 0 ? tmo : 1, true, 0, NULL);
  if (!inner) {
    free(lc);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  *lc = (lcall){rt, orig, c->cls->name, m->method->name, m->len, NULL};
  if (m->len)
    memcpy(lc->payload, m->payload, m->len);
  lc->id = (char *)lc->payload + m->len;
  memcpy(lc->id, id, id_len);
  lc->id[id_len] = 0;
  /* The inner call's deadline is not armed: the original's timer answers
   * the caller, and the turn always completes the inner one. */
  inner->deadline_ns = 0;
  m->call = inner; /* orig's reference moves to lc */
  return 0;
}

/* Undoes wrap_local_call when the enqueue failed (nothing ran). */
static void unwrap_local_call(stead__msg *m) {
  stead__call *inner = m->call;
  lcall *lc = inner->udata;
  m->call = lc->orig;
  free(lc);
  free(inner);
}

int stead__cluster_enqueue(stead_rt *rt, const stead__class_rec *c, const char *id,
                           size_t id_len, stead__msg *m, bool bypass_limit) {
  stead__cluster *cl = cl_of(rt);
  const char *cls = c->cls->name;
  if (atomic_load(&cl->left))
    return stead__err(STEAD_ECLOSED, "the node has left the cluster");
  if (!atomic_load(&cl->node))
    return stead__err(STEAD_ENOTOWNER, "the node is still joining the cluster");
  stead__node_route_info ri;
  int rc = cl->ops->route(cl->node, cls, id, &ri);
  if (rc)
    return rc;
  bool routable = (m->kind == STEAD__MSG_CALL && m->method) ||
                  m->kind == STEAD__MSG_SEND || m->kind == STEAD__MSG_EVENT;
  if (ri.kind != STEAD__ROUTE_LOCAL) {
    if (routable)
      return forward_msg(rt, c, id, m);
    return stead__err(STEAD_ENOTOWNER,
                      "%s/%s (shard %u) is not owned by this node%s%s; only its owner "
                      "runs its alarms, timers and runtime operations",
                      cls, id, ri.shard, ri.owner[0] ? "; owner: " : "", ri.owner);
  }
  bool wrapped = false;
  if (m->kind == STEAD__MSG_CALL && m->method && m->call) {
    if ((rc = wrap_local_call(rt, c, id, id_len, m)) != 0)
      return rc;
    wrapped = true;
  }
  rc = stead__enqueue_local(rt, c, id, id_len, m, bypass_limit, ri.shard);
  if (rc && wrapped)
    unwrap_local_call(m);
  return rc;
}

/* ---- connection traffic ---------------------------------------------- */

typedef struct creq {
  stead__cluster_reply_fn cb;
  void *udata;
} creq;

static void creq_done(int status, const stead__env *reply, void *udata) {
  creq *q = udata;
  const char *why = NULL;
  if (status != 0)
    why = reply && reply->message ? reply->message : stead_errmsg();
  q->cb(status, reply ? reply->payload : NULL, reply ? reply->payload_len : 0, why,
        q->udata);
  free(q);
}

#define CONN_MAX_HEADERS 7

int stead__cluster_conn_request(stead_rt *rt, const char *cls, const char *id,
                                const char *kind, const stead__env_header *h, size_t nh,
                                const void *payload, size_t len, int timeout_ms,
                                stead__cluster_reply_fn cb, void *udata) {
  stead__cluster *cl = cl_of(rt);
  if (!cl || !cb || nh >= CONN_MAX_HEADERS)
    return stead__err(STEAD_EINVAL, "not a cluster node, no callback, or %zu headers",
                      nh);
  if (atomic_load(&cl->left))
    return stead__err(STEAD_ECLOSED, "the node has left the cluster");
  void *n = atomic_load(&cl->node);
  if (!n)
    return stead__err(STEAD_ENOTOWNER, "the node is still joining the cluster");
  stead__env_header all[CONN_MAX_HEADERS];
  all[0] = (stead__env_header){KIND_HEADER, kind};
  memcpy(all + 1, h, nh * sizeof *h);
  stead__env e;
  memset(&e, 0, sizeof e);
  e.cls = cls;
  e.id = id;
  e.method = "conn";
  e.headers = all;
  e.nheaders = nh + 1;
  e.payload = payload;
  e.payload_len = len;
  creq *q = malloc(sizeof *q);
  if (!q)
    return stead__err(STEAD_ENOMEM, "out of memory");
  *q = (creq){cb, udata};
  int rc = cl->ops->call(n, &e, stead__rt_now_ms(rt) + (timeout_ms > 0 ? timeout_ms : 1),
                         creq_done, q);
  if (rc)
    free(q);
  return rc;
}

int stead__cluster_conn_push(stead_rt *rt, const char *node, const char *cls,
                             const char *id, const stead__env_header *h, size_t nh,
                             const void *payload, size_t len) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return stead__err(STEAD_EINVAL, "not a cluster node");
  if (atomic_load(&cl->left))
    return stead__err(STEAD_ECLOSED, "the node has left the cluster");
  void *n = atomic_load(&cl->node);
  if (!n)
    return stead__err(STEAD_ENOTOWNER, "the node is still joining the cluster");
  stead__env e;
  memset(&e, 0, sizeof e);
  e.cls = cls;
  e.id = id;
  e.method = "conn";
  e.headers = h;
  e.nheaders = nh;
  e.payload = payload;
  e.payload_len = len;
  return cl->ops->send(n, node, &e);
}

const char *stead__cluster_node_name(stead_rt *rt) {
  stead__cluster *cl = cl_of(rt);
  void *n = cl ? atomic_load(&cl->node) : NULL;
  return n ? cl->ops->id(n) : "";
}

typedef struct inreq inreq;
static void answer(inreq *q, int status, const void *data, size_t len,
                   const char *message);

static void conn_answer(void *a, int status, const void *data, size_t len,
                        const char *message) {
  answer(a, status, data, len, message);
}

static void on_direct(void *u, const stead__env *env) {
  stead__cluster *cl = u;
  stead__conn_remote_push(cl->rt, env);
}

static void on_members(void *u, const char *const *nodes, size_t n) {
  stead__cluster *cl = u;
  stead__conn_peers(cl->rt, nodes, n);
}

/* ---- serving forwarded requests -------------------------------------- */

/* Duplicates. A transport may deliver one forwarded message twice (a
 * retried publish, a redelivery); running it twice would apply a write
 * twice. Each forward carries a request id (RID_HEADER, each event a
 * 16-byte id), and the receiver remembers the last SEEN_WINDOW ids: a
 * duplicate of a request still running waits for the first copy's
 * outcome, one of a finished request gets that outcome again (if the reply
 * was small enough to keep; else ETIMEDOUT, "may have run"), and a
 * duplicate event is dropped. docs/cluster.md, "Duplicates". */

static uint64_t seen_key(const void *id, size_t len) {
  uint64_t k = stead__hash64(id, len, 0x5EE4);
  return k ? k : 1;
}

static seen **seen_find(stead__cluster *cl, uint64_t key) {
  seen **p = &cl->buckets[key % SEEN_BUCKETS];
  while (*p && (*p)->key != key)
    p = &(*p)->hnext;
  return p;
}

/* Frees the oldest entry's slot (seen_mu held); returns its waiters. */
static seen_wait *seen_evict(stead__cluster *cl, seen *e) {
  seen_wait *w = e->waiters;
  if (e->key) {
    seen **p = seen_find(cl, e->key);
    if (*p)
      *p = e->hnext;
  }
  free(e->data);
  free(e->message);
  memset(e, 0, sizeof *e);
  return w;
}

static void answer_waiters(stead__cluster *cl, seen_wait *w, int status, const void *data,
                           size_t len, const char *message) {
  while (w) {
    seen_wait *next = w->next;
    cl->ops->respond(cl->node, w->r, status, data, len, message);
    free(w);
    w = next;
  }
}

static void seen_answer_dup(stead__cluster *cl, seen *e, stead__node_replier *r);

/* Whether the message with id `key` is new (true: run it; recorded as
 * running) or a duplicate (false: `r`, if any, was answered or will be
 * with the first copy's outcome). */
static bool seen_first(stead__cluster *cl, uint64_t key, stead__node_replier *r) {
  pthread_mutex_lock(&cl->seen_mu);
  seen *e = *seen_find(cl, key);
  if (!e) {
    seen *slot = &cl->ring[cl->next];
    cl->next = (cl->next + 1) % SEEN_WINDOW;
    seen_wait *old = seen_evict(cl, slot);
    slot->key = key;
    slot->hnext = cl->buckets[key % SEEN_BUCKETS];
    cl->buckets[key % SEEN_BUCKETS] = slot;
    pthread_mutex_unlock(&cl->seen_mu);
    answer_waiters(cl, old, STEAD_ETIMEDOUT, NULL, 0,
                   "a duplicate of a request that ran too long to be answered");
    return true;
  }
  seen_answer_dup(cl, e, r);
  return false;
}

/* Whether `key` was seen (true: a duplicate, `r` answered as by
 * seen_first); an unseen id is not recorded. */
static bool seen_again(stead__cluster *cl, uint64_t key, stead__node_replier *r) {
  pthread_mutex_lock(&cl->seen_mu);
  seen *e = *seen_find(cl, key);
  if (!e) {
    pthread_mutex_unlock(&cl->seen_mu);
    return false;
  }
  seen_answer_dup(cl, e, r);
  return true;
}

/* Answers duplicate `r` of entry `e` with the first copy's outcome, now
 * or (still running) when it finishes. Called with seen_mu held; releases
 * it. */
static void seen_answer_dup(stead__cluster *cl, seen *e, stead__node_replier *r) {
  stead__counter_add(&cl->duplicates, 1);
  if (!r) {
    pthread_mutex_unlock(&cl->seen_mu);
    return;
  }
  seen_wait *w = e->done ? NULL : malloc(sizeof *w);
  if (w) {
    *w = (seen_wait){e->waiters, r};
    e->waiters = w;
    pthread_mutex_unlock(&cl->seen_mu);
    return;
  }
  int status = e->done && !e->kept && e->status == 0 ? STEAD_ETIMEDOUT : e->status;
  void *data = NULL;
  size_t len = e->kept ? e->len : 0;
  char *msg = e->message ? stead__strdup(e->message) : NULL;
  if (!e->done)
    status = STEAD_ETIMEDOUT; /* no memory to wait: "may have run" */
  else if (len && (data = malloc(len)) != NULL)
    memcpy(data, e->data, len);
  else if (len)
    status = STEAD_ETIMEDOUT;
  pthread_mutex_unlock(&cl->seen_mu);
  cl->ops->respond(cl->node, r, status, data, data ? len : 0,
                   msg ? msg
                       : (status ? "a duplicate of a request already answered" : NULL));
  free(data);
  free(msg);
}

/* The first copy of `key` finished: remember the outcome, answer the
 * duplicates that waited for it. */
static void seen_done(stead__cluster *cl, uint64_t key, int status, const void *data,
                      size_t len, const char *message) {
  pthread_mutex_lock(&cl->seen_mu);
  seen *e = *seen_find(cl, key);
  seen_wait *w = NULL;
  if (e) {
    e->done = true;
    e->status = status;
    if (len <= SEEN_MAX_REPLY && (len == 0 || (e->data = malloc(len)) != NULL)) {
      if (len)
        memcpy(e->data, data, len);
      e->len = len;
      e->kept = true;
    }
    e->message = message ? stead__strdup(message) : NULL;
    w = e->waiters;
    e->waiters = NULL;
  }
  pthread_mutex_unlock(&cl->seen_mu);
  answer_waiters(cl, w, status, data, len, message);
}

/* A request from another node being served: answered exactly once,
 * through the node that handed it in. */
typedef struct inreq {
  stead__cluster *cl;
  stead__node_replier *r; /* NULL for a one-way */
  uint64_t key;           /* its id (seen_*), 0 if it carried none */
} inreq;

static void answer(inreq *q, int status, const void *data, size_t len,
                   const char *message) {
  if (q->key)
    seen_done(q->cl, q->key, status, data, len, message);
  if (q->r)
    q->cl->ops->respond(q->cl->node, q->r, status, data, len, message);
  free(q);
}

static void respond_cb(const stead_result *res, void *udata) {
  answer(udata, res->status, res->data, res->len, res->message);
}

static void respond_err(inreq *q, int rc) {
  answer(q, rc, NULL, 0, stead_errmsg());
}

/* A forwarded send or event: queued, then acknowledged. */
static void handle_oneway(stead_rt *rt, const stead__class_rec *c, const stead__env *env,
                          bool event, inreq *q) {
  const char *topic = stead__env_header_get(env, TOPIC_HEADER);
  const stead_method *meth = event ? NULL : stead__method_find(c, env->method);
  int rc = 0;
  if (event && (!c->cls->on_event || !topic))
    rc = stead__err(STEAD_ENOTSUP, "class \"%s\" has no on_event hook, or no topic",
                    env->cls);
  else if (!event && !meth)
    rc = stead__err(STEAD_ENOMETHOD, "class \"%s\" has no method \"%s\"", env->cls,
                    env->method);
  stead__msg *m = NULL;
  if (rc == 0) {
    m = stead__msg_new(event ? STEAD__MSG_EVENT : STEAD__MSG_SEND, env->payload,
                       env->payload_len);
    if (m && event && !(m->topic = stead__strdup(topic))) {
      stead__msg_free(m);
      m = NULL;
    }
    if (!m)
      rc = stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (rc == 0) {
    m->method = meth;
    rc = stead__enqueue_local(rt, c, env->id, strlen(env->id), m, false, env->shard);
    if (rc)
      stead__msg_free(m);
    else if (!event)
      stead__counter_add(&rt->m.sends, 1);
  }
  answer(q, rc, NULL, 0, rc ? stead_errmsg() : NULL);
}

static void handle_call(stead_rt *rt, const stead__class_rec *c, const stead__env *env,
                        inreq *q) {
  const stead_method *meth = stead__method_find(c, env->method);
  if (!meth) {
    respond_err(q, stead__err(STEAD_ENOMETHOD, "class \"%s\" has no method \"%s\"",
                              env->cls, env->method));
    return;
  }
  int64_t dl = stead__env_deadline(env);
  int64_t tmo = dl ? dl - stead__rt_now_ms(rt) : rt->cfg.default_timeout_ms;
  if (tmo <= 0) {
    respond_err(q, stead__err(STEAD_ETIMEDOUT, "the request expired before it ran"));
    return;
  }
  stead__call *call = stead__call_new(
      rt, respond_cb, q, (int)(tmo > INT32_MAX ? INT32_MAX : tmo), true, 0, NULL);
  stead__msg *m =
      call ? stead__msg_new(STEAD__MSG_CALL, env->payload, env->payload_len) : NULL;
  if (!m) {
    free(call);
    respond_err(q, stead__err(STEAD_ENOMEM, "out of memory"));
    return;
  }
  m->method = meth;
  m->call = call;
  int rc =
      stead__call_arm(call)
          ? stead__err(STEAD_ENOMEM, "out of memory arming the deadline")
          : stead__enqueue_local(rt, c, env->id, strlen(env->id), m, false, env->shard);
  if (rc == 0)
    return;
  char why[512];
  snprintf(why, sizeof why, "%s", stead_errmsg());
  atomic_store(&call->done, 1); /* answered below, not by msg_free */
  if (stead__timer_cancel(&rt->timers, &call->timer))
    stead__call_unref(call);
  stead__msg_free(m);
  answer(q, rc, NULL, 0, why);
}

/* A request for a shard this node does not own: a copy of one it ran (a
 * redelivery that came after the shard moved) gets the first outcome, not
 * "not owner", which would make the caller run it again elsewhere. */
static bool on_duplicate(void *u, const stead__env *env, stead__node_replier *r) {
  stead__cluster *cl = u;
  const char *rid = stead__env_header_get(env, RID_HEADER);
  if (!rid || cl->no_dedup)
    return false;
  return seen_again(cl, seen_key(rid, strlen(rid)), r);
}

static void on_handle(void *u, const stead__env *env, stead__node_replier *r) {
  stead__cluster *cl = u;
  stead_rt *rt = cl->rt;
  stead__counter_add(&cl->forwarded_in, 1);
  inreq *q = malloc(sizeof *q);
  if (!q) {
    if (r)
      cl->ops->respond(cl->node, r, STEAD_ENOMEM, NULL, 0, "out of memory");
    return;
  }
  *q = (inreq){cl, r, 0};
  const char *rid = stead__env_header_get(env, RID_HEADER);
  if (rid && !cl->no_dedup) {
    q->key = seen_key(rid, strlen(rid));
    if (!seen_first(cl, q->key, r)) {
      free(q);
      return;
    }
  }
  const stead__class_rec *c = stead__class_find(rt, env->cls);
  if (!c) {
    /* The sender knows the class, so the nodes' class sets differ: this
     * node is starting (classes are registered after stead_open joined) or
     * misconfigured. "Not owner" makes the sender retry until its deadline
     * instead of failing a call that would work a moment later. */
    respond_err(q, stead__err(STEAD_ENOTOWNER,
                              "class \"%s\" is not registered on this node", env->cls));
    return;
  }
  const char *kind = stead__env_header_get(env, KIND_HEADER);
  if (kind && strcmp(kind, "conn-open") == 0)
    stead__conn_remote_open(rt, c, env, conn_answer, q);
  else if (kind && strcmp(kind, "conn") == 0)
    stead__conn_remote_in(rt, env, conn_answer, q);
  else if (kind && strcmp(kind, "event") == 0)
    handle_oneway(rt, c, env, true, q);
  else if (kind && strcmp(kind, "send") == 0)
    handle_oneway(rt, c, env, false, q);
  else if (kind)
    respond_err(q, stead__err(STEAD_EPROTO, "unknown message kind \"%s\"", kind));
  else if (!r)
    handle_oneway(rt, c, env, false, q);
  else
    handle_call(rt, c, env, q);
}

/* ---- activation and fencing ------------------------------------------ */

int stead__cluster_activate(stead_rt *rt, stead__act *a) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  uint64_t epoch = 0;
  void *n = atomic_load(&cl->node);
  if (!n || atomic_load(&cl->left) || !cl->ops->owns(n, a->shard) ||
      cl->ops->owner_epoch(n, a->shard, &epoch) != 0)
    return stead__err(STEAD_ENOTOWNER,
                      "this node does not own shard %u of %s/%s (any more); retry",
                      a->shard, a->crec->cls->name, a->id);
  atomic_store(&a->epoch, epoch);
  atomic_store(&a->fenced, false);
  return 0;
}

int stead__cluster_fence(stead_rt *rt, stead__act *a) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  uint64_t held = 0;
  uint64_t mine = atomic_load(&a->epoch);
  void *n = atomic_load(&cl->node);
  if (n && cl->ops->owner_epoch(n, a->shard, &held) == 0 && held == mine)
    return 0;
  stead__cluster_note_fenced(rt, a);
  return stead__err(STEAD_ENOTOWNER,
                    "the lease on shard %u (tenure %llu) of %s/%s is no longer held; "
                    "nothing was committed",
                    a->shard, (unsigned long long)mine, a->crec->cls->name, a->id);
}

void stead__cluster_note_fenced(stead_rt *rt, stead__act *a) {
  stead__cluster *cl = cl_of(rt);
  if (!cl || atomic_exchange(&a->fenced, true))
    return;
  stead__counter_add(&cl->fenced, 1);
  /* The activation's memory may be stale: let it go. */
  stead__stripe *s = &rt->stripes[a->stripe];
  pthread_mutex_lock(&s->mu);
  stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, NULL);
  pthread_mutex_unlock(&s->mu);
}

/* ---- emptying shards ------------------------------------------------- */

static void keep_add(stead__cluster *cl, uint32_t shard, uint64_t epoch,
                     stead__node_done_fn done, void *arg) {
  keep_task *t = calloc(1, sizeof *t);
  pthread_mutex_lock(&cl->mu);
  if (!t) {
    pthread_mutex_unlock(&cl->mu);
    /* Nowhere to keep the task: fencing still protects the data; the
     * drain is declared done so the node does not wait forever. */
    stead__log(cl->rt, STEAD_LOG_ERROR, "out of memory emptying shard %u", shard);
    if (done)
      done(arg);
    return;
  }
  *t = (keep_task){cl->tasks, shard, epoch, done, arg};
  cl->tasks = t;
  pthread_cond_signal(&cl->cv);
  pthread_mutex_unlock(&cl->mu);
}

/* Whether activation a is one task t must remove. */
static bool task_wants(const keep_task *t, stead__act *a) {
  return a->shard == t->shard && atomic_load(&a->epoch) <= t->epoch;
}

/* One pass over the table: asks every activation some task wants gone to
 * deactivate, and counts them per shard in cl->remaining. */
static void keep_scan(stead__cluster *cl, keep_task *tasks) {
  stead_rt *rt = cl->rt;
  for (keep_task *t = tasks; t; t = t->next)
    cl->remaining[t->shard] = 0;
  for (int i = 0; i < STEAD__STRIPES; i++) {
    stead__stripe *s = &rt->stripes[i];
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < s->nbuckets; b++)
      for (stead__act *a = s->buckets[b]; a; a = a->hnext)
        for (keep_task *t = tasks; t; t = t->next)
          if (task_wants(t, a)) {
            cl->remaining[t->shard]++;
            stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, NULL);
            break;
          }
    pthread_mutex_unlock(&s->mu);
  }
}

/* One pass of the keeper over the tasks it holds (cl->mu held on entry
 * and exit): asks their activations to go and completes the tasks whose
 * shard is empty. Returns how many tasks are left. */
static size_t keeper_pass(stead__cluster *cl) {
  keep_task *tasks = cl->tasks;
  cl->tasks = NULL;
  pthread_mutex_unlock(&cl->mu);
  keep_scan(cl, tasks);
  keep_task *left = NULL;
  size_t nleft = 0;
  while (tasks) {
    keep_task *t = tasks;
    tasks = t->next;
    if (cl->remaining[t->shard] == 0) {
      if (t->done)
        t->done(t->done_arg);
      free(t);
    } else {
      t->next = left;
      left = t;
      nleft++;
    }
  }
  pthread_mutex_lock(&cl->mu);
  if (left) {
    keep_task **tail = &left;
    while (*tail)
      tail = &(*tail)->next;
    *tail = cl->tasks;
    cl->tasks = left;
  }
  return nleft;
}

static void wait_ms(stead__cluster *cl, long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(&cl->cv, &cl->mu, &ts);
}

static void *keeper_main(void *arg) {
  stead__cluster *cl = arg;
  pthread_mutex_lock(&cl->mu);
  while (!cl->stop || cl->tasks) {
    if (cl->refresh_pending && !cl->stop && !cl->no_refresh) {
      if (refresh_run(cl) != 0)
        wait_ms(cl, 1000);
      continue;
    }
    if (!cl->tasks) {
      pthread_cond_wait(&cl->cv, &cl->mu);
      continue;
    }
    if (keeper_pass(cl) > 0)
      wait_ms(cl, KEEP_POLL_MS);
  }
  pthread_mutex_unlock(&cl->mu);
  return NULL;
}

int stead__cluster_keeper_step(stead_rt *rt) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  pthread_mutex_lock(&cl->mu);
  int rc = cl->refresh_pending ? refresh_run(cl) : 0;
  size_t left = cl->tasks ? keeper_pass(cl) : 0;
  int pending = left > 0 || cl->refresh_pending;
  pthread_mutex_unlock(&cl->mu);
  return rc ? rc : pending;
}

static void on_acquired(void *u, uint32_t shard, uint64_t epoch) {
  stead__cluster *cl = u;
  (void)epoch;
  stead__alarm_rt_own(cl->rt, shard, true);
  refresh_request(cl, shard);
}

static void on_drain(void *u, uint32_t shard, stead__node_done_fn done, void *done_arg) {
  stead__cluster *cl = u;
  stead__alarm_rt_own(cl->rt, shard, false);
  stead__conn_shard_gone(cl->rt, shard);
  /* Every activation of the shard goes, whatever its tenure: the node
   * acquires the shard again only after done and the release. */
  keep_add(cl, shard, UINT64_MAX, done, done_arg);
}

static void on_lost(void *u, uint32_t shard, uint64_t epoch) {
  stead__cluster *cl = u;
  stead__alarm_rt_own(cl->rt, shard, false);
  stead__log(cl->rt, STEAD_LOG_WARN,
             "lost the lease on shard %u (tenure %llu); dropping its activations", shard,
             (unsigned long long)epoch);
  stead__conn_shard_gone(cl->rt, shard);
  keep_add(cl, shard, epoch, NULL, NULL);
}

static void on_released(void *u, uint32_t shard, uint64_t epoch) {
  stead__cluster *cl = u;
  (void)epoch;
  stead__alarm_rt_own(cl->rt, shard, false);
}

/* ---- open / close ---------------------------------------------------- */

char *stead__cluster_storage_spec(const stead_config *cfg) {
  const char *spec = cfg->storage ? cfg->storage : "memory";
  bool pg =
      strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0;
  if (!cfg->cluster_nats || !pg)
    return stead__strdup(spec);
  int ttl = cfg->cluster_lease_ttl_ms > 0 ? cfg->cluster_lease_ttl_ms : 10000;
  char extra[192] = "";
  size_t n = 0;
  const char *sep = strchr(spec, '?') ? "&" : "?";
  if (!strstr(spec, "prefix=")) {
    /* The deployment names its tables as it names its subjects, so two
     * deployments can share a database: lower case, '-' as '_', a letter
     * first, at most 39 bytes (the backend's limit). */
    const char *d = cfg->cluster_deployment ? cfg->cluster_deployment : "stead";
    char pfx[40];
    size_t k = 0;
    if (!((d[0] >= 'a' && d[0] <= 'z') || (d[0] >= 'A' && d[0] <= 'Z')))
      pfx[k++] = 'd';
    for (size_t i = 0; d[i] && k < sizeof pfx - 1; i++)
      pfx[k++] =
          d[i] == '-' ? '_' : (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] + 32 : d[i]);
    pfx[k] = 0;
    n += (size_t)snprintf(extra, sizeof extra, "%sprefix=%s", sep, pfx);
    sep = "&";
  }
  if (!strstr(spec, "lock_timeout_ms=")) {
    n += (size_t)snprintf(extra + n, sizeof extra - n, "%slock_timeout_ms=%d", sep,
                          ttl / 3 > 0 ? ttl / 3 : 1);
    sep = "&";
  }
  if (!strstr(spec, "idle_tx_timeout_ms="))
    snprintf(extra + n, sizeof extra - n, "%sidle_tx_timeout_ms=%d", sep,
             ttl / 2 > 0 ? ttl / 2 : 1);
  size_t len = strlen(spec) + strlen(extra) + 1;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%s%s", spec, extra);
  return out;
}

static int check_config(const stead_config *cfg, bool simulated) {
  if (simulated) /* the driver's node and backend fence instead */
    return cfg->cluster_node_id
               ? 0
               : stead__err(STEAD_EINVAL, "cluster mode needs cluster_node_id");
  if (strncmp(cfg->cluster_nats, "nats://", 7) != 0 || !cfg->cluster_nats[7])
    return stead__err(STEAD_EINVAL, "cluster_nats \"%s\" is not a nats://host:port URL",
                      cfg->cluster_nats);
  if (!cfg->cluster_node_id)
    return stead__err(STEAD_EINVAL, "cluster mode needs cluster_node_id");
  const char *st = cfg->storage ? cfg->storage : "memory";
  if (strncmp(st, "postgres://", 11) != 0 && strncmp(st, "postgresql://", 13) != 0)
    return stead__err(STEAD_EINVAL,
                      "cluster mode needs storage on PostgreSQL (postgres://...), the "
                      "store shared by the nodes that fences their commits; got \"%s\"",
                      st);
  return 0;
}

int stead__cluster_init(stead_rt *rt) {
  const stead_config *cfg = &rt->cfg;
  bool simulated = rt->manual && rt->manual->node_open;
  if (!cfg->cluster_nats && !simulated)
    return 0;
  int rc = check_config(cfg, simulated);
  if (rc)
    return rc;
  stead__cluster *cl = calloc(1, sizeof *cl);
  uint32_t ns = cfg->cluster_shards ? cfg->cluster_shards : STEAD_DEFAULT_SHARDS;
  if (ns > STEAD_MAX_SHARDS) {
    free(cl);
    return stead__err(STEAD_EINVAL, "cluster_shards is %u; at most %u", ns,
                      (unsigned)STEAD_MAX_SHARDS);
  }
  if (!cl || !(cl->remaining = calloc(ns, sizeof *cl->remaining)) ||
      !(cl->refresh = calloc((ns + 7) / 8, 1)) ||
      !(cl->refresh_work = calloc((ns + 7) / 8, 1))) {
    if (cl) {
      free(cl->remaining);
      free(cl->refresh);
    }
    free(cl);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  cl->rt = rt;
  cl->nshards = ns;
  cl->seed = cfg->cluster_seed ? stead__strdup(cfg->cluster_seed) : NULL;
  pthread_mutex_init(&cl->mu, NULL);
  pthread_cond_init(&cl->cv, NULL);
  pthread_mutex_init(&cl->seen_mu, NULL);
  cl->ring = calloc(SEEN_WINDOW, sizeof *cl->ring);
  cl->buckets = calloc(SEEN_BUCKETS, sizeof *cl->buckets);
  cl->no_dedup = rt->manual && rt->manual->no_dedup;
  /* A boot id unique per runtime incarnation: a restarted node's
   * request ids must not collide with its previous life's. */
  snprintf(cl->boot, sizeof cl->boot, "%s@%lld.%lld", cfg->cluster_node_id,
           (long long)stead__rt_now_ms(rt), (long long)(stead__mono_ns() % 1000000000));
  if (!cl->ring || !cl->buckets) {
    stead__cluster_free(cl);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  cl->ops = simulated ? NULL : &stead__node_real_ops;
  if (!rt->manual && pthread_create(&cl->keeper, NULL, keeper_main, cl) != 0) {
    stead__cluster_free(cl);
    return stead__err(STEAD_EIO, "cannot start the cluster keeper thread");
  }
  cl->has_keeper = !rt->manual;
  rt->cluster = cl;
  return 0;
}

int stead__cluster_join(stead_rt *rt) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  const stead_config *cfg = &rt->cfg;
  stead__node_runtime cb = {.handle = on_handle,
                            .drain = on_drain,
                            .lost = on_lost,
                            .duplicate = on_duplicate,
                            .acquired = on_acquired,
                            .released = on_released,
                            .event = on_event,
                            .direct = on_direct,
                            .members = on_members,
                            .udata = cl};
  if (rt->manual && rt->manual->node_open) {
    const stead__node_ops *ops = NULL;
    void *self = NULL;
    int rc = rt->manual->node_open(rt->manual->u, rt, &cb, &ops, &self);
    if (rc == 0) {
      cl->ops = ops;
      atomic_store(&cl->node, self);
    }
    return rc;
  }
  stead__node_opts o;
  stead__node_opts_init(&o);
  o.deployment = cfg->cluster_deployment ? cfg->cluster_deployment : "stead";
  o.node_id = cfg->cluster_node_id;
  o.nshards = cl->nshards;
  o.seed = cfg->cluster_seed;
  o.nats_url = cfg->cluster_nats;
  o.backend = rt->backend;
  o.max_payload = cfg->max_payload;
  o.static_hosts = cfg->cluster_hosts;
  if (cfg->cluster_lease_ttl_ms)
    o.lease_ttl_ms = cfg->cluster_lease_ttl_ms;
  if (cfg->cluster_heartbeat_ms)
    o.heartbeat_ms = cfg->cluster_heartbeat_ms;
  o.rt = cb;
  /* Callbacks may come before open returns (acquired() from the manager);
   * they only touch cl and the alarm scheduler, which exist. */
  stead__node *node = NULL;
  int rc = stead__node_open(&o, &node);
  if (rc == 0)
    atomic_store(&cl->node, (void *)node);
  return rc;
}

void stead__cluster_leave(stead_rt *rt) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return;
  /* Drains every owned shard (turns finish, commits flush, activations go)
   * and releases the leases; afterwards nothing routes here. */
  if (cl->node)
    cl->ops->leave(cl->node);
  atomic_store(&cl->left, true);
  /* The bus closes next: no re-reading of subscriptions from here on
   * (also for a node that died without leaving, whose refresh may still
   * be pending). */
  pthread_mutex_lock(&cl->mu);
  cl->no_refresh = true;
  while (cl->refreshing)
    pthread_cond_wait(&cl->cv, &cl->mu);
  pthread_mutex_unlock(&cl->mu);
}

void stead__cluster_free(stead__cluster *cl) {
  if (!cl)
    return;
  if (cl->has_keeper) {
    pthread_mutex_lock(&cl->mu);
    cl->stop = true;
    pthread_cond_signal(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
    pthread_join(cl->keeper, NULL);
  }
  if (cl->node)
    cl->ops->close(cl->node);
  while (cl->tasks) { /* manual mode: nobody waits for them any more */
    keep_task *t = cl->tasks;
    cl->tasks = t->next;
    free(t);
  }
  for (size_t i = 0; cl->ring && i < SEEN_WINDOW; i++)
    answer_waiters(cl, seen_evict(cl, &cl->ring[i]), STEAD_ECLOSED, NULL, 0,
                   "the node closed");
  free(cl->ring);
  free(cl->buckets);
  pthread_mutex_destroy(&cl->seen_mu);
  pthread_mutex_destroy(&cl->mu);
  pthread_cond_destroy(&cl->cv);
  free(cl->remaining);
  free(cl->refresh);
  free(cl->refresh_work);
  free(cl->seed);
  free(cl);
}

/* ---- status ---------------------------------------------------------- */

struct stead__node *stead__cluster_node(stead_rt *rt) {
  if (!rt || !rt->cluster || rt->cluster->ops != &stead__node_real_ops)
    return NULL;
  return atomic_load(&rt->cluster->node);
}

int stead_cluster_status_get(stead_rt *rt, stead_cluster_status **out) {
  if (!rt || !out)
    return stead__err(STEAD_EINVAL, "runtime and out must not be NULL");
  *out = NULL;
  if (!rt->cluster)
    return stead__err(STEAD_ENOTSUP, "the runtime is not in cluster mode");
  if (!rt->cluster->node)
    return stead__err(STEAD_ENOTOWNER, "the node is still joining the cluster");
  return rt->cluster->ops->status_get(rt->cluster->node, out);
}

static int metric(stead__buf *b, const char *name, const char *type, const char *help,
                  double v) {
  return stead__metric_header(b, name, type, help) |
         stead__metric_value(b, name, NULL, v);
}

int stead__cluster_metrics(stead_rt *rt, stead__buf *b) {
  stead__cluster *cl = cl_of(rt);
  if (!cl)
    return 0;
  stead_cluster_status *st = NULL;
  if (!cl->node)
    return 0;
  int rc = cl->ops->status_get(cl->node, &st);
  if (rc)
    return rc;
  rc = metric(b, "stead_cluster_owned_shards", "gauge",
              "Shards whose lease this node holds.", (double)st->nowned);
  rc |= metric(b, "stead_cluster_members", "gauge", "Live members of the deployment.",
               (double)st->nmembers);
  rc |= metric(b, "stead_cluster_lease_lost_total", "counter",
               "Shard leases lost without a drain.", (double)st->lost);
  rc |= metric(b, "stead_cluster_not_owner_total", "counter",
               "Requests this node refused as not the owner.", (double)st->not_owner);
  rc |= metric(b, "stead_cluster_forwarded_total", "counter",
               "Messages forwarded to the node that owns their object.",
               (double)stead__counter_get(&cl->forwarded));
  rc |= metric(b, "stead_cluster_served_total", "counter",
               "Forwarded messages this node received to run.",
               (double)stead__counter_get(&cl->forwarded_in));
  rc |= metric(b, "stead_cluster_rerouted_total", "counter",
               "Local calls sent again through the cluster after their shard moved.",
               (double)stead__counter_get(&cl->rerouted));
  rc |= metric(b, "stead_cluster_events_in_total", "counter",
               "Bus events received from other nodes.",
               (double)stead__counter_get(&cl->events_in));
  rc |= metric(b, "stead_cluster_events_lost_total", "counter",
               "Bus events not published to, or not taken from, the cluster.",
               (double)stead__counter_get(&cl->events_lost));
  rc |= metric(b, "stead_cluster_duplicates_total", "counter",
               "Forwarded requests and events received twice and not run again.",
               (double)stead__counter_get(&cl->duplicates));
  rc |= metric(b, "stead_cluster_fenced_total", "counter",
               "Activations stopped because their lease tenure ended.",
               (double)stead__counter_get(&cl->fenced));
  free(st);
  return rc;
}
