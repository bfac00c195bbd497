/*
 * nats.h -- NATS transport primitives and membership (internal API).
 *
 * A stead__nats is one connection to nats-server with:
 *   - asynchronous request/reply with deadlines that blocks no thread per
 *     request (one wildcard inbox subscription, a table of pending requests,
 *     one timer thread);
 *   - fire-and-forget publish;
 *   - serving a subject (optionally in a queue group) with replies that may
 *     be sent later, from any thread;
 *   - subject helpers for `<deployment>.shard.<n>` and `<deployment>.members`.
 * A stead__members tracks the live node ids of a deployment from heartbeats
 * (or a static host list).
 *
 * Callback promise (libuv's): a function that takes a callback either
 * returns an error, and then never calls it, or returns 0 and calls it
 * exactly once.
 */
#ifndef STEAD_CLUSTER_NATS_H
#define STEAD_CLUSTER_NATS_H

#include "util/util.h"

#include <stdint.h>

typedef struct stead__nats stead__nats;
typedef struct stead__nats_sub stead__nats_sub;
typedef struct stead__nats_replier stead__nats_replier;

typedef struct stead__nats_opts {
  const char *url;        /* "nats://127.0.0.1:4222"; required */
  const char *name;       /* connection name shown by the server; optional */
  int connect_timeout_ms; /* default 2000 */
  int max_reconnect;      /* attempts after a lost connection; default 60, -1 forever */
  int reconnect_wait_ms;  /* between attempts; default 250 */
  size_t max_pending;     /* requests in flight before EOVERLOAD; default 65536 */
  /* > 0: deliver messages of this connection on nats.c's process-wide pool
   * of this many threads (the pool only grows) instead of one thread per
   * subscription. Default 0. */
  int delivery_pool;
} stead__nats_opts;

/* Fills the defaults above (url NULL). */
void stead__nats_opts_init(stead__nats_opts *o);

/* Connects. Errors: EINVAL (no url, bad option), EIO (cannot connect; the
 * message has nats.c's reason), ENOMEM. On success *out is owned by the
 * caller until stead__nats_close. */
int stead__nats_open(const stead__nats_opts *o, stead__nats **out);

/* Closes: new requests fail with ECLOSED; every pending request's callback
 * fires with ECLOSED (on the calling thread, before close returns); the
 * connection closes; serve handlers still running are waited for. Handles
 * derived from `t` (subs, repliers) stay valid for their own release calls;
 * the memory goes with the last of them. Must not be called from a
 * transport callback. NULL is allowed. */
void stead__nats_close(stead__nats *t);

/* Outcome of a request: status 0 with the reply bytes (valid only during
 * the call), or ETIMEDOUT (deadline), ENOTOWNER (no subscriber on that
 * subject: nothing was delivered, safe to retry elsewhere), ECLOSED. */
typedef void (*stead__nats_reply_fn)(int status, const void *data, size_t len,
                                     void *udata);

/* Publishes `data` to `subject` as a request and returns at once. If it
 * returns 0, `cb` runs exactly once: on a nats.c delivery thread (reply),
 * the timer thread (timeout), or the closing thread (ECLOSED); possibly
 * before this function returns, never on the caller's stack. The callback
 * must not block for long; it may start new requests. timeout_ms must be
 * > 0. Errors (cb never called): EINVAL (subject, timeout, cb), EOVERLOAD
 * (max_pending in flight), ECLOSED, EIO (publish failed), ENOMEM.
 * Thread-safe. */
int stead__nats_request(stead__nats *t, const char *subject, const void *data, size_t len,
                        int timeout_ms, stead__nats_reply_fn cb, void *udata);

/* Fire-and-forget publish. Errors: EINVAL, ECLOSED, EIO. Thread-safe. */
int stead__nats_publish(stead__nats *t, const char *subject, const void *data,
                        size_t len);

