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
#define STEAD__SLOTS       8

#endif
