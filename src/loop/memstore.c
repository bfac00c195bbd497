/*
 * memstore.c -- the in-memory snapshot store for Aggregate loops.
 *
 * A hash table from key to (bytes, version) behind one mutex. Versions
 * start at 1 and grow by one per put; put compares the expected version
 * under the same mutex as the write, which is what makes two loops on one
 * key see STEAD_ECONFLICT instead of overwriting each other. Values are
 * copied in and out, so no pointer into the table ever leaves the lock.
 *
 * Threads: get and put are thread-safe; open and close are not.
 */
#include "util/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
  struct node *next;
  uint64_t hash;
  uint64_t version;
  char *key;
  uint8_t *data;
  size_t len;
} node;

typedef struct memstore {
  pthread_mutex_t mu;
  node **buckets;
  size_t nbuckets; /* a power of two */
  size_t count;
} memstore;

static node *find(memstore *m, const char *key, uint64_t h) {
  for (node *n = m->buckets[h & (m->nbuckets - 1)]; n; n = n->next)
    if (n->hash == h && strcmp(n->key, key) == 0)
      return n;
  return NULL;
}

/* Doubles the table past a load of 1; failure only costs speed. */
static void maybe_grow(memstore *m) {
  if (m->count < m->nbuckets)
    return;
  size_t nb = m->nbuckets * 2;
  node **b = calloc(nb, sizeof *b);
  if (!b)
    return;
  for (size_t i = 0; i < m->nbuckets; i++) {
    for (node *n = m->buckets[i], *next; n; n = next) {
      next = n->next;
      n->next = b[n->hash & (nb - 1)];
      b[n->hash & (nb - 1)] = n;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
}

static int check_key(const char *key) {
  return stead__check_utf8("snapshot key", key, STEAD__MAX_ID);
}

static int ms_get(void *self, const char *key, void **data, size_t *len,
                  uint64_t *version) {
  if (!data || !len || !version)
    return stead__err(STEAD_EINVAL, "memstore get: NULL out parameter");
  int rc = check_key(key);
  if (rc)
    return rc;
  memstore *m = self;
  uint64_t h = stead__hash64(key, strlen(key), 0);
  pthread_mutex_lock(&m->mu);
  node *n = find(m, key, h);
  if (!n) {
    rc = stead__err(STEAD_ENOTFOUND, "no snapshot under key \"%s\"", key);
  } else {
    void *copy = stead__memdup(n->data, n->len);
    if (!copy && n->len) {
      rc = stead__err(STEAD_ENOMEM, "memstore get: out of memory");
    } else {
      *data = copy;
      *len = n->len;
      *version = n->version;
    }
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static int ms_put(void *self, const char *key, const void *data, size_t len,
                  uint64_t expected, uint64_t *new_version) {
  int rc = check_key(key);
  if (rc)
    return rc;
  if (!data && len)
    return stead__err(STEAD_EINVAL, "memstore put: NULL data with length %zu", len);
  memstore *m = self;
  uint64_t h = stead__hash64(key, strlen(key), 0);
  uint8_t *copy = len ? stead__memdup(data, len) : NULL;
  if (len && !copy)
    return stead__err(STEAD_ENOMEM, "memstore put: out of memory");
  pthread_mutex_lock(&m->mu);
  node *n = find(m, key, h);
  uint64_t current = n ? n->version : 0;
  if (current != expected) {
    rc = stead__err(STEAD_ECONFLICT,
                    "snapshot \"%s\" is at version %llu, not the expected %llu", key,
                    (unsigned long long)current, (unsigned long long)expected);
  } else if (!n) {
    n = calloc(1, sizeof *n);
    char *k = stead__strdup(key);
    if (!n || !k) {
      free(n);
      free(k);
      rc = stead__err(STEAD_ENOMEM, "memstore put: out of memory");
    } else {
      maybe_grow(m);
      n->key = k;
      n->hash = h;
      n->next = m->buckets[h & (m->nbuckets - 1)];
      m->buckets[h & (m->nbuckets - 1)] = n;
      m->count++;
    }
  }
  if (rc == 0) {
    free(n->data);
    n->data = copy;
    n->len = len;
    n->version = current + 1;
    copy = NULL;
    if (new_version)
      *new_version = n->version;
  }
  pthread_mutex_unlock(&m->mu);
  free(copy);
  return rc;
}

int stead_memstore_open(stead_snapstore *store) {
  if (!store)
    return stead__err(STEAD_EINVAL, "memstore_open: store is NULL");
  memstore *m = calloc(1, sizeof *m);
  if (m) {
    m->nbuckets = 16;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
  }
  if (!m || !m->buckets) {
    free(m);
    return stead__err(STEAD_ENOMEM, "memstore_open: out of memory");
  }
  pthread_mutex_init(&m->mu, NULL);
  *store = (stead_snapstore){ms_get, ms_put, m};
  return 0;
}

void stead_memstore_close(stead_snapstore *store) {
  if (!store || !store->self)
    return;
  memstore *m = store->self;
  for (size_t i = 0; i < m->nbuckets; i++) {
    for (node *n = m->buckets[i], *next; n; n = next) {
      next = n->next;
      free(n->key);
      free(n->data);
      free(n);
    }
  }
  free(m->buckets);
  pthread_mutex_destroy(&m->mu);
  free(m);
  store->self = NULL;
}
