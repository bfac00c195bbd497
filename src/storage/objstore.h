/*
 * objstore.h -- the storage of one activation: what its turns read and
 * write.
 *
 * Three layers, newest first: the open turn's pending writes; write sets of
 * earlier turns that were handed to the committer but are not durable yet
 * ("in flight"); the backend, fronted by a read cache of point lookups.
 * Reads see all three merged, so a turn reads its own writes and those of
 * earlier turns even before they are durable.
 *
 * Turn protocol (on the worker running the activation's turns):
 *   turn_begin; get/put/del/delete_all/list/alarm_*; turn_end(ok, &ws).
 * turn_end(ok=1) hands out the turn's write set (NULL if it wrote nothing)
 * with one reference for the caller, who submits it to the committer and
 * unrefs it. When the committer reports, the runtime calls on_durable or
 * on_failed (from the commit callback, so cancellation is exact; see
 * committer.h).
 *
 * Failure: after on_failed(S) the turns after S were built on writes that
 * never happened. on_failed drops the cache, cancels every later in-flight
 * set (the committer skips them with ECANCELED) and bumps the generation;
 * a turn open at that moment gets ECANCELED from turn_end. The runtime
 * fails the corresponding turns.
 *
 * Threads: turn_* and the data calls run on one thread at a time (the
 * activation's worker). on_durable/on_failed/gen may run on any thread
 * concurrently with them: an internal mutex guards the in-flight list,
 * the cache and the generation.
 */
#ifndef STEAD_STORAGE_OBJSTORE_H
#define STEAD_STORAGE_OBJSTORE_H

#include "storage/backend.h"

typedef struct stead__objstore stead__objstore;

typedef struct stead__objstore_opts {
  size_t max_key;   /* default STEAD__MAX_KEY (2 KiB) */
  size_t max_value; /* default STEAD__MAX_VALUE (2 MiB) */
  size_t max_wset;  /* per-turn write set, default STEAD__MAX_WSET (16 MiB) */
  size_t max_cache; /* read-cache bytes before it is dropped; default 8 MiB */
} stead__objstore_opts;

/* A store for object (cls, id) over backend `b` (borrowed; must outlive
 * it). opts may be NULL. Errors: ENOMEM. */
int stead__objstore_new(stead__backend *b, const char *cls, const char *id,
                        const stead__objstore_opts *opts, stead__objstore **out);
/* Frees the store; an open turn is discarded, in-flight sets are released
 * (the committer holds its own references). NULL allowed. */
void stead__objstore_free(stead__objstore *os);

/* Errors: EMISUSE (a turn is already open). */
int stead__objstore_turn_begin(stead__objstore *os);
/* Ends the turn. ok=0 discards its writes (*out = NULL). ok=1 gives *out =
 * the write set or NULL when the turn wrote nothing. Errors: EMISUSE (no
 * turn open), ECANCELED (an earlier turn's commit failed while this turn
 * ran; its writes are discarded). */
int stead__objstore_turn_end(stead__objstore *os, int ok, stead__wset **out);
/* 1 while a turn is open. */
int stead__objstore_in_turn(const stead__objstore *os);

/* Point read. On 0 *val is a malloc'd copy (NUL-terminated past *vlen) the
 * caller frees; val may be NULL to test existence. Errors: ENOTFOUND,
 * ETOOBIG (key), ESTORAGE, ENOMEM. Works outside a turn too. */
int stead__objstore_get(stead__objstore *os, uint8_t ns, const void *key, size_t klen,
                        void **val, size_t *vlen);
/* Writes into the open turn. Errors: EMISUSE (no turn), ETOOBIG (key,
 * value or the turn's write set over its limit; nothing changed), ENOMEM. */
int stead__objstore_put(stead__objstore *os, uint8_t ns, const void *key, size_t klen,
                        const void *val, size_t vlen);
int stead__objstore_del(stead__objstore *os, uint8_t ns, const void *key, size_t klen);
int stead__objstore_delete_all(stead__objstore *os, uint8_t ns);
/* Merged listing of ns (see stead__list_opts). cb as in backend.h.
 * Errors: EINVAL (options), ESTORAGE, ENOMEM, or cb's negative code. */
int stead__objstore_list(stead__objstore *os, uint8_t ns, const stead__list_opts *o,
                         stead__kv_cb cb, void *u);

/* Alarm changes in the open turn (persisted with its writes). name: 1..128
 * bytes of UTF-8. meta <= 64 KiB. Errors: EMISUSE, EINVAL, ETOOBIG, ENOMEM. */
int stead__objstore_alarm_set(stead__objstore *os, const char *name, int64_t at_ms,
                              uint32_t attempt, const void *meta, size_t meta_len);
int stead__objstore_alarm_del(stead__objstore *os, const char *name);
int stead__objstore_alarms_clear(stead__objstore *os);
/* The object's alarms as this turn sees them -- stored, changed by
 * in-flight sets, and changed by the open turn -- in (at, name) order.
 * cb as in backend.h; a non-zero return stops and is returned. Errors:
 * ESTORAGE, ENOMEM, or cb's code. Works outside a turn too. */
int stead__objstore_alarms_list(stead__objstore *os, stead__alarm_cb cb, void *u);

/* Commit outcomes, from the committer's callback. on_failed returns the
 * number of later sets it cancelled. Sets this store does not know (e.g.
 * already cancelled) are ignored. */
void stead__objstore_on_durable(stead__objstore *os, stead__wset *ws);
int stead__objstore_on_failed(stead__objstore *os, stead__wset *ws);
/* Generation: bumped by every on_failed that dropped sets. A write set
 * carries the generation it was built in (ws->gen); a set or turn of an
 * older generation was cancelled. */
uint64_t stead__objstore_gen(stead__objstore *os);
/* Sets handed out and not yet reported. */
size_t stead__objstore_inflight(stead__objstore *os);
/* Drops the read cache if no turn is open and nothing is in flight.
 * Returns 1 if it did. */
int stead__objstore_hibernate(stead__objstore *os);
/* Bytes the open turn may still add to its write set (0 outside a turn).
 * Batch writers check a whole batch against it so a batch is all or
 * nothing. */
size_t stead__objstore_room(const stead__objstore *os);
/* Bytes held by the read cache (for memory accounting). */
size_t stead__objstore_cache_bytes(stead__objstore *os);

#endif
