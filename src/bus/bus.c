/*
 * bus.c -- the event bus: listeners, emit, the per-event listener
 * sequence, errors and shutdown.
 *
 * Ownership: the bus owns its listeners, the pattern trie, an id table
 * (id -> listener) and the worker pool. An event owns copies of its topic,
 * payload and properties, and a snapshot of the listeners that matched when
 * it was emitted, each held by a reference count (the trie holds one more),
 * so `off` can unlink a listener while events still point at it.
 *
 * Locks: `lock` (rwlock) guards the trie, the id table and the counts;
 * emits match under the read lock, on/off change under the write lock. No
 * lock is held while a listener runs, so listeners may call on/off/emit.
 *
 * Removal protocol (off vs. a running event): before invoking a listener
 * the event increments its `inflight` and then reads `removed`; off sets
 * `removed` and then reads `inflight` (both sequentially consistent
 * atomics). So either the event sees `removed` and skips the listener, or
 * off sees the invocation and waits for it on `off_cv` (unless off is
 * called from inside a listener of this bus, where waiting could deadlock).
 *
 * Threads: any number of callers, plus the pool's workers which run queued
 * events. A thread-local stack of frames records which buses the current
 * thread is running listeners for (to detect calls from inside).
 */
#include "bus/bus_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAIL_MSG_MAX 1024

struct stead_bus {
  stead_bus_config cfg;
  pthread_rwlock_t lock;
  stead__trie trie;
  stead__listener **ids; /* chained hash table, power-of-two size */
  size_t ids_cap, n_listeners;
  uint64_t next_seq;
  pthread_mutex_t ulid_mu;
  stead__ulid_state ulid;
  pthread_mutex_t off_mu;
  pthread_cond_t off_cv;
  stead__pool *pool;
  atomic_bool closing;
  atomic_uint_fast64_t succeeded, failed, sync_emits, listener_errors;
};

struct stead_event {
  stead_bus *bus;
  char *topic;
  uint8_t *payload;
  size_t len;
  stead_event_prop *props;
  size_t n_props;
  stead__listener **ls;
  size_t n_ls, cap_ls;
  stead__listener *inl_ls[8];
  stead__listener *cur;
  bool aborted;
  char *fail_msg;
  stead_event_error *errs;
  size_t n_errs, cap_errs;
  stead_emit_result result;
  stead_emit_cb done;
  void *udata;
};

/* ---- thread-local frames ------------------------------------------------ */

typedef struct frame {
  const stead_bus *bus;
  struct frame *prev;
} frame;

static _Thread_local frame *tls_frames;

static void frame_push(frame *f, const stead_bus *bus) {
  f->bus = bus;
  f->prev = tls_frames;
  tls_frames = f;
}

static void frame_pop(frame *f) {
  tls_frames = f->prev;
}

static bool inside(const stead_bus *bus) {
  for (frame *f = tls_frames; f; f = f->prev)
    if (f->bus == bus)
      return true;
  return false;
}

/* ---- configuration -------------------------------------------------------- */

void stead_bus_config_init(stead_bus_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->workers = 0;
  cfg->queue_capacity = 1024;
  cfg->wait_when_full = 0;
  cfg->max_topic_len = STEAD_TOPIC_MAX_LEN;
  cfg->max_segments = STEAD_TOPIC_MAX_SEGMENTS;
  cfg->max_listeners = 100000;
  cfg->max_payload = 4u << 20;
  cfg->max_properties = 64;
}

static int check_config(const stead_bus_config *c) {
  if (c->workers < 0 || c->workers > 1024)
    return stead__err(STEAD_EINVAL, "workers is %d; allowed 0..1024", c->workers);
  if (c->queue_capacity == 0 || c->queue_capacity > ((size_t)1 << 24))
    return stead__err(STEAD_EINVAL, "queue_capacity is %zu; allowed 1..16777216",
                      c->queue_capacity);
  if (c->max_topic_len == 0 || c->max_topic_len > STEAD__TOPIC_LEN_CAP)
    return stead__err(STEAD_EINVAL, "max_topic_len is %zu; allowed 1..%d",
                      c->max_topic_len, STEAD__TOPIC_LEN_CAP);
  if (c->max_segments == 0 || c->max_segments > STEAD__TOPIC_SEG_CAP)
    return stead__err(STEAD_EINVAL, "max_segments is %zu; allowed 1..%d", c->max_segments,
                      STEAD__TOPIC_SEG_CAP);
  if (c->max_listeners == 0)
    return stead__err(STEAD_EINVAL, "max_listeners is 0");
  return 0;
}