/* A served message. `r` is the handle to answer it with (NULL when the
 * sender expects no reply); the handler owns it and must eventually pass
 * it to stead__nats_respond or stead__nats_replier_drop, from any thread.
 * `data` is valid only during the call. Runs on a nats.c delivery thread;
 * messages of one subscription are delivered one at a time, in order. */
typedef void (*stead__nats_serve_fn)(stead__nats_replier *r, const void *data, size_t len,
                                     void *udata);

/* Subscribes `fn` to `subject` (a NATS subject; wildcards allowed), in
 * queue group `queue` when non-NULL (each message goes to one member).
 * *out is released with stead__nats_unserve. Errors: EINVAL, ECLOSED,
 * EIO, ENOMEM. */
int stead__nats_serve(stead__nats *t, const char *subject, const char *queue,
                      stead__nats_serve_fn fn, void *udata, stead__nats_sub **out);

/* Unsubscribes and waits until no handler of this subscription is running,
 * then frees `s`. Must not be called from that subscription's handler.
 * Repliers already handed out stay valid. NULL is allowed. */
void stead__nats_unserve(stead__nats_sub *s);

/* Sends the reply and releases `r` (whatever the outcome). Thread-safe.
 * Errors: EINVAL (NULL), ECLOSED (the transport closed), EIO. */
int stead__nats_respond(stead__nats_replier *r, const void *data, size_t len);

/* Releases `r` without answering (the requester will time out). */
void stead__nats_replier_drop(stead__nats_replier *r);

/* Requests in flight (for tests and metrics). */
size_t stead__nats_pending(stead__nats *t);

/* ---------------------------------------------------------------------
 * Subjects.
 * ------------------------------------------------------------------- */

/* A deployment name is 1..64 bytes of [A-Za-z0-9_-] (no dots: it is one
 * subject token). Errors: EINVAL, ETOOBIG. */
int stead__nats_check_deployment(const char *deployment);

/* Writes "<deployment>.shard.<shard>" / "<deployment>.members" into buf.
 * Errors: EINVAL (bad deployment), ETOOBIG (cap too small). */
int stead__nats_shard_subject(char *buf, size_t cap, const char *deployment,
                              uint32_t shard);
int stead__nats_members_subject(char *buf, size_t cap, const char *deployment);

/* ---------------------------------------------------------------------
 * Membership.
 * ------------------------------------------------------------------- */

typedef struct stead__members stead__members;

/* The live set changed: `nodes` are the sorted live node ids (borrowed,
 * valid during the call). Called on the membership thread, one call at a
 * time, in order; must not call stead__members_close. */
typedef void (*stead__members_fn)(const char *const *nodes, size_t n, void *udata);

typedef struct stead__members_opts {
  const char *deployment; /* required */
  const char *node_id;    /* this node (a name); required in heartbeat mode */
  int heartbeat_ms;       /* default 1000 */
  int expire_ms;          /* a node silent this long is dead; default 3x heartbeat */
  /* Static mode when non-NULL: the live set is this host list
   * (stead_hosts_expand syntax), no heartbeats are sent or read, the
   * transport may be NULL, and on_change runs once, inside open. */
  const char *static_hosts;
  stead__members_fn on_change; /* optional */
  void *udata;
} stead__members_opts;

void stead__members_opts_init(stead__members_opts *o);

/* Starts membership: in heartbeat mode subscribes to the members subject,
 * publishes a heartbeat now and every heartbeat_ms, and reports the live
 * set (this node included) through on_change, first with this node alone.
 * `t` must outlive the membership. Errors: EINVAL (options, the message
 * names the field), ECLOSED, EIO, ENOMEM. */
int stead__members_open(stead__nats *t, const stead__members_opts *o,
                        stead__members **out);

/* A copy of the current sorted live set: *nodes is a NULL-terminated array
 * in one allocation, freed with stead_free. Errors: ENOMEM. */
int stead__members_snapshot(stead__members *m, char ***nodes, size_t *n);

/* Publishes a leave message (peers drop this node at once instead of after
 * expire_ms), stops the thread, unsubscribes and frees. NULL allowed. */
void stead__members_close(stead__members *m);

#endif
