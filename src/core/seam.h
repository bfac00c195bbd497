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

/* The object store of the activation running this turn: the storage
 * module's per-activation cache + pending writes. NULL only if ctx is NULL
 * or not in a turn (then callers return STEAD_EMISUSE). */
struct stead__objstore *stead__ctx_store(stead_ctx *ctx);

/* The runtime that owns ctx. */
stead_rt *stead__ctx_rt(stead_ctx *ctx);

#endif
