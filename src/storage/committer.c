/*
 * committer.c -- group commit thread (policy in committer.h).
 *
 * Owns: the submission queue (mutex + condvars), the thread, the counters
 * (atomics, read lock-free by stats). Invariants: items leave the queue in
 * submission order; a batch's callbacks all run before the next batch is
 * formed, so a cancellation made inside a callback is seen by every later
 * batch; `done` only grows and reaches `submitted` when the queue is empty
 * and no batch is in flight.
 *
 * Manual mode has no thread: whoever calls step, flush or close runs the
 * batches (the same run_batch) on its own thread.
 */
#include "storage/committer.h"
#include "util/util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

const double stead__batch_le[STEAD__BATCH_BUCKETS - 1] = {1,  2,  4,   8,  16,
                                                          32, 64, 128, 256};
const double stead__lat_le_us[STEAD__LAT_BUCKETS - 1] = {
    100, 250, 500, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6};

typedef struct item {
  struct item *next;
  stead__wset *ws;
  stead__commit_cb cb;
  void *udata;
  int skipped; /* cancelled when its batch formed: not committed */
  int rc;      /* its outcome, when the batch was split (refence) */
} item;

struct stead__committer {
  stead__backend *b;
  stead__committer_opts o;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work; /* queue non-empty or closing */
  pthread_cond_t idle; /* done advanced */
  item *head, *tail;
  size_t qlen;
  int64_t first_ns; /* arrival of the queue's head */
  int closing;
  uint64_t submitted, done; /* guarded by mu */
  size_t last_batch;        /* committer thread only */
  atomic_uint_fast64_t batches, batches_failed, sets_ok, sets_failed, sets_canceled;
  atomic_uint_fast64_t bsize[STEAD__BATCH_BUCKETS], bsize_sum;
  atomic_uint_fast64_t lat[STEAD__LAT_BUCKETS], lat_sum;
  atomic_uint_fast64_t queued;
};

static int bucket(const double *le, int n, double v) {
  int i = 0;
  while (i < n - 1 && v > le[i])
    i++;
  return i;
}

static void abs_deadline(struct timespec *ts, int64_t mono_ns) {
  ts->tv_sec = (time_t)(mono_ns / 1000000000);
  ts->tv_nsec = (long)(mono_ns % 1000000000);
}

/* Takes the next batch off the queue, honouring the linger policy. Returns
 * NULL when closing and empty. Called with mu held. */
static item *take_batch(stead__committer *c, size_t *n) {
  while (!c->head && !c->closing)
    pthread_cond_wait(&c->work, &c->mu);
  if (!c->head)
    return NULL;
  if (c->o.max_delay_us > 0 && c->last_batch > 1) {
    struct timespec ts;
    abs_deadline(&ts, c->first_ns + (int64_t)c->o.max_delay_us * 1000);
    while (c->qlen < c->o.max_batch && !c->closing)
      if (pthread_cond_timedwait(&c->work, &c->mu, &ts) != 0)
        break;
  }
  item *first = c->head, *last = first;
  size_t k = 1;
  while (k < c->o.max_batch && last->next) {
    last = last->next;
    k++;
  }
  c->head = last->next;
  if (!c->head)
    c->tail = NULL;
  else
    c->first_ns = stead__mono_ns();
  last->next = NULL;
  c->qlen -= k;
  *n = k;
  return first;
}

/* A batch refused for a stale fencing token fails as a whole, sets of
 * healthy tenures included. It is committed again one tenure (shard,
 * epoch) at a time, in first-seen order (one object's sets share a tenure
 * and keep their order), so only the stale tenure's sets fail. Sets the
 * transaction did not commit are not committed, so trying again is safe.
 * Returns 1 if it split (each item's rc is set), 0 if one tenure only. */
