/*
 * core.h -- private structures of the core runtime: activations, mailboxes,
 * messages, calls, the run queue and the timer thread.
 *
 * Locking, in the only order it is ever taken:
 *   stripe lock  ->  run-queue lock
 *   timer lock (taken alone)
 *   idle lock    (taken alone)
 * A stripe lock protects its hash chains, its LRU list, and the mailbox and
 * scheduling state of every activation in it. Holding it while an object is
 * looked up, created, sent to and removed is what makes "look up, create"
 * and "remove" atomic: there is never a second activation of one object.
 *
 * An activation is "scheduled" (sched = 1) from the moment a message makes
 * it runnable until the worker running it finds its mailbox empty; while
 * scheduled it is either in the run queue or owned by exactly one worker,
 * so at most one turn of an object runs at any moment.
 */
#ifndef STEAD_CORE_H
#define STEAD_CORE_H

#include "core/seam.h"
#include "stead.h"
#include "storage/backend.h"
#include "storage/committer.h"
#include "storage/objstore.h"
#include "util/metrics.h"
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define STEAD__STRIPES     256
#define STEAD__MAX_CLASSES 256

struct stead__node_runtime;
struct stead__node_ops;
typedef struct stead__act stead__act;
typedef struct stead__msg stead__msg;
typedef struct stead__call stead__call;
typedef struct stead__gated stead__gated;

/* ---- timer thread --------------------------------------------------- */

typedef void (*stead__timer_fn)(void *arg);

/* A timer entry, embedded in its owner. `idx` is its heap slot + 1, or 0
 * when not in the heap; both are guarded by the timer lock. */
typedef struct stead__timer {
  int64_t when_ns; /* monotonic */
  uint64_t seq;
  size_t idx;
  stead__timer_fn fn;
  void *arg;
} stead__timer;

typedef struct stead__timerq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  stead__timer **heap;
  size_t len, cap;
  uint64_t seq;
  bool stop;
  pthread_t thread;
  bool started;
} stead__timerq;

int stead__timerq_init(stead__timerq *q, stead_rt *rt);
void stead__timerq_stop(stead__timerq *q);
/* Arms t at when_ns; returns ENOMEM if the heap cannot grow. */
int stead__timer_arm(stead__timerq *q, stead__timer *t, int64_t when_ns);
/* Disarms t; returns 1 if it was armed (its fn will not run), 0 if it had
 * already fired or was never armed. */
int stead__timer_cancel(stead__timerq *q, stead__timer *t);

/* ---- classes -------------------------------------------------------- */

typedef struct stead__class_rec {
  const stead_class *cls;
  size_t nmethods;
} stead__class_rec;

/* ---- calls ---------------------------------------------------------- */

/* A pending request's completion: completed exactly once (done flag), by
 * the reply, a failure, the deadline timer or close. Reference counted:
 * one reference for the message side, one while the timer is armed. */
struct stead__call {
  atomic_int refs;
  atomic_int done;
  stead_rt *rt;
  stead_call_cb cb;
  void *udata;
  int64_t start_ns;
  int64_t deadline_ns;
  stead__timer timer;
  bool internal; /* a continuation; not counted as an external call */
};

/* A call whose deadline is timeout_ms from now. `extra` bytes are
 * allocated with it (zeroed) and returned in *extra_out, for a completion
 * record that must live exactly as long as the call. */
stead__call *stead__call_new(stead_rt *rt, stead_call_cb cb, void *udata, int timeout_ms,
                             bool internal, size_t extra, void **extra_out);
/* Completes the call if nobody did yet. data/message are copied by the
 * callback if it needs them. Returns 1 if this completion won. */
int stead__call_complete(stead__call *c, int status, const void *data, size_t len,
                         const char *message);
void stead__call_unref(stead__call *c);
/* Arms the deadline timer (takes a reference). */
int stead__call_arm(stead__call *c);

/* ---- messages ------------------------------------------------------- */

typedef enum stead__msg_kind {
  STEAD__MSG_CALL = 1, /* method call with a completion */
  STEAD__MSG_SEND,     /* one-way method call */
  STEAD__MSG_CONT,     /* continuation of a call made from a turn */
  STEAD__MSG_EVENT,    /* a bus event for an object's on_event */
  STEAD__MSG_ALARM,    /* a due alarm: topic = its name, payload = meta */
  STEAD__MSG_TIMER,    /* a tick of an in-memory timer (timer_id) */
  STEAD__MSG_FN,       /* a runtime function run as a turn (fn, fn_arg) */
  STEAD__MSG_HIBERNATE,
  STEAD__MSG_DEACTIVATE,
  STEAD__MSG_CONN, /* a connection's connect, message or close (conn.c) */
} stead__msg_kind;