/* ---- listeners and the id table ------------------------------------------- */

static void listener_release(stead__listener *l) {
  if (atomic_fetch_sub(&l->refs, 1) == 1) {
    free(l->pattern);
    free(l);
  }
}

static size_t id_slot(const stead_bus *b, const char *id) {
  return (size_t)stead__hash64(id, strlen(id), 7) & (b->ids_cap - 1);
}

static stead__listener **id_find(stead_bus *b, const char *id) {
  stead__listener **pp = &b->ids[id_slot(b, id)];
  while (*pp && strcmp((*pp)->id, id) != 0)
    pp = &(*pp)->id_next;
  return pp;
}

static int id_grow(stead_bus *b) {
  size_t cap = b->ids_cap * 2;
  stead__listener **tab = calloc(cap, sizeof *tab);
  if (!tab)
    return STEAD_ENOMEM;
  for (size_t i = 0; i < b->ids_cap; i++) {
    stead__listener *l = b->ids[i];
    while (l) {
      stead__listener *next = l->id_next;
      size_t s = (size_t)stead__hash64(l->id, strlen(l->id), 7) & (cap - 1);
      l->id_next = tab[s];
      tab[s] = l;
      l = next;
    }
  }
  free(b->ids);
  b->ids = tab;
  b->ids_cap = cap;
  return 0;
}

static int make_id(stead_bus *b, char *out) {
  if (!b->cfg.id_gen) {
    pthread_mutex_lock(&b->ulid_mu);
    int rc = stead__ulid_next(&b->ulid, stead__wall_ms(), out);
    pthread_mutex_unlock(&b->ulid_mu);
    return rc;
  }
  memset(out, 0, STEAD__ID_MAX);
  int rc = b->cfg.id_gen(out, STEAD__ID_MAX, b->cfg.id_udata);
  if (rc != 0)
    return stead__err(rc < 0 ? rc : STEAD_EINVAL, "the listener id generator failed (%d)",
                      rc);
  if (out[0] == 0 || out[STEAD__ID_MAX - 1] != 0)
    return stead__err(STEAD_EINVAL,
                      "the listener id generator made an empty or unterminated id");
  return 0;
}

/* ---- new / free ---------------------------------------------------------------- */

static void run_job(void *job, void *arg);

static int bus_new(const stead_bus_config *cfg, bool manual, stead_bus **out);

int stead_bus_new(const stead_bus_config *cfg, stead_bus **out) {
  return bus_new(cfg, false, out);
}

int stead__bus_new_manual(const stead_bus_config *cfg, stead_bus **out) {
  return bus_new(cfg, true, out);
}

int stead__bus_run_one(stead_bus *b) {
  return stead__pool_run_one(b->pool);
}