static int refence(stead__committer *c, item *batch, stead__wset **v) {
  item *first = NULL;
  for (item *it = batch; it; it = it->next)
    if (!it->skipped) {
      if (!first)
        first = it;
      else if (it->ws->shard != first->ws->shard || it->ws->epoch != first->ws->epoch)
        goto split;
    }
  return 0;
split:
  for (item *it = batch; it; it = it->next)
    it->rc = it->skipped ? STEAD_ECANCELED : 1; /* 1: not yet tried */
  for (item *lead = batch; lead; lead = lead->next) {
    if (lead->rc != 1)
      continue;
    size_t m = 0;
    for (item *it = lead; it; it = it->next)
      if (it->rc == 1 && it->ws->shard == lead->ws->shard &&
          it->ws->epoch == lead->ws->epoch)
        v[m++] = it->ws;
    int rc = c->b->vt->commit(c->b, v, m);
    for (item *it = lead; it; it = it->next)
      if (it->rc == 1 && it->ws->shard == lead->ws->shard &&
          it->ws->epoch == lead->ws->epoch)
        it->rc = rc;
    atomic_fetch_add(rc ? &c->sets_failed : &c->sets_ok, m);
  }
  return 1;
}

static void run_batch(stead__committer *c, item *batch, size_t n) {
  stead__wset *stackv[64];
  stead__wset **v = n <= 64 ? stackv : malloc(n * sizeof *v);
  size_t m = 0;
  int rc = 0;
  bool split = false;
  if (!v) {
    rc = stead__err(STEAD_ENOMEM, "out of memory forming a commit batch");
    for (item *it = batch; it; it = it->next)
      it->skipped = 0;
  } else {
    for (item *it = batch; it; it = it->next) {
      it->skipped = atomic_load(&it->ws->cancelled);
      if (it->skipped)
        atomic_fetch_add(&c->sets_canceled, 1);
      else
        v[m++] = it->ws;
    }
  }
  if (!rc && m > 0) {
    int64_t t0 = stead__mono_ns();
    rc = c->b->vt->commit(c->b, v, m);
    double us = (double)(stead__mono_ns() - t0) / 1000.0;
    atomic_fetch_add(&c->batches, 1);
    atomic_fetch_add(&c->bsize[bucket(stead__batch_le, STEAD__BATCH_BUCKETS, (double)m)],
                     1);
    atomic_fetch_add(&c->bsize_sum, m);
    atomic_fetch_add(&c->lat[bucket(stead__lat_le_us, STEAD__LAT_BUCKETS, us)], 1);
    atomic_fetch_add(&c->lat_sum, (uint64_t)us);
    if (rc) {
      atomic_fetch_add(&c->batches_failed, 1);
      if (rc == STEAD_ENOTOWNER && refence(c, batch, v))
        split = true;
      else
        atomic_fetch_add(&c->sets_failed, m);
    } else {
      atomic_fetch_add(&c->sets_ok, m);
    }
  }
  if (v != stackv)
    free(v);
  c->last_batch = m;
  /* Callbacks in submission order. A set cancelled after its batch formed
   * was committed and reports the batch's result. */
  size_t ran = 0;
  while (batch) {
    item *it = batch;
    batch = it->next;
    it->cb(it->udata, it->ws, split ? it->rc : it->skipped ? STEAD_ECANCELED : rc);
    stead__wset_unref(it->ws);
    free(it);
    ran++;
  }
  atomic_fetch_sub(&c->queued, ran);
  pthread_mutex_lock(&c->mu);
  c->done += ran;
  pthread_cond_broadcast(&c->idle);
  pthread_mutex_unlock(&c->mu);
}

/* Manual mode: takes up to max items off the queue (mu held). */
static item *take_now(stead__committer *c, size_t max, size_t *n) {
  if (!c->head)
    return NULL;
  item *first = c->head, *last = first;
  size_t k = 1;
  while (k < max && last->next) {
    last = last->next;
    k++;
  }
  c->head = last->next;
  if (!c->head)
    c->tail = NULL;
  last->next = NULL;
  c->qlen -= k;
  *n = k;
  return first;
}

size_t stead__committer_step(stead__committer *c, size_t max_sets) {
  size_t n = 0;
  pthread_mutex_lock(&c->mu);
  item *batch = take_now(c, max_sets ? max_sets : c->o.max_batch, &n);
  pthread_mutex_unlock(&c->mu);
  if (batch)
    run_batch(c, batch, n);
  return n;
}

size_t stead__committer_queued(stead__committer *c) {
  return (size_t)atomic_load(&c->queued);
}