typedef struct stead__waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rc;
} stead__waiter;

struct stead__msg {
  stead__msg *next;
  stead__msg_kind kind;
  const stead_method *method; /* CALL, SEND */
  stead__call *call;          /* CALL: the completion (one reference) */
  /* CONT: */
  stead_then_fn then;
  void *then_udata;
  int status;
  char *errmsg;
  /* EVENT: the topic; ALARM: the alarm's name (owned). */
  char *topic;
  uint32_t attempt;                     /* ALARM */
  uint64_t timer_id;                    /* TIMER */
  int (*fn)(stead_ctx *ctx, void *arg); /* FN: runs as the turn's body */
  void *fn_arg;
  /* DEACTIVATE requested by stead_deactivate: signalled when done. */
  stead__waiter *waiter;
  /* CONN: the connection (one reference, dropped by stead__msg_free), the
   * operation and its code (close code or message flags). A connect
   * carries its completion in `call`. */
  struct stead__conn_rec *conn;
  int conn_op;
  int conn_code;
  size_t len;
  uint8_t *payload; /* points into the same allocation, after the struct */
};

/* Allocates a message with room for a copy of the payload. */
stead__msg *stead__msg_new(stead__msg_kind kind, const void *payload, size_t len);
void stead__msg_free(stead__msg *m);

/* ---- activations ---------------------------------------------------- */

typedef struct stead_deferred stead_deferred;
struct stead_deferred {
  stead_deferred *next;
  stead__act *act;
  stead__call *call;
};

struct stead__act {
  stead__act *hnext;               /* hash chain (stripe lock) */
  stead__act *lru_prev, *lru_next; /* stripe LRU, oldest first (stripe lock) */
  stead__act *rq_next;             /* run queue (run-queue lock) */
  const stead__class_rec *crec;
  uint64_t hash;
  unsigned stripe;
  /* Guarded by the stripe lock: */
  stead__msg *head, *tail;
  size_t queued; /* messages in the mailbox, system ones included */
  bool sched;    /* runnable or running */
  /* Gated turns whose commit finished, to release in this order. */
  stead__gated *rel_head, *rel_tail;
  bool sys_pending;  /* a HIBERNATE/DEACTIVATE is queued */
  int64_t last_used; /* runtime clock, ms */
  /* Owned by the worker running the object: */
  atomic_bool activated; /* read by stead_is_active under the stripe lock */
  bool hibernated;
  void *state;            /* state struct (schema) or state_size memory */
  stead__buf state_saved; /* the state struct as of the last good turn */
  struct stead__objstore *store;
  /* Turns whose outputs wait for a commit (the output gate). */
  atomic_int commits_pending;
  /* A commit of this object failed: reload the state struct first. */
  atomic_bool state_stale;
  stead_deferred *deferred;  /* open deferred replies */
  struct stead__tmr *timers; /* in-memory timers (timers.c) */
  /* Continuations and deferred replies outstanding: the object must stay. */
  atomic_int pins;
  /* Cluster mode (cluster.c): the object's shard, the lease tenure it was
   * activated under (0 before), and whether that tenure ended under it. */
  uint32_t shard;
  _Atomic uint64_t epoch;
  atomic_bool fenced;
  size_t id_len;
  char id[]; /* NUL-terminated */
};

typedef struct stead__stripe {
  pthread_mutex_t mu;
  stead__act **buckets;
  size_t nbuckets;
  size_t count;
  stead__act *lru_head, *lru_tail;
} stead__stripe;

/* ---- manual scheduling (deterministic simulation) -------------------- */

/* A runtime opened with stead__open_manual starts no thread of its own:
 * no workers, no timer thread, no committer thread, no alarm thread. Its
 * driver (src/sim/) runs everything on one thread -- activations' slices
 * (stead__rq_snapshot / stead__rq_take), commit batches
 * (stead__committer_step), timers (stead__timerq_fire_due) and alarms
 * (stead__alarm_rt_run_due) -- in an order it picks, by a clock it owns.
 * Only the calls below behave differently; everything else runs the same
 * code as a threaded runtime. */
