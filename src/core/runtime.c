/*
 * runtime.c -- the runtime object: configuration, class registry,
 * activation table, run queue and worker threads, open and close.
 *
 * The activation table is split into STEAD__STRIPES stripes, each a chained
 * hash table under its own mutex; the stripe lock also guards the mailboxes
 * of its activations (see core.h). Workers take runnable activations from
 * one FIFO run queue and run a bounded slice of turns of each, so a busy
 * object yields to others.
 *
 * Manual mode (stead__open_manual, for the deterministic simulation in
 * src/sim/) starts no worker: the driver takes activations from the run
 * queue itself, in the order it chooses, and waiting for idleness means
 * asking the driver to run until idle.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local stead_rt *tl_rt;

stead_rt *stead__current_rt(void) {
  return tl_rt;
}

void stead__set_current_rt(stead_rt *rt) {
  tl_rt = rt;
}

void stead_config_init(stead_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->workers = 0;
  cfg->max_payload = 4u << 20;
  cfg->mailbox_limit = 10000;
  cfg->max_activations = 0;
  cfg->turns_per_slice = 32;
  cfg->slow_turn_ms = 1000;
  cfg->default_timeout_ms = 30000;
  cfg->storage = "memory";
  cfg->durability = STEAD_DURABILITY_FULL;
  cfg->max_key = STEAD_MAX_KEY;
  cfg->max_value = STEAD_MAX_VALUE;
  cfg->max_write_set = STEAD_MAX_WRITE_SET;
  cfg->commit_max_batch = 1024;
  cfg->commit_max_delay_us = 1000;
  cfg->alarm_window_ms = 60000;
  cfg->alarm_max_inflight = 1000;
  cfg->alarm_retry_base_ms = 1000;
  cfg->alarm_retry_factor = 2.0;
  cfg->alarm_max_attempts = 6;
  cfg->log_level = STEAD_LOG_INFO;
}

int64_t stead__rt_now_ms(stead_rt *rt) {
  return rt->cfg.clock ? rt->cfg.clock(rt->cfg.clock_udata) : stead__wall_ms();
}

int64_t stead__rt_mono_ns(stead_rt *rt) {
  return rt->manual ? rt->manual->mono_ns(rt->manual->u) : stead__mono_ns();
}

int64_t stead__rt_coarse_ms(stead_rt *rt) {
  return rt->cfg.clock ? rt->cfg.clock(rt->cfg.clock_udata) : stead__coarse_wall_ms();
}

void stead__log(stead_rt *rt, stead_log_level lvl, const char *fmt, ...) {
  if (!rt->cfg.log || lvl > rt->cfg.log_level)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  rt->cfg.log(lvl, line, rt->cfg.log_udata);
}

/* ---- inflight accounting -------------------------------------------- */

void stead__inflight_add(stead_rt *rt) {
  atomic_fetch_add_explicit(&rt->inflight, 1, memory_order_relaxed);
}

void stead__inflight_done(stead_rt *rt) {
  if (atomic_fetch_sub_explicit(&rt->inflight, 1, memory_order_acq_rel) == 1) {
    pthread_mutex_lock(&rt->idle_mu);
    pthread_cond_broadcast(&rt->idle_cv);
    pthread_mutex_unlock(&rt->idle_mu);
  }
}

static void wait_idle(stead_rt *rt) {
  if (rt->manual) {
    rt->manual->drain(rt->manual->u);
    return;
  }
  pthread_mutex_lock(&rt->idle_mu);
  while (atomic_load_explicit(&rt->inflight, memory_order_acquire) > 0)
    pthread_cond_wait(&rt->idle_cv, &rt->idle_mu);
  pthread_mutex_unlock(&rt->idle_mu);
}

/* ---- classes -------------------------------------------------------- */

