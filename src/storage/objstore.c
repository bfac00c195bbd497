/*
 * objstore.c -- per-activation storage (contract in objstore.h).
 *
 * Owns: the open turn's pending write set, the list of in-flight sets (one
 * reference each, in submission order), the read cache (key = ns byte +
 * key; TOMB flag marks a cached "absent"), the generation.
 *
 * Invariants: the in-flight list only shrinks from other threads (durable
 * or failed sets leave it) and only grows at turn_end, on the turn thread,
 * so a read on the turn thread can look at the list, then at the backend,
 * without missing data: a set that leaves the list in between is already
 * in the backend. The cache only ever holds durable values: backend reads
 * and sets reported durable.
 */
#include "storage/objstore.h"
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct stead__objstore {
  stead__backend *b;
  char *cls, *id;
  stead__objstore_opts o;
  /* turn thread only */
  int in_turn;
  uint64_t turn_gen;
  stead__wset *pending;
  /* guarded by mu */
  pthread_mutex_t mu;
  stead__wset **fl;
  size_t nfl, capfl;
  stead__omap cache;
  /* Written under mu; atomic so turn_begin and gen() can read it without
   * taking the lock on every turn. */
  _Atomic uint64_t gen;
};

int stead__objstore_new(stead__backend *b, const char *cls, const char *id,
                        const stead__objstore_opts *opts, stead__objstore **out) {
  stead__objstore *os = calloc(1, sizeof *os);
  if (!os || !(os->cls = stead__strdup(cls)) || !(os->id = stead__strdup(id))) {
    if (os)
      free(os->cls);
    free(os);
    return stead__err(STEAD_ENOMEM, "out of memory creating an object store");
  }
  os->b = b;
  os->o.max_key = STEAD__MAX_KEY;
  os->o.max_value = STEAD__MAX_VALUE;
  os->o.max_wset = STEAD__MAX_WSET;
  os->o.max_cache = 8u << 20;
  if (opts) {
    if (opts->max_key)
      os->o.max_key = opts->max_key;
    if (opts->max_value)
      os->o.max_value = opts->max_value;
    if (opts->max_wset)
      os->o.max_wset = opts->max_wset;
    if (opts->max_cache)
      os->o.max_cache = opts->max_cache;
  }
  pthread_mutex_init(&os->mu, NULL);
  stead__omap_init(&os->cache);
  *out = os;
  return 0;
}

void stead__objstore_free(stead__objstore *os) {
  if (!os)
    return;
  stead__wset_unref(os->pending);
  for (size_t i = 0; i < os->nfl; i++)
    stead__wset_unref(os->fl[i]);
  free(os->fl);
  stead__omap_clear(&os->cache);
  pthread_mutex_destroy(&os->mu);
  free(os->cls);
  free(os->id);
  free(os);
}

/* ---- turns ---- */

int stead__objstore_turn_begin(stead__objstore *os) {
  if (os->in_turn)
    return stead__err(STEAD_EMISUSE, "a storage turn is already open");
  os->in_turn = 1;
  os->turn_gen = atomic_load(&os->gen);
  return 0;
}

int stead__objstore_in_turn(const stead__objstore *os) {
  return os->in_turn;
}

int stead__objstore_turn_end(stead__objstore *os, int ok, stead__wset **out) {
  *out = NULL;
  if (!os->in_turn)
    return stead__err(STEAD_EMISUSE, "no storage turn is open");
  os->in_turn = 0;
  stead__wset *ws = os->pending;
  os->pending = NULL;
  if (!ok || !ws) {
    stead__wset_unref(ws);
    return 0;
  }
  pthread_mutex_lock(&os->mu);
  int rc = 0;
  if (os->gen != os->turn_gen) {
    rc = stead__err(STEAD_ECANCELED, "an earlier turn's commit failed; this turn's "
                                     "writes were based on it and are discarded");
  } else if (os->nfl == os->capfl) {
    size_t cap = os->capfl ? os->capfl * 2 : 4;
    stead__wset **n = realloc(os->fl, cap * sizeof *n);
    if (!n)
      rc = stead__err(STEAD_ENOMEM, "out of memory ending a turn");
    else
      os->fl = n, os->capfl = cap;
  }
  if (!rc) {
    ws->gen = os->gen;
    stead__wset_ref(ws);
    os->fl[os->nfl++] = ws;
  }
  pthread_mutex_unlock(&os->mu);
  if (rc) {
    stead__wset_unref(ws);
    return rc;
  }
  *out = ws;
  return 0;
}

