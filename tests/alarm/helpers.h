/*
 * helpers.h -- shared by the alarm scheduler tests: a manual clock, a
 * recording fire callback, one-call alarm commits, temp directories.
 */
#ifndef STEAD_TESTS_ALARM_HELPERS_H
#define STEAD_TESTS_ALARM_HELPERS_H

#include "testutil.h"

#include "alarm/sched.h"
#include "storage/backend.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh directory under /tmp for this test process. */
static inline void ah_tmpdir(char *out, size_t n) {
  snprintf(out, n, "/tmp/stead-alarm-test-XXXXXX");
  if (!mkdtemp(out))
    abort();
}

static inline void ah_rmrf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    /* best effort */
  }
}

/* Stores one alarm through a backend commit, as a turn's commit would. */
static inline int ah_store(stead__backend *b, const char *cls, const char *id,
                           const char *name, int64_t at, uint32_t attempt,
                           const char *meta) {
  stead__wset *ws = stead__wset_new(cls, id);
  if (!ws)
    return STEAD_ENOMEM;
  int rc = stead__wset_alarm_set(ws, name, at, attempt, meta, meta ? strlen(meta) : 0);
  if (!rc)
    rc = b->vt->commit(b, &ws, 1);
  stead__wset_unref(ws);
  return rc;
}

static inline int ah_unstore(stead__backend *b, const char *cls, const char *id,
                             const char *name) {
  stead__wset *ws = stead__wset_new(cls, id);
  if (!ws)
    return STEAD_ENOMEM;
  int rc = stead__wset_alarm_del(ws, name);
  if (!rc)
    rc = b->vt->commit(b, &ws, 1);
  stead__wset_unref(ws);
  return rc;
}

/* What the runtime does on a commit: store, then notify. */
static inline int ah_set(stead__backend *b, stead__alarms *s, const char *cls,
                         const char *id, const char *name, int64_t at, uint32_t attempt,
                         const char *meta) {
  int rc = ah_store(b, cls, id, name, at, attempt, meta);
  if (!rc)
    rc = stead__alarms_notify_set(s, cls, id, name, at, attempt, meta,
                                  meta ? strlen(meta) : 0);
  return rc;
}

static inline int ah_del(stead__backend *b, stead__alarms *s, const char *cls,
                         const char *id, const char *name) {
  int rc = ah_unstore(b, cls, id, name);
  if (!rc)
    rc = stead__alarms_notify_del(s, cls, id, name);
  return rc;
}

/* A recording fire callback. Fired alarms are appended to `log` as
 * "id/name@at#attempt " (cls left out: tests use one class unless said);
 * with `consume`, the runtime's success path runs at once: delete, notify,
 * done (from inside fire, which the scheduler allows). `refuse` > 0 makes
 * that many fires refuse. */
typedef struct ah_rec {
  stead__backend *b;
  stead__alarms *s;
  int consume;
  int refuse;
  int fired;
  char log[8192];
  char last_meta[64];
} ah_rec;

static inline int ah_fire(void *u, const char *cls, const char *id, const char *name,
                          int64_t at, uint32_t attempt, const void *meta,
                          size_t meta_len) {
  ah_rec *r = u;
  if (r->refuse > 0) {
    r->refuse--;
    return 1;
  }
  r->fired++;
  size_t len = strlen(r->log);
  snprintf(r->log + len, sizeof r->log - len, "%s/%s@%lld#%u ", id, name, (long long)at,
           attempt);
  snprintf(r->last_meta, sizeof r->last_meta, "%.*s", (int)meta_len,
           meta ? (const char *)meta : "");
  if (r->consume) {
    if (ah_del(r->b, r->s, cls, id, name) ||
        stead__alarms_done(r->s, cls, id, name, attempt))
      abort();
  }
  return 0;
}

#endif