const stead__class_rec *stead__class_find(stead_rt *rt, const char *name) {
  size_t n = atomic_load_explicit(&rt->nclasses, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (strcmp(rt->classes[i].cls->name, name) == 0)
      return &rt->classes[i];
  return NULL;
}

const stead_method *stead__method_find(const stead__class_rec *c, const char *name) {
  for (size_t i = 0; i < c->nmethods; i++)
    if (strcmp(c->cls->methods[i].name, name) == 0)
      return &c->cls->methods[i];
  return NULL;
}

static int check_class(const stead_class *cls, size_t *nmethods) {
  if (!cls)
    return stead__err(STEAD_EINVAL, "class is NULL");
  int rc = stead__check_name("class name", cls->name);
  if (rc)
    return rc;
  if (!cls->methods)
    return stead__err(STEAD_EINVAL, "class \"%s\" has no method table", cls->name);
  if (cls->state_schema) {
    if ((rc = stead_schema_check(cls->state_schema)) != 0)
      return rc;
    if (cls->state_size && cls->state_size != cls->state_schema->size)
      return stead__err(STEAD_EINVAL,
                        "class \"%s\": state_size %zu differs from its schema's size %zu",
                        cls->name, cls->state_size, cls->state_schema->size);
  }
  if (cls->hibernate_after_ms < 0 || cls->shutdown_after_ms < 0)
    return stead__err(STEAD_EINVAL, "class \"%s\" has a negative idle timeout",
                      cls->name);
  size_t n = 0;
  for (; cls->methods[n].name; n++) {
    if ((rc = stead__check_name("method name", cls->methods[n].name)) != 0)
      return rc;
    if (!cls->methods[n].fn)
      return stead__err(STEAD_EINVAL, "method \"%s\" of class \"%s\" has no function",
                        cls->methods[n].name, cls->name);
    for (size_t j = 0; j < n; j++)
      if (strcmp(cls->methods[j].name, cls->methods[n].name) == 0)
        return stead__err(STEAD_EINVAL, "class \"%s\" declares method \"%s\" twice",
                          cls->name, cls->methods[n].name);
  }
  *nmethods = n;
  return 0;
}

/* Called under classes_mu: a plain load-then-store is enough. */
static void note_idle_timeout(stead_rt *rt, int64_t ms) {
  int64_t cur = atomic_load(&rt->min_idle_ms);
  if (ms > 0 && (cur == 0 || ms < cur))
    atomic_store(&rt->min_idle_ms, ms);
}

int stead_register(stead_rt *rt, const stead_class *cls) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  size_t nmethods = 0;
  int rc = check_class(cls, &nmethods);
  if (rc)
    return rc;
  if (atomic_load(&rt->closing))
    return stead__err(STEAD_ECLOSED, "runtime is closing");
  pthread_mutex_lock(&rt->classes_mu);
  size_t n = atomic_load(&rt->nclasses);
  if (stead__class_find(rt, cls->name)) {
    pthread_mutex_unlock(&rt->classes_mu);
    return stead__err(STEAD_EEXIST, "class \"%s\" is already registered", cls->name);
  }
  if (n == STEAD__MAX_CLASSES) {
    pthread_mutex_unlock(&rt->classes_mu);
    return stead__err(STEAD_ETOOBIG, "at most %d classes can be registered",
                      STEAD__MAX_CLASSES);
  }
  rt->classes[n].cls = cls;
  rt->classes[n].nmethods = nmethods;
  note_idle_timeout(rt, cls->hibernate_after_ms);
  note_idle_timeout(rt, cls->shutdown_after_ms);
  atomic_store_explicit(&rt->nclasses, n + 1, memory_order_release);
  pthread_mutex_unlock(&rt->classes_mu);
  return 0;
}

/* ---- activation table ----------------------------------------------- */

static stead__act *table_find(stead__stripe *s, const stead__class_rec *c, uint64_t h,
                              const char *id, size_t id_len) {
  for (stead__act *a = s->buckets[h % s->nbuckets]; a; a = a->hnext)
    if (a->hash == h && a->crec == c && a->id_len == id_len &&
        memcmp(a->id, id, id_len) == 0)
      return a;
  return NULL;
}

