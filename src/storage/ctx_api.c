/*
 * ctx_api.c -- the public "Storage inside a turn" functions: argument
 * checks and result packing over the activation store of the running turn
 * (found through core's seam, stead__ctx_store).
 *
 * Results that hold several keys/values (get_many, list) are packed into
 * ONE allocation -- the stead_kv array followed by the bytes it points to
 * -- so the caller frees them with a single stead_free.
 */
#include "core/seam.h"
#include "storage/objstore.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static int store(stead_ctx *ctx, stead__objstore **os) {
  *os = ctx ? stead__ctx_store(ctx) : NULL;
  if (!*os)
    return stead__err(STEAD_EMISUSE, "storage is only available inside a turn");
  return 0;
}

static int check_key(const void *key, size_t len) {
  if (!key || len == 0)
    return stead__err(STEAD_EINVAL, "key is empty");
  if (len > STEAD_MAX_KEY)
    return stead__err(STEAD_ETOOBIG, "key is %zu bytes; the limit is %d", len,
                      STEAD_MAX_KEY);
  return 0;
}

static int check_value(const void *v, size_t len) {
  if (!v && len)
    return stead__err(STEAD_EINVAL, "value is NULL but its length is %zu", len);
  if (len > STEAD_MAX_VALUE)
    return stead__err(STEAD_ETOOBIG, "value is %zu bytes; the limit is %d", len,
                      STEAD_MAX_VALUE);
  return 0;
}

int stead_get(stead_ctx *ctx, const void *key, size_t key_len, void **value,
              size_t *value_len) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  if (!rc)
    rc = check_key(key, key_len);
  if (!rc)
    rc = stead__objstore_get(os, STEAD__NS_USER, key, key_len, value, value_len);
  return rc;
}

int stead_put(stead_ctx *ctx, const void *key, size_t key_len, const void *value,
              size_t value_len) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  if (!rc)
    rc = check_key(key, key_len);
  if (!rc)
    rc = check_value(value, value_len);
  if (!rc)
    rc = stead__objstore_put(os, STEAD__NS_USER, key, key_len, value, value_len);
  return rc;
}

int stead_delete(stead_ctx *ctx, const void *key, size_t key_len) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  if (!rc)
    rc = check_key(key, key_len);
  if (!rc)
    rc = stead__objstore_del(os, STEAD__NS_USER, key, key_len);
  return rc;
}

int stead_delete_all(stead_ctx *ctx) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  return rc ? rc : stead__objstore_delete_all(os, STEAD__NS_USER);
}

/* Checks a batch up front so it is applied all or nothing; the write-set
 * budget is checked conservatively (as if no entry replaced another). */
static int check_batch(stead__objstore *os, const stead_kv *e, size_t n, int values) {
  if (!e && n)
    return stead__err(STEAD_EINVAL, "entries are NULL");
  if (!stead__objstore_in_turn(os))
    return stead__err(STEAD_EMISUSE, "storage writes need an open turn");
  size_t cost = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = check_key(e[i].key, e[i].key_len);
    if (!rc && values)
      rc = check_value(e[i].value, e[i].value_len);
    if (rc)
      return rc;
    cost += stead__wset_cost(e[i].key_len, values ? e[i].value_len : 0);
  }
  size_t room = stead__objstore_room(os);
  if (cost > room)
    return stead__err(STEAD_ETOOBIG,
                      "the batch needs %zu bytes of the turn's write set; %zu remain",
                      cost, room);
  return 0;
}

int stead_put_many(stead_ctx *ctx, const stead_kv *entries, size_t n) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  if (!rc)
    rc = check_batch(os, entries, n, 1);
  for (size_t i = 0; !rc && i < n; i++)
    rc = stead__objstore_put(os, STEAD__NS_USER, entries[i].key, entries[i].key_len,
                             entries[i].value, entries[i].value_len);
  return rc;
}

int stead_delete_many(stead_ctx *ctx, const stead_kv *keys, size_t n) {
  stead__objstore *os;
  int rc = store(ctx, &os);
  if (!rc)
    rc = check_batch(os, keys, n, 0);
  for (size_t i = 0; !rc && i < n; i++)
    rc = stead__objstore_del(os, STEAD__NS_USER, keys[i].key, keys[i].key_len);
  return rc;
}

