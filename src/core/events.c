/*
 * events.c -- the runtime's side of the event bus: the bus the runtime
 * owns, transactional emits from turns, and objects as subscribers.
 *
 * Transactional emit: stead_emit copies the event into an effect of the
 * turn (stead__ctx_effect). The output gate releases it only after the
 * turn's commit is durable -- in the object's commit order --
 * and drops it if the turn or its commit fails. So a subscriber never sees
 * an event from a turn that did not happen.
 *
 * Ordering: the runtime's bus has ONE worker, so events run in the order
 * they were accepted; releases of one object's turns happen in commit
 * order; an object subscriber's turns are queued in that order. Hence
 * events from one object reach every subscriber in emit order.
 *
 * Object subscriptions: stead_subscribe writes key = pattern into the
 * object's STEAD__NS_SUB namespace in the turn (so it commits atomically
 * with the turn) and, as an effect, registers a bus listener after the
 * commit. The listener turns each matching event into an on_event turn of
 * the object (stead__deliver_event, which activates it). At open every
 * stored subscription is registered again (backend scan_ns), so they
 * survive restarts. A registry (cls, id, pattern) -> listener keeps one
 * listener per subscription and finds it again for stead_unsubscribe.
 *
 * Delivery is at most once per subscription per process: an event that
 * meets a full mailbox is dropped, counted and logged (rate-limited); an
 * event in flight when the process stops is lost.
 *
 * Threads: listeners run on the bus worker; emits and subscribe/
 * unsubscribe effects run wherever the core releases effects (a worker
 * or the committer). `mu` guards the registry and is never held while a listener
 * runs or while waiting for one (stead_bus_off is called after unlocking),
 * and listeners never take it, so there is no lock cycle with the bus.
 *
 * The bus lives in the runtime's STEAD__SLOT_BUS slot from stead_open
 * until stead_close has drained the last turn; effects released after
 * that find no bus and are dropped (counted).
 */
#include "core/events.h"
#include "bus/bus_internal.h"
#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a released emit waits for room on a full bus before it is
 * dropped (and counted): a bounded wait, so a stuck listener cannot stall
 * the committer forever. */
#define RELEASE_WAIT_MS 1000
/* Events queued on the runtime's bus before emits get EOVERLOAD. */
#define RT_BUS_QUEUE 65536

typedef struct sub {
  struct rtbus *rb;
  char *cls, *id, *pattern; /* one allocation with the struct */
  char lid[STEAD_BUS_ID_SIZE];
} sub;

typedef struct rtbus {
  stead_rt *rt;
  stead_bus *bus;
  pthread_mutex_t mu;
  stead__omap subs; /* "cls\0id\0pattern" -> sub * */
  /* Object deliveries by outcome. */
  atomic_uint_fast64_t delivered, dropped_full, dropped_closed, failed;
  /* Transactional emits: released, dropped with their turn, lost at
   * release (bus full past RELEASE_WAIT_MS, or gone). */
  atomic_uint_fast64_t tx_released, tx_discarded, tx_lost;
  atomic_uint_fast64_t register_failed;
  atomic_int_fast64_t last_log_ms; /* rate limit for drop warnings */
  atomic_uint_fast64_t unlogged;   /* drops since the last warning */
} rtbus;

static rtbus *get(stead_rt *rt) {
  return rt ? *stead__rt_slot(rt, STEAD__SLOT_BUS) : NULL;
}

stead_bus *stead_rt_bus(stead_rt *rt) {
  rtbus *rb = get(rt);
  return rb ? rb->bus : NULL;
}

/* ---- the pattern -> NATS subject mapping (the one place) ------------ */