typedef struct stead__manual {
  /* The monotonic clock for deadlines and timers, ns. Required. */
  int64_t (*mono_ns)(void *u);
  /* Runs the runtime until nothing is in flight: what a worker pool does
   * while stead_close or stead_run_until_idle waits. Required. */
  void (*drain)(void *u);
  void *u;
  /* The storage backend to use instead of opening cfg->storage (NULL:
   * open the spec). stead__open_manual takes it over, also when it
   * fails; stead_close closes it. */
  stead__backend *backend;
  /* Cluster mode on a simulated node (NULL: the real node, when
   * cfg->cluster_nats is set). When set, the runtime is a cluster node
   * whatever cfg->cluster_nats says (cfg->cluster_node_id is required,
   * the storage spec is not checked: the backend must fence commits by
   * (shard, epoch) itself), and stead_open calls it instead of
   * stead__node_open, after the alarm scheduler started: `cb` is the
   * runtime's side (copy it; cb->udata stays valid until ops->close),
   * *ops and *self receive the node's table and handle. It must not call
   * any callback before it returns. Returns 0 or an error for stead_open. */
  int (*node_open)(void *u, stead_rt *rt, const struct stead__node_runtime *cb,
                   const struct stead__node_ops **ops, void **self);
  /* Tests: the cluster's defence against duplicated deliveries is off
   * (cluster.c), to prove the simulation catches a write applied twice. */
  bool no_dedup;
} stead__manual;

/* stead_open in manual mode: `man` is copied; cfg->alarm_manual is
 * forced on. Errors as stead_open. */
int stead__open_manual(const stead_config *cfg, const stead__manual *man, stead_rt **out);
/* The runtime's monotonic clock: the driver's in manual mode. */
int64_t stead__rt_mono_ns(stead_rt *rt);
/* Manual mode: the runnable activations (run queue), at most max of them,
 * into out; returns how many there are in all. */
size_t stead__rq_snapshot(stead_rt *rt, stead__act **out, size_t max);
/* Manual mode: removes a from the run queue (it must be there) so the
 * caller may run stead__run_slice(rt, a). */
void stead__rq_take(stead_rt *rt, stead__act *a);
/* Timer heap in manual mode: runs every timer due at now_ns; returns how
 * many ran. */
int stead__timerq_fire_due(stead__timerq *q, int64_t now_ns);
/* The earliest armed timer's deadline; false if none is armed. */
bool stead__timerq_next(stead__timerq *q, int64_t *when_ns);
/* Alarms in manual mode: pages in and fires what is due by the runtime's
 * clock, without waiting for the turns. Returns how many fired. */
int stead__alarm_rt_run_due(stead_rt *rt);
/* The runtime's bus in manual mode: runs its oldest queued event (its
 * listeners queue object deliveries); 1 if one ran, 0 if none waited. */
int stead__bus_rt_run_one(stead_rt *rt);
/* Cluster mode, manual: one pass of what the keeper thread does -- re-read
 * subscriptions of acquired shards, ask the activations of drained or
 * lost shards to deactivate, and report the drains whose shard is empty
 * (their done() runs here). Returns 1 while work is left for a later
 * pass, 0 when none is, or a negative code (the subscriptions could not
 * be re-read; they are retried at the next pass). */
int stead__cluster_keeper_step(stead_rt *rt);

/* ---- the runtime ---------------------------------------------------- */

typedef struct stead__metrics_core {
  stead__counter turns, turns_failed, turns_slow;
  stead__counter calls_ok, calls_handler, calls_timeout, calls_overload, calls_other;
  stead__counter sends, sends_dropped, conts;
  stead__counter activations_total, deactivations_total, hibernations_total;
  stead__counter activate_failed;
  stead__counter commit_failures; /* turns failed because their commit did */
  stead__hist call_latency;
} stead__metrics_core;

struct stead_rt {
  stead_config cfg;
  char *storage_spec;

  /* classes: append-only; readers scan [0, nclasses) without a lock */
  pthread_mutex_t classes_mu;
  stead__class_rec classes[STEAD__MAX_CLASSES];
  atomic_size_t nclasses;
  /* Smallest non-zero hibernate/shutdown timeout; read by the sweep. */
  _Atomic int64_t min_idle_ms;

  stead__stripe stripes[STEAD__STRIPES];
  atomic_size_t nacts;   /* table records (activated or about to be) */
  atomic_size_t nactive; /* activated objects */