/* ---- writes ---- */

static int writable(stead__objstore *os, size_t klen, size_t vlen) {
  if (!os->in_turn)
    return stead__err(STEAD_EMISUSE, "storage writes need an open turn");
  if (klen > os->o.max_key)
    return stead__err(STEAD_ETOOBIG, "key is %zu bytes; the limit is %zu", klen,
                      os->o.max_key);
  if (vlen > os->o.max_value)
    return stead__err(STEAD_ETOOBIG, "value is %zu bytes; the limit is %zu", vlen,
                      os->o.max_value);
  if (!os->pending && !(os->pending = stead__wset_new(os->cls, os->id)))
    return stead__err(STEAD_ENOMEM, "out of memory");
  return 0;
}

static int over_limit(stead__objstore *os, size_t add, size_t drop) {
  size_t after = os->pending->bytes - drop + add;
  if (after > os->o.max_wset)
    return stead__err(STEAD_ETOOBIG,
                      "the turn's writes would be %zu bytes; the limit is %zu", after,
                      os->o.max_wset);
  return 0;
}

static size_t pending_cost(stead__objstore *os, uint8_t ns, const void *key,
                           size_t klen) {
  uint8_t stackkey[256];
  uint8_t *k = klen + 1 <= sizeof stackkey ? stackkey : malloc(klen + 1);
  if (!k)
    return 0;
  k[0] = ns;
  if (klen)
    memcpy(k + 1, key, klen);
  stead__onode *n = stead__omap_get(&os->pending->kv, k, klen + 1);
  size_t c = n ? stead__wset_cost(klen, n->vlen) : 0;
  if (k != stackkey)
    free(k);
  return c;
}

static int kv_write(stead__objstore *os, uint8_t ns, const void *key, size_t klen,
                    const void *val, size_t vlen, int del) {
  if (ns >= STEAD__NS_MAX)
    return stead__err(STEAD_EINVAL, "namespace %u out of range", ns);
  int rc = writable(os, klen, vlen);
  if (rc)
    return rc;
  rc = over_limit(os, stead__wset_cost(klen, vlen), pending_cost(os, ns, key, klen));
  if (rc)
    return rc;
  rc = del ? stead__wset_del(os->pending, ns, key, klen)
           : stead__wset_put(os->pending, ns, key, klen, val, vlen);
  return rc ? stead__err(rc, "out of memory") : 0;
}

int stead__objstore_put(stead__objstore *os, uint8_t ns, const void *key, size_t klen,
                        const void *val, size_t vlen) {
  return kv_write(os, ns, key, klen, val, vlen, 0);
}

int stead__objstore_del(stead__objstore *os, uint8_t ns, const void *key, size_t klen) {
  return kv_write(os, ns, key, klen, NULL, 0, 1);
}

int stead__objstore_delete_all(stead__objstore *os, uint8_t ns) {
  if (ns >= STEAD__NS_MAX)
    return stead__err(STEAD_EINVAL, "namespace %u out of range", ns);
  int rc = writable(os, 0, 0);
  if (rc)
    return rc;
  stead__wset_delete_all(os->pending, ns);
  return 0;
}

static int check_alarm_name(const char *name) {
  if (!name)
    return stead__err(STEAD_EINVAL, "alarm name is NULL");
  return stead__check_utf8("alarm name", name, STEAD__MAX_NAME);
}

int stead__objstore_alarm_set(stead__objstore *os, const char *name, int64_t at_ms,
                              uint32_t attempt, const void *meta, size_t meta_len) {
  int rc = check_alarm_name(name);
  if (rc)
    return rc;
  if (meta_len > STEAD__MAX_ALARM_META)
    return stead__err(STEAD_ETOOBIG, "alarm meta is %zu bytes; the limit is %u", meta_len,
                      STEAD__MAX_ALARM_META);
  if ((rc = writable(os, 0, 0)))
    return rc;
  if ((rc = over_limit(os, stead__wset_cost(strlen(name), 12 + meta_len), 0)))
    return rc;
  rc = stead__wset_alarm_set(os->pending, name, at_ms, attempt, meta, meta_len);
  return rc ? stead__err(rc, "out of memory") : 0;
}

