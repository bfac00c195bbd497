/*
 * simbe.c -- the simulation's storage: a "disk" that outlives runtime
 * incarnations, and a backend over it that the simulation's seed drives.
 *
 * The disk is a log of write sets. A commit is applied to the live
 * in-memory backend that serves reads, and its sets are appended to the
 * disk's unsynced tail; a sync moves the tail into the durable log. With
 * durability full every commit syncs before it reports success; with
 * normal, syncs happen when the simulation says so (the OS flushing, a
 * checkpoint). A crash drops the tail, and the next incarnation's backend
 * is rebuilt by replaying the durable log, so it sees exactly what a
 * machine would after power loss. Write sets are immutable once committed
 * and applying one is a pure function of the set (backend.h), so keeping
 * references and replaying them is exact.
 *
 * Faults: the next commit fails (nothing applied) when the simulation arms
 * it; after a crash every commit fails until the disk is reopened.
 *
 * Shared (the cluster simulation, simnet.c): every node's backend is a
 * handle on one live store, as PostgreSQL is shared by a deployment, and
 * commits are fenced as pg_backend.c fences them: a batch with a write set
 * whose (shard, epoch) is not the current, unexpired tenure of the
 * simulated lease store is refused whole with ENOTOWNER. A killed node's
 * handle fails every commit (its process is gone).
 *
 * Threads: none of its own; a simulation runs on one thread.
 */
#include "sim/sim.h"

#include <stdlib.h>
#include <string.h>

typedef struct wsvec {
  stead__wset **v;
  size_t n, cap;
} wsvec;

struct stead__simdisk {
  wsvec durable, tail;
  int normal;      /* durability normal: commits wait for a sync */
  int fail_next;   /* commits to fail */
  int lie_next;    /* commits to report durable without writing (tests) */
  int crashed;     /* commits fail until the disk is reopened */
  uint64_t syncs;  /* syncs so far (each moved a non-empty tail) */
  uint64_t failed; /* commits failed by injection */
  uint64_t lost;   /* write sets dropped by crashes */
  /* shared mode */
  stead__backend *shared; /* the one live store of every handle */
  stead__simdisk_fence_fn fence;
  void *fence_u;
};

typedef struct simbe {
  stead__backend base;
  stead__backend *live; /* what reads see */
  stead__simdisk *disk;
  int who;  /* shared: the node this handle belongs to */
  int dead; /* shared: the node was killed */
} simbe;

static int vec_push(wsvec *w, stead__wset *ws) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    stead__wset **v = realloc(w->v, cap * sizeof *v);
    if (!v)
      return stead__err(STEAD_ENOMEM, "out of memory in the simulated disk");
    w->v = v;
    w->cap = cap;
  }
  stead__wset_ref(ws);
  w->v[w->n++] = ws;
  return 0;
}

static void vec_clear(wsvec *w) {
  for (size_t i = 0; i < w->n; i++)
    stead__wset_unref(w->v[i]);
  w->n = 0;
}

int stead__simdisk_new(int normal, stead__simdisk **out) {
  stead__simdisk *d = calloc(1, sizeof *d);
  if (!d)
    return stead__err(STEAD_ENOMEM, "out of memory");
  d->normal = normal;
  *out = d;
  return 0;
}

void stead__simdisk_free(stead__simdisk *d) {
  if (!d)
    return;
  if (d->shared)
    stead__backend_close(d->shared);
  vec_clear(&d->durable);
  vec_clear(&d->tail);
  free(d->durable.v);
  free(d->tail.v);
  free(d);
}

int stead__simdisk_sync(stead__simdisk *d) {
  if (d->crashed || d->tail.n == 0)
    return 0;
  for (size_t i = 0; i < d->tail.n; i++) {
    int rc = vec_push(&d->durable, d->tail.v[i]);
    if (rc)
      return rc;
  }
  vec_clear(&d->tail);
  d->syncs++;
  return 0;
}

void stead__simdisk_crash(stead__simdisk *d) {
  d->lost += d->tail.n;
  vec_clear(&d->tail);
  d->crashed = 1;
}

void stead__simdisk_fail_next(stead__simdisk *d, int n) {
  d->fail_next = n;
}

void stead__simdisk_lie_next(stead__simdisk *d, int n) {
  d->lie_next = n;
}

uint64_t stead__simdisk_syncs(const stead__simdisk *d) {
  return d->syncs;
}