  /* run queue */
  pthread_mutex_t rq_mu;
  pthread_cond_t rq_cv;
  stead__act *rq_head, *rq_tail;
  bool rq_stop;
  int rq_waiting;

  pthread_t *workers;
  int nworkers;

  stead__timerq timers;
  stead__timer sweep_timer;

  /* Manual scheduling (NULL: threads). Set before anything starts. */
  stead__manual *manual;

  /* messages queued or running, turns committing: 0 means idle */
  atomic_long inflight;
  pthread_mutex_t idle_mu;
  pthread_cond_t idle_cv;

  /* external API calls in progress, and the closing flag */
  atomic_int api_refs;
  atomic_bool closing;

  stead__metrics_core m;

  /* per-module state (seam.h) */
  void *slots[STEAD__SLOTS];

  /* cluster mode (cluster.c); NULL on a single node */
  struct stead__cluster *cluster;

  /* storage */
  stead__backend *backend;
  stead__committer *committer;
  stead__objstore_opts store_opts;
};

/* The runtime whose worker or timer thread this is, or NULL. */
stead_rt *stead__current_rt(void);
void stead__set_current_rt(stead_rt *rt);

int64_t stead__rt_now_ms(stead_rt *rt);
/* The runtime clock at coarse resolution (idle bookkeeping). */
int64_t stead__rt_coarse_ms(stead_rt *rt);
void stead__log(stead_rt *rt, stead_log_level lvl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

const stead__class_rec *stead__class_find(stead_rt *rt, const char *name);
const stead_method *stead__method_find(const stead__class_rec *c, const char *name);

/* Enqueues a message to (class, id), creating the activation if needed.
 * `bypass_limit` lets continuations and system messages in past the
 * mailbox limit: they answer work already accepted, so they must not be
 * dropped. Takes ownership of m on success only. */
int stead__enqueue(stead_rt *rt, const stead__class_rec *c, const char *id, size_t id_len,
                   stead__msg *m, bool bypass_limit);
/* stead__enqueue without cluster routing: to this node's activation of
 * (class, id), whose shard (cluster mode; else 0) is `shard`. */
int stead__enqueue_local(stead_rt *rt, const stead__class_rec *c, const char *id,
                         size_t id_len, stead__msg *m, bool bypass_limit, uint32_t shard);
/* Appends m to a's mailbox, counts it in flight and schedules a if idle.
 * The stripe lock must be held. */
void stead__mailbox_push(stead_rt *rt, stead__act *a, stead__msg *m);
/* Enqueues to a known activation (continuations: the object is pinned). */
void stead__enqueue_act(stead_rt *rt, stead__act *a, stead__msg *m);

void stead__inflight_add(stead_rt *rt);
void stead__inflight_done(stead_rt *rt);

/* Committer callback side: hands a finished gated turn back to its
 * activation, scheduling it so a worker releases the outputs. */
void stead__act_post_released(stead_rt *rt, stead__act *a, stead__gated *g);
/* Worker side: releases or drops one gated turn's outputs and frees it. */
void stead__release_gated(stead__gated *g);
/* Releases everything posted to `a` so far (its worker, between turns). */
void stead__drain_released(stead_rt *rt, stead__act *a);

/* Worker: runs one slice of a scheduled activation. */
void stead__run_slice(stead_rt *rt, stead__act *a);
/* Run queue push (stripe lock held by caller). */
void stead__rq_push(stead_rt *rt, stead__act *a);

/* Storage glue (store.c). */
int stead__store_open(stead_rt *rt);
void stead__store_close(stead_rt *rt);
/* Creates the activation's store and loads its state struct. Errors:
 * ESTORAGE, ECORRUPT (message set), ENOMEM. */
int stead__store_activate(stead_rt *rt, stead__act *a);
/* Waits for the activation's commits, then frees its store and state. */
void stead__store_deactivate(stead_rt *rt, stead__act *a);
/* Reloads the state struct after a failed commit. */
int stead__store_reload_state(stead_rt *rt, stead__act *a);
/* After the handler: rolls the state struct back (ok = false) or writes
 * it into the turn when it changed. Errors: ETOOBIG, ENOMEM, EINVAL. */
int stead__store_state_end(stead_rt *rt, stead__act *a, bool ok);
int stead__store_metrics(stead_rt *rt, stead__buf *b);
/* The runtime's backend (tests reach the failure injector through it). */
stead__backend *stead__rt_backend(stead_rt *rt);

/* Alarms (alarms.c). */
int stead__alarm_rt_open(stead_rt *rt);
void stead__alarm_rt_stop(stead_rt *rt);
int stead__alarm_rt_metrics(stead_rt *rt, stead__buf *b);
/* After a durable commit, on the committer thread, in commit order. */
void stead__alarm_rt_committed(stead_rt *rt, const stead__wset *ws);
void stead__alarm_rt_done(stead_rt *rt, const char *cls, const char *id, const char *name,
                          uint32_t attempt);
/* An alarm turn failed: record the next attempt or dead-letter it. */
void stead__alarm_rt_failed(stead_rt *rt, const char *cls, const char *id,
                            const char *name, uint32_t attempt, const void *meta,
                            size_t meta_len);

/* Runs fn(ctx, arg) as a turn of (class, id) -- activating it if needed
 * -- and waits for its commit. The turn's reply (stead_reply) is not
 * returned. For runtime features that act on an object from outside
 * (alarms set from outside). Not from a stead thread (EMISUSE). */
int stead__run_as_turn(stead_rt *rt, const char *cls, const char *id,
                       int (*fn)(stead_ctx *ctx, void *arg), void *arg, int timeout_ms);

/* Connections (conn.c). */
/* The ctx of the turn running on this thread, or NULL. */
stead_ctx *stead__ctx_current(void);
/* Runs a CONN message's operation as the body of its turn. */
int stead__conn_turn(stead_ctx *ctx, stead__msg *m);
/* Drops a CONN message's reference to its connection (stead__msg_free). */
void stead__conn_msg_release(stead__msg *m);
int stead__conn_rt_open(stead_rt *rt);
/* At the start of stead_close: closes every connection (GOING_AWAY). */
void stead__conn_rt_close(stead_rt *rt);
/* After the workers stopped: delivers the last close notifications,
 * stops the delivery thread, drops the runtime's hold on the module. */
void stead__conn_rt_free(stead_rt *rt);
int stead__conn_rt_metrics(stead_rt *rt, stead__buf *b);
/* Connections across nodes. Answers a forwarded request, exactly once. */
typedef void (*stead__conn_answer_fn)(void *a, int status, const void *data, size_t len,
                                      const char *message);
struct stead__env;
/* A connect forwarded by the client's node (kind "conn-open"). */
void stead__conn_remote_open(stead_rt *rt, const stead__class_rec *c,
                             const struct stead__env *env, stead__conn_answer_fn answer,
                             void *a);
/* A client's message or close forwarded by the client's node ("conn"). */
void stead__conn_remote_in(stead_rt *rt, const struct stead__env *env,
                           stead__conn_answer_fn answer, void *a);
/* An object's message or close pushed by the object's node. */
void stead__conn_remote_push(stead_rt *rt, const struct stead__env *env);
/* The live member set changed: closes connections bound to nodes gone. */
void stead__conn_peers(stead_rt *rt, const char *const *nodes, size_t n);
/* `shard` left this node: closes its objects' connections (MOVED). */
void stead__conn_shard_gone(stead_rt *rt, uint32_t shard);

/* Alarm ownership in cluster mode: only owned shards' alarms fire. */
void stead__alarm_rt_own(stead_rt *rt, uint32_t shard, bool own);

/* Cluster mode (cluster.c). Every function is a no-op returning 0 on a
 * single node (rt->cluster NULL). */
typedef struct stead__cluster stead__cluster;
/* The storage spec to open (malloc'd; NULL if out of memory): cfg's, and
 * in cluster mode on PostgreSQL, unless the spec sets them: the table
 * prefix from the deployment name, and lock and idle-transaction timeouts
 * derived from the lease ttl, so a node stalled mid-commit cannot hold the
 * lease rows of other nodes past a tenure. */
char *stead__cluster_storage_spec(const stead_config *cfg);
/* Before the alarm scheduler: validates the cluster config, prepares the
 * shard function and the keeper thread. Errors: EINVAL, ENOMEM, EIO. */
int stead__cluster_init(stead_rt *rt);
/* After the workers and alarms: joins the deployment (stead__node_open's
 * errors). */
int stead__cluster_join(stead_rt *rt);
/* Drains and releases every owned shard; afterwards nothing routes. */
void stead__cluster_leave(stead_rt *rt);
void stead__cluster_free(stead__cluster *cl);
/* The shard of (cls, id). */
uint32_t stead__cluster_shard(stead_rt *rt, const char *cls, const char *id);
/* The fencing token for a write of (cls, id) outside a turn: 0 with the
 * shard and its held tenure (both 0 on a single node), or ENOTOWNER. */
int stead__cluster_tenure(stead_rt *rt, const char *cls, const char *id, uint32_t *shard,
                          uint64_t *epoch);
/* 1 if this node runs (cls, id): always on a single node; in a cluster,
 * when it owns the object's shard. */
int stead__cluster_owns(stead_rt *rt, const char *cls, const char *id);
/* Publishes a bus event emitted here to the other nodes (at most once;
 * a failure is counted and logged). */
void stead__cluster_emit(stead_rt *rt, const char *topic, const void *payload,
                         size_t len);
/* stead__enqueue in cluster mode: local, forwarded, or refused. */
int stead__cluster_enqueue(stead_rt *rt, const stead__class_rec *c, const char *id,
                           size_t id_len, stead__msg *m, bool bypass_limit);
/* Worker, before activating a: ENOTOWNER unless the shard is owned; sets
 * a->epoch to the tenure. */
int stead__cluster_activate(stead_rt *rt, stead__act *a);
/* Worker, at the end of a successful turn of a: ENOTOWNER if a's tenure
 * is no longer the held lease (then a is asked to deactivate). */
int stead__cluster_fence(stead_rt *rt, stead__act *a);
/* A commit of a was refused for its tenure: count it, deactivate a. */
void stead__cluster_note_fenced(stead_rt *rt, stead__act *a);
int stead__cluster_metrics(stead_rt *rt, stead__buf *b);
/* Connection traffic between nodes (conn.c decides, cluster.c carries).
 * A request goes to the owner of (cls, id), retried while nobody owns it,
 * until timeout_ms; `cb` gets the answer once, from a node thread (status
 * 0 with the answer's bytes, or an error and its message), unless the
 * function returns an error. A push goes to the node named `node`
 * (fire and forget). Headers are borrowed. Errors: ECLOSED (left),
 * ENOTOWNER (still joining), EINVAL, ETOOBIG, EIO, ENOMEM. */
typedef void (*stead__cluster_reply_fn)(int status, const void *data, size_t len,
                                        const char *message, void *udata);
struct stead__env_header;
int stead__cluster_conn_request(stead_rt *rt, const char *cls, const char *id,
                                const char *kind, const struct stead__env_header *h,
                                size_t nh, const void *payload, size_t len,
                                int timeout_ms, stead__cluster_reply_fn cb, void *udata);
int stead__cluster_conn_push(stead_rt *rt, const char *node, const char *cls,
                             const char *id, const struct stead__env_header *h, size_t nh,
                             const void *payload, size_t len);
/* This node's name in the deployment ("" on a single node). */
const char *stead__cluster_node_name(stead_rt *rt);
/* The runtime's cluster node, or NULL (tests pause and kill it). */
struct stead__node *stead__cluster_node(stead_rt *rt);

/* Timers (timers.c). */
stead__act *stead__ctx_act(stead_ctx *ctx);
void *stead__timer_lookup(stead__act *a, uint64_t tid);
int stead__timer_run(stead_ctx *ctx, void *rec);
void stead__timer_after_tick(stead__act *a, uint64_t tid);
void stead__timers_act_end(stead__act *a);
void stead__timers_rt_free(stead_rt *rt);
int stead__timers_rt_metrics(stead_rt *rt, stead__buf *b);

/* Lifecycle (lifecycle.c). */
void stead__sweep_tick(void *rt);
int stead__sweep_at(stead_rt *rt, int64_t now_ms);
void stead__evict_if_needed(stead_rt *rt);
void stead__act_free(stead__act *a);
bool stead__table_remove_if_empty(stead_rt *rt, stead__act *a);
void stead__lru_touch(stead_rt *rt, stead__act *a);
int stead__deactivate_all(stead_rt *rt);
/* Queues a system message (stripe lock held); false if one is pending. */
bool stead__queue_system(stead_rt *rt, stead__act *a, stead__msg_kind kind,
                         stead__waiter *w);
/* Queues a DEACTIVATE with a waiter; 1 if queued, 0 if not active. */
int stead__queue_deactivate(stead_rt *rt, const stead__class_rec *c, const char *id,
                            stead__waiter *w);
int stead__act_lookup_active(stead_rt *rt, const stead__class_rec *c, const char *id);

#endif
