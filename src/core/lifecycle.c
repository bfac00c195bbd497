/*
 * lifecycle.c -- idle objects hibernate, then deactivate; past
 * max_activations the least recently used idle ones leave memory.
 *
 * The sweep runs on the timer thread every 100 ms. It never touches an
 * activation's insides: it only queues a HIBERNATE or DEACTIVATE system
 * message, which runs as an ordinary turn, so it can never overlap a
 * user turn and a message arriving meanwhile simply reactivates the object.
 * Each stripe's LRU list is ordered oldest first, so a sweep stops at the
 * first activation too young to matter.
 */
#include "core/core.h"

#include <stdlib.h>

#define SWEEP_INTERVAL_NS 100000000

/* Queues a system message to an idle activation (stripe lock held). */
bool stead__queue_system(stead_rt *rt, stead__act *a, stead__msg_kind kind,
                         stead__waiter *w) {
  if (a->sys_pending && !w)
    return false;
  stead__msg *m = stead__msg_new(kind, NULL, 0);
  if (!m)
    return false;
  m->waiter = w;
  a->sys_pending = true;
  stead__mailbox_push(rt, a, m);
  return true;
}

static bool idle(const stead__act *a) {
  return !a->sched && !a->head && !a->sys_pending && atomic_load(&a->pins) == 0 &&
         atomic_load(&a->commits_pending) == 0;
}

/* One stripe's sweep; returns the number of deactivations queued. */
static int sweep_stripe(stead_rt *rt, stead__stripe *s, int64_t now_ms) {
  int n = 0;
  int64_t min_idle = atomic_load(&rt->min_idle_ms);
  pthread_mutex_lock(&s->mu);
  for (stead__act *a = s->lru_head; a; a = a->lru_next) {
    int64_t idle_ms = now_ms - a->last_used;
    if (idle_ms < min_idle)
      break; /* everyone after this one is younger */
    if (!idle(a))
      continue;
    const stead_class *c = a->crec->cls;
    if (c->shutdown_after_ms && idle_ms >= c->shutdown_after_ms) {
      n += stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, NULL);
    } else if (c->hibernate_after_ms && idle_ms >= c->hibernate_after_ms &&
               !a->hibernated && atomic_load(&a->activated)) {
      stead__queue_system(rt, a, STEAD__MSG_HIBERNATE, NULL);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

int stead__sweep_at(stead_rt *rt, int64_t now_ms) {
  if (atomic_load(&rt->min_idle_ms) == 0)
    return 0;
  int n = 0;
  for (int i = 0; i < STEAD__STRIPES; i++)
    n += sweep_stripe(rt, &rt->stripes[i], now_ms);
  return n;
}

void stead__sweep_tick(void *arg) {
  stead_rt *rt = arg;
  if (atomic_load(&rt->closing))
    return;
  stead__sweep_at(rt, stead__rt_now_ms(rt));
  if (rt->cfg.max_activations)
    stead__evict_if_needed(rt);
  stead__timer_arm(&rt->timers, &rt->sweep_timer,
                   stead__rt_mono_ns(rt) + SWEEP_INTERVAL_NS);
}

int stead_sweep(stead_rt *rt, int64_t now_ms) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  return stead__sweep_at(rt, now_ms);
}

/* Deactivates the oldest idle activations until the count is within
 * max_activations. The global LRU order is approximated by comparing the
 * oldest idle activation at the head of each stripe. */
void stead__evict_if_needed(stead_rt *rt) {
  size_t max = rt->cfg.max_activations, n = atomic_load(&rt->nacts);
  if (n <= max)
    return;
  /* Activations already on their way out still count in nacts; queueing
   * one eviction per excess activation (bounded per call) keeps this from
   * evicting more than needed in the common case. */
  size_t excess = n - max;
  for (size_t k = 0; k < excess && k < 64; k++) {
    int best = -1;
    int64_t best_t = 0;
    for (int i = 0; i < STEAD__STRIPES; i++) {
      stead__stripe *s = &rt->stripes[i];
      pthread_mutex_lock(&s->mu);
      for (stead__act *a = s->lru_head; a; a = a->lru_next)
        if (idle(a)) {
          if (best < 0 || a->last_used < best_t) {
            best = i;
            best_t = a->last_used;
          }
          break;
        }
      pthread_mutex_unlock(&s->mu);
    }
    if (best < 0)
      return; /* everything is busy; try again on the next sweep */
    stead__stripe *s = &rt->stripes[best];
    pthread_mutex_lock(&s->mu);
    for (stead__act *a = s->lru_head; a; a = a->lru_next)
      if (idle(a)) {
        stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, NULL);
        break;
      }
    pthread_mutex_unlock(&s->mu);
  }
}

int stead__deactivate_all(stead_rt *rt) {
  int n = 0;
  for (int i = 0; i < STEAD__STRIPES; i++) {
    stead__stripe *s = &rt->stripes[i];
    pthread_mutex_lock(&s->mu);
    for (stead__act *a = s->lru_head; a; a = a->lru_next)
      n += stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, NULL);
    pthread_mutex_unlock(&s->mu);
  }
  return n;
}
