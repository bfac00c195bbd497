/*
 * telemetry.h -- storage telemetry events (the Elixir library's
 * [:storage, :load | :save | :delete, :start | :stop | :exception]) as a
 * backend wrapper, so every backend reports the same events.
 *
 * load: a get or list of one object. save: one object's write set in a
 * commit. delete: a write set that only removes (delete_all / deletes /
 * alarm deletes, no puts). start fires before the operation; stop or error
 * after, with the duration. For a commit every set of the batch gets its
 * own start and stop/error, sharing the batch's duration.
 */
#ifndef STEAD_STORAGE_TELEMETRY_H
#define STEAD_STORAGE_TELEMETRY_H

#include "storage/backend.h"

typedef enum stead__tel_op {
  STEAD__TEL_LOAD,
  STEAD__TEL_SAVE,
  STEAD__TEL_DELETE
} stead__tel_op;
typedef enum stead__tel_phase {
  STEAD__TEL_START,
  STEAD__TEL_STOP,
  STEAD__TEL_ERROR
} stead__tel_phase;

/* One event. Strings valid during the callback only. duration_ns is 0 for
 * START; rc is the error code for ERROR, else 0. */
typedef struct stead__tel_event {
  stead__tel_op op;
  stead__tel_phase phase;
  const char *cls, *id;
  int64_t duration_ns;
  int rc;
} stead__tel_event;

/* Called on the thread doing the operation (workers for loads, the
 * committer for saves), possibly concurrently; must be quick and must not
 * call the backend. */
typedef struct stead__telemetry {
  void (*event)(void *udata, const stead__tel_event *ev);
  void *udata;
} stead__telemetry;

/* Wraps `inner` (then owned by the wrapper). The struct is copied. */
int stead__telbe_wrap(stead__backend *inner, const stead__telemetry *t,
                      stead__backend **out);

#endif