static void *loop(void *arg) {
  stead__committer *c = arg;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    size_t n;
    item *batch = take_batch(c, &n);
    if (!batch)
      break;
    pthread_mutex_unlock(&c->mu);
    run_batch(c, batch, n);
    pthread_mutex_lock(&c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

int stead__committer_start(stead__backend *b, const stead__committer_opts *opts,
                           stead__committer **out) {
  if (!b || !out)
    return stead__err(STEAD_EINVAL, "committer needs a backend");
  stead__committer *c = calloc(1, sizeof *c);
  if (!c)
    return stead__err(STEAD_ENOMEM, "out of memory");
  c->b = b;
  c->o.max_batch = 256;
  c->o.max_delay_us = 1000;
  if (opts) {
    if (opts->max_batch)
      c->o.max_batch = opts->max_batch;
    c->o.max_delay_us = opts->max_delay_us;
    c->o.manual = opts->manual;
    if (opts->max_delay_us < 0 || opts->max_delay_us > 1000000) {
      free(c);
      return stead__err(STEAD_EINVAL, "max_delay_us must be 0..1000000, not %d",
                        opts->max_delay_us);
    }
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->work, &ca);
  pthread_condattr_destroy(&ca);
  pthread_cond_init(&c->idle, NULL);
  if (c->o.manual) {
    *out = c;
    return 0;
  }
  if (pthread_create(&c->thread, NULL, loop, c) != 0) {
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->idle);
    free(c);
    return stead__err(STEAD_EIO, "cannot start the committer thread");
  }
  *out = c;
  return 0;
}

int stead__committer_submit(stead__committer *c, stead__wset *ws, stead__commit_cb cb,
                            void *udata) {
  item *it = malloc(sizeof *it);
  if (!it)
    return stead__err(STEAD_ENOMEM, "out of memory queueing a commit");
  it->next = NULL;
  it->ws = ws;
  it->cb = cb;
  it->udata = udata;
  pthread_mutex_lock(&c->mu);
  if (c->closing) {
    pthread_mutex_unlock(&c->mu);
    free(it);
    return stead__err(STEAD_ECLOSED, "the committer is closed");
  }
  stead__wset_ref(ws);
  if (c->tail)
    c->tail->next = it;
  else {
    c->head = it;
    c->first_ns = stead__mono_ns();
  }
  c->tail = it;
  c->qlen++;
  c->submitted++;
  atomic_fetch_add(&c->queued, 1);
  pthread_cond_signal(&c->work);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

int stead__committer_flush(stead__committer *c) {
  if (c->o.manual) {
    while (stead__committer_step(c, 0) > 0)
      ;
    return 0;
  }
  if (pthread_equal(pthread_self(), c->thread))
    return stead__err(STEAD_EMISUSE, "flush called from a commit callback");
  pthread_mutex_lock(&c->mu);
  uint64_t target = c->submitted;
  while (c->done < target)
    pthread_cond_wait(&c->idle, &c->mu);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

void stead__committer_close(stead__committer *c) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  c->closing = 1;
  pthread_cond_broadcast(&c->work);
  pthread_mutex_unlock(&c->mu);
  if (c->o.manual)
    stead__committer_flush(c);
  else
    pthread_join(c->thread, NULL);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->work);
  pthread_cond_destroy(&c->idle);
  free(c);
}

void stead__committer_stats(stead__committer *c, stead__commit_stats *o) {
  o->batches = atomic_load(&c->batches);
  o->batches_failed = atomic_load(&c->batches_failed);
  o->sets_committed = atomic_load(&c->sets_ok);
  o->sets_failed = atomic_load(&c->sets_failed);
  o->sets_canceled = atomic_load(&c->sets_canceled);
  o->queued = atomic_load(&c->queued);
  for (int i = 0; i < STEAD__BATCH_BUCKETS; i++)
    o->batch_size[i] = atomic_load(&c->bsize[i]);
  o->batch_size_sum = atomic_load(&c->bsize_sum);
  for (int i = 0; i < STEAD__LAT_BUCKETS; i++)
    o->latency[i] = atomic_load(&c->lat[i]);
  o->latency_sum_us = atomic_load(&c->lat_sum);
}
