/*
 * helpers.h -- small helpers shared by the storage tests: temp paths,
 * one-call commits, listings collected into strings for easy asserts.
 */
#ifndef STEAD_TESTS_STORAGE_HELPERS_H
#define STEAD_TESTS_STORAGE_HELPERS_H

#include "storage/backend.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh directory under /tmp for this test process. */
static inline void th_tmpdir(char *out, size_t n) {
  snprintf(out, n, "/tmp/stead-storage-test-XXXXXX");
  if (!mkdtemp(out))
    abort();
}

static inline void th_rmrf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    /* best effort */
  }
}

static inline int th_put(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                         const char *k, const char *v) {
  stead__wset *ws = stead__wset_new(cls, id);
  int rc = stead__wset_put(ws, ns, k, strlen(k), v, strlen(v));
  if (!rc)
    rc = b->vt->commit(b, &ws, 1);
  stead__wset_unref(ws);
  return rc;
}

static inline char *th_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                           const char *k) {
  void *v = NULL;
  size_t n;
  int rc = b->vt->get(b, cls, id, ns, k, strlen(k), &v, &n);
  return rc ? NULL : v;
}

typedef struct th_collect {
  char out[4096];
} th_collect;

static inline int th_collect_cb(void *u, const void *k, size_t kl, const void *v,
                                size_t vl) {
  th_collect *c = u;
  size_t len = strlen(c->out);
  snprintf(c->out + len, sizeof c->out - len, "%s%.*s=%.*s", len ? "," : "", (int)kl,
           (const char *)k, (int)vl, (const char *)v);
  return 0;
}

#endif
