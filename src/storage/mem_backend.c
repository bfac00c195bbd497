/*
 * mem_backend.c -- the in-memory backend: data lives in this process only.
 *
 * One mutex guards three ordered maps whose keys encode the sort orders the
 * interface promises: kv by (cls, id, ns, key); alarms by (cls, id, name);
 * an alarm time index by (at, cls, id, name). Class and id are UTF-8
 * without NUL, so "cls\0id\0" keeps string order. Listing callbacks run
 * under the mutex and must not call the backend. A commit that runs out of
 * memory midway may be partly applied (the only non-atomic case, and only
 * in this test backend).
 */
#include "storage/backend.h"
#include "util/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem {
  stead__backend base;
  pthread_mutex_t mu;
  stead__omap kv;
  stead__omap alarms;  /* cls\0id\0name -> at(8) attempt(4) meta */
  stead__omap by_time; /* be(at) cls\0id\0name -> "" */
} mem;

/* obj prefix "cls\0id\0" (+ ns byte when ns >= 0) + tail into b. */
static int objkey(stead__buf *b, const char *cls, const char *id, int ns,
                  const void *tail, size_t tlen) {
  b->len = 0;
  if (stead__buf_append(b, cls, strlen(cls) + 1) ||
      stead__buf_append(b, id, strlen(id) + 1))
    return STEAD_ENOMEM;
  if (ns >= 0) {
    uint8_t c = (uint8_t)ns;
    if (stead__buf_append(b, &c, 1))
      return STEAD_ENOMEM;
  }
  if (tlen && stead__buf_append(b, tail, tlen))
    return STEAD_ENOMEM;
  return 0;
}

/* Sign-flipped big-endian time, so bytewise order is numeric order. */
static void be_time(uint8_t out[8], int64_t at) {
  uint64_t u = (uint64_t)at ^ (1ull << 63);
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(u >> (56 - 8 * i));
}

static int64_t from_be_time(const uint8_t in[8]) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u = (u << 8) | in[i];
  return (int64_t)(u ^ (1ull << 63));
}

static int mem_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                   const void *key, size_t klen, void **val, size_t *vlen) {
  mem *m = (mem *)b;
  stead__buf k = {0};
  if (objkey(&k, cls, id, ns, key, klen))
    return STEAD_ENOMEM;
  int rc = STEAD_ENOTFOUND;
  pthread_mutex_lock(&m->mu);
  stead__onode *n = stead__omap_get(&m->kv, k.data, k.len);
  if (n) {
    *val = stead__memdup(n->val, n->vlen + 1);
    *vlen = n->vlen;
    rc = *val ? 0 : STEAD_ENOMEM;
  }
  pthread_mutex_unlock(&m->mu);
  stead__buf_free(&k);
  return rc;
}

static int mem_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                    const stead__range *r, stead__kv_cb cb, void *u) {
  mem *m = (mem *)b;
  if (stead__range_empty(r))
    return 0;
  stead__buf lo = {0}, hi = {0};
  int rc = objkey(&lo, cls, id, ns, r->lo, r->lo ? r->lo_len : 0);
  if (!rc)
    rc = r->hi ? objkey(&hi, cls, id, ns, r->hi, r->hi_len)
               : objkey(&hi, cls, id, ns + 1, NULL, 0);
  if (rc) {
    stead__buf_free(&lo);
    stead__buf_free(&hi);
    return STEAD_ENOMEM;
  }
  size_t plen = lo.len - (r->lo ? r->lo_len : 0); /* cls\0id\0ns */
  size_t seen = 0;
  pthread_mutex_lock(&m->mu);
  stead__onode *n;
  if (!r->reverse)
    n = stead__omap_seek(&m->kv, lo.data, lo.len,
                         r->lo_excl ? STEAD__SEEK_GT : STEAD__SEEK_GE);
  else
    n = stead__omap_seek(&m->kv, hi.data, hi.len, STEAD__SEEK_LT);
  while (n && (!r->limit || seen < r->limit)) {
    if (!r->reverse && stead__keycmp(n->key, n->klen, hi.data, hi.len) >= 0)
      break;
    if (r->reverse) {
      int c = stead__keycmp(n->key, n->klen, lo.data, lo.len);
      if (c < 0 || (c == 0 && r->lo_excl))
        break;
    }
    seen++;
    rc = cb(u, n->key + plen, n->klen - plen, n->val, n->vlen);
    if (rc)
      break;
    n = stead__omap_seek(&m->kv, n->key, n->klen,
                         r->reverse ? STEAD__SEEK_LT : STEAD__SEEK_GT);
  }
  pthread_mutex_unlock(&m->mu);
  stead__buf_free(&lo);
  stead__buf_free(&hi);
  return rc < 0 ? rc : 0;
}