int stead__nats_subjects(const char *pattern, char subj[2][STEAD__NATS_SUBJECT_MAX],
                         int *n, int *filter) {
  int rc = stead_pattern_validate(pattern);
  if (rc)
    return rc;
  /* Find the first "**" segment. */
  const char *p = pattern, *first = NULL;
  while (*p) {
    const char *e = strchr(p, '.');
    size_t sl = e ? (size_t)(e - p) : strlen(p);
    if (sl == 2 && p[0] == '*' && p[1] == '*') {
      first = p;
      break;
    }
    p = e ? e + 1 : p + sl;
  }
  if (!first) {
    snprintf(subj[0], STEAD__NATS_SUBJECT_MAX, "%s", pattern);
    *n = 1;
    *filter = 0;
    return 0;
  }
  size_t plen = (size_t)(first - pattern); /* "a.b." or "" */
  /* Is the rest all "**" segments (so zero more segments can match)? */
  int only_ds = 1, nrest = 0;
  for (const char *q = first; *q;) {
    const char *e = strchr(q, '.');
    size_t sl = e ? (size_t)(e - q) : strlen(q);
    if (!(sl == 2 && q[0] == '*' && q[1] == '*'))
      only_ds = 0;
    nrest++;
    q = e ? e + 1 : q + sl;
  }
  snprintf(subj[0], STEAD__NATS_SUBJECT_MAX, "%.*s>", (int)plen, pattern);
  *n = 1;
  if (only_ds && plen > 0) {
    /* "a.**" matches "a" itself; NATS "a.>" does not. */
    snprintf(subj[1], STEAD__NATS_SUBJECT_MAX, "%.*s", (int)plen - 1, pattern);
    *n = 2;
  }
  /* Exact iff the pattern ends with its only "**". */
  *filter = !(only_ds && nrest == 1);
  return 0;
}

/* ---- registry -------------------------------------------------------- */

static int regkey(stead__buf *k, const char *cls, const char *id, const char *pattern) {
  k->len = 0;
  return stead__buf_append(k, cls, strlen(cls) + 1) ||
                 stead__buf_append(k, id, strlen(id) + 1) ||
                 stead__buf_append(k, pattern, strlen(pattern))
             ? STEAD_ENOMEM
             : 0;
}

/* Warns about dropped deliveries at most once a second, with a count. */
static void warn_drop(rtbus *rb, const sub *s, const char *topic, const char *why) {
  int64_t now = stead__mono_ns() / 1000000;
  int64_t last = atomic_load(&rb->last_log_ms);
  if (now - last < 1000 ||
      !atomic_compare_exchange_strong(&rb->last_log_ms, &last, now)) {
    atomic_fetch_add(&rb->unlogged, 1);
    return;
  }
  uint64_t more = atomic_exchange(&rb->unlogged, 0);
  stead__log(rb->rt, STEAD_LOG_WARN,
             "event %s for %s/%s (subscription %s) dropped: %s (%llu more dropped "
             "since the last warning)",
             topic, s->cls, s->id, s->pattern, why, (unsigned long long)more);
}

static int on_bus_event(stead_event *ev, void *udata) {
  sub *s = udata;
  rtbus *rb = s->rb;
  /* In a cluster every node hears every event; the owner of the
   * subscribed object delivers it, the others let it pass. */
  if (!stead__cluster_owns(rb->rt, s->cls, s->id))
    return 0;
  size_t len;
  const void *p = stead_event_payload(ev, &len);
  const char *topic = stead_event_topic(ev);
  int rc = stead__deliver_event(rb->rt, s->cls, s->id, topic, p, len);
  if (rc == 0) {
    atomic_fetch_add(&rb->delivered, 1);
  } else if (rc == STEAD_EOVERLOAD) {
    atomic_fetch_add(&rb->dropped_full, 1);
    warn_drop(rb, s, topic, "the object's mailbox is full");
  } else if (rc == STEAD_ECLOSED) {
    atomic_fetch_add(&rb->dropped_closed, 1);
  } else {
    atomic_fetch_add(&rb->failed, 1);
    warn_drop(rb, s, topic, stead_errmsg());
  }
  /* The runtime accounts for it; the emitter is not the subscriber's
   * keeper, so its result does not carry the object's trouble. */
  return 0;
}

