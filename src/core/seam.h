/*
 * seam.h -- what the core runtime offers to the modules that extend a turn
 * (storage, alarms, bus, loop). They include this instead of core's private
 * headers, so each side can change its insides freely.
 *
 * All functions here are called on the worker thread running the turn, with
 * a ctx that is valid for that turn.
 */
#ifndef STEAD_CORE_SEAM_H
#define STEAD_CORE_SEAM_H

#include "stead.h"

struct stead__objstore;
struct stead__buf;

/* The object store of the activation running this turn: the storage
 * module's per-activation cache + pending writes. NULL only if ctx is NULL
 * or not in a turn (then callers return STEAD_EMISUSE). */
struct stead__objstore *stead__ctx_store(stead_ctx *ctx);

/* The runtime that owns ctx. */
stead_rt *stead__ctx_rt(stead_ctx *ctx);

/* Adds an effect to the turn's outbox: `release(arg)` runs after the turn
 * commits (in order with its other outputs, possibly on the committer
 * thread), or `drop(arg)` runs if the turn fails or its commit does.
 * Exactly one of the two runs, once. Used for transactional emits and the
 * like. Errors: EINVAL (no turn), ENOMEM (then neither runs). */
int stead__ctx_effect(stead_ctx *ctx, void (*release)(void *arg), void (*drop)(void *arg),
                      void *arg);

/* Fails the turn like stead_fail, but the caller (or, from on_activate,
 * the message that woke the object) receives `code` instead of
 * STEAD_EHANDLER: for modules whose hooks detect e.g. a corrupt record
 * (STEAD_ECORRUPT) or a storage failure. A non-negative code means
 * STEAD_EHANDLER. Returns the code. */
int stead__ctx_fail_code(stead_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Batch mode: one turn, one commit for several queued messages.
 *
 * Only from the handler of a CALL or SEND turn, once per turn: takes up
 * to `max` further messages from the head of this object's mailbox, in
 * order, while they are CALL or SEND messages whose method runs the same
 * handler function as this turn's (it stops at anything else --
 * continuations, events, alarms, timers, system messages, other handlers
 * -- so nothing is reordered). A call whose caller already gave up (its
 * deadline passed) is discarded as a normal turn would skip it. Taking
 * also stops before the taken payloads would exceed `max_bytes`.
 *
 * *items (owned by the turn, valid until it ends) and *n describe what
 * was taken; *n may be 0. The handler applies them in order and answers
 * each taken CALL with stead__ctx_batch_reply or stead__ctx_batch_fail
 * (unanswered calls get an empty reply). The answers are released with
 * the turn's other outputs: after its commit is durable (output gate), or
 * replaced by the turn's failure (every taken call fails with the turn's
 * code and message) if the handler fails or the commit does.
 * Errors: EINVAL (NULL argument), EMISUSE (not a CALL/SEND turn, or a
 * batch was already taken in this turn), ENOMEM. */
typedef struct stead__batch_item {
  const char *method; /* the method name */
  const void *payload;
  size_t len;
  int is_call; /* 1: a caller waits for the answer; 0: a one-way send */
} stead__batch_item;

int stead__ctx_take_batch(stead_ctx *ctx, size_t max, size_t max_bytes,
                          const stead__batch_item **items, size_t *n);
/* Sets taken item i's reply (bytes copied; again replaces). A one-way
 * item ignores it. Errors: EINVAL (bad i), ETOOBIG (max_payload), ENOMEM. */
int stead__ctx_batch_reply(stead_ctx *ctx, size_t i, const void *data, size_t len);
/* Fails taken item i alone with `code` (non-negative: EHANDLER) and
 * `message` (copied; NULL: the code's name), whatever the turn does.
 * Errors: EINVAL (bad i), ENOMEM. */
int stead__ctx_batch_fail(stead_ctx *ctx, size_t i, int code, const char *message);

/* Queues an event for an object: it runs as a turn calling the class's
 * on_event hook (activating the object if needed). Called from any
 * thread. Errors: EINVAL, ENOCLASS, ENOTSUP (the class has no on_event),
 * EOVERLOAD (mailbox full), ECLOSED, ENOMEM. */
int stead__deliver_event(stead_rt *rt, const char *cls, const char *id, const char *topic,
                         const void *payload, size_t len);

/* Module hooks the core calls at open, close and metrics time, in this
 * order: bus. Each module owns its part of the runtime through these. */
int stead__bus_rt_open(stead_rt *rt);
void stead__bus_rt_close(stead_rt *rt); /* after the last turn drained */
int stead__bus_rt_metrics(stead_rt *rt, struct stead__buf *b);
/* Cluster: an event another node published; emitted on this node's bus
 * only (not published again). Errors: the bus's (EOVERLOAD), ECLOSED. */
int stead__bus_rt_remote(stead_rt *rt, const char *topic, const void *payload,
                         size_t len);
/* Cluster: re-reads the stored subscriptions of the objects in the shards
 * whose bit is set in `bits` (this node now owns them), registering new
 * ones and dropping those no longer stored. Errors: ESTORAGE, ENOMEM. */
int stead__bus_rt_refresh(stead_rt *rt, const unsigned char *bits);
/* Event-sourced objects (src/loop/es_object.c): frees what
 * stead_register_program allocated. Called by stead_close once no turn
 * can run any more. */
void stead__es_rt_close(stead_rt *rt);
/* Per-runtime module state slots, owned by the modules. */
void **stead__rt_slot(stead_rt *rt, int which);
#define STEAD__SLOT_BUS    0
#define STEAD__SLOT_ALARM  1
#define STEAD__SLOT_ES     2
#define STEAD__SLOT_TIMERS 3
#define STEAD__SLOT_CONN   5
#define STEAD__SLOTS       8

#endif