static int del_alarm(mem *m, stead__buf *k, const char *cls, const char *id,
                     const char *name) {
  if (objkey(k, cls, id, -1, name, strlen(name)))
    return STEAD_ENOMEM;
  stead__onode *old = stead__omap_get(&m->alarms, k->data, k->len);
  if (!old)
    return 0;
  stead__alarm a;
  stead__wset_alarm_decode(old, &a);
  stead__buf t = {0};
  uint8_t be[8];
  be_time(be, a.at_ms);
  int rc = stead__buf_append(&t, be, 8) || stead__buf_append(&t, k->data, k->len)
               ? STEAD_ENOMEM
               : 0;
  if (!rc) {
    stead__omap_del(&m->by_time, t.data, t.len);
    stead__omap_del(&m->alarms, k->data, k->len);
  }
  stead__buf_free(&t);
  return rc;
}

static int apply(mem *m, const stead__wset *ws) {
  stead__buf k = {0};
  int rc = 0;
  for (int ns = 0; ns < STEAD__NS_MAX && !rc; ns++) {
    if (!(ws->clear_mask & (1ull << ns)))
      continue;
    rc = objkey(&k, ws->cls, ws->id, ns, NULL, 0);
    size_t plen = k.len;
    stead__onode *n;
    while (!rc && (n = stead__omap_seek(&m->kv, k.data, k.len, STEAD__SEEK_GE)) &&
           n->klen >= plen && memcmp(n->key, k.data, plen) == 0)
      stead__omap_del(&m->kv, n->key, n->klen);
  }
  for (stead__onode *e = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); e && !rc;
       e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT)) {
    rc = objkey(&k, ws->cls, ws->id, e->key[0], e->key + 1, e->klen - 1);
    if (rc)
      break;
    if (e->flags & STEAD__TOMB)
      stead__omap_del(&m->kv, k.data, k.len);
    else
      rc = stead__omap_put(&m->kv, k.data, k.len, e->val, e->vlen, 0);
  }
  if (!rc && ws->alarms_clear) {
    rc = objkey(&k, ws->cls, ws->id, -1, NULL, 0);
    size_t plen = k.len;
    stead__onode *n;
    char *name = NULL;
    while (!rc && (n = stead__omap_seek(&m->alarms, k.data, plen, STEAD__SEEK_GE)) &&
           n->klen >= plen && memcmp(n->key, k.data, plen) == 0) {
      name = stead__memdup(n->key + plen, n->klen - plen + 1);
      if (!name) {
        rc = STEAD_ENOMEM;
        break;
      }
      name[n->klen - plen] = 0;
      rc = del_alarm(m, &k, ws->cls, ws->id, name);
      free(name);
      k.len = plen;
    }
  }
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e && !rc;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
    char *name = stead__memdup(e->key, e->klen + 1);
    if (!name) {
      rc = STEAD_ENOMEM;
      break;
    }
    name[e->klen] = 0;
    rc = del_alarm(m, &k, ws->cls, ws->id, name);
    free(name);
    if (rc || (e->flags & STEAD__TOMB))
      continue;
    stead__alarm a;
    stead__wset_alarm_decode(e, &a);
    uint8_t be[8];
    be_time(be, a.at_ms);
    stead__buf t = {0};
    rc = stead__omap_put(&m->alarms, k.data, k.len, e->val, e->vlen, 0);
    if (!rc)
      rc = stead__buf_append(&t, be, 8) || stead__buf_append(&t, k.data, k.len)
               ? STEAD_ENOMEM
               : stead__omap_put(&m->by_time, t.data, t.len, NULL, 0, 0);
    stead__buf_free(&t);
  }
  stead__buf_free(&k);
  return rc;
}

static int mem_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  mem *m = (mem *)b;
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < n && !rc; i++)
    rc = apply(m, sets[i]);
  pthread_mutex_unlock(&m->mu);
  return rc ? stead__err(rc, "memory backend: out of memory during commit") : 0;
}

/* Splits "cls\0id\0name" (after `skip` bytes) into an alarm. */
static void split_alarm(const stead__onode *n, size_t skip, stead__alarm *a) {
  const char *p = (const char *)n->key + skip;
  a->cls = p;
  a->id = p + strlen(p) + 1;
  a->name = a->id + strlen(a->id) + 1;
}