/* Registers a listener for (cls, id, pattern) unless one exists. */
static int sub_add(rtbus *rb, const char *cls, const char *id, const char *pattern) {
  stead__buf k = {0};
  if (regkey(&k, cls, id, pattern))
    return stead__err(STEAD_ENOMEM, "out of memory");
  int rc = 0;
  pthread_mutex_lock(&rb->mu);
  if (stead__omap_get(&rb->subs, k.data, k.len))
    goto out;
  size_t cl = strlen(cls) + 1, il = strlen(id) + 1, pl = strlen(pattern) + 1;
  sub *s = calloc(1, sizeof *s + cl + il + pl);
  if (!s) {
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  s->rb = rb;
  s->cls = (char *)(s + 1);
  s->id = s->cls + cl;
  s->pattern = s->id + il;
  memcpy(s->cls, cls, cl);
  memcpy(s->id, id, il);
  memcpy(s->pattern, pattern, pl);
  rc = stead_bus_on(rb->bus, pattern, on_bus_event, s, STEAD_PRIORITY_NORMAL, s->lid);
  if (!rc && stead__omap_put(&rb->subs, k.data, k.len, &s, sizeof s, 0)) {
    stead_bus_off(rb->bus, s->lid); /* waits for a delivery already running */
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (rc)
    free(s);
out:
  pthread_mutex_unlock(&rb->mu);
  stead__buf_free(&k);
  return rc;
}

/* Unregisters (cls, id, pattern); waits for a running delivery. */
static void sub_remove(rtbus *rb, const char *cls, const char *id, const char *pattern) {
  stead__buf k = {0};
  if (regkey(&k, cls, id, pattern))
    return;
  sub *s = NULL;
  pthread_mutex_lock(&rb->mu);
  stead__onode *n = stead__omap_get(&rb->subs, k.data, k.len);
  if (n) {
    memcpy(&s, n->val, sizeof s);
    stead__omap_del(&rb->subs, k.data, k.len);
  }
  pthread_mutex_unlock(&rb->mu);
  stead__buf_free(&k);
  if (s) {
    stead_bus_off(rb->bus, s->lid);
    free(s);
  }
}

static size_t sub_count(rtbus *rb) {
  pthread_mutex_lock(&rb->mu);
  size_t n = rb->subs.count;
  pthread_mutex_unlock(&rb->mu);
  return n;
}

/* ---- open / close ----------------------------------------------------- */

typedef struct reload {
  rtbus *rb;
  size_t n, failed;
  stead__buf pat;
} reload;

static int reload_cb(void *u, const char *cls, const char *id, const void *key,
                     size_t klen, const void *val, size_t vlen) {
  (void)val;
  (void)vlen;
  reload *r = u;
  r->pat.len = 0;
  if (stead__buf_append(&r->pat, key, klen) || stead__buf_append(&r->pat, "", 1))
    return STEAD_ENOMEM;
  int rc = sub_add(r->rb, cls, id, (const char *)r->pat.data);
  if (rc == STEAD_ENOMEM)
    return rc;
  if (rc) {
    /* A stored pattern this build refuses (e.g. lower limits): keep the
     * runtime up, say which. */
    r->failed++;
    stead__log(r->rb->rt, STEAD_LOG_ERROR, "subscription %s of %s/%s not restored: %s",
               (const char *)r->pat.data, cls, id, stead_errmsg());
  } else {
    r->n++;
  }
  return 0;
}

static void rtbus_free(rtbus *rb) {
  if (!rb)
    return;
  stead_bus_free(rb->bus);
  for (stead__onode *n = stead__omap_seek(&rb->subs, NULL, 0, STEAD__SEEK_GE); n;
       n = stead__omap_seek(&rb->subs, n->key, n->klen, STEAD__SEEK_GT)) {
    sub *s;
    memcpy(&s, n->val, sizeof s);
    free(s);
  }
  stead__omap_clear(&rb->subs);
  pthread_mutex_destroy(&rb->mu);
  free(rb);
}

int stead__bus_rt_open(stead_rt *rt) {
  rtbus *rb = calloc(1, sizeof *rb);
  if (!rb)
    return stead__err(STEAD_ENOMEM, "out of memory");
  rb->rt = rt;
  pthread_mutex_init(&rb->mu, NULL);
  stead__omap_init(&rb->subs);
  stead_bus_config bc;
  stead_bus_config_init(&bc);
  bc.workers = 1; /* events run in acceptance order (see the top) */
  bc.queue_capacity = RT_BUS_QUEUE;
  /* Manual mode: the simulation runs the bus's events itself. */
  int rc =
      rt->manual ? stead__bus_new_manual(&bc, &rb->bus) : stead_bus_new(&bc, &rb->bus);
  if (rc) {
    pthread_mutex_destroy(&rb->mu);
    free(rb);
    return rc;
  }
  stead__backend *b = stead__rt_backend(rt);
  reload r = {.rb = rb};
  rc = b->vt->scan_ns(b, STEAD__NS_SUB, reload_cb, &r);
  stead__buf_free(&r.pat);
  if (rc) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    rtbus_free(rb);
    return stead__err(rc, "cannot restore event subscriptions: %s", msg);
  }
  if (r.n || r.failed)
    stead__log(rt, STEAD_LOG_INFO, "restored %zu event subscriptions (%zu failed)", r.n,
               r.failed);
  *stead__rt_slot(rt, STEAD__SLOT_BUS) = rb;
  return 0;
}

int stead__bus_rt_run_one(stead_rt *rt) {
  rtbus *rb = get(rt);
  return rb ? stead__bus_run_one(rb->bus) : 0;
}

void stead__bus_rt_close(stead_rt *rt) {
  rtbus *rb = get(rt);
  if (!rb)
    return;
  *stead__rt_slot(rt, STEAD__SLOT_BUS) = NULL;
  rtbus_free(rb);
}

/* ---- transactional emit ---------------------------------------------- */

typedef struct txevent {
  stead_rt *rt;
  size_t len;
  char *topic;    /* points into the allocation */
  uint8_t data[]; /* payload, then the topic */
} txevent;

static void tx_release(void *arg) {
  txevent *e = arg;
  rtbus *rb = get(e->rt);
  if (!rb) {
    stead__log(e->rt, STEAD_LOG_WARN, "event %s committed after the bus closed; dropped",
               e->topic);
    free(e);
    return;
  }
  int rc;
  for (int waited = 0;; waited++) {
    rc = stead_bus_emit(rb->bus, e->topic, e->len ? e->data : NULL, e->len, NULL, 0, NULL,
                        NULL);
    if (rc != STEAD_EOVERLOAD || waited >= RELEASE_WAIT_MS)
      break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  if (rc == 0) {
    atomic_fetch_add(&rb->tx_released, 1);
    stead__cluster_emit(e->rt, e->topic, e->len ? e->data : NULL, e->len);
  } else {
    atomic_fetch_add(&rb->tx_lost, 1);
    stead__log(e->rt, STEAD_LOG_ERROR, "committed event %s not published: %s", e->topic,
               stead_errmsg());
  }
  free(e);
}

static void tx_drop(void *arg) {
  txevent *e = arg;
  rtbus *rb = get(e->rt);
  if (rb)
    atomic_fetch_add(&rb->tx_discarded, 1);
  free(e);
}

static int check_payload(const void *payload, size_t len) {
  if (len && !payload)
    return stead__err(STEAD_EINVAL, "payload is NULL but its length is %zu", len);
  stead_bus_config bc;
  stead_bus_config_init(&bc);
  if (len > bc.max_payload)
    return stead__err(STEAD_ETOOBIG, "event payload is %zu bytes; the limit is %zu", len,
                      bc.max_payload);
  return 0;
}

int stead_emit(stead_ctx *ctx, const char *topic, const void *payload, size_t len) {
  stead_rt *rt = ctx ? stead__ctx_rt(ctx) : NULL;
  if (!rt || !stead__ctx_store(ctx))
    return stead__err(STEAD_EMISUSE, "stead_emit needs a turn's ctx");
  int rc;
  if (!topic)
    return stead__err(STEAD_EINVAL, "topic is NULL");
  if ((rc = stead_topic_validate(topic)) || (rc = check_payload(payload, len)))
    return rc;
  size_t tl = strlen(topic) + 1;
  txevent *e = malloc(sizeof *e + len + tl);
  if (!e)
    return stead__err(STEAD_ENOMEM, "out of memory");
  e->rt = rt;
  e->len = len;
  if (len)
    memcpy(e->data, payload, len);
  e->topic = (char *)e->data + len;
  memcpy(e->topic, topic, tl);
  if ((rc = stead__ctx_effect(ctx, tx_release, tx_drop, e)) != 0)
    free(e);
  return rc;
}

int stead_emit_rt(stead_rt *rt, const char *topic, const void *payload, size_t len) {
  rtbus *rb = get(rt);
  if (!rb)
    return stead__err(rt ? STEAD_ECLOSED : STEAD_EINVAL,
                      rt ? "runtime is closing" : "runtime is NULL");
  if (!topic)
    return stead__err(STEAD_EINVAL, "topic is NULL");
  int rc = stead_bus_emit(rb->bus, topic, payload, len, NULL, 0, NULL, NULL);
  if (rc == 0)
    stead__cluster_emit(rt, topic, payload, len);
  return rc;
}

int stead__bus_rt_remote(stead_rt *rt, const char *topic, const void *payload,
                         size_t len) {
  rtbus *rb = get(rt);
  if (!rb)
    return stead__err(STEAD_ECLOSED, "runtime is closing");
  return stead_bus_emit(rb->bus, topic, payload, len, NULL, 0, NULL, NULL);
}

/* ---- cluster: subscriptions of newly owned shards ----------------------- */

typedef struct refresh {
  rtbus *rb;
  const unsigned char *bits; /* shards to refresh */
  stead__omap seen;          /* registry keys found in storage */
  stead__buf key, pat;
  size_t added;
} refresh;

static bool bit_set(const unsigned char *bits, uint32_t shard) {
  return bits[shard / 8] & (1u << (shard % 8));
}

static int refresh_cb(void *u, const char *cls, const char *id, const void *key,
                      size_t klen, const void *val, size_t vlen) {
  (void)val;
  (void)vlen;
  refresh *r = u;
  if (!bit_set(r->bits, stead__cluster_shard(r->rb->rt, cls, id)))
    return 0;
  r->pat.len = 0;
  if (stead__buf_append(&r->pat, key, klen) || stead__buf_append(&r->pat, "", 1) ||
      regkey(&r->key, cls, id, (const char *)r->pat.data) ||
      stead__omap_put(&r->seen, r->key.data, r->key.len, "", 0, 0))
    return STEAD_ENOMEM;
  if (sub_add(r->rb, cls, id, (const char *)r->pat.data) == 0)
    r->added++;
  return 0;
}

int stead__bus_rt_refresh(stead_rt *rt, const unsigned char *bits) {
  rtbus *rb = get(rt);
  if (!rb)
    return 0;
  refresh r = {.rb = rb, .bits = bits};
  stead__omap_init(&r.seen);
  stead__backend *b = stead__rt_backend(rt);
  int rc = b->vt->scan_ns(b, STEAD__NS_SUB, refresh_cb, &r);
  /* Registered here but gone from storage (unsubscribed while another
   * node owned the object): unregister, but only after a complete scan. */
  stead__buf gone = {0};
  if (rc == 0) {
    pthread_mutex_lock(&rb->mu);
    for (stead__onode *n = stead__omap_seek(&rb->subs, NULL, 0, STEAD__SEEK_GE); n;
         n = stead__omap_seek(&rb->subs, n->key, n->klen, STEAD__SEEK_GT)) {
      sub *sp;
      memcpy(&sp, n->val, sizeof sp);
      if (!bit_set(bits, stead__cluster_shard(rt, sp->cls, sp->id)) ||
          stead__omap_get(&r.seen, n->key, n->klen))
        continue;
      if (stead__buf_append(&gone, n->key, n->klen) || stead__buf_append(&gone, "", 1)) {
        rc = stead__err(STEAD_ENOMEM, "out of memory");
        break;
      }
    }
    pthread_mutex_unlock(&rb->mu);
  }
  /* gone holds "cls\0id\0pattern\0" records. */
  for (size_t off = 0; rc == 0 && off < gone.len;) {
    const char *cls = (const char *)gone.data + off;
    const char *id = cls + strlen(cls) + 1;
    const char *pattern = id + strlen(id) + 1;
    sub_remove(rb, cls, id, pattern);
    off = (size_t)(pattern - (const char *)gone.data) + strlen(pattern) + 1;
  }
  stead__buf_free(&gone);
  stead__buf_free(&r.key);
  stead__buf_free(&r.pat);
  stead__omap_clear(&r.seen);
  return rc;
}

/* ---- subscriptions ----------------------------------------------------- */

typedef struct subfx {
  stead_rt *rt;
  int add;
  char *cls, *id;
  char pattern[]; /* then cls, then id */
} subfx;

static void subfx_release(void *arg) {
  subfx *f = arg;
  rtbus *rb = get(f->rt);
  if (rb && f->add) {
    int rc = sub_add(rb, f->cls, f->id, f->pattern);
    if (rc) {
      atomic_fetch_add(&rb->register_failed, 1);
      stead__log(f->rt, STEAD_LOG_ERROR,
                 "subscription %s of %s/%s is stored but not active until restart: %s",
                 f->pattern, f->cls, f->id, stead_errmsg());
    }
  } else if (rb) {
    sub_remove(rb, f->cls, f->id, f->pattern);
  }
  free(f);
}

static void subfx_drop(void *arg) {
  free(arg);
}

static int sub_effect(stead_ctx *ctx, const char *pattern, int add) {
  const char *cls = stead_class_name(ctx), *id = stead_object_id(ctx);
  size_t pl = strlen(pattern) + 1, cl = strlen(cls) + 1, il = strlen(id) + 1;
  subfx *f = malloc(sizeof *f + pl + cl + il);
  if (!f)
    return stead__err(STEAD_ENOMEM, "out of memory");
  f->rt = stead__ctx_rt(ctx);
  f->add = add;
  memcpy(f->pattern, pattern, pl);
  f->cls = f->pattern + pl;
  memcpy(f->cls, cls, cl);
  f->id = f->cls + cl;
  memcpy(f->id, id, il);
  int rc = stead__ctx_effect(ctx, subfx_release, subfx_drop, f);
  if (rc)
    free(f);
  return rc;
}

static int count_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  (void)k;
  (void)kl;
  (void)v;
  (void)vl;
  ++*(size_t *)u;
  return 0;
}

/* Common checks; *os receives the turn's store. */
static int sub_check(stead_ctx *ctx, const char *pattern, stead__objstore **os) {
  *os = stead__ctx_store(ctx);
  if (!*os || !stead__objstore_in_turn(*os))
    return stead__err(STEAD_EMISUSE, "subscriptions change only inside a turn");
  if (!pattern)
    return stead__err(STEAD_EINVAL, "pattern is NULL");
  return stead_pattern_validate(pattern);
}

int stead_subscribe(stead_ctx *ctx, const char *pattern) {
  stead__objstore *os;
  int rc = sub_check(ctx, pattern, &os);
  if (rc)
    return rc;
  const stead__class_rec *crec =
      stead__class_find(stead__ctx_rt(ctx), stead_class_name(ctx));
  if (!crec || !crec->cls->on_event)
    return stead__err(STEAD_ENOTSUP,
                      "class \"%s\" has no on_event hook to receive events",
                      stead_class_name(ctx));
  size_t pl = strlen(pattern);
  rc = stead__objstore_get(os, STEAD__NS_SUB, pattern, pl, NULL, NULL);
  if (rc == 0)
    return 0; /* already subscribed (maybe earlier in this turn) */
  if (rc != STEAD_ENOTFOUND)
    return rc;
  size_t n = 0;
  stead__list_opts lo = {.limit = STEAD_MAX_SUBSCRIPTIONS};
  if ((rc = stead__objstore_list(os, STEAD__NS_SUB, &lo, count_cb, &n)) != 0)
    return rc;
  if (n >= STEAD_MAX_SUBSCRIPTIONS)
    return stead__err(STEAD_ETOOBIG, "%s/%s already has %d subscriptions, the limit",
                      stead_class_name(ctx), stead_object_id(ctx),
                      STEAD_MAX_SUBSCRIPTIONS);
  if ((rc = stead__objstore_put(os, STEAD__NS_SUB, pattern, pl, "", 0)) != 0)
    return rc;
  /* The write is in the turn; if the effect cannot be queued the turn
   * must not commit a subscription nobody registers: fail the call, and
   * the handler's error fails the turn. */
  if ((rc = sub_effect(ctx, pattern, 1)) != 0)
    stead__objstore_del(os, STEAD__NS_SUB, pattern, pl);
  return rc;
}

int stead_unsubscribe(stead_ctx *ctx, const char *pattern) {
  stead__objstore *os;
  int rc = sub_check(ctx, pattern, &os);
  if (rc)
    return rc;
  size_t pl = strlen(pattern);
  rc = stead__objstore_get(os, STEAD__NS_SUB, pattern, pl, NULL, NULL);
  if (rc == STEAD_ENOTFOUND)
    return stead__err(STEAD_ENOTFOUND, "%s/%s is not subscribed to %s",
                      stead_class_name(ctx), stead_object_id(ctx), pattern);
  if (rc)
    return rc;
  if ((rc = stead__objstore_del(os, STEAD__NS_SUB, pattern, pl)) != 0)
    return rc;
  if ((rc = sub_effect(ctx, pattern, 0)) != 0)
    stead__objstore_put(os, STEAD__NS_SUB, pattern, pl, "", 0);
  return rc;
}

typedef struct sublist {
  stead__buf strs;
  size_t n;
} sublist;

static int list_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  (void)v;
  (void)vl;
  sublist *l = u;
  l->n++;
  return stead__buf_append(&l->strs, k, kl) || stead__buf_append(&l->strs, "", 1)
             ? STEAD_ENOMEM
             : 0;
}

