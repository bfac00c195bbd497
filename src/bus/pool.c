/*
 * pool.c -- a bounded worker pool: a fixed ring of job pointers and N
 * threads that take jobs in FIFO order.
 *
 * Invariants: every job accepted by submit runs exactly once, also during
 * shutdown (free drains the ring before joining). A full ring answers the
 * submitter (EOVERLOAD) or makes it wait -- it never drops a job. One mutex
 * guards the ring and the counters; condition variables are signalled only
 * when someone waits, so a busy pool does not pay for wakeups.
 * Threads: the workers, plus any thread calling submit/stats/free.
 * A pool with no workers (the deterministic simulation) runs jobs only
 * on the thread calling stead__pool_run_one, or free.
 */
#include "bus/bus_internal.h"

#include <stdlib.h>
#include <string.h>

struct stead__pool {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  void **ring;
  size_t cap, head, count;
  bool closing;
  int idle_waiters, full_waiters;
  uint64_t running, submitted, rejected;
  int nworkers;
  pthread_t *threads;
  stead__job_fn run;
  void *arg;
};

static void *worker_main(void *arg) {
  stead__pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->count == 0 && !p->closing) {
      p->idle_waiters++;
      pthread_cond_wait(&p->not_empty, &p->mu);
      p->idle_waiters--;
    }
    if (p->count == 0)
      break; /* closing and drained */
    void *job = p->ring[p->head];
    p->head = (p->head + 1) % p->cap;
    p->count--;
    p->running++;
    if (p->full_waiters > 0)
      pthread_cond_signal(&p->not_full);
    pthread_mutex_unlock(&p->mu);
    p->run(job, p->arg);
    pthread_mutex_lock(&p->mu);
    p->running--;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int stead__pool_new(int workers, size_t capacity, stead__job_fn run, void *pool_arg,
                    stead__pool **out) {
  stead__pool *p = calloc(1, sizeof *p);
  if (!p)
    return stead__err(STEAD_ENOMEM, "out of memory for the bus pool");
  p->ring = calloc(capacity, sizeof *p->ring);
  p->threads = calloc((size_t)workers, sizeof *p->threads);
  if (!p->ring || !p->threads) {
    free(p->ring);
    free(p->threads);
    free(p);
    return stead__err(STEAD_ENOMEM, "out of memory for the bus pool");
  }
  p->cap = capacity;
  p->run = run;
  p->arg = pool_arg;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->not_empty, NULL);
  pthread_cond_init(&p->not_full, NULL);
  for (int i = 0; i < workers; i++) {
    if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
      p->nworkers = i;
      stead__pool_free(p);
      return stead__err(STEAD_EIO, "cannot start bus worker thread %d", i);
    }
  }
  p->nworkers = workers;
  *out = p;
  return 0;
}

int stead__pool_submit(stead__pool *p, void *job, bool wait) {
  pthread_mutex_lock(&p->mu);
  while (p->count == p->cap && wait && !p->closing) {
    p->full_waiters++;
    pthread_cond_wait(&p->not_full, &p->mu);
    p->full_waiters--;
  }
  if (p->closing) {
    pthread_mutex_unlock(&p->mu);
    return stead__err(STEAD_ECLOSED, "the bus is being freed");
  }
  if (p->count == p->cap) {
    p->rejected++;
    pthread_mutex_unlock(&p->mu);
    return stead__err(STEAD_EOVERLOAD, "the bus queue is full (%zu events)", p->cap);
  }
  p->ring[(p->head + p->count) % p->cap] = job;
  p->count++;
  p->submitted++;
  if (p->idle_waiters > 0)
    pthread_cond_signal(&p->not_empty);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int stead__pool_run_one(stead__pool *p) {
  pthread_mutex_lock(&p->mu);
  if (p->count == 0) {
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  void *job = p->ring[p->head];
  p->head = (p->head + 1) % p->cap;
  p->count--;
  p->running++;
  pthread_mutex_unlock(&p->mu);
  p->run(job, p->arg);
  pthread_mutex_lock(&p->mu);
  p->running--;
  pthread_mutex_unlock(&p->mu);
  return 1;
}

void stead__pool_free(stead__pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->closing = true;
  pthread_cond_broadcast(&p->not_empty);
  pthread_cond_broadcast(&p->not_full);
  pthread_mutex_unlock(&p->mu);
  if (p->nworkers == 0) /* nobody else will drain it */
    while (stead__pool_run_one(p))
      ;
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->not_empty);
  pthread_cond_destroy(&p->not_full);
  free(p->ring);
  free(p->threads);
  free(p);
}

void stead__pool_stats_get(stead__pool *p, stead__pool_stats *out) {
  pthread_mutex_lock(&p->mu);
  out->workers = (uint64_t)p->nworkers;
  out->running = p->running;
  out->idle = (uint64_t)p->nworkers > p->running ? (uint64_t)p->nworkers - p->running : 0;
  out->submitted = p->submitted;
  out->waiting = p->count;
  out->rejected = p->rejected;
  pthread_mutex_unlock(&p->mu);
}

bool stead__pool_is_worker(stead__pool *p) {
  pthread_t self = pthread_self();
  for (int i = 0; i < p->nworkers; i++)
    if (pthread_equal(p->threads[i], self))
      return true;
  return false;
}
