/*
 * timers.c -- cheap in-memory timers owned by an activation (Orleans'
 * timers, clstr-go's HandleEvery): a callback run as a turn of the object
 * after a delay or every period, dying with the activation.
 *
 * A timer is armed when the turn that created it succeeds (an outbox
 * effect), so a failed turn starts no timer. Each armed timer is one entry
 * in the runtime's timer heap (no thread per timer). When it fires, the
 * timer thread queues a TIMER message by the object's name; the turn looks
 * the timer up by id in the current activation's list, so a tick that
 * arrives after the timer was cancelled, or after the activation it
 * belonged to left memory, does nothing. A periodic timer is re-armed
 * after its turn ran, so its ticks never pile up or overlap.
 *
 * With alarm_manual set, nothing is put in the heap: armed timers wait in
 * a runtime list that stead_timers_fire_due drains by the runtime clock,
 * so tests are deterministic.
 *
 * Records are reference counted: the activation's list holds one
 * reference, the heap (or manual list) one while armed, the creating
 * turn's effect one until released or dropped.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

typedef struct stead__tmr stead__tmr;
struct stead__tmr {
  stead__timer t; /* heap entry (real time) */
  atomic_int refs;
  stead_rt *rt;
  const stead__class_rec *crec;
  char *id;
  uint64_t tid;
  int64_t period_ms; /* 0: one-shot */
  int64_t due_ms;    /* manual mode: runtime clock */
  stead_timer_fn fn;
  void *udata;
  bool listed;          /* in the activation's list (worker-owned) */
  stead__tmr *next;     /* activation list */
  stead__tmr *man_next; /* manual list (timers lock) */
};

typedef struct rttimers {
  atomic_uint_least64_t next_id;
  pthread_mutex_t mu; /* manual list */
  stead__tmr *manual;
  stead__counter ticks, dropped;
} rttimers;

