/*
 * node.h -- the per-process cluster brain (internal API): shard ownership
 * through PostgreSQL leases, drain on rebalance, loss detection, routing
 * and request forwarding over NATS.
 *
 * A stead__node joins a deployment: it keeps the live member set (NATS
 * heartbeats or a static host list), computes the shards it should own by
 * rendezvous hashing over that set, takes each one's lease (compare-and-set
 * with an epoch, stead__lease_acquire), renews them, serves the shards'
 * NATS subjects, and forwards calls for shards it does not own to their
 * owner. docs/cluster.md describes the protocol and its guarantees.
 *
 * The runtime plugs in through stead__node_runtime (callbacks the node
 * calls) and calls stead__node_owns / stead__node_owner_epoch /
 * stead__node_route / stead__node_call / stead__node_respond.
 *
 * Callback promise (libuv's): a function that takes a callback either
 * returns an error, and then never calls it, or returns 0 and calls it
 * exactly once.
 */
#ifndef STEAD_CLUSTER_NODE_H
#define STEAD_CLUSTER_NODE_H

#include "cluster/envelope.h"
#include "storage/backend.h"
#include "util/util.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct stead__node stead__node;
typedef struct stead__node_replier stead__node_replier;

/* Completion of a drain: the runtime calls it once, from any thread (also
 * from inside drain itself), when no turn of the shard runs any more and
 * every commit of the shard is durable (or has failed). */
typedef void (*stead__node_done_fn)(void *done_arg);

/* What the runtime implements. All callbacks run on node threads and must
 * not block for long (enqueue and return) and must not call
 * stead__node_close. `u` is `udata`.
 *
 * Guarantees the node gives:
 *   - handle() is called for a shard only between acquired() and the next
 *     drain() or lost() of that shard, so after drain(s) or lost(s) no new
 *     message of s reaches the runtime until a later acquired(s).
 *   - per shard, calls are ordered: acquired, then either drain ->
 *     (done) -> released, or lost (possibly while draining), then maybe
 *     acquired again with a higher epoch.
 *   - acquired/drain/released/lost run on one thread (the node's manager),
 *     one at a time; handle() runs on NATS delivery threads, one shard's
 *     messages one at a time and in order. */
typedef struct stead__node_runtime {
  /* A request (or one-way) envelope for a shard this node owns. `env` is
   * borrowed for the call (copy what is kept). `r` answers it, exactly
   * once, from any thread, with stead__node_respond; it is NULL for a
   * one-way. Required. */
  void (*handle)(void *u, const stead__env *env, stead__node_replier *r);
  /* The shard moves away: stop starting its turns (the node already sends
   * new requests elsewhere), let the running ones finish and their commits
   * flush (they may still commit: stead__node_owner_epoch keeps answering
   * while draining), then call done(done_arg) exactly once, even if lost()
   * came meanwhile. The lease is released only after done. Required. */
  void (*drain)(void *u, uint32_t shard, stead__node_done_fn done, void *done_arg);
  /* The lease of `shard` (tenure `epoch`) is gone without a drain: renewal
   * failed, the lease expired (process paused, database unreachable past
   * the ttl) or another node took it. The node already answers "not owner"
   * and stead__node_owner_epoch fails, so commits of that epoch are fenced
   * anyway; drop the shard's activations without committing. Required. */
  void (*lost)(void *u, uint32_t shard, uint64_t epoch);
  /* Optional: a request (or one-way) for a shard this node does not own,
   * asked before the node answers "not owner". Returns true if the
   * runtime already handled a copy of it (same request id): then the
   * runtime answers `r` (NULL for a one-way) with that copy's outcome,
   * now or when it finishes, and the node must not refuse it. "Not owner"
   * tells the caller to try elsewhere, so it must never answer a copy of
   * a request that ran here: the caller would run it twice. */
  bool (*duplicate)(void *u, const stead__env *env, stead__node_replier *r);
  /* Optional: this node now owns `shard` with tenure `epoch` (e.g. start
   * its alarms: alarms fire only on the owner). Called before the first
   * handle() of the tenure. */
  void (*acquired)(void *u, uint32_t shard, uint64_t epoch);
  /* Optional: a drained shard is given up; it is no longer this node's
   * (owns/owner_epoch say so already) and its lease is released right
   * after this returns. */
  void (*released)(void *u, uint32_t shard, uint64_t epoch);
  /* Optional: a bus event another node published with stead__node_emit
   * (events of this node are not echoed). Strings and payload are valid
   * during the call. Runs on a NATS delivery thread, events in the order
   * each publisher sent them. Without it the node does not listen. */
  void (*event)(void *u, const char *topic, const void *payload, size_t len);
  /* Optional: a one-way another node sent to this one by name with
   * stead__node_send (connection traffic). `env` is borrowed for the
   * call. Runs on one NATS delivery thread, in the order each sender sent
   * them. Without it the node does not listen. */
  void (*direct)(void *u, const stead__env *env);
  /* Optional: the live member set changed (this node included); `nodes`
   * is borrowed for the call. Runs on the membership thread. */
  void (*members)(void *u, const char *const *nodes, size_t n);
  void *udata;
} stead__node_runtime;

