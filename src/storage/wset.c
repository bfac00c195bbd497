/*
 * wset.c -- write sets: one turn's normalised changes to one object.
 *
 * Invariants: a key appears once per set with its final value or a
 * tombstone; a delete-all of a namespace drops the set's earlier entries of
 * that namespace and sets its clear bit, so "delete all, then put" keeps
 * the put. A set is immutable once handed to the committer; the refcount
 * lets the committer, the activation store and in-progress listings share
 * it across threads.
 */
#include "storage/backend.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* Per-entry bookkeeping charged against the write-set limit, so that many
 * tiny entries cannot hide a large set. */
#define ENTRY_OVERHEAD 32u

stead__wset *stead__wset_new(const char *cls, const char *id) {
  stead__wset *ws = calloc(1, sizeof *ws);
  if (!ws)
    return NULL;
  ws->cls = stead__strdup(cls);
  ws->id = stead__strdup(id);
  if (!ws->cls || !ws->id) {
    free(ws->cls);
    free(ws->id);
    free(ws);
    return NULL;
  }
  atomic_init(&ws->refs, 1);
  atomic_init(&ws->cancelled, 0);
  stead__omap_init(&ws->kv);
  stead__omap_init(&ws->alarms);
  return ws;
}

void stead__wset_ref(stead__wset *ws) {
  atomic_fetch_add_explicit(&ws->refs, 1, memory_order_relaxed);
}

void stead__wset_unref(stead__wset *ws) {
  if (!ws || atomic_fetch_sub_explicit(&ws->refs, 1, memory_order_acq_rel) != 1)
    return;
  stead__omap_clear(&ws->kv);
  stead__omap_clear(&ws->alarms);
  free(ws->cls);
  free(ws->id);
  free(ws);
}

size_t stead__wset_cost(size_t klen, size_t vlen) {
  return klen + vlen + ENTRY_OVERHEAD;
}

static int put_entry(stead__wset *ws, uint8_t ns, const void *key, size_t klen,
                     const void *val, size_t vlen, uint32_t flags) {
  uint8_t stackkey[256];
  uint8_t *k = klen + 1 <= sizeof stackkey ? stackkey : malloc(klen + 1);
  if (!k)
    return STEAD_ENOMEM;
  k[0] = ns;
  if (klen)
    memcpy(k + 1, key, klen);
  stead__onode *old = stead__omap_get(&ws->kv, k, klen + 1);
  size_t oldcost = old ? stead__wset_cost(klen, old->vlen) : 0;
  int rc = stead__omap_put(&ws->kv, k, klen + 1, val, vlen, flags);
  if (k != stackkey)
    free(k);
  if (rc)
    return rc;
  ws->bytes = ws->bytes - oldcost + stead__wset_cost(klen, vlen);
  return 0;
}

int stead__wset_put(stead__wset *ws, uint8_t ns, const void *key, size_t klen,
                    const void *val, size_t vlen) {
  return put_entry(ws, ns, key, klen, val, vlen, 0);
}

int stead__wset_del(stead__wset *ws, uint8_t ns, const void *key, size_t klen) {
  return put_entry(ws, ns, key, klen, NULL, 0, STEAD__TOMB);
}

void stead__wset_delete_all(stead__wset *ws, uint8_t ns) {
  uint8_t lo = ns;
  stead__onode *n;
  while ((n = stead__omap_seek(&ws->kv, &lo, 1, STEAD__SEEK_GE)) && n->key[0] == ns) {
    ws->bytes -= stead__wset_cost(n->klen - 1, n->vlen);
    stead__omap_del(&ws->kv, n->key, n->klen);
  }
  ws->clear_mask |= 1ull << ns;
}

int stead__wset_alarm_set(stead__wset *ws, const char *name, int64_t at_ms,
                          uint32_t attempt, const void *meta, size_t meta_len) {
  size_t vlen = 12 + meta_len;
  uint8_t *v = malloc(vlen);
  if (!v)
    return STEAD_ENOMEM;
  uint64_t at = (uint64_t)at_ms;
  for (int i = 0; i < 8; i++)
    v[i] = (uint8_t)(at >> (8 * i));
  for (int i = 0; i < 4; i++)
    v[8 + i] = (uint8_t)(attempt >> (8 * i));
  if (meta_len)
    memcpy(v + 12, meta, meta_len);
  size_t nlen = strlen(name);
  stead__onode *old = stead__omap_get(&ws->alarms, name, nlen);
  size_t oldcost = old ? stead__wset_cost(nlen, old->vlen) : 0;
  int rc = stead__omap_put(&ws->alarms, name, nlen, v, vlen, 0);
  free(v);
  if (rc)
    return rc;
  ws->bytes = ws->bytes - oldcost + stead__wset_cost(nlen, vlen);
  return 0;
}

int stead__wset_alarm_del(stead__wset *ws, const char *name) {
  size_t nlen = strlen(name);
  stead__onode *old = stead__omap_get(&ws->alarms, name, nlen);
  size_t oldcost = old ? stead__wset_cost(nlen, old->vlen) : 0;
  int rc = stead__omap_put(&ws->alarms, name, nlen, NULL, 0, STEAD__TOMB);
  if (rc)
    return rc;
  ws->bytes = ws->bytes - oldcost + stead__wset_cost(nlen, 0);
  return 0;
}

void stead__wset_alarms_clear(stead__wset *ws) {
  stead__omap_clear(&ws->alarms);
  ws->alarms_clear = 1;
  /* Recompute: only kv entries remain charged. */
  size_t b = 0;
  for (stead__onode *n = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); n;
       n = stead__omap_seek(&ws->kv, n->key, n->klen, STEAD__SEEK_GT))
    b += stead__wset_cost(n->klen - 1, n->vlen);
  ws->bytes = b;
}

int stead__wset_empty(const stead__wset *ws) {
  return ws->kv.count == 0 && ws->alarms.count == 0 && ws->clear_mask == 0 &&
         !ws->alarms_clear;
}

void stead__wset_alarm_decode(const stead__onode *n, stead__alarm *a) {
  uint64_t at = 0;
  uint32_t att = 0;
  for (int i = 0; i < 8; i++)
    at |= (uint64_t)n->val[i] << (8 * i);
  for (int i = 0; i < 4; i++)
    att |= (uint32_t)n->val[8 + i] << (8 * i);
  a->at_ms = (int64_t)at;
  a->attempt = att;
  a->meta = n->val + 12;
  a->meta_len = n->vlen - 12;
}