static void table_grow(stead__stripe *s) {
  size_t nb = s->nbuckets * 2;
  stead__act **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* keep the longer chains; still correct */
  for (size_t i = 0; i < s->nbuckets; i++) {
    stead__act *a = s->buckets[i];
    while (a) {
      stead__act *next = a->hnext;
      a->hnext = b[a->hash % nb];
      b[a->hash % nb] = a;
      a = next;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

static void lru_unlink(stead__stripe *s, stead__act *a) {
  if (a->lru_prev)
    a->lru_prev->lru_next = a->lru_next;
  else
    s->lru_head = a->lru_next;
  if (a->lru_next)
    a->lru_next->lru_prev = a->lru_prev;
  else
    s->lru_tail = a->lru_prev;
  a->lru_prev = a->lru_next = NULL;
}

static void lru_append(stead__stripe *s, stead__act *a) {
  a->lru_prev = s->lru_tail;
  a->lru_next = NULL;
  if (s->lru_tail)
    s->lru_tail->lru_next = a;
  else
    s->lru_head = a;
  s->lru_tail = a;
}

/* Moves a to the young end of its stripe's LRU (stripe lock held). */
void stead__lru_touch(stead_rt *rt, stead__act *a) {
  stead__stripe *s = &rt->stripes[a->stripe];
  a->last_used = stead__rt_coarse_ms(rt);
  if (s->lru_tail != a) {
    lru_unlink(s, a);
    lru_append(s, a);
  }
}

static stead__act *act_new(stead_rt *rt, const stead__class_rec *c, uint64_t h,
                           unsigned stripe, const char *id, size_t id_len) {
  stead__act *a = calloc(1, sizeof *a + id_len + 1);
  if (!a)
    return NULL;
  a->crec = c;
  a->hash = h;
  a->stripe = stripe;
  a->id_len = id_len;
  memcpy(a->id, id, id_len);
  a->id[id_len] = 0;
  atomic_init(&a->pins, 0);
  a->last_used = stead__rt_coarse_ms(rt);
  return a;
}

void stead__act_free(stead__act *a) {
  if (a->crec->cls->state_schema && a->state)
    stead_state_release(a->crec->cls->state_schema, a->state);
  free(a->state);
  stead__buf_free(&a->state_saved);
  stead__objstore_free(a->store);
  free(a);
}

/* Removes a from the table if its mailbox is empty (stripe lock held by
 * the caller). Returns true if removed. */
bool stead__table_remove_if_empty(stead_rt *rt, stead__act *a) {
  stead__stripe *s = &rt->stripes[a->stripe];
  if (a->head)
    return false;
  stead__act **pp = &s->buckets[a->hash % s->nbuckets];
  while (*pp && *pp != a)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = a->hnext;
  lru_unlink(s, a);
  s->count--;
  atomic_fetch_sub(&rt->nacts, 1);
  return true;
}

static uint64_t key_hash(const stead__class_rec *c, const char *id, size_t id_len) {
  return stead__hash64(id, id_len, (uint64_t)(uintptr_t)c);
}

/* ---- run queue ------------------------------------------------------ */

void stead__rq_push(stead_rt *rt, stead__act *a) {
  pthread_mutex_lock(&rt->rq_mu);
  a->rq_next = NULL;
  if (rt->rq_tail)
    rt->rq_tail->rq_next = a;
  else
    rt->rq_head = a;
  rt->rq_tail = a;
  if (rt->rq_waiting)
    pthread_cond_signal(&rt->rq_cv);
  pthread_mutex_unlock(&rt->rq_mu);
}

static stead__act *rq_pop(stead_rt *rt) {
  pthread_mutex_lock(&rt->rq_mu);
  while (!rt->rq_head && !rt->rq_stop) {
    rt->rq_waiting++;
    pthread_cond_wait(&rt->rq_cv, &rt->rq_mu);
    rt->rq_waiting--;
  }
  stead__act *a = rt->rq_head;
  if (a) {
    rt->rq_head = a->rq_next;
    if (!rt->rq_head)
      rt->rq_tail = NULL;
  }
  pthread_mutex_unlock(&rt->rq_mu);
  return a;
}

size_t stead__rq_snapshot(stead_rt *rt, stead__act **out, size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&rt->rq_mu);
  for (stead__act *a = rt->rq_head; a; a = a->rq_next, n++)
    if (n < max)
      out[n] = a;
  pthread_mutex_unlock(&rt->rq_mu);
  return n;
}

void stead__rq_take(stead_rt *rt, stead__act *a) {
  pthread_mutex_lock(&rt->rq_mu);
  stead__act *prev = NULL;
  for (stead__act *x = rt->rq_head; x; prev = x, x = x->rq_next) {
    if (x != a)
      continue;
    if (prev)
      prev->rq_next = a->rq_next;
    else
      rt->rq_head = a->rq_next;
    if (rt->rq_tail == a)
      rt->rq_tail = prev;
    a->rq_next = NULL;
    break;
  }
  pthread_mutex_unlock(&rt->rq_mu);
}

static void *worker_main(void *p) {
  stead_rt *rt = p;
  stead__set_current_rt(rt);
  stead__act *a;
  while ((a = rq_pop(rt)) != NULL)
    stead__run_slice(rt, a);
  return NULL;
}

/* ---- enqueue -------------------------------------------------------- */

void stead__mailbox_push(stead_rt *rt, stead__act *a, stead__msg *m) {
  m->next = NULL;
  if (a->tail)
    a->tail->next = m;
  else
    a->head = m;
  a->tail = m;
  a->queued++;
  stead__inflight_add(rt);
  if (!a->sched) {
    a->sched = true;
    stead__rq_push(rt, a);
  }
}

int stead__enqueue(stead_rt *rt, const stead__class_rec *c, const char *id, size_t id_len,
                   stead__msg *m, bool bypass_limit) {
  if (rt->cluster)
    return stead__cluster_enqueue(rt, c, id, id_len, m, bypass_limit);
  return stead__enqueue_local(rt, c, id, id_len, m, bypass_limit, 0);
}

int stead__enqueue_local(stead_rt *rt, const stead__class_rec *c, const char *id,
                         size_t id_len, stead__msg *m, bool bypass_limit,
                         uint32_t shard) {
  uint64_t h = key_hash(c, id, id_len);
  unsigned si = (unsigned)(h >> 56) % STEAD__STRIPES;
  stead__stripe *s = &rt->stripes[si];
  bool created = false;
  pthread_mutex_lock(&s->mu);
  stead__act *a = table_find(s, c, h, id, id_len);
  if (!a) {
    a = act_new(rt, c, h, si, id, id_len);
    if (!a) {
      pthread_mutex_unlock(&s->mu);
      return stead__err(STEAD_ENOMEM, "out of memory creating an activation");
    }
    a->shard = shard;
    a->hnext = s->buckets[h % s->nbuckets];
    s->buckets[h % s->nbuckets] = a;
    lru_append(s, a);
    if (++s->count > s->nbuckets)
      table_grow(s);
    atomic_fetch_add(&rt->nacts, 1);
    created = true;
  } else if (!bypass_limit && a->queued >= rt->cfg.mailbox_limit) {
    /* Read under the lock: once it is released the activation may run
     * or be freed. */
    size_t queued = a->queued;
    pthread_mutex_unlock(&s->mu);
    return stead__err(STEAD_EOVERLOAD,
                      "mailbox of %s/%.*s is full (%zu messages); retry later",
                      c->cls->name, (int)id_len, id, queued);
  }
  stead__mailbox_push(rt, a, m);
  pthread_mutex_unlock(&s->mu);
  if (created && rt->cfg.max_activations)
    stead__evict_if_needed(rt);
  return 0;
}

void stead__enqueue_act(stead_rt *rt, stead__act *a, stead__msg *m) {
  stead__stripe *s = &rt->stripes[a->stripe];
  pthread_mutex_lock(&s->mu);
  stead__mailbox_push(rt, a, m);
  pthread_mutex_unlock(&s->mu);
}

/* ---- open / close --------------------------------------------------- */

static int check_config(const stead_config *cfg) {
  if (cfg->workers < 0 || cfg->workers > 1024)
    return stead__err(STEAD_EINVAL, "workers is %d; expected 0..1024", cfg->workers);
  if (cfg->max_payload == 0)
    return stead__err(STEAD_EINVAL, "max_payload must be positive");
  if (cfg->mailbox_limit == 0)
    return stead__err(STEAD_EINVAL, "mailbox_limit must be positive");
  if (cfg->turns_per_slice <= 0)
    return stead__err(STEAD_EINVAL, "turns_per_slice must be positive");
  if (cfg->default_timeout_ms <= 0)
    return stead__err(STEAD_EINVAL, "default_timeout_ms must be positive");
  if (cfg->durability != STEAD_DURABILITY_FULL &&
      cfg->durability != STEAD_DURABILITY_NORMAL)
    return stead__err(STEAD_EINVAL,
                      "durability is %d; expected STEAD_DURABILITY_FULL or "
                      "STEAD_DURABILITY_NORMAL",
                      cfg->durability);
  if (cfg->commit_max_batch < 0 || cfg->commit_max_delay_us < 0)
    return stead__err(STEAD_EINVAL,
                      "commit_max_batch and commit_max_delay_us must not be negative");
  return 0;
}

static void metrics_init(stead__metrics_core *m) {
  memset(m, 0, sizeof *m);
  stead__hist_init(&m->call_latency, stead__latency_bounds, stead__latency_nbounds);
}

static void rt_free(stead_rt *rt) {
  for (int i = 0; i < STEAD__STRIPES; i++) {
    stead__stripe *s = &rt->stripes[i];
    for (size_t b = 0; b < s->nbuckets; b++) {
      stead__act *a = s->buckets[b];
      while (a) {
        stead__act *next = a->hnext;
        stead__act_free(a);
        a = next;
      }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->mu);
  }
  stead__timers_rt_free(rt);
  free(rt->workers);
  free(rt->storage_spec);
  free(rt->manual);
  pthread_mutex_destroy(&rt->classes_mu);
  pthread_mutex_destroy(&rt->rq_mu);
  pthread_cond_destroy(&rt->rq_cv);
  pthread_mutex_destroy(&rt->idle_mu);
  pthread_cond_destroy(&rt->idle_cv);
  free(rt);
}

static void stop_workers(stead_rt *rt) {
  pthread_mutex_lock(&rt->rq_mu);
  rt->rq_stop = true;
  pthread_cond_broadcast(&rt->rq_cv);
  pthread_mutex_unlock(&rt->rq_mu);
  for (int i = 0; i < rt->nworkers; i++)
    pthread_join(rt->workers[i], NULL);
  rt->nworkers = 0;
}

/* How far open_rt got: each stage is undone by open_unwind, in reverse. */
typedef enum open_stage {
  UP_NONE,
  UP_STORE,   /* storage */
  UP_BUS,     /* + the bus; connections and the cluster tried (both free a
                 partial open) */
  UP_THREADS, /* + the timer thread and any workers started */
  UP_ALARMS,  /* + the alarm scheduler */
} open_stage;

/* Undoes a failed open_rt from stage `up` down, keeping rc's message. */
static int open_unwind(stead_rt *rt, open_stage up, int rc) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", stead_errmsg());
  if (up >= UP_ALARMS) {
    stead__alarm_rt_stop(rt);
    wait_idle(rt);
  }
  if (up >= UP_THREADS) {
    stop_workers(rt);
    stead__timerq_stop(&rt->timers);
  }
  if (up >= UP_BUS) {
    stead__cluster_free(rt->cluster);
    rt->cluster = NULL;
    stead__conn_rt_free(rt);
    stead__bus_rt_close(rt);
  }
  if (up >= UP_STORE)
    stead__store_close(rt);
  rt_free(rt);
  return stead__err(rc, "%s", msg);
}

/* *consumed is set once the storage layer has taken man->backend (it
 * closes it itself on a later failure). */
static int open_rt(const stead_config *cfg_in, const stead__manual *man, stead_rt **out,
                   bool *consumed) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out is NULL");
  *out = NULL;
  stead_config defaults;
  stead_config_init(&defaults);
  const stead_config *cfg = cfg_in ? cfg_in : &defaults;
  int rc = check_config(cfg);
  if (rc)
    return rc;
  stead_rt *rt = calloc(1, sizeof *rt);
  if (!rt)
    return stead__err(STEAD_ENOMEM, "out of memory");
  rt->cfg = *cfg;
  rt->storage_spec = stead__cluster_storage_spec(cfg);
  rt->cfg.storage = rt->storage_spec;
  if (man) {
    if (!(rt->manual = malloc(sizeof *rt->manual))) {
      free(rt->storage_spec);
      free(rt);
      return stead__err(STEAD_ENOMEM, "out of memory");
    }
    *rt->manual = *man;
    rt->cfg.alarm_manual = 1;
    rt->cfg.workers = 1; /* none is started; keeps the allocation below */
  }
  if (rt->cfg.workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    rt->cfg.workers = n > 0 ? (int)n : 1;
  }
  pthread_mutex_init(&rt->classes_mu, NULL);
  pthread_mutex_init(&rt->rq_mu, NULL);
  pthread_cond_init(&rt->rq_cv, NULL);
  pthread_mutex_init(&rt->idle_mu, NULL);
  pthread_cond_init(&rt->idle_cv, NULL);
  for (int i = 0; i < STEAD__STRIPES; i++) {
    pthread_mutex_init(&rt->stripes[i].mu, NULL);
    rt->stripes[i].nbuckets = 16;
    rt->stripes[i].buckets = calloc(16, sizeof(stead__act *));
    if (!rt->stripes[i].buckets) {
      rt_free(rt);
      return stead__err(STEAD_ENOMEM, "out of memory");
    }
  }
  metrics_init(&rt->m);
  rt->workers = calloc((size_t)rt->cfg.workers, sizeof(pthread_t));
  if (!rt->workers || !rt->storage_spec) {
    rt_free(rt);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  *consumed = true;
  open_stage up = UP_NONE;
  if ((rc = stead__store_open(rt)) != 0)
    goto fail;
  up = UP_STORE;
  if ((rc = stead__bus_rt_open(rt)) != 0)
    goto fail;
  up = UP_BUS;
  if ((rc = stead__conn_rt_open(rt)) != 0 || (rc = stead__cluster_init(rt)) != 0 ||
      (rc = stead__timerq_init(&rt->timers, rt)) != 0)
    goto fail;
  up = UP_THREADS;
  for (int i = 0; i < rt->cfg.workers && !rt->manual; i++) {
    if (pthread_create(&rt->workers[i], NULL, worker_main, rt) != 0) {
      rc = stead__err(STEAD_EIO, "cannot start worker thread %d", i);
      goto fail;
    }
    rt->nworkers++;
  }
  if ((rc = stead__alarm_rt_open(rt)) != 0)
    goto fail;
  up = UP_ALARMS;
  if ((rc = stead__cluster_join(rt)) != 0)
    goto fail;
  rt->sweep_timer.fn = stead__sweep_tick;
  rt->sweep_timer.arg = rt;
  stead__timer_arm(&rt->timers, &rt->sweep_timer, stead__rt_mono_ns(rt) + 100000000);
  *out = rt;
  return 0;
fail:
  return open_unwind(rt, up, rc);
}

int stead_open(const stead_config *cfg, stead_rt **out) {
  bool consumed = false;
  return open_rt(cfg, NULL, out, &consumed);
}

int stead__open_manual(const stead_config *cfg, const stead__manual *man,
                       stead_rt **out) {
  if (!man || !man->mono_ns || !man->drain)
    return stead__err(STEAD_EINVAL, "manual mode needs a clock and a drain");
  bool consumed = false;
  int rc = open_rt(cfg, man, out, &consumed);
  if (rc && !consumed && man->backend)
    stead__backend_close(man->backend);
  return rc;
}

/* Fails every open deferred reply with ECLOSED (close only, after a
 * drain: no turn is running, so the lists are stable). */
static int fail_deferred(stead_rt *rt) {
  int n = 0;
  for (int i = 0; i < STEAD__STRIPES; i++) {
    stead__stripe *s = &rt->stripes[i];
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < s->nbuckets; b++)
      for (stead__act *a = s->buckets[b]; a; a = a->hnext)
        while (a->deferred) {
          stead_deferred *d = a->deferred;
          a->deferred = d->next;
          stead__call_complete(d->call, STEAD_ECLOSED, NULL, 0, "runtime closed");
          stead__call_unref(d->call);
          atomic_fetch_sub(&a->pins, 1);
          free(d);
          n++;
        }
    pthread_mutex_unlock(&s->mu);
  }
  return n;
}