typedef struct stead__node_opts {
  const char *deployment; /* [A-Za-z0-9_-]{1,64}; prefixes every subject. Required */
  const char *node_id;    /* a name, unique in the deployment. Required */
  uint32_t nshards;       /* 1..STEAD_MAX_SHARDS; default STEAD_DEFAULT_SHARDS */
  const char *seed;       /* shard hashing seed; NULL = unkeyed */
  const char *nats_url;   /* the node opens its own connection. Required */
  /* The shared PostgreSQL backend (leases, the deployment record). Borrowed:
   * must outlive the node. Required. */
  stead__backend *backend;
  int lease_ttl_ms;         /* default 10000; >= 100 */
  int renew_ms;             /* default ttl/3; must be < ttl */
  int acquire_retry_ms;     /* contended or failed acquire: retry after; default 250 */
  int heartbeat_ms;         /* membership; default 1000 */
  int expire_ms;            /* default 3 x heartbeat */
  const char *static_hosts; /* non-NULL: fixed member list, no heartbeats */
  size_t max_payload;       /* envelope payload limit; 0 = default (4 MiB) */
  /* NATS delivery threads (nats.c's process-wide pool, which only grows)
   * shared by every subscription of the node, instead of a thread per
   * shard subject. Default 4. */
  int delivery_threads;
  /* How long open waits for the deployment record's lock (another node
   * creating or checking it). Default 10000. */
  int config_wait_ms;
  stead__node_runtime rt;
} stead__node_opts;

void stead__node_opts_init(stead__node_opts *o);

/* Joins the deployment. First checks the deployment record in the backend
 * (table kv, class "stead/cluster", id = deployment): the first node of a
 * deployment writes its shard count and a fingerprint of its seed, later
 * nodes must match it. Then connects to NATS, starts membership and the
 * manager thread, and returns; shards are acquired in the background
 * (acquired() reports each). The node keeps `o->backend` borrowed and
 * copies everything else. Errors: EINVAL (an option; the message names
 * it), ENOTSUP (backend without leases), ECONFLICT (the deployment was
 * created with another shard count or seed), ETIMEDOUT (the deployment
 * record stayed locked), ESTORAGE, EIO (NATS), ENOMEM. */
int stead__node_open(const stead__node_opts *o, stead__node **out);

/* Leaves gracefully: announces the leave (peers recompute at once), drains
 * every owned shard through the runtime, releases the leases, stops the
 * threads, fails calls still in flight with ECLOSED and closes NATS.
 * Blocks until every drain's done() came. Must not be called from a node
 * callback. NULL allowed. */
void stead__node_close(stead__node *n);

/* The first half of stead__node_close: leaves, drains, releases and stops
 * everything, but keeps the memory, so threads that may still race with
 * the leave (route, owns, owner_epoch: they answer "not owner"; call:
 * ECLOSED) stay safe until stead__node_close frees it. Idempotent. Must
 * not be called from a node callback. */
void stead__node_leave(stead__node *n);

/* 1 if this node owns `shard` and accepts new turns of it (lease held,
 * unexpired by the local bound, not draining); else 0. Thread-safe. */
int stead__node_owns(stead__node *n, uint32_t shard);

/* The tenure the runtime must put in ws->shard/ws->epoch for a commit of
 * `shard`: 0 and *epoch while the lease is held (owned or draining),
 * else ENOTOWNER (also EINVAL for a bad shard). Thread-safe. */
int stead__node_owner_epoch(stead__node *n, uint32_t shard, uint64_t *epoch);

/* Where an object lives. */
typedef enum stead__route_kind {
  STEAD__ROUTE_LOCAL = 1,   /* this node owns the shard: run the turn here */
  STEAD__ROUTE_REMOTE = 2,  /* another node should: forward (stead__node_call) */
  STEAD__ROUTE_UNKNOWN = 3, /* this node should, but holds no lease yet (being
                               acquired, or draining): forward or retry */
} stead__route_kind;

typedef struct stead__node_route_info {
  stead__route_kind kind;
  uint32_t shard;
  uint64_t epoch;                  /* LOCAL: the tenure */
  char owner[STEAD__MAX_NAME + 1]; /* the owner by HRW over the live set */
} stead__node_route_info;

/* Routes (cls, id). Errors: EINVAL/ETOOBIG (bad class or id). Thread-safe. */
int stead__node_route(stead__node *n, const char *cls, const char *id,
                      stead__node_route_info *out);

