/*
 * bus_internal.h -- the event bus's internal pieces, shared by its files and
 * reachable from tests and benchmarks: topic splitting, the pattern trie,
 * the ULID generator and the bounded worker pool.
 */
#ifndef STEAD_BUS_INTERNAL_H
#define STEAD_BUS_INTERNAL_H

#include "stead.h"
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard ceilings for the configurable limits: they bound stack arrays. */
#define STEAD__TOPIC_LEN_CAP 4096
#define STEAD__TOPIC_SEG_CAP 128

/* ---- topics ---------------------------------------------------------- */

/* One segment of a topic or pattern: a slice of the caller's string. */
typedef struct stead__seg {
  const char *p;
  uint32_t len;
  uint64_t hash;
} stead__seg;

/* Validates `s` as a topic (is_pattern 0) or pattern (1) under the limits
 * and splits it into segs (capacity max_segs). Returns the number of
 * segments, or STEAD_EINVAL / STEAD_ETOOBIG with a message. */
int stead__topic_split(const char *s, int is_pattern, size_t max_len, size_t max_segs,
                       stead__seg *segs);

/* 1 if the segment is `*` or `**` respectively. */
static inline bool stead__seg_is_star(const stead__seg *s) {
  return s->len == 1 && s->p[0] == '*';
}
static inline bool stead__seg_is_dstar(const stead__seg *s) {
  return s->len == 2 && s->p[0] == '*' && s->p[1] == '*';
}

/* Pattern/topic match over split segments (dynamic programming, no
 * recursion, O(pattern * topic)). */
bool stead__segs_match(const stead__seg *pat, int np, const stead__seg *top, int nt);

/* ---- listeners ------------------------------------------------------- */

#define STEAD__ID_MAX 64 /* bytes of a listener id including its NUL */

typedef struct stead__listener {
  char id[STEAD__ID_MAX];
  char *pattern;
  stead_listener_fn fn;
  void *udata;
  int priority;
  uint64_t seq; /* subscription order, for ties of priority */
  /* One reference for the trie, one per emit snapshot holding it. */
  atomic_int refs;
  /* Invocations started and not finished; see bus.c for the protocol. */
  atomic_int inflight;
  atomic_bool removed;
  struct stead__trie_node *node;   /* where the trie keeps it */
  size_t node_index;               /* its slot in node->listeners */
  struct stead__listener *id_next; /* chain of the id hash table */
} stead__listener;

/* ---- trie ------------------------------------------------------------ */

typedef struct stead__trie_node stead__trie_node;

typedef struct stead__trie {
  stead__trie_node *root;
  size_t nodes;
} stead__trie;

int stead__trie_init(stead__trie *t);
void stead__trie_free(stead__trie *t);

/* Adds the listener under its split pattern. ENOMEM on failure (the trie
 * is unchanged then). */
int stead__trie_add(stead__trie *t, const stead__seg *segs, int n, stead__listener *l);

/* Removes the listener from its node and prunes nodes left empty. */
void stead__trie_remove(stead__trie *t, stead__listener *l);

/* Calls visit(l, arg) for every listener whose pattern matches the topic,
 * each exactly once, in no particular order. The walk keeps the set of
 * live trie states per topic segment (deduplicated), so its cost grows with
 * the number of segments times the number of live states, never with the
 * number of patterns, and several `**` cannot make it exponential.
 * Returns 0, ENOMEM, or the first non-zero result of `visit` (which stops
 * the walk). Read-only on the trie: concurrent calls are safe. */
int stead__trie_match(const stead__trie *t, const stead__seg *segs, int n,
                      int (*visit)(stead__listener *l, void *arg), void *arg);

/* ---- ULID ------------------------------------------------------------ */

typedef struct stead__ulid_state {
  int64_t last_ms;
  uint8_t last_rand[10];
  uint64_t rng[2]; /* xorshift128+ state, seeded from the OS */
} stead__ulid_state;

/* Seeds the state from getrandom(), falling back to time and address. */
void stead__ulid_init(stead__ulid_state *st);

/* Writes a 26-char ULID plus NUL for time now_ms into out. Within one
 * millisecond (or if the clock steps back) the random part is the previous
 * one plus 1, so ids sort in generation order. EOVERLOAD if that increment
 * overflows 80 bits (2^80 ids in one ms). Not thread-safe: one caller at a
 * time per state. */
int stead__ulid_next(stead__ulid_state *st, int64_t now_ms, char out[27]);

/* ---- pool ------------------------------------------------------------ */

typedef struct stead__pool stead__pool;
typedef void (*stead__job_fn)(void *job, void *pool_arg);

/* A bounded FIFO of jobs run by `workers` threads. Every accepted job runs
 * exactly once, also when the pool is being freed (free drains). */
int stead__pool_new(int workers, size_t capacity, stead__job_fn run, void *pool_arg,
                    stead__pool **out);

/* Queues a job. If the queue is full: wait for room when `wait` is true,
 * else STEAD_EOVERLOAD. ECLOSED once shutdown started. */
int stead__pool_submit(stead__pool *p, void *job, bool wait);

/* Stops accepting jobs, runs every queued job, joins the workers, frees. */
void stead__pool_free(stead__pool *p);

typedef struct stead__pool_stats {
  uint64_t workers, running, idle, submitted, waiting, rejected;
} stead__pool_stats;
void stead__pool_stats_get(stead__pool *p, stead__pool_stats *out);

/* 1 if the calling thread is one of this pool's workers. */
bool stead__pool_is_worker(stead__pool *p);

/* Runs the oldest queued job on the calling thread: 1 if one ran, 0 if
 * the queue was empty. For pools with no workers. */
int stead__pool_run_one(stead__pool *p);

/* A bus whose pool has no thread (deterministic simulation): emitted
 * events wait until stead__bus_run_one runs them, one at a time, on the
 * caller's thread; stead_bus_free runs what is left. */
int stead__bus_new_manual(const stead_bus_config *cfg, stead_bus **out);
int stead__bus_run_one(stead_bus *b);

#endif