int stead__deactivate_all(stead_rt *rt);

int stead_close(stead_rt *rt) {
  if (!rt)
    return 0;
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "stead_close called from a stead thread");
  atomic_store(&rt->closing, true);
  /* Wait for API calls that passed the closing check to finish enqueuing. */
  while (atomic_load(&rt->api_refs) > 0)
    sched_yield();
  /* Connections close first (GOING_AWAY): their objects' on_conn_close
   * turns are queued while the node still owns its shards, and run in
   * the drains below. */
  stead__conn_rt_close(rt);
  /* A cluster node hands its shards over first, while everything still
   * runs: their turns finish, commits flush, leases are released. */
  stead__cluster_leave(rt);
  stead__timer_cancel(&rt->timers, &rt->sweep_timer);
  /* No alarm fires once closing: pending ones fire after the next open. */
  stead__alarm_rt_stop(rt);
  /* Drain, answer deferred replies, deactivate; on_deactivate hooks may
   * send more messages, so repeat until nothing is left (bounded). */
  wait_idle(rt);
  /* The bus goes first: its in-flight events may still become turns,
   * which the rounds below drain. Emits after this are dropped. */
  stead__bus_rt_close(rt);
  for (int round = 0; round < 64; round++) {
    wait_idle(rt);
    if (fail_deferred(rt) > 0)
      continue;
    if (stead__deactivate_all(rt) == 0 && atomic_load(&rt->nacts) == 0)
      break;
  }
  wait_idle(rt);
  stop_workers(rt);
  stead__timerq_stop(&rt->timers);
  /* The connections' delivery thread may still push closes through the
   * node: it stops before the node is freed. */
  stead__conn_rt_free(rt);
  stead__cluster_free(rt->cluster);
  rt->cluster = NULL;
  stead__store_close(rt);
  stead__es_rt_close(rt);
  rt_free(rt);
  return 0;
}

