/*
 * failbe.c -- failure-injection wrapper (see failbe.h). Settings are
 * atomics so a test thread may change them while the committer commits;
 * the predicate pair is set before commits start (documented in tests).
 */
#include "storage/failbe.h"
#include "util/util.h"

#include <stdlib.h>
#include <time.h>

typedef struct failbe {
  stead__backend base;
  stead__backend *in;
  atomic_int fail_next, unknown_next, delay_us;
  _Atomic(stead__fail_pred) pred;
  void *pred_u;
  atomic_uint_fast64_t commits, sets;
} failbe;

static int f_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                 const void *key, size_t klen, void **val, size_t *vlen) {
  stead__backend *in = ((failbe *)b)->in;
  return in->vt->get(in, cls, id, ns, key, klen, val, vlen);
}

static int f_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                  const stead__range *r, stead__kv_cb cb, void *u) {
  stead__backend *in = ((failbe *)b)->in;
  return in->vt->list(in, cls, id, ns, r, cb, u);
}

static int f_alarms_list(stead__backend *b, const char *cls, const char *id,
                         stead__alarm_cb cb, void *u) {
  stead__backend *in = ((failbe *)b)->in;
  return in->vt->alarms_list(in, cls, id, cb, u);
}

static int f_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                         int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  stead__backend *in = ((failbe *)b)->in;
  return in->vt->alarms_scan(in, after, until_ms, limit, cb, u);
}

static int f_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  stead__backend *in = ((failbe *)b)->in;
  return in->vt->scan_ns(in, ns, cb, u);
}

/* Decrements *n if positive; 1 if it did. */
static int take(atomic_int *n) {
  int v = atomic_load(n);
  while (v > 0)
    if (atomic_compare_exchange_weak(n, &v, v - 1))
      return 1;
  return 0;
}

static int f_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  failbe *f = (failbe *)b;
  atomic_fetch_add(&f->commits, 1);
  atomic_fetch_add(&f->sets, n);
  int d = atomic_load(&f->delay_us);
  if (d > 0) {
    struct timespec ts = {d / 1000000, (long)(d % 1000000) * 1000};
    nanosleep(&ts, NULL);
  }
  stead__fail_pred p = atomic_load(&f->pred);
  if (take(&f->fail_next) || (p && p(f->pred_u, sets, n)))
    return stead__err(STEAD_ESTORAGE, "injected storage failure");
  int rc = f->in->vt->commit(f->in, sets, n);
  if (!rc && take(&f->unknown_next))
    return stead__err(STEAD_EUNKNOWN, "injected unknown commit outcome");
  return rc;
}

static void f_close(stead__backend *b) {
  failbe *f = (failbe *)b;
  stead__backend_close(f->in);
  free(f);
}

static const stead__backend_vt failbe_vt = {
    .name = "failbe",
    .get = f_get,
    .list = f_list,
    .commit = f_commit,
    .alarms_list = f_alarms_list,
    .alarms_scan = f_alarms_scan,
    .scan_ns = f_scan_ns,
    .close = f_close,
};

int stead__failbe_wrap(stead__backend *inner, stead__backend **out) {
  failbe *f = calloc(1, sizeof *f);
  if (!f)
    return stead__err(STEAD_ENOMEM, "out of memory");
  f->base.vt = &failbe_vt;
  f->in = inner;
  *out = &f->base;
  return 0;
}

void stead__failbe_fail_next(stead__backend *b, int n) {
  atomic_store(&((failbe *)b)->fail_next, n);
}

void stead__failbe_set_pred(stead__backend *b, stead__fail_pred pred, void *u) {
  failbe *f = (failbe *)b;
  f->pred_u = u;
  atomic_store(&f->pred, pred);
}

void stead__failbe_unknown_next(stead__backend *b, int n) {
  atomic_store(&((failbe *)b)->unknown_next, n);
}

void stead__failbe_set_delay_us(stead__backend *b, int us) {
  atomic_store(&((failbe *)b)->delay_us, us);
}

uint64_t stead__failbe_commits(stead__backend *b) {
  return atomic_load(&((failbe *)b)->commits);
}

uint64_t stead__failbe_sets(stead__backend *b) {
  return atomic_load(&((failbe *)b)->sets);
}