int stead__objstore_alarm_del(stead__objstore *os, const char *name) {
  int rc = check_alarm_name(name);
  if (!rc)
    rc = writable(os, 0, 0);
  if (!rc)
    rc = over_limit(os, stead__wset_cost(strlen(name), 0), 0);
  if (!rc && stead__wset_alarm_del(os->pending, name))
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  return rc;
}

int stead__objstore_alarms_clear(stead__objstore *os) {
  int rc = writable(os, 0, 0);
  if (!rc)
    stead__wset_alarms_clear(os->pending);
  return rc;
}

/* ---- reads ---- */

/* Looks key up in one set: 1 found (value or tombstone in *n; *n NULL and
 * 1 when the namespace was cleared), 0 not decided by this set. */
static int set_lookup(const stead__wset *ws, const uint8_t *k, size_t kl,
                      stead__onode **n) {
  *n = stead__omap_get(&ws->kv, k, kl);
  if (*n)
    return 1;
  return (ws->clear_mask >> k[0]) & 1 ? 1 : 0;
}

static int answer(stead__onode *n, void **val, size_t *vlen) {
  if (!n || (n->flags & STEAD__TOMB))
    return STEAD_ENOTFOUND;
  if (val) {
    *val = stead__memdup(n->val, n->vlen + 1);
    if (!*val)
      return stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (vlen)
    *vlen = n->vlen;
  return 0;
}

static void cache_put(stead__objstore *os, const uint8_t *k, size_t kl, const void *v,
                      size_t vl, uint32_t flags) {
  if (os->cache.bytes + kl + vl > os->o.max_cache)
    stead__omap_clear(&os->cache);
  if (kl + vl <= os->o.max_cache)
    stead__omap_put(&os->cache, k, kl, v, vl, flags); /* best effort */
}

int stead__objstore_get(stead__objstore *os, uint8_t ns, const void *key, size_t klen,
                        void **val, size_t *vlen) {
  if (ns >= STEAD__NS_MAX)
    return stead__err(STEAD_EINVAL, "namespace %u out of range", ns);
  if (klen > os->o.max_key)
    return stead__err(STEAD_ETOOBIG, "key is %zu bytes; the limit is %zu", klen,
                      os->o.max_key);
  uint8_t *k = malloc(klen + 1);
  if (!k)
    return stead__err(STEAD_ENOMEM, "out of memory");
  k[0] = ns;
  if (klen)
    memcpy(k + 1, key, klen);
  stead__onode *n;
  int rc;
  if (os->pending && set_lookup(os->pending, k, klen + 1, &n)) {
    rc = answer(n, val, vlen);
    goto out;
  }
  pthread_mutex_lock(&os->mu);
  for (size_t i = os->nfl; i-- > 0;) {
    if (set_lookup(os->fl[i], k, klen + 1, &n)) {
      rc = answer(n, val, vlen);
      pthread_mutex_unlock(&os->mu);
      goto out;
    }
  }
  if ((n = stead__omap_get(&os->cache, k, klen + 1))) {
    rc = answer(n, val, vlen);
    pthread_mutex_unlock(&os->mu);
    goto out;
  }
  uint64_t gen = os->gen;
  pthread_mutex_unlock(&os->mu);
  void *v = NULL;
  size_t vl = 0;
  rc = os->b->vt->get(os->b, os->cls, os->id, ns, key, klen, &v, &vl);
  if (rc == 0 || rc == STEAD_ENOTFOUND) {
    pthread_mutex_lock(&os->mu);
    if (os->gen == gen)
      cache_put(os, k, klen + 1, v, vl, rc ? STEAD__TOMB : 0);
    pthread_mutex_unlock(&os->mu);
  }
  if (rc == 0) {
    if (val)
      *val = v;
    else
      free(v);
    if (vlen)
      *vlen = vl;
  }
out:
  free(k);
  return rc;
}

/* One item of the backend side of a merged listing. */
typedef struct kvcopy {
  uint8_t *k, *v;
  size_t kl, vl;
} kvcopy;

typedef struct collect {
  kvcopy *a;
  size_t n, cap;
} collect;

static int collect_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  collect *c = u;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    kvcopy *na = realloc(c->a, cap * sizeof *na);
    if (!na)
      return STEAD_ENOMEM;
    c->a = na, c->cap = cap;
  }
  kvcopy *e = &c->a[c->n];
  e->k = malloc(kl + vl + 1);
  if (!e->k)
    return STEAD_ENOMEM;
  if (kl)
    memcpy(e->k, k, kl);
  e->v = e->k + kl;
  if (vl)
    memcpy(e->v, v, vl);
  e->kl = kl, e->vl = vl;
  c->n++;
  return 0;
}