int stead_subscriptions(stead_ctx *ctx, char ***out, size_t *n) {
  if (!out || !n)
    return stead__err(STEAD_EINVAL, "out and n must not be NULL");
  *out = NULL;
  *n = 0;
  stead__objstore *os = stead__ctx_store(ctx);
  if (!os || !stead__objstore_in_turn(os))
    return stead__err(STEAD_EMISUSE, "stead_subscriptions needs a turn's ctx");
  sublist l = {0};
  stead__list_opts all = {0};
  int rc = stead__objstore_list(os, STEAD__NS_SUB, &all, list_cb, &l);
  if (rc || l.n == 0) {
    stead__buf_free(&l.strs);
    return rc == STEAD_ENOMEM ? stead__err(rc, "out of memory") : rc;
  }
  /* One allocation: the pointer array, then the strings. */
  char **arr = malloc(l.n * sizeof *arr + l.strs.len);
  if (!arr) {
    stead__buf_free(&l.strs);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  char *s = (char *)(arr + l.n);
  memcpy(s, l.strs.data, l.strs.len);
  for (size_t i = 0; i < l.n; i++) {
    arr[i] = s;
    s += strlen(s) + 1;
  }
  stead__buf_free(&l.strs);
  *out = arr;
  *n = l.n;
  return 0;
}

/* ---- metrics ------------------------------------------------------------ */

static int metric(stead__buf *b, const char *name, const char *labels, uint64_t v) {
  return stead__metric_value(b, name, labels, (double)v);
}

int stead__bus_rt_metrics(stead_rt *rt, stead__buf *b) {
  rtbus *rb = get(rt);
  if (!rb)
    return 0;
  stead_bus_stats st;
  stead_bus_get_stats(rb->bus, &st);
  int rc = 0;
  rc |= stead__metric_header(b, "stead_bus_emits_total", "counter",
                             "Events emitted on the runtime's bus, by outcome.");
  rc |= metric(b, "stead_bus_emits_total", "outcome=\"succeeded\"", st.succeeded);
  rc |= metric(b, "stead_bus_emits_total", "outcome=\"failed\"", st.failed);
  rc |= metric(b, "stead_bus_emits_total", "outcome=\"rejected\"", st.rejected);
  rc |= stead__metric_header(b, "stead_bus_pool_workers", "gauge",
                             "Bus pool workers by state.");
  rc |= metric(b, "stead_bus_pool_workers", "state=\"running\"", st.running);
  rc |= metric(b, "stead_bus_pool_workers", "state=\"idle\"", st.idle);
  rc |= stead__metric_header(b, "stead_bus_queue_waiting", "gauge",
                             "Events accepted and waiting for a bus worker.");
  rc |= metric(b, "stead_bus_queue_waiting", NULL, st.waiting);
  rc |= stead__metric_header(b, "stead_bus_listeners", "gauge", "Registered listeners.");
  rc |= metric(b, "stead_bus_listeners", NULL, st.listeners);
  rc |= stead__metric_header(b, "stead_bus_listener_errors_total", "counter",
                             "Listener failures on the runtime's bus.");
  rc |= metric(b, "stead_bus_listener_errors_total", NULL, st.listener_errors);
  rc |= stead__metric_header(b, "stead_bus_subscriptions", "gauge",
                             "Object subscriptions with a live listener.");
  rc |= metric(b, "stead_bus_subscriptions", NULL, sub_count(rb));
  rc |= stead__metric_header(
      b, "stead_bus_object_events_total", "counter",
      "Events for subscribed objects, by outcome (dropped_full: mailbox full).");
  rc |= metric(b, "stead_bus_object_events_total", "outcome=\"delivered\"",
               atomic_load(&rb->delivered));
  rc |= metric(b, "stead_bus_object_events_total", "outcome=\"dropped_full\"",
               atomic_load(&rb->dropped_full));
  rc |= metric(b, "stead_bus_object_events_total", "outcome=\"dropped_closed\"",
               atomic_load(&rb->dropped_closed));
  rc |= metric(b, "stead_bus_object_events_total", "outcome=\"failed\"",
               atomic_load(&rb->failed));
  rc |= stead__metric_header(b, "stead_bus_tx_emits_total", "counter",
                             "Emits from turns (stead_emit), by outcome: released "
                             "after commit, discarded with a failed turn, lost.");
  rc |= metric(b, "stead_bus_tx_emits_total", "outcome=\"released\"",
               atomic_load(&rb->tx_released));
  rc |= metric(b, "stead_bus_tx_emits_total", "outcome=\"discarded\"",
               atomic_load(&rb->tx_discarded));
  rc |= metric(b, "stead_bus_tx_emits_total", "outcome=\"lost\"",
               atomic_load(&rb->tx_lost));
  return rc ? STEAD_ENOMEM : 0;
}