/* Outcome of a call. status 0: `reply` is the reply envelope. status < 0:
 * the handler's error reply when `reply` is non-NULL (its message says
 * why), else a transport outcome:
 *   ETIMEDOUT  the deadline passed; the request may have run (retryable)
 *   ENOTOWNER  no owner accepted it before the deadline; it did not run
 *              (retryable)
 *   ECLOSED    the node closed; EPROTO a malformed reply; EIO/EOVERLOAD.
 * `reply` is valid during the callback only. */
typedef void (*stead__node_call_fn)(int status, const stead__env *reply, void *udata);

/* Sends request `req` (kind, shard, corr, created and deadline are set by
 * the node; cls, id, method, headers and payload are used; all borrowed
 * for the call; headers may use the reserved x-stead- prefix: the runtime
 * is the caller) to the owner of its shard, through NATS (also when the
 * owner is this node). A "not owner" answer or no subscriber is retried
 * with backoff (10 ms doubling to 200 ms) until `deadline_ms` (absolute
 * wall ms). cb runs once on a node or NATS thread. Errors (cb not
 * called): EINVAL (envelope, deadline not in the future, cb), ETOOBIG,
 * ECLOSED, EOVERLOAD, EIO, ENOMEM. Thread-safe. */
int stead__node_call(stead__node *n, const stead__env *req, int64_t deadline_ms,
                     stead__node_call_fn cb, void *udata);

/* Answers a request handed to handle(): status 0 with `payload` (borrowed),
 * or status < 0 with a message (UTF-8, may be NULL) for an error reply.
 * Releases `r` whatever the outcome. Errors: EINVAL, ETOOBIG (payload; an
 * error reply saying so is sent instead), ECLOSED. Thread-safe. */
int stead__node_respond(stead__node_replier *r, int status, const void *payload,
                        size_t len, const char *message);

/* Publishes a bus event to every other node of the deployment (their
 * rt.event), fire and forget: at most once, like the bus itself. `topic`
 * is a valid topic (<= 1024 bytes). Errors: EINVAL, ETOOBIG, ECLOSED, EIO.
 * Thread-safe. */
int stead__node_emit(stead__node *n, const char *topic, const void *payload, size_t len);

/* Sends the one-way `env` (kind is set to ONEWAY; cls, id, method,
 * headers and payload are used, all borrowed) to the node named
 * `node_id`, whose rt.direct gets it: fire and forget, at most once, in
 * order per sender. Errors: EINVAL (envelope, node id), ETOOBIG,
 * ECLOSED, EIO. Thread-safe. */
int stead__node_send(stead__node *n, const char *node_id, const stead__env *env);

/* This node's id (borrowed; valid until stead__node_close). */
const char *stead__node_id(const stead__node *n);

/* A status snapshot (GET /v1/cluster): the public stead_cluster_status,
 * one allocation owned by the caller, freed with stead_free. */
typedef stead_cluster_shard stead__node_shard_info;
typedef stead_cluster_status stead__node_status;

/* Errors: EINVAL, ENOMEM. Thread-safe. */
int stead__node_status_get(stead__node *n, stead__node_status **out);

/* ---- the seam the runtime calls through ---- */

/* What the runtime (src/core/cluster.c) needs of a node, as functions of
 * an opaque `self`: the real node below (stead__node_real_ops, self a
 * stead__node) by default, or a simulated one (src/sim/simnet.c) that the
 * deterministic simulation supplies through stead__manual. Each entry
 * behaves as the stead__node_* function of the same name documented above
 * (respond answers a replier that this node's handle() passed in). A
 * simulated node delivers the stead__node_runtime callbacks itself, with
 * the same guarantees. */
typedef struct stead__node_ops {
  int (*owns)(void *self, uint32_t shard);
  int (*owner_epoch)(void *self, uint32_t shard, uint64_t *epoch);
  int (*route)(void *self, const char *cls, const char *id, stead__node_route_info *out);
  int (*call)(void *self, const stead__env *req, int64_t deadline_ms,
              stead__node_call_fn cb, void *udata);
  int (*respond)(void *self, stead__node_replier *r, int status, const void *payload,
                 size_t len, const char *message);
  int (*emit)(void *self, const char *topic, const void *payload, size_t len);
  int (*status_get)(void *self, stead__node_status **out);
  void (*leave)(void *self);
  void (*close)(void *self);
  int (*send)(void *self, const char *node_id, const stead__env *env);
  const char *(*id)(void *self);
} stead__node_ops;

/* The real node's table (self is a stead__node *). */
extern const stead__node_ops stead__node_real_ops;

/* ---- test hooks ---- */

/* Stops (on = 1) or resumes renewing and acquiring leases, as if the
 * process were paused; loss by expiry is still detected. */
void stead__node_test_pause_leases(stead__node *n, int on);

/* Dies without a word: the manager stops, the NATS connection closes (no
 * heartbeat, no leave message, no subscription), nothing is released.
 * Peers notice by heartbeat expiry and take the shards when the leases
 * expire. Only stead__node_close may follow. */
void stead__node_test_kill(stead__node *n);

#endif