static int bus_new(const stead_bus_config *cfg, bool manual, stead_bus **out) {
  stead_bus_config def;
  if (!out)
    return stead__err(STEAD_EINVAL, "out is NULL");
  *out = NULL;
  if (!cfg) {
    stead_bus_config_init(&def);
    cfg = &def;
  }
  int rc = check_config(cfg);
  if (rc)
    return rc;
  stead_bus *b = calloc(1, sizeof *b);
  if (!b)
    return stead__err(STEAD_ENOMEM, "out of memory for the bus");
  b->cfg = *cfg;
  if (b->cfg.workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    b->cfg.workers = n < 1 ? 1 : (n > 1024 ? 1024 : (int)n);
  }
  b->ids_cap = 64;
  b->ids = calloc(b->ids_cap, sizeof *b->ids);
  if (!b->ids || stead__trie_init(&b->trie) != 0) {
    free(b->ids);
    stead__trie_free(&b->trie);
    free(b);
    return stead__err(STEAD_ENOMEM, "out of memory for the bus");
  }
  pthread_rwlock_init(&b->lock, NULL);
  pthread_mutex_init(&b->ulid_mu, NULL);
  pthread_mutex_init(&b->off_mu, NULL);
  pthread_cond_init(&b->off_cv, NULL);
  stead__ulid_init(&b->ulid);
  rc = stead__pool_new(manual ? 0 : b->cfg.workers, b->cfg.queue_capacity, run_job, b,
                       &b->pool);
  if (rc) {
    b->pool = NULL;
    stead_bus_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

int stead_bus_free(stead_bus *b) {
  if (!b)
    return 0;
  if (inside(b))
    return stead__err(STEAD_EMISUSE, "stead_bus_free called from a listener of that bus");
  atomic_store(&b->closing, true);
  stead__pool_free(b->pool); /* drains: every accepted event runs */
  for (size_t i = 0; i < b->ids_cap; i++) {
    stead__listener *l = b->ids[i];
    while (l) {
      stead__listener *next = l->id_next;
      listener_release(l);
      l = next;
    }
  }
  free(b->ids);
  stead__trie_free(&b->trie);
  pthread_rwlock_destroy(&b->lock);
  pthread_mutex_destroy(&b->ulid_mu);
  pthread_mutex_destroy(&b->off_mu);
  pthread_cond_destroy(&b->off_cv);
  free(b);
  return 0;
}

/* ---- on / off ------------------------------------------------------------------ */

int stead_bus_on(stead_bus *b, const char *pattern, stead_listener_fn fn, void *udata,
                 int priority, char *id_out) {
  if (!b || !fn)
    return stead__err(STEAD_EINVAL, "bus or listener is NULL");
  if (atomic_load(&b->closing))
    return stead__err(STEAD_ECLOSED, "the bus is being freed");
  stead__seg segs[STEAD__TOPIC_SEG_CAP];
  int n = stead__topic_split(pattern, 1, b->cfg.max_topic_len, b->cfg.max_segments, segs);
  if (n < 0)
    return n;
  stead__listener *l = calloc(1, sizeof *l);
  if (!l)
    return stead__err(STEAD_ENOMEM, "out of memory for a listener");
  int rc = make_id(b, l->id);
  if (rc) {
    free(l);
    return rc;
  }
  l->pattern = stead__strdup(pattern);
  if (!l->pattern) {
    free(l);
    return stead__err(STEAD_ENOMEM, "out of memory for a listener");
  }
  l->fn = fn;
  l->udata = udata;
  l->priority = priority;
  atomic_init(&l->refs, 1);
  atomic_init(&l->inflight, 0);
  atomic_init(&l->removed, false);

  pthread_rwlock_wrlock(&b->lock);
  if (b->n_listeners >= b->cfg.max_listeners)
    rc = stead__err(STEAD_EOVERLOAD, "the bus has %zu listeners, its max_listeners",
                    b->n_listeners);
  else if (*id_find(b, l->id))
    rc = stead__err(STEAD_EEXIST, "listener id \"%s\" is already in use", l->id);
  else if (b->n_listeners >= b->ids_cap && id_grow(b) != 0)
    rc = stead__err(STEAD_ENOMEM, "out of memory for the listener table");
  else if (stead__trie_add(&b->trie, segs, n, l) != 0)
    rc = stead__err(STEAD_ENOMEM, "out of memory for the pattern trie");
  if (rc == 0) {
    l->seq = b->next_seq++;
    stead__listener **slot = &b->ids[id_slot(b, l->id)];
    l->id_next = *slot;
    *slot = l;
    b->n_listeners++;
  }
  pthread_rwlock_unlock(&b->lock);
  if (rc) {
    free(l->pattern);
    free(l);
    return rc;
  }
  if (id_out)
    memcpy(id_out, l->id, strlen(l->id) + 1);
  return 0;
}

int stead_bus_off(stead_bus *b, const char *id) {
  if (!b || !id)
    return stead__err(STEAD_EINVAL, "bus or id is NULL");
  pthread_rwlock_wrlock(&b->lock);
  stead__listener **pp = id_find(b, id);
  stead__listener *l = *pp;
  if (!l) {
    pthread_rwlock_unlock(&b->lock);
    return stead__err(STEAD_ENOTFOUND, "no listener has id \"%s\"", id);
  }
  *pp = l->id_next;
  stead__trie_remove(&b->trie, l);
  b->n_listeners--;
  atomic_store(&l->removed, true);
  pthread_rwlock_unlock(&b->lock);
  if (!inside(b)) {
    pthread_mutex_lock(&b->off_mu);
    while (atomic_load(&l->inflight) > 0)
      pthread_cond_wait(&b->off_cv, &b->off_mu);
    pthread_mutex_unlock(&b->off_mu);
  }
  listener_release(l);
  return 0;
}

/* ---- events -------------------------------------------------------------------- */

static void event_free(stead_event *ev) {
  for (size_t i = 0; i < ev->n_ls; i++)
    listener_release(ev->ls[i]);
  if (ev->ls != ev->inl_ls)
    free(ev->ls);
  for (size_t i = 0; i < ev->n_errs; i++)
    free((char *)ev->errs[i].message);
  free(ev->errs);
  free(ev->fail_msg);
  free(ev->payload);
  free(ev); /* topic and properties share the event's block */
}

static int snapshot_add(stead__listener *l, void *arg) {
  stead_event *ev = arg;
  if (ev->n_ls == ev->cap_ls) {
    size_t cap = ev->cap_ls * 2;
    stead__listener **v = malloc(cap * sizeof *v);
    if (!v)
      return STEAD_ENOMEM;
    memcpy(v, ev->ls, ev->n_ls * sizeof *v);
    if (ev->ls != ev->inl_ls)
      free(ev->ls);
    ev->ls = v;
    ev->cap_ls = cap;
  }
  atomic_fetch_add(&l->refs, 1);
  ev->ls[ev->n_ls++] = l;
  return 0;
}

/* Higher priority first; equal priorities in subscription order. */
static bool runs_before(const stead__listener *a, const stead__listener *b) {
  return a->priority != b->priority ? a->priority > b->priority : a->seq < b->seq;
}

static int cmp_listener(const void *x, const void *y) {
  const stead__listener *a = *(stead__listener *const *)x;
  const stead__listener *b = *(stead__listener *const *)y;
  return runs_before(a, b) ? -1 : (runs_before(b, a) ? 1 : 0);
}

static void sort_listeners(stead__listener **v, size_t n) {
  if (n > 16) {
    qsort(v, n, sizeof *v, cmp_listener);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    stead__listener *x = v[i];
    size_t j = i;
    for (; j > 0 && runs_before(x, v[j - 1]); j--)
      v[j] = v[j - 1];
    v[j] = x;
  }
}

static int check_props(const stead_bus *b, const stead_event_prop *props, size_t n,
                       size_t *bytes) {
  if (n > b->cfg.max_properties)
    return stead__err(STEAD_ETOOBIG, "%zu properties; max_properties is %zu", n,
                      b->cfg.max_properties);
  if (n && !props)
    return stead__err(STEAD_EINVAL, "props is NULL with n_props %zu", n);
  *bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (!props[i].key || !props[i].value)
      return stead__err(STEAD_EINVAL, "property %zu has a NULL key or value", i);
    *bytes += strlen(props[i].key) + strlen(props[i].value) + 2;
  }
  return 0;
}

/* Validates, copies and snapshots: everything an emit does before the
 * listeners run. On success *out owns a new event. */
static int event_prepare(stead_bus *b, const char *topic, const void *payload, size_t len,
                         const stead_event_prop *props, size_t n_props,
                         stead_event **out) {
  if (!b)
    return stead__err(STEAD_EINVAL, "bus is NULL");
  if (atomic_load(&b->closing))
    return stead__err(STEAD_ECLOSED, "the bus is being freed");
  stead__seg segs[STEAD__TOPIC_SEG_CAP];
  int n = stead__topic_split(topic, 0, b->cfg.max_topic_len, b->cfg.max_segments, segs);
  if (n < 0)
    return n;
  if (len > b->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %zu bytes; max_payload is %zu", len,
                      b->cfg.max_payload);
  if (len && !payload)
    return stead__err(STEAD_EINVAL, "payload is NULL with len %zu", len);
  size_t prop_bytes = 0;
  int rc = check_props(b, props, n_props, &prop_bytes);
  if (rc)
    return rc;
  size_t tlen = strlen(topic) + 1;
  size_t size =
      sizeof(stead_event) + n_props * sizeof(stead_event_prop) + tlen + prop_bytes;
  stead_event *ev = calloc(1, size);
  if (!ev)
    return stead__err(STEAD_ENOMEM, "out of memory for an event");
  ev->bus = b;
  ev->ls = ev->inl_ls;
  ev->cap_ls = sizeof ev->inl_ls / sizeof ev->inl_ls[0];
  ev->props = (stead_event_prop *)(ev + 1);
  ev->n_props = n_props;
  char *s = (char *)(ev->props + n_props);
  ev->topic = memcpy(s, topic, tlen);
  s += tlen;
  for (size_t i = 0; i < n_props; i++) {
    size_t kl = strlen(props[i].key) + 1, vl = strlen(props[i].value) + 1;
    ev->props[i].key = memcpy(s, props[i].key, kl);
    ev->props[i].value = memcpy(s + kl, props[i].value, vl);
    s += kl + vl;
  }
  if (len) {
    ev->payload = stead__memdup(payload, len);
    if (!ev->payload) {
      free(ev);
      return stead__err(STEAD_ENOMEM, "out of memory for a payload of %zu bytes", len);
    }
    ev->len = len;
  }
  pthread_rwlock_rdlock(&b->lock);
  rc = stead__trie_match(&b->trie, segs, n, snapshot_add, ev);
  pthread_rwlock_unlock(&b->lock);
  if (rc) {
    event_free(ev);
    return stead__err(STEAD_ENOMEM, "out of memory matching topic %s", topic);
  }
  sort_listeners(ev->ls, ev->n_ls);
  *out = ev;
  return 0;
}

static void invocation_end(stead_bus *b, stead__listener *l) {
  if (atomic_fetch_sub(&l->inflight, 1) == 1 && atomic_load(&l->removed)) {
    pthread_mutex_lock(&b->off_mu);
    pthread_cond_broadcast(&b->off_cv);
    pthread_mutex_unlock(&b->off_mu);
  }
}

/* Hands a listener's failure to the error handler and records it unless
 * swallowed. On ENOMEM the error is still counted but not recorded. */
static void listener_failed(stead_event *ev, stead__listener *l, int rc) {
  stead_bus *b = ev->bus;
  atomic_fetch_add(&b->listener_errors, 1);
  int code = rc < 0 ? rc : STEAD_EHANDLER;
  char *msg = ev->fail_msg;
  ev->fail_msg = NULL;
  if (!msg) {
    msg = malloc(96);
    if (msg)
      snprintf(msg, 96, "listener returned %d (%s)", rc, stead_strerror(code));
  }
  const char *shown = msg ? msg : "listener failed (no memory for its message)";
  if (b->cfg.on_error &&
      b->cfg.on_error(ev, l->id, code, shown, b->cfg.error_udata) == 0) {
    free(msg);
    return;
  }
  if (!msg)
    return;
  if (ev->n_errs == ev->cap_errs) {
    size_t cap = ev->cap_errs ? ev->cap_errs * 2 : 4;
    stead_event_error *v = realloc(ev->errs, cap * sizeof *v);
    if (!v) {
      free(msg);
      return;
    }
    ev->errs = v;
    ev->cap_errs = cap;
  }
  ev->errs[ev->n_errs++] = (stead_event_error){
      .listener_id = l->id, .pattern = l->pattern, .code = code, .message = msg};
}

/* Runs the listener sequence and fills ev->result. */
static void event_run(stead_event *ev) {
  stead_bus *b = ev->bus;
  frame f;
  frame_push(&f, b);
  size_t ran = 0;
  for (size_t i = 0; i < ev->n_ls && !ev->aborted; i++) {
    stead__listener *l = ev->ls[i];
    atomic_fetch_add(&l->inflight, 1);
    if (atomic_load(&l->removed)) {
      invocation_end(b, l);
      continue;
    }
    ev->cur = l;
    ran++;
    int rc = l->fn(ev, l->udata);
    invocation_end(b, l);
    if (rc != 0)
      listener_failed(ev, l, rc);
    free(ev->fail_msg);
    ev->fail_msg = NULL;
  }
  ev->cur = NULL;
  frame_pop(&f);
  ev->result = (stead_emit_result){.status = ev->n_errs ? STEAD_EHANDLER : 0,
                                   .topic = ev->topic,
                                   .matched = ev->n_ls,
                                   .ran = ran,
                                   .aborted = ev->aborted,
                                   .errors = ev->errs,
                                   .n_errors = ev->n_errs,
                                   .payload = ev->payload,
                                   .len = ev->len};
}

static void run_job(void *job, void *arg) {
  stead_event *ev = job;
  stead_bus *b = arg;
  event_run(ev);
  atomic_fetch_add(ev->n_errs ? &b->failed : &b->succeeded, 1);
  if (ev->done) {
    frame f;
    frame_push(&f, b);
    ev->done(&ev->result, ev->udata);
    frame_pop(&f);
  }
  event_free(ev);
}

int stead_bus_emit(stead_bus *b, const char *topic, const void *payload, size_t len,
                   const stead_event_prop *props, size_t n_props, stead_emit_cb done,
                   void *udata) {
  stead_event *ev;
  int rc = event_prepare(b, topic, payload, len, props, n_props, &ev);
  if (rc)
    return rc;
  ev->done = done;
  ev->udata = udata;
  bool wait = b->cfg.wait_when_full && !inside(b) && !stead__pool_is_worker(b->pool);
  rc = stead__pool_submit(b->pool, ev, wait);
  if (rc)
    event_free(ev);
  return rc;
}

int stead_bus_emit_sync(stead_bus *b, const char *topic, const void *payload, size_t len,
                        const stead_event_prop *props, size_t n_props,
                        stead_emit_result **out) {
  if (out)
    *out = NULL;
  stead_event *ev;
  int rc = event_prepare(b, topic, payload, len, props, n_props, &ev);
  if (rc)
    return rc;
  event_run(ev);
  atomic_fetch_add(&b->sync_emits, 1);
  rc = ev->result.status;
  if (rc)
    stead__err(rc, "listener %s failed: %s", ev->errs[0].listener_id,
               ev->errs[0].message);
  if (out)
    *out = &ev->result;
  else
    event_free(ev);
  return rc;
}

void stead_emit_result_free(stead_emit_result *res) {
  if (res)
    event_free((stead_event *)((char *)res - offsetof(stead_event, result)));
}

int stead_bus_get_stats(stead_bus *b, stead_bus_stats *out) {
  if (!b || !out)
    return stead__err(STEAD_EINVAL, "bus or out is NULL");
  stead__pool_stats ps;
  stead__pool_stats_get(b->pool, &ps);
  memset(out, 0, sizeof *out);
  out->workers = ps.workers;
  out->running = ps.running;
  out->idle = ps.idle;
  out->waiting = ps.waiting;
  out->submitted = ps.submitted;
  out->rejected = ps.rejected;
  out->succeeded = atomic_load(&b->succeeded);
  out->failed = atomic_load(&b->failed);
  out->sync_emits = atomic_load(&b->sync_emits);
  out->listener_errors = atomic_load(&b->listener_errors);
  pthread_rwlock_rdlock(&b->lock);
  out->listeners = b->n_listeners;
  pthread_rwlock_unlock(&b->lock);
  return 0;
}

/* ---- event accessors ------------------------------------------------------------ */

const char *stead_event_topic(const stead_event *ev) {
  return ev ? ev->topic : NULL;
}

const void *stead_event_payload(const stead_event *ev, size_t *len) {
  if (len)
    *len = ev ? ev->len : 0;
  return ev ? ev->payload : NULL;
}

int stead_event_set_payload(stead_event *ev, const void *data, size_t len) {
  if (!ev || (len && !data))
    return stead__err(STEAD_EINVAL, "event or data is NULL");
  if (len > ev->bus->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %zu bytes; max_payload is %zu", len,
                      ev->bus->cfg.max_payload);
  uint8_t *copy = NULL;
  if (len && !(copy = stead__memdup(data, len)))
    return stead__err(STEAD_ENOMEM, "out of memory for a payload of %zu bytes", len);
  free(ev->payload);
  ev->payload = copy;
  ev->len = len;
  return 0;
}

const char *stead_event_property(const stead_event *ev, const char *key) {
  if (!ev || !key)
    return NULL;
  for (size_t i = 0; i < ev->n_props; i++)
    if (strcmp(ev->props[i].key, key) == 0)
      return ev->props[i].value;
  return NULL;
}

size_t stead_event_property_count(const stead_event *ev) {
  return ev ? ev->n_props : 0;
}

int stead_event_property_at(const stead_event *ev, size_t i, const char **key,
                            const char **value) {
  if (!ev || i >= ev->n_props)
    return stead__err(STEAD_ENOTFOUND, "no property at index %zu", i);
  if (key)
    *key = ev->props[i].key;
  if (value)
    *value = ev->props[i].value;
  return 0;
}

void stead_event_abort(stead_event *ev) {
  if (ev)
    ev->aborted = true;
}

int stead_event_aborted(const stead_event *ev) {
  return ev && ev->aborted;
}

const char *stead_event_listener_id(const stead_event *ev) {
  return ev && ev->cur ? ev->cur->id : NULL;
}

const char *stead_event_pattern(const stead_event *ev) {
  return ev && ev->cur ? ev->cur->pattern : NULL;
}

stead_bus *stead_event_bus(const stead_event *ev) {
  return ev ? ev->bus : NULL;
}

int stead_event_fail(stead_event *ev, const char *fmt, ...) {
  if (!ev)
    return STEAD_EHANDLER;
  if (!ev->fail_msg)
    ev->fail_msg = malloc(FAIL_MSG_MAX);
  if (ev->fail_msg) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->fail_msg, FAIL_MSG_MAX, fmt, ap);
    va_end(ap);
  }
  return STEAD_EHANDLER;
}
