/*
 * omap.c -- ordered byte-string map as a treap.
 *
 * A treap keeps expected O(log n) depth with rotations driven by random
 * priorities; each map has its own xorshift state, so there is no global
 * state. Iteration is by repeated seek (O(log n) per step), which keeps
 * nodes free of parent pointers and makes iterators immune to concurrent
 * structural change by the owner between steps.
 */
#include "storage/omap.h"

#include "stead.h"

#include <stdlib.h>
#include <string.h>

int stead__keycmp(const void *a, size_t al, const void *b, size_t bl) {
  size_t n = al < bl ? al : bl;
  int c = n ? memcmp(a, b, n) : 0;
  if (c)
    return c;
  return al < bl ? -1 : al > bl ? 1 : 0;
}

void stead__omap_init(stead__omap *m) {
  memset(m, 0, sizeof *m);
  m->rng = (uint32_t)((uintptr_t)m >> 4) | 1u;
}

static uint32_t next_prio(stead__omap *m) {
  uint32_t x = m->rng ? m->rng : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  m->rng = x;
  return x;
}

static stead__onode *rot_right(stead__onode *n) {
  stead__onode *l = n->left;
  n->left = l->right;
  l->right = n;
  return l;
}

static stead__onode *rot_left(stead__onode *n) {
  stead__onode *r = n->right;
  n->right = r->left;
  r->left = n;
  return r;
}

/* Inserts `nn` under `n`; replaces an equal key, returning the old node
 * through *old for the caller to free. */
static stead__onode *insert(stead__onode *n, stead__onode *nn, stead__onode **old) {
  if (!n)
    return nn;
  int c = stead__keycmp(nn->key, nn->klen, n->key, n->klen);
  if (c == 0) {
    nn->left = n->left;
    nn->right = n->right;
    nn->prio = n->prio;
    *old = n;
    return nn;
  }
  if (c < 0) {
    n->left = insert(n->left, nn, old);
    if (n->left->prio > n->prio)
      n = rot_right(n);
  } else {
    n->right = insert(n->right, nn, old);
    if (n->right->prio > n->prio)
      n = rot_left(n);
  }
  return n;
}

int stead__omap_put(stead__omap *m, const void *key, size_t klen, const void *val,
                    size_t vlen, uint32_t flags) {
  stead__onode *nn = malloc(sizeof *nn + klen + vlen + 1);
  if (!nn)
    return STEAD_ENOMEM;
  nn->left = nn->right = NULL;
  nn->prio = next_prio(m);
  nn->flags = flags;
  nn->klen = klen;
  nn->vlen = vlen;
  nn->key = (uint8_t *)(nn + 1);
  nn->val = nn->key + klen;
  if (klen)
    memcpy(nn->key, key, klen);
  if (vlen)
    memcpy(nn->val, val, vlen);
  nn->val[vlen] = 0;
  stead__onode *old = NULL;
  m->root = insert(m->root, nn, &old);
  if (old) {
    m->bytes -= old->klen + old->vlen;
    free(old);
  } else {
    m->count++;
  }
  m->bytes += klen + vlen;
  return 0;
}

static stead__onode *merge(stead__onode *a, stead__onode *b) {
  if (!a)
    return b;
  if (!b)
    return a;
  if (a->prio > b->prio) {
    a->right = merge(a->right, b);
    return a;
  }
  b->left = merge(a, b->left);
  return b;
}

int stead__omap_del(stead__omap *m, const void *key, size_t klen) {
  stead__onode **pp = &m->root;
  while (*pp) {
    stead__onode *n = *pp;
    int c = stead__keycmp(key, klen, n->key, n->klen);
    if (c == 0) {
      *pp = merge(n->left, n->right);
      m->count--;
      m->bytes -= n->klen + n->vlen;
      free(n);
      return 1;
    }
    pp = c < 0 ? &n->left : &n->right;
  }
  return 0;
}

stead__onode *stead__omap_get(const stead__omap *m, const void *key, size_t klen) {
  stead__onode *n = m->root;
  while (n) {
    int c = stead__keycmp(key, klen, n->key, n->klen);
    if (c == 0)
      return n;
    n = c < 0 ? n->left : n->right;
  }
  return NULL;
}

stead__onode *stead__omap_seek(const stead__omap *m, const void *key, size_t klen,
                               int mode) {
  stead__onode *n = m->root, *best = NULL;
  int fwd = mode == STEAD__SEEK_GE || mode == STEAD__SEEK_GT;
  while (n) {
    int c;
    if (!key)
      c = fwd ? -1 : 1; /* key is below / above everything */
    else
      c = stead__keycmp(n->key, n->klen, key, klen);
    int ok = mode == STEAD__SEEK_GE   ? c >= 0
             : mode == STEAD__SEEK_GT ? c > 0
             : mode == STEAD__SEEK_LE ? c <= 0
                                      : c < 0;
    if (!key)
      ok = 1;
    if (ok) {
      best = n;
      n = fwd ? n->left : n->right;
    } else {
      n = fwd ? n->right : n->left;
    }
  }
  return best;
}

static void free_tree(stead__onode *n) {
  while (n) {
    free_tree(n->left);
    stead__onode *r = n->right;
    free(n);
    n = r;
  }
}

void stead__omap_clear(stead__omap *m) {
  free_tree(m->root);
  m->root = NULL;
  m->count = 0;
  m->bytes = 0;
}
