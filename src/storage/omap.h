/*
 * omap.h -- an ordered map from byte strings to byte strings (a treap).
 *
 * Used wherever storage needs bytewise key order in memory: the memory
 * backend, an activation's pending writes and read cache, list merging.
 * Not thread-safe: the owner serialises access.
 */
#ifndef STEAD_STORAGE_OMAP_H
#define STEAD_STORAGE_OMAP_H

#include <stddef.h>
#include <stdint.h>

/* One entry. key and val live in the same allocation as the node and are
 * valid until the entry is replaced or removed, or the map is cleared. */
typedef struct stead__onode {
  struct stead__onode *left, *right;
  uint32_t prio;
  uint32_t flags; /* free for the owner (e.g. a tombstone bit) */
  size_t klen, vlen;
  uint8_t *key, *val;
} stead__onode;

typedef struct stead__omap {
  stead__onode *root;
  size_t count;
  size_t bytes; /* sum of key and value lengths */
  uint32_t rng;
} stead__omap;

/* Seek modes. */
enum { STEAD__SEEK_GE, STEAD__SEEK_GT, STEAD__SEEK_LE, STEAD__SEEK_LT };

/* Bytewise comparison, shorter-is-smaller on a common prefix. */
int stead__keycmp(const void *a, size_t al, const void *b, size_t bl);

void stead__omap_init(stead__omap *m);
/* Inserts or replaces. STEAD_ENOMEM on failure (the map is unchanged). */
int stead__omap_put(stead__omap *m, const void *key, size_t klen, const void *val,
                    size_t vlen, uint32_t flags);
/* 1 if an entry was removed, 0 if there was none. */
int stead__omap_del(stead__omap *m, const void *key, size_t klen);
stead__onode *stead__omap_get(const stead__omap *m, const void *key, size_t klen);
/* The entry nearest to `key` in the given mode; key NULL means "before the
 * first" for GE/GT (gives the first) and "after the last" for LE/LT. */
stead__onode *stead__omap_seek(const stead__omap *m, const void *key, size_t klen,
                               int mode);
void stead__omap_clear(stead__omap *m);

#endif