uint64_t stead__simdisk_lost(const stead__simdisk *d) {
  return d->lost;
}

uint64_t stead__simdisk_failed(const stead__simdisk *d) {
  return d->failed;
}

size_t stead__simdisk_unsynced(const stead__simdisk *d) {
  return d->tail.n;
}

/* ---- the backend ------------------------------------------------------ */

static stead__backend *live(stead__backend *b) {
  return ((simbe *)b)->live;
}

static int s_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                 const void *key, size_t klen, void **val, size_t *vlen) {
  return live(b)->vt->get(live(b), cls, id, ns, key, klen, val, vlen);
}

static int s_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                  const stead__range *r, stead__kv_cb cb, void *u) {
  return live(b)->vt->list(live(b), cls, id, ns, r, cb, u);
}

static int s_alarms_list(stead__backend *b, const char *cls, const char *id,
                         stead__alarm_cb cb, void *u) {
  return live(b)->vt->alarms_list(live(b), cls, id, cb, u);
}

static int s_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                         int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  return live(b)->vt->alarms_scan(live(b), after, until_ms, limit, cb, u);
}

static int s_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  return live(b)->vt->scan_ns(live(b), ns, cb, u);
}

static int s_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  simbe *s = (simbe *)b;
  stead__simdisk *d = s->disk;
  if (d->crashed || s->dead)
    return stead__err(STEAD_ESTORAGE, "simulated crash: the disk is gone");
  if (d->fail_next > 0) {
    d->fail_next--;
    d->failed++;
    return stead__err(STEAD_ESTORAGE, "injected storage failure");
  }
  for (size_t i = 0; d->fence && i < n; i++) {
    int rc =
        sets[i]->epoch ? d->fence(d->fence_u, s->who, sets[i]->shard, sets[i]->epoch) : 0;
    if (rc)
      return stead__err(STEAD_ENOTOWNER,
                        "simulated store: shard %u lease epoch %llu is no longer held "
                        "(the tenure ended); nothing was committed",
                        sets[i]->shard, (unsigned long long)sets[i]->epoch);
  }
  if (d->lie_next > 0) {
    d->lie_next--;
    return 0;
  }
  int rc = s->live->vt->commit(s->live, sets, n);
  if (rc)
    return rc;
  for (size_t i = 0; i < n; i++)
    if ((rc = vec_push(&d->tail, sets[i])) != 0)
      return rc;
  return d->normal ? 0 : stead__simdisk_sync(d);
}

static void s_close(stead__backend *b) {
  simbe *s = (simbe *)b;
  if (s->live != s->disk->shared)
    stead__backend_close(s->live);
  free(s);
}

static const stead__backend_vt simbe_vt = {
    .name = "sim",
    .get = s_get,
    .list = s_list,
    .commit = s_commit,
    .alarms_list = s_alarms_list,
    .alarms_scan = s_alarms_scan,
    .scan_ns = s_scan_ns,
    .close = s_close,
};

int stead__simbe_open(stead__simdisk *d, stead__backend **out) {
  /* After a crash only the durable log is left (the tail went with the
   * crash). After a clean close the tail is still in the OS's cache and
   * reaches the disk: a process exit loses nothing in either mode. */
  d->crashed = 0;
  d->fail_next = 0;
  int rc = stead__simdisk_sync(d);
  if (rc)
    return rc;
  simbe *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory");
  rc = stead__mem_open(&s->live);
  for (size_t i = 0; rc == 0 && i < d->durable.n; i++)
    rc = s->live->vt->commit(s->live, &d->durable.v[i], 1);
  if (rc) {
    stead__backend_close(s->live);
    free(s);
    return rc;
  }
  s->base.vt = &simbe_vt;
  s->disk = d;
  *out = &s->base;
  return 0;
}

int stead__simbe_open_shared(stead__simdisk *d, int who, stead__simdisk_fence_fn fence,
                             void *fence_u, stead__backend **out) {
  if (!d->shared) {
    int rc = stead__mem_open(&d->shared);
    if (rc)
      return rc;
  }
  d->fence = fence;
  d->fence_u = fence_u;
  simbe *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory");
  s->base.vt = &simbe_vt;
  s->disk = d;
  s->live = d->shared;
  s->who = who;
  *out = &s->base;
  return 0;
}

void stead__simbe_kill(stead__backend *b) {
  ((simbe *)b)->dead = 1;
}

stead__backend *stead__simdisk_shared(stead__simdisk *d) {
  return d->shared;
}