static int by_at_name(const void *x, const void *y) {
  const stead__alarm *a = x, *b = y;
  if (a->at_ms != b->at_ms)
    return a->at_ms < b->at_ms ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int mem_alarms_list(stead__backend *b, const char *cls, const char *id,
                           stead__alarm_cb cb, void *u) {
  mem *m = (mem *)b;
  stead__buf k = {0}, names = {0};
  if (objkey(&k, cls, id, -1, NULL, 0))
    return STEAD_ENOMEM;
  stead__alarm *arr = NULL;
  size_t cnt = 0, cap = 0;
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  /* Alarm keys need NUL-terminated names: copy them so the callbacks can
   * run in (at, name) order after sorting. */
  for (stead__onode *n = stead__omap_seek(&m->alarms, k.data, k.len, STEAD__SEEK_GE);
       n && n->klen >= k.len && memcmp(n->key, k.data, k.len) == 0;
       n = stead__omap_seek(&m->alarms, n->key, n->klen, STEAD__SEEK_GT)) {
    if (cnt == cap) {
      cap = cap ? cap * 2 : 16;
      stead__alarm *na = realloc(arr, cap * sizeof *na);
      if (!na) {
        rc = STEAD_ENOMEM;
        break;
      }
      arr = na;
    }
    stead__alarm *a = &arr[cnt++];
    stead__wset_alarm_decode(n, a);
    a->cls = cls;
    a->id = id;
    /* Node keys are not NUL-terminated: store the name's offset in a
     * side buffer and turn it into a pointer once the buffer stops moving. */
    a->name = (const char *)(uintptr_t)names.len;
    if (stead__buf_append(&names, n->key + k.len, n->klen - k.len) ||
        stead__buf_append(&names, "", 1)) {
      rc = STEAD_ENOMEM;
      break;
    }
  }
  if (!rc) {
    for (size_t i = 0; i < cnt; i++)
      arr[i].name = (const char *)names.data + (uintptr_t)arr[i].name;
    if (cnt) /* qsort(NULL, 0) is undefined */
      qsort(arr, cnt, sizeof *arr, by_at_name);
    for (size_t i = 0; i < cnt && !rc; i++)
      rc = cb(u, &arr[i]);
  }
  pthread_mutex_unlock(&m->mu);
  free(arr);
  stead__buf_free(&k);
  stead__buf_free(&names);
  return rc < 0 ? rc : 0;
}

static int mem_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                           int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  mem *m = (mem *)b;
  stead__buf k = {0}, full = {0}, kk = {0};
  int rc = 0;
  if (after) {
    uint8_t be[8];
    be_time(be, after->at_ms);
    if (stead__buf_append(&k, be, 8) ||
        objkey(&kk, after->cls, after->id, -1, after->name, strlen(after->name)) ||
        stead__buf_append(&k, kk.data, kk.len))
      rc = STEAD_ENOMEM;
  }
  size_t seen = 0;
  pthread_mutex_lock(&m->mu);
  stead__onode *n =
      rc ? NULL
         : stead__omap_seek(&m->by_time, after ? k.data : NULL, k.len, STEAD__SEEK_GT);
  for (; n && (!limit || seen < limit) && !rc;
       n = stead__omap_seek(&m->by_time, n->key, n->klen, STEAD__SEEK_GT)) {
    int64_t at = from_be_time(n->key);
    if (at > until_ms)
      break;
    /* Rebuild a NUL-terminated copy to split, then find the record. */
    full.len = 0;
    if (stead__buf_append(&full, n->key + 8, n->klen - 8) ||
        stead__buf_append(&full, "", 1)) {
      rc = STEAD_ENOMEM;
      break;
    }
    stead__onode *rec = stead__omap_get(&m->alarms, full.data, full.len - 1);
    if (!rec)
      continue;
    stead__alarm a;
    stead__wset_alarm_decode(rec, &a);
    stead__onode fake = {.key = full.data};
    split_alarm(&fake, 0, &a);
    seen++;
    rc = cb(u, &a);
  }
  pthread_mutex_unlock(&m->mu);
  stead__buf_free(&k);
  stead__buf_free(&kk);
  stead__buf_free(&full);
  return rc < 0 ? rc : 0;
}

/* kv keys are "cls\0id\0" ns key, so one namespace across all objects is
 * not contiguous: walk every key and skip the others (a test backend). */
static int mem_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  mem *m = (mem *)b;
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  for (stead__onode *n = stead__omap_seek(&m->kv, NULL, 0, STEAD__SEEK_GE); n && !rc;
       n = stead__omap_seek(&m->kv, n->key, n->klen, STEAD__SEEK_GT)) {
    const char *cls = (const char *)n->key;
    size_t cl = strlen(cls);
    const char *id = cls + cl + 1;
    size_t off = cl + 1 + strlen(id) + 1; /* the ns byte */
    if (n->key[off] != ns)
      continue;
    rc = cb(u, cls, id, n->key + off + 1, n->klen - off - 1, n->val, n->vlen);
  }
  pthread_mutex_unlock(&m->mu);
  return rc < 0 ? rc : 0;
}

static void mem_close(stead__backend *b) {
  mem *m = (mem *)b;
  stead__omap_clear(&m->kv);
  stead__omap_clear(&m->alarms);
  stead__omap_clear(&m->by_time);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static const stead__backend_vt mem_vt = {
    .name = "memory",
    .get = mem_get,
    .list = mem_list,
    .commit = mem_commit,
    .alarms_list = mem_alarms_list,
    .alarms_scan = mem_alarms_scan,
    .scan_ns = mem_scan_ns,
    .close = mem_close,
};

int stead__mem_open(stead__backend **out) {
  mem *m = calloc(1, sizeof *m);
  if (!m)
    return stead__err(STEAD_ENOMEM, "out of memory opening the memory backend");
  m->base.vt = &mem_vt;
  pthread_mutex_init(&m->mu, NULL);
  stead__omap_init(&m->kv);
  stead__omap_init(&m->alarms);
  stead__omap_init(&m->by_time);
  *out = &m->base;
  return 0;
}
