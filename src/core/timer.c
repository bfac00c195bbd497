/*
 * timer.c -- the runtime's one timer thread: a binary min-heap of timer
 * entries ordered by (when, seq).
 *
 * Entries are embedded in their owners (a call's deadline, the idle sweep),
 * so arming allocates nothing but heap slots, and no timer ever costs a
 * thread. Callbacks run on the timer thread without the lock held; they
 * must be short (complete a call, enqueue a message).
 *
 * In manual mode (a simulation drives the runtime) there is no thread:
 * the driver runs due timers with stead__timerq_fire_due by its clock.
 */
#include "core/core.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static bool before(const stead__timer *a, const stead__timer *b) {
  return a->when_ns < b->when_ns || (a->when_ns == b->when_ns && a->seq < b->seq);
}

static void place(stead__timerq *q, size_t i, stead__timer *t) {
  q->heap[i] = t;
  t->idx = i + 1;
}

static void sift_up(stead__timerq *q, size_t i) {
  stead__timer *t = q->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(t, q->heap[p]))
      break;
    place(q, i, q->heap[p]);
    i = p;
  }
  place(q, i, t);
}

static void sift_down(stead__timerq *q, size_t i) {
  stead__timer *t = q->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    stead__timer *best = t;
    if (l < q->len && before(q->heap[l], best)) {
      m = l;
      best = q->heap[l];
    }
    if (l + 1 < q->len && before(q->heap[l + 1], best))
      m = l + 1;
    if (m == i)
      break;
    place(q, i, q->heap[m]);
    i = m;
  }
  place(q, i, t);
}

static void heap_remove(stead__timerq *q, stead__timer *t) {
  size_t i = t->idx - 1;
  t->idx = 0;
  q->len--;
  if (i == q->len)
    return;
  place(q, i, q->heap[q->len]);
  sift_down(q, i);
  sift_up(q, q->heap[i]->idx - 1);
}

int stead__timer_arm(stead__timerq *q, stead__timer *t, int64_t when_ns) {
  pthread_mutex_lock(&q->mu);
  if (t->idx)
    heap_remove(q, t);
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    stead__timer **h = realloc(q->heap, cap * sizeof *h);
    if (!h) {
      pthread_mutex_unlock(&q->mu);
      return STEAD_ENOMEM;
    }
    q->heap = h;
    q->cap = cap;
  }
  t->when_ns = when_ns;
  t->seq = q->seq++;
  place(q, q->len++, t);
  sift_up(q, q->len - 1);
  /* Only a new earliest deadline changes how long the thread sleeps. */
  if (q->heap[0] == t)
    pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

int stead__timer_cancel(stead__timerq *q, stead__timer *t) {
  pthread_mutex_lock(&q->mu);
  int armed = t->idx != 0;
  if (armed)
    heap_remove(q, t);
  pthread_mutex_unlock(&q->mu);
  return armed;
}

typedef struct {
  stead__timerq *q;
  stead_rt *rt;
} timer_arg;

static void *timer_main(void *p) {
  timer_arg a = *(timer_arg *)p;
  free(p);
  stead__timerq *q = a.q;
  stead__set_current_rt(a.rt);
  pthread_mutex_lock(&q->mu);
  while (!q->stop) {
    if (q->len == 0) {
      pthread_cond_wait(&q->cv, &q->mu);
      continue;
    }
    int64_t now = stead__mono_ns();
    stead__timer *t = q->heap[0];
    if (t->when_ns > now) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      int64_t wait = t->when_ns - now;
      ts.tv_sec += wait / 1000000000;
      ts.tv_nsec += wait % 1000000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&q->cv, &q->mu, &ts);
      continue;
    }
    heap_remove(q, t);
    pthread_mutex_unlock(&q->mu);
    t->fn(t->arg);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int stead__timerq_fire_due(stead__timerq *q, int64_t now_ns) {
  int n = 0;
  pthread_mutex_lock(&q->mu);
  while (q->len > 0 && q->heap[0]->when_ns <= now_ns) {
    stead__timer *t = q->heap[0];
    heap_remove(q, t);
    pthread_mutex_unlock(&q->mu);
    t->fn(t->arg);
    n++;
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return n;
}

bool stead__timerq_next(stead__timerq *q, int64_t *when_ns) {
  pthread_mutex_lock(&q->mu);
  bool any = q->len > 0;
  if (any)
    *when_ns = q->heap[0]->when_ns;
  pthread_mutex_unlock(&q->mu);
  return any;
}

int stead__timerq_init(stead__timerq *q, stead_rt *rt) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rt->manual)
    return 0;
  timer_arg *a = malloc(sizeof *a);
  if (!a)
    return STEAD_ENOMEM;
  a->q = q;
  a->rt = rt;
  if (pthread_create(&q->thread, NULL, timer_main, a) != 0) {
    free(a);
    return stead__err(STEAD_EIO, "cannot start the timer thread");
  }
  q->started = true;
  return 0;
}

void stead__timerq_stop(stead__timerq *q) {
  if (q->started) {
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    q->started = false;
  }
  free(q->heap);
  q->heap = NULL;
  q->len = q->cap = 0;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
}