/* Entries gathered before packing: copies owned here. */
typedef struct gather {
  stead_kv *e;
  size_t n, cap, bytes;
} gather;

static void gather_free(gather *g) {
  for (size_t i = 0; i < g->n; i++)
    free((void *)g->e[i].key); /* value shares the key's allocation */
  free(g->e);
}

/* Adds key + value (value NULL: absent). */
static int gather_add(gather *g, const void *k, size_t kl, const void *v, size_t vl) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    stead_kv *ne = realloc(g->e, cap * sizeof *ne);
    if (!ne)
      return STEAD_ENOMEM;
    g->e = ne, g->cap = cap;
  }
  uint8_t *p = malloc(kl + vl + 2);
  if (!p)
    return STEAD_ENOMEM;
  memcpy(p, k, kl);
  p[kl] = 0;
  if (vl)
    memcpy(p + kl + 1, v, vl);
  p[kl + 1 + vl] = 0;
  g->e[g->n++] = (stead_kv){p, kl, v ? p + kl + 1 : NULL, vl};
  g->bytes += kl + vl + 2;
  return 0;
}

static int gather_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  return gather_add(u, k, kl, v ? v : "", vl);
}

/* One allocation: the array, then each key and value NUL-terminated. */
static int pack(gather *g, stead_kv **out) {
  *out = NULL;
  if (!g->n)
    return 0;
  stead_kv *arr = malloc(g->n * sizeof *arr + g->bytes);
  if (!arr)
    return stead__err(STEAD_ENOMEM, "out of memory");
  uint8_t *p = (uint8_t *)(arr + g->n);
  for (size_t i = 0; i < g->n; i++) {
    const stead_kv *e = &g->e[i];
    memcpy(p, e->key, e->key_len + 1);
    arr[i].key = p;
    arr[i].key_len = e->key_len;
    p += e->key_len + 1;
    arr[i].value_len = e->value_len;
    if (e->value) {
      memcpy(p, e->value, e->value_len + 1);
      arr[i].value = p;
    } else {
      *p = 0;
      arr[i].value = NULL;
    }
    p += e->value_len + 1;
  }
  *out = arr;
  return 0;
}

int stead_get_many(stead_ctx *ctx, const stead_kv *keys, size_t n, stead_kv **out) {
  stead__objstore *os;
  if (!out)
    return stead__err(STEAD_EINVAL, "out is NULL");
  *out = NULL;
  int rc = store(ctx, &os);
  if (!rc && !keys && n)
    rc = stead__err(STEAD_EINVAL, "keys are NULL");
  for (size_t i = 0; !rc && i < n; i++)
    rc = check_key(keys[i].key, keys[i].key_len);
  gather g = {0};
  for (size_t i = 0; !rc && i < n; i++) {
    void *v = NULL;
    size_t vl = 0;
    rc = stead__objstore_get(os, STEAD__NS_USER, keys[i].key, keys[i].key_len, &v, &vl);
    if (rc == STEAD_ENOTFOUND)
      rc = 0, v = NULL, vl = 0;
    if (!rc && gather_add(&g, keys[i].key, keys[i].key_len, v, vl))
      rc = stead__err(STEAD_ENOMEM, "out of memory");
    free(v);
  }
  if (!rc)
    rc = pack(&g, out);
  gather_free(&g);
  return rc;
}

int stead_list(stead_ctx *ctx, const stead_list_opts *opts, stead_kv **out, size_t *n) {
  stead__objstore *os;
  if (!out || !n)
    return stead__err(STEAD_EINVAL, "out or n is NULL");
  *out = NULL;
  *n = 0;
  int rc = store(ctx, &os);
  if (rc)
    return rc;
  stead__list_opts o = {0};
  if (opts)
    o = (stead__list_opts){opts->prefix,    opts->prefix_len,  opts->start,
                           opts->start_len, opts->start_after, opts->start_after_len,
                           opts->end,       opts->end_len,     opts->reverse,
                           opts->limit};
  gather g = {0};
  rc = stead__objstore_list(os, STEAD__NS_USER, &o, gather_cb, &g);
  if (rc == STEAD_ENOMEM)
    rc = stead__err(rc, "out of memory listing keys");
  if (!rc)
    rc = pack(&g, out);
  if (!rc)
    *n = g.n;
  gather_free(&g);
  return rc;
}