/* ---- queries -------------------------------------------------------- */

void **stead__rt_slot(stead_rt *rt, int which) {
  return which >= 0 && which < STEAD__SLOTS ? &rt->slots[which] : NULL;
}

size_t stead_active_count(stead_rt *rt) {
  return rt ? atomic_load(&rt->nactive) : 0;
}

int stead_run_until_idle(stead_rt *rt) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "stead_run_until_idle called from a stead thread");
  wait_idle(rt);
  return 0;
}

/* Finds an activation and reports whether it is activated. */
int stead__act_lookup_active(stead_rt *rt, const stead__class_rec *c, const char *id) {
  size_t id_len = strlen(id);
  uint64_t h = key_hash(c, id, id_len);
  unsigned si = (unsigned)(h >> 56) % STEAD__STRIPES;
  stead__stripe *s = &rt->stripes[si];
  pthread_mutex_lock(&s->mu);
  stead__act *a = table_find(s, c, h, id, id_len);
  /* A record exists from the first message on, but the object is active
   * only once on_activate succeeded (a failed activation leaves none). */
  int active = a != NULL && atomic_load(&a->activated);
  pthread_mutex_unlock(&s->mu);
  return active;
}

int stead__queue_deactivate(stead_rt *rt, const stead__class_rec *c, const char *id,
                            stead__waiter *w) {
  size_t id_len = strlen(id);
  uint64_t h = key_hash(c, id, id_len);
  stead__stripe *s = &rt->stripes[(unsigned)(h >> 56) % STEAD__STRIPES];
  pthread_mutex_lock(&s->mu);
  stead__act *a = table_find(s, c, h, id, id_len);
  int queued = a && stead__queue_system(rt, a, STEAD__MSG_DEACTIVATE, w);
  pthread_mutex_unlock(&s->mu);
  return queued ? 1 : (a ? stead__err(STEAD_ENOMEM, "out of memory") : 0);
}