/* Overlays one set's entries of ns inside the range onto `ov`. */
static int overlay_set(stead__omap *ov, int *cleared, const stead__wset *ws, uint8_t ns,
                       const stead__range *r) {
  if ((ws->clear_mask >> ns) & 1) {
    *cleared = 1;
    stead__omap_clear(ov);
  }
  for (stead__onode *e = stead__omap_seek(&ws->kv, &ns, 1, STEAD__SEEK_GE);
       e && e->key[0] == ns;
       e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT)) {
    if (!stead__range_has(r, e->key + 1, e->klen - 1))
      continue;
    if (stead__omap_put(ov, e->key + 1, e->klen - 1, e->val, e->vlen, e->flags))
      return STEAD_ENOMEM;
  }
  return 0;
}

static stead__onode *ov_first(const stead__omap *ov, int rev) {
  return stead__omap_seek(ov, NULL, 0, rev ? STEAD__SEEK_LE : STEAD__SEEK_GE);
}

static stead__onode *ov_next(const stead__omap *ov, const stead__onode *n, int rev) {
  return stead__omap_seek(ov, n->key, n->klen, rev ? STEAD__SEEK_LT : STEAD__SEEK_GT);
}

/* Walks base (sorted in the listing direction) and the overlay together:
 * overlay entries win on equal keys, tombstones hide keys. */
static int merge_emit(const collect *base, const stead__omap *ov, const stead__range *r,
                      stead__kv_cb cb, void *u) {
  size_t i = 0, out = 0;
  stead__onode *o = ov_first(ov, r->reverse);
  int dir = r->reverse ? -1 : 1;
  while ((i < base->n || o) && (!r->limit || out < r->limit)) {
    int c;
    if (i >= base->n)
      c = 1;
    else if (!o)
      c = -1;
    else
      c = dir * stead__keycmp(base->a[i].k, base->a[i].kl, o->key, o->klen);
    int rc = 0;
    if (c < 0) { /* base only */
      rc = cb(u, base->a[i].k, base->a[i].kl, base->a[i].v, base->a[i].vl);
      out++;
      i++;
    } else {
      if (c == 0)
        i++;
      if (!(o->flags & STEAD__TOMB)) {
        rc = cb(u, o->key, o->klen, o->val, o->vlen);
        out++;
      }
      o = ov_next(ov, o, r->reverse);
    }
    if (rc)
      return rc < 0 ? rc : 0;
  }
  return 0;
}

