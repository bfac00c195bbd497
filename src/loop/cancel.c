/*
 * cancel.c -- cancellation tokens for the loop and its queues.
 *
 * A token is canceled by stead_cancel_set (a flag) or by its deadline
 * (a monotonic time). The flag is an atomic so the hot check between ticks
 * costs a load; the deadline is only compared when one was given.
 *
 * Waking a blocked reader: a queue waits on its own condition variable, and
 * a thread can wait on only one, so the token cannot signal it directly.
 * Instead a waiter registers a callback (watch) that the setter runs, which
 * signals the waiter's condition. Callbacks run under the token's mutex, so
 * once unwatch returns (it takes the same mutex) a callback is neither
 * running nor pending: the waiter may free what the callback touches.
 * Lock order: token mutex, then whatever the callback locks. Waiters must
 * therefore register before taking their own lock, never while holding it.
 *
 * Threads: every function is thread-safe except free.
 */
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct watcher {
  uint64_t id;
  void (*fn)(void *arg);
  void *arg;
} watcher;

struct stead_cancel {
  atomic_int set;
  int64_t deadline_ns; /* INT64_MAX: none; immutable after new */
  pthread_mutex_t mu;
  watcher *watchers; /* guarded by mu */
  size_t nwatchers, capwatchers;
  uint64_t next_id;
};

int stead_cancel_new(stead_cancel **out, int64_t timeout_ms) {
  if (!out)
    return stead__err(STEAD_EINVAL, "cancel: out is NULL");
  *out = NULL;
  if (timeout_ms < 0)
    return stead__err(STEAD_EINVAL, "cancel: timeout_ms is %lld; it must be >= 0",
                      (long long)timeout_ms);
  if (timeout_ms > INT64_MAX / 2000000)
    timeout_ms = 0; /* further away than anyone can wait: no deadline */
  stead_cancel *c = calloc(1, sizeof *c);
  if (!c)
    return stead__err(STEAD_ENOMEM, "cancel: out of memory");
  atomic_init(&c->set, 0);
  c->deadline_ns = timeout_ms > 0 ? stead__mono_ns() + timeout_ms * 1000000 : INT64_MAX;
  pthread_mutex_init(&c->mu, NULL);
  c->next_id = 1;
  *out = c;
  return 0;
}

void stead_cancel_free(stead_cancel *c) {
  if (!c)
    return;
  pthread_mutex_destroy(&c->mu);
  free(c->watchers);
  free(c);
}

void stead_cancel_set(stead_cancel *c) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  if (!atomic_exchange(&c->set, 1)) {
    for (size_t i = 0; i < c->nwatchers; i++)
      c->watchers[i].fn(c->watchers[i].arg);
  }
  pthread_mutex_unlock(&c->mu);
}

int stead_cancel_check(stead_cancel *c) {
  if (!c)
    return 0;
  if (atomic_load_explicit(&c->set, memory_order_acquire))
    return stead__err(STEAD_ECANCELED, "canceled");
  if (c->deadline_ns != INT64_MAX && stead__mono_ns() >= c->deadline_ns)
    return stead__err(STEAD_ETIMEDOUT, "the deadline passed");
  return 0;
}

int64_t stead_cancel_deadline_ns(const stead_cancel *c) {
  return c ? c->deadline_ns : INT64_MAX;
}

int stead_cancel_watch(stead_cancel *c, void (*fn)(void *arg), void *arg, uint64_t *id) {
  if (!c || !fn || !id)
    return stead__err(STEAD_EINVAL, "cancel_watch: NULL token, callback or id");
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  if (atomic_load(&c->set)) {
    rc = stead__err(STEAD_ECANCELED, "canceled");
  } else if (c->nwatchers == c->capwatchers) {
    size_t cap = c->capwatchers ? c->capwatchers * 2 : 4;
    watcher *w = realloc(c->watchers, cap * sizeof *w);
    if (!w)
      rc = stead__err(STEAD_ENOMEM, "cancel_watch: out of memory");
    else {
      c->watchers = w;
      c->capwatchers = cap;
    }
  }
  if (rc == 0) {
    *id = c->next_id++;
    c->watchers[c->nwatchers++] = (watcher){*id, fn, arg};
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

void stead_cancel_unwatch(stead_cancel *c, uint64_t id) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->nwatchers; i++) {
    if (c->watchers[i].id == id) {
      c->watchers[i] = c->watchers[--c->nwatchers];
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
}