/* One per runtime, created lazily at the first timer. */
static rttimers *state(stead_rt *rt) {
  void **slot = stead__rt_slot(rt, STEAD__SLOT_TIMERS);
  rttimers *t = __atomic_load_n((rttimers **)slot, __ATOMIC_ACQUIRE);
  if (t)
    return t;
  rttimers *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  pthread_mutex_init(&n->mu, NULL);
  rttimers *expected = NULL;
  if (!__atomic_compare_exchange_n((rttimers **)slot, &expected, n, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    pthread_mutex_destroy(&n->mu);
    free(n);
    return expected;
  }
  return n;
}

void stead__timers_rt_free(stead_rt *rt) {
  void **slot = stead__rt_slot(rt, STEAD__SLOT_TIMERS);
  rttimers *t = *slot;
  if (!t)
    return;
  pthread_mutex_destroy(&t->mu);
  free(t);
  *slot = NULL;
}

static void tmr_unref(stead__tmr *r) {
  if (atomic_fetch_sub(&r->refs, 1) == 1) {
    free(r->id);
    free(r);
  }
}

static void tmr_arm(stead__tmr *r, int64_t delay_ms);

/* Timer thread (or fire_due): queue the tick as a turn of the object. */
static void tmr_fire(void *arg) {
  stead__tmr *r = arg;
  stead_rt *rt = r->rt;
  rttimers *ts = state(rt);
  stead__msg *m = stead__msg_new(STEAD__MSG_TIMER, NULL, 0);
  int rc = STEAD_ENOMEM;
  if (m) {
    m->timer_id = r->tid;
    rc = stead__enqueue(rt, r->crec, r->id, strlen(r->id), m, false);
    if (rc)
      stead__msg_free(m);
  }
  if (rc && ts) {
    /* Mailbox full: this tick is lost (counted); a periodic timer keeps
     * its schedule from the next period, a one-shot tries again soon. */
    stead__counter_add(&ts->dropped, 1);
    tmr_arm(r, r->period_ms ? r->period_ms : 100);
  }
  tmr_unref(r); /* the heap's reference */
}

static void tmr_arm(stead__tmr *r, int64_t delay_ms) {
  stead_rt *rt = r->rt;
  atomic_fetch_add(&r->refs, 1);
  if (rt->cfg.alarm_manual) {
    rttimers *ts = state(rt);
    r->due_ms = stead__rt_now_ms(rt) + delay_ms;
    pthread_mutex_lock(&ts->mu);
    r->man_next = ts->manual;
    ts->manual = r;
    pthread_mutex_unlock(&ts->mu);
    return;
  }
  r->t.fn = tmr_fire;
  r->t.arg = r;
  if (stead__timer_arm(&rt->timers, &r->t, stead__rt_mono_ns(rt) + delay_ms * 1000000) !=
      0)
    tmr_unref(r);
}

/* Removes r from the heap or the manual list; drops that reference. */
static void tmr_disarm(stead__tmr *r) {
  stead_rt *rt = r->rt;
  if (rt->cfg.alarm_manual) {
    rttimers *ts = state(rt);
    bool found = false;
    pthread_mutex_lock(&ts->mu);
    for (stead__tmr **pp = &ts->manual; *pp; pp = &(*pp)->man_next)
      if (*pp == r) {
        *pp = r->man_next;
        found = true;
        break;
      }
    pthread_mutex_unlock(&ts->mu);
    if (found)
      tmr_unref(r);
  } else if (stead__timer_cancel(&rt->timers, &r->t)) {
    tmr_unref(r);
  }
}

static void list_remove(stead__act *a, stead__tmr *r) {
  for (stead__tmr **pp = (stead__tmr **)&a->timers; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      r->listed = false;
      tmr_unref(r);
      return;
    }
}

/* ---- effects of the creating turn ----------------------------------- */

typedef struct start {
  stead__tmr *r;
  stead__act *a; /* alive: effects run on the object's own worker */
  int64_t delay_ms;
} start;

static void start_release(void *arg) {
  start *s = arg;
  if (s->r->listed) /* not cancelled in its own turn */
    tmr_arm(s->r, s->delay_ms);
  tmr_unref(s->r);
  free(s);
}

static void start_drop(void *arg) {
  start *s = arg;
  /* The creating turn failed: the timer never existed. */
  if (s->r->listed)
    list_remove(s->a, s->r);
  tmr_unref(s->r);
  free(s);
}

static int timer_new(stead_ctx *ctx, int64_t delay_ms, int64_t period_ms,
                     stead_timer_fn fn, void *udata, uint64_t *id_out) {
  if (!ctx || !stead__ctx_store(ctx))
    return stead__err(STEAD_EMISUSE, "timers can only be started inside a turn");
  if (!fn)
    return stead__err(STEAD_EINVAL, "timer callback is NULL");
  if (delay_ms < 0 || period_ms < 0 || delay_ms > STEAD_MAX_TIMER_MS ||
      period_ms > STEAD_MAX_TIMER_MS)
    return stead__err(STEAD_EINVAL, "timer delay and period must be 0..%lld ms",
                      (long long)STEAD_MAX_TIMER_MS);
  stead_rt *rt = stead__ctx_rt(ctx);
  stead__act *a = stead__ctx_act(ctx);
  rttimers *ts = state(rt);
  stead__tmr *r = calloc(1, sizeof *r);
  start *s = malloc(sizeof *s);
  char *id = stead__strdup(a->id);
  if (!ts || !r || !s || !id) {
    free(r);
    free(s);
    free(id);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  atomic_init(&r->refs, 2); /* the list and the start effect */
  r->rt = rt;
  r->crec = a->crec;
  r->id = id;
  r->tid = atomic_fetch_add(&ts->next_id, 1) + 1;
  r->period_ms = period_ms;
  r->fn = fn;
  r->udata = udata;
  r->listed = true;
  r->next = a->timers;
  a->timers = r;
  s->r = r;
  s->a = a;
  s->delay_ms = delay_ms;
  int rc = stead__ctx_effect(ctx, start_release, start_drop, s);
  if (rc) {
    list_remove(a, r);
    tmr_unref(r);
    free(s);
    return rc;
  }
  if (id_out)
    *id_out = r->tid;
  return 0;
}

int stead_timer_after(stead_ctx *ctx, int64_t delay_ms, stead_timer_fn fn, void *udata,
                      uint64_t *id) {
  return timer_new(ctx, delay_ms, 0, fn, udata, id);
}

int stead_timer_every(stead_ctx *ctx, int64_t period_ms, stead_timer_fn fn, void *udata,
                      uint64_t *id) {
  if (period_ms <= 0)
    return stead__err(STEAD_EINVAL, "timer period must be positive");
  return timer_new(ctx, period_ms, period_ms, fn, udata, id);
}

int stead_timer_cancel(stead_ctx *ctx, uint64_t id) {
  if (!ctx || !stead__ctx_store(ctx))
    return stead__err(STEAD_EMISUSE, "timers can only be cancelled inside a turn");
  stead__act *a = stead__ctx_act(ctx);
  for (stead__tmr *r = a->timers; r; r = r->next)
    if (r->tid == id) {
      tmr_disarm(r);
      list_remove(a, r);
      return 0;
    }
  return stead__err(STEAD_ENOTFOUND, "no timer %llu on this object",
                    (unsigned long long)id);
}

/* ---- the tick turn and the activation's end ------------------------- */

/* Finds the timer of a TIMER message in the current activation. */
void *stead__timer_lookup(stead__act *a, uint64_t tid) {
  for (stead__tmr *r = a->timers; r; r = r->next)
    if (r->tid == tid)
      return r;
  return NULL;
}

int stead__timer_run(stead_ctx *ctx, void *rec) {
  stead__tmr *r = rec;
  rttimers *ts = state(r->rt);
  if (ts)
    stead__counter_add(&ts->ticks, 1);
  return r->fn(ctx, r->udata);
}

/* After the tick's turn: re-arm a periodic timer, retire a one-shot. */
void stead__timer_after_tick(stead__act *a, uint64_t tid) {
  stead__tmr *r = stead__timer_lookup(a, tid);
  if (!r)
    return; /* cancelled by its own tick */
  if (r->period_ms)
    tmr_arm(r, r->period_ms);
  else
    list_remove(a, r);
}

/* The activation leaves memory: its timers die with it. */
void stead__timers_act_end(stead__act *a) {
  while (a->timers) {
    stead__tmr *r = a->timers;
    tmr_disarm(r);
    list_remove(a, r);
  }
}

/* ---- test helper ---------------------------------------------------- */

int stead_timers_fire_due(stead_rt *rt) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  if (!rt->cfg.alarm_manual)
    return stead__err(STEAD_EMISUSE, "stead_timers_fire_due needs alarm_manual set");
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "stead_timers_fire_due would block a stead thread");
  rttimers *ts = state(rt);
  if (!ts)
    return stead__err(STEAD_ENOMEM, "out of memory");
  int total = 0;
  for (int round = 0; round < 1000; round++) {
    int64_t now = stead__rt_now_ms(rt);
    stead__tmr *due = NULL;
    pthread_mutex_lock(&ts->mu);
    for (stead__tmr **pp = &ts->manual; *pp;) {
      stead__tmr *r = *pp;
      if (r->due_ms <= now) {
        *pp = r->man_next;
        r->man_next = due;
        due = r;
      } else {
        pp = &r->man_next;
      }
    }
    pthread_mutex_unlock(&ts->mu);
    if (!due)
      break;
    while (due) {
      stead__tmr *next = due->man_next;
      tmr_fire(due); /* consumes the armed reference */
      total++;
      due = next;
    }
    stead_run_until_idle(rt);
  }
  return total;
}

int stead__timers_rt_metrics(stead_rt *rt, stead__buf *b) {
  rttimers *ts = *stead__rt_slot(rt, STEAD__SLOT_TIMERS);
  uint64_t ticks = ts ? stead__counter_get(&ts->ticks) : 0;
  uint64_t dropped = ts ? stead__counter_get(&ts->dropped) : 0;
  int rc = stead__metric_header(b, "stead_timer_ticks_total", "counter",
                                "Timer callbacks run as turns.");
  rc |= stead__metric_value(b, "stead_timer_ticks_total", NULL, (double)ticks);
  rc |= stead__metric_header(b, "stead_timer_ticks_dropped_total", "counter",
                             "Timer ticks lost to a full mailbox.");
  rc |= stead__metric_value(b, "stead_timer_ticks_dropped_total", NULL, (double)dropped);
  return rc ? STEAD_ENOMEM : 0;
}