int stead__objstore_list(stead__objstore *os, uint8_t ns, const stead__list_opts *o,
                         stead__kv_cb cb, void *u) {
  if (ns >= STEAD__NS_MAX)
    return stead__err(STEAD_EINVAL, "namespace %u out of range", ns);
  stead__range r;
  int rc = stead__range_make(o, &r);
  if (rc)
    return rc;
  if (stead__range_empty(&r)) {
    stead__range_free(&r);
    return 0;
  }
  /* Snapshot the in-flight sets BEFORE reading the backend (see top). */
  pthread_mutex_lock(&os->mu);
  size_t nsets = os->nfl;
  stead__wset **sets = malloc((nsets + 1) * sizeof *sets);
  if (sets)
    for (size_t i = 0; i < nsets; i++) {
      sets[i] = os->fl[i];
      stead__wset_ref(sets[i]);
    }
  pthread_mutex_unlock(&os->mu);
  if (!sets) {
    stead__range_free(&r);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (os->pending)
    sets[nsets++] = os->pending, stead__wset_ref(os->pending);
  stead__omap ov;
  stead__omap_init(&ov);
  int cleared = 0;
  for (size_t i = 0; i < nsets && !rc; i++)
    rc = overlay_set(&ov, &cleared, sets[i], ns, &r);
  collect base = {0};
  if (!rc && !cleared) {
    /* Each tombstone can hide one backend key: read that many more. */
    size_t tombs = 0;
    for (stead__onode *e = ov_first(&ov, 0); e; e = ov_next(&ov, e, 0))
      tombs += e->flags & STEAD__TOMB ? 1 : 0;
    stead__range br = r;
    br.limit = r.limit ? r.limit + tombs : 0;
    rc = os->b->vt->list(os->b, os->cls, os->id, ns, &br, collect_cb, &base);
  }
  if (!rc)
    rc = merge_emit(&base, &ov, &r, cb, u);
  else if (rc == STEAD_ENOMEM)
    rc = stead__err(rc, "out of memory listing keys");
  for (size_t i = 0; i < base.n; i++)
    free(base.a[i].k);
  free(base.a);
  stead__omap_clear(&ov);
  for (size_t i = 0; i < nsets; i++)
    stead__wset_unref(sets[i]);
  free(sets);
  stead__range_free(&r);
  return rc;
}

/* ---- commit outcomes ---- */

static size_t find_set(stead__objstore *os, stead__wset *ws) {
  for (size_t i = 0; i < os->nfl; i++)
    if (os->fl[i] == ws)
      return i;
  return (size_t)-1;
}

void stead__objstore_on_durable(stead__objstore *os, stead__wset *ws) {
  pthread_mutex_lock(&os->mu);
  size_t i = find_set(os, ws);
  if (i != (size_t)-1) {
    memmove(&os->fl[i], &os->fl[i + 1], (os->nfl - i - 1) * sizeof *os->fl);
    os->nfl--;
    /* Durable data may enter the cache. */
    for (int ns = 0; ns < STEAD__NS_MAX; ns++) {
      if (!((ws->clear_mask >> ns) & 1))
        continue;
      uint8_t b = (uint8_t)ns;
      stead__onode *n;
      while ((n = stead__omap_seek(&os->cache, &b, 1, STEAD__SEEK_GE)) && n->key[0] == b)
        stead__omap_del(&os->cache, n->key, n->klen);
    }
    /* A durable delete leaves nothing to cache: the backend no longer has
     * the key. Caching its tombstone made an object that keeps writing
     * new keys and trimming old ones (a chat history) grow by every
     * deleted key, up to max_cache (the soak showed it). */
    for (stead__onode *e = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); e;
         e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT)) {
      if (e->flags & STEAD__TOMB)
        stead__omap_del(&os->cache, e->key, e->klen);
      else
        cache_put(os, e->key, e->klen, e->val, e->vlen, e->flags);
    }
    stead__wset_unref(ws);
  }
  pthread_mutex_unlock(&os->mu);
}

int stead__objstore_on_failed(stead__objstore *os, stead__wset *ws) {
  pthread_mutex_lock(&os->mu);
  size_t i = find_set(os, ws);
  int later = 0;
  if (i != (size_t)-1) {
    for (size_t j = i; j < os->nfl; j++) {
      atomic_store(&os->fl[j]->cancelled, 1);
      stead__wset_unref(os->fl[j]);
    }
    later = (int)(os->nfl - i - 1);
    os->nfl = i;
    os->gen++;
    stead__omap_clear(&os->cache);
  }
  pthread_mutex_unlock(&os->mu);
  return later;
}

uint64_t stead__objstore_gen(stead__objstore *os) {
  return atomic_load(&os->gen);
}

size_t stead__objstore_inflight(stead__objstore *os) {
  pthread_mutex_lock(&os->mu);
  size_t n = os->nfl;
  pthread_mutex_unlock(&os->mu);
  return n;
}

int stead__objstore_hibernate(stead__objstore *os) {
  if (os->in_turn)
    return 0;
  pthread_mutex_lock(&os->mu);
  int ok = os->nfl == 0;
  if (ok)
    stead__omap_clear(&os->cache);
  pthread_mutex_unlock(&os->mu);
  return ok;
}

size_t stead__objstore_room(const stead__objstore *os) {
  if (!os->in_turn)
    return 0;
  size_t used = os->pending ? os->pending->bytes : 0;
  return used >= os->o.max_wset ? 0 : os->o.max_wset - used;
}

size_t stead__objstore_cache_bytes(stead__objstore *os) {
  pthread_mutex_lock(&os->mu);
  size_t n = os->cache.bytes;
  pthread_mutex_unlock(&os->mu);
  return n;
}

/* ---- alarm listing -------------------------------------------------- */

typedef struct alarm_collect {
  stead__wset *acc; /* a scratch set: its alarm map holds the merged view */
  int rc;
} alarm_collect;

static int alarm_collect_cb(void *u, const stead__alarm *a) {
  alarm_collect *c = u;
  c->rc =
      stead__wset_alarm_set(c->acc, a->name, a->at_ms, a->attempt, a->meta, a->meta_len);
  return c->rc;
}

/* Applies one set's alarm changes to the merged view. */
static int alarm_overlay(stead__wset *acc, const stead__wset *ws) {
  if (ws->alarms_clear)
    stead__omap_clear(&acc->alarms);
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
    if (e->flags & STEAD__TOMB) {
      stead__omap_del(&acc->alarms, e->key, e->klen);
    } else if (stead__omap_put(&acc->alarms, e->key, e->klen, e->val, e->vlen, 0) != 0) {
      return STEAD_ENOMEM;
    }
  }
  return 0;
}

typedef struct alarm_ref {
  const stead__onode *n;
  int64_t at;
} alarm_ref;

static int alarm_ref_cmp(const void *x, const void *y) {
  const alarm_ref *a = x, *b = y;
  if (a->at != b->at)
    return a->at < b->at ? -1 : 1;
  return stead__keycmp(a->n->key, a->n->klen, b->n->key, b->n->klen);
}

static void collect_refs(const stead__onode *n, alarm_ref *out, size_t *k) {
  if (!n)
    return;
  collect_refs(n->left, out, k);
  stead__alarm a;
  stead__wset_alarm_decode(n, &a);
  out[(*k)++] = (alarm_ref){n, a.at_ms};
  collect_refs(n->right, out, k);
}

int stead__objstore_alarms_list(stead__objstore *os, stead__alarm_cb cb, void *u) {
  stead__wset *acc = stead__wset_new(os->cls, os->id);
  if (!acc)
    return stead__err(STEAD_ENOMEM, "out of memory");
  alarm_collect c = {acc, 0};
  int rc = os->b->vt->alarms_list(os->b, os->cls, os->id, alarm_collect_cb, &c);
  if (rc == 0 && c.rc)
    rc = c.rc;
  pthread_mutex_lock(&os->mu);
  for (size_t i = 0; rc == 0 && i < os->nfl; i++)
    rc = alarm_overlay(acc, os->fl[i]);
  pthread_mutex_unlock(&os->mu);
  if (rc == 0 && os->in_turn && os->pending)
    rc = alarm_overlay(acc, os->pending);
  alarm_ref *refs = NULL;
  size_t k = 0;
  if (rc == 0 && acc->alarms.count) {
    refs = malloc(acc->alarms.count * sizeof *refs);
    if (!refs)
      rc = stead__err(STEAD_ENOMEM, "out of memory");
    else
      collect_refs(acc->alarms.root, refs, &k);
  }
  if (rc == 0) {
    if (k) /* qsort(NULL, 0) is undefined */
      qsort(refs, k, sizeof *refs, alarm_ref_cmp);
    for (size_t i = 0; i < k && rc == 0; i++) {
      stead__alarm a;
      char name[STEAD__MAX_NAME + 1];
      size_t nl = refs[i].n->klen < sizeof name - 1 ? refs[i].n->klen : sizeof name - 1;
      memcpy(name, refs[i].n->key, nl);
      name[nl] = 0;
      stead__wset_alarm_decode(refs[i].n, &a);
      a.cls = os->cls;
      a.id = os->id;
      a.name = name;
      rc = cb(u, &a);
    }
  }
  free(refs);
  stead__wset_unref(acc);
  return rc;
}
