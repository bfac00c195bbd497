/*
 * queue.c -- the unbounded in-memory FIFO that loops read from.
 *
 * A ring of owned byte strings with three positions (absolute counts, the
 * ring index is count & mask):
 *   head   <= cursor <= tail
 *   [head, cursor)  taken by the consumer, not yet committed
 *   [cursor, tail)  waiting
 * commit frees [head, cursor) and moves head up; rollback moves cursor back
 * to head, so taken messages are delivered again from the head, in order.
 * A taken message's bytes stay put until commit (growing the ring moves
 * only the small entries, never the bytes), which is what lets a loop hold
 * a batch of borrowed messages.
 *
 * Threads: one mutex guards everything. Producers copy their messages
 * before taking it, so the lock is held only to link them in. A get that
 * waits sleeps on a monotonic condition variable; a cancellation token
 * wakes it through a watcher (see cancel.c for the lock order).
 */
#include "loop/queue.h"
#include "util/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
  uint8_t *data; /* NULL: a "no message" */
  size_t len;
} entry;

struct stead_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry *ring;
  size_t cap; /* a power of two */
  size_t head, cursor, tail;
  int closed;
};

int stead_queue_new(stead_queue **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "queue: out is NULL");
  *out = NULL;
  stead_queue *q = calloc(1, sizeof *q);
  if (!q)
    return stead__err(STEAD_ENOMEM, "queue: out of memory");
  q->cap = 64;
  q->ring = calloc(q->cap, sizeof *q->ring);
  if (!q->ring) {
    free(q);
    return stead__err(STEAD_ENOMEM, "queue: out of memory");
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&q->mu, NULL);
  *out = q;
  return 0;
}

void stead_queue_free(stead_queue *q) {
  if (!q)
    return;
  for (size_t i = q->head; i != q->tail; i++)
    free(q->ring[i & (q->cap - 1)].data);
  free(q->ring);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

/* Makes room for n more entries. Called with mu held. */
static int grow(stead_queue *q, size_t n) {
  size_t used = q->tail - q->head;
  if (n > SIZE_MAX / 2 - used)
    return stead__err(STEAD_ENOMEM, "queue: too many messages");
  if (used + n <= q->cap)
    return 0;
  size_t cap = q->cap;
  while (cap < used + n)
    cap *= 2;
  entry *r = malloc(cap * sizeof *r);
  if (!r)
    return stead__err(STEAD_ENOMEM, "queue: out of memory growing to %zu messages", cap);
  for (size_t i = q->head; i != q->tail; i++)
    r[i & (cap - 1)] = q->ring[i & (q->cap - 1)];
  free(q->ring);
  q->ring = r;
  q->cap = cap;
  return 0;
}

static void free_entries(entry *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(e[i].data);
  free(e);
}

/* Copies msgs into fresh entries, outside the lock. */
static int copy_msgs(const stead_msg *msgs, size_t n, entry **out) {
  entry *e = calloc(n ? n : 1, sizeof *e);
  if (!e)
    return stead__err(STEAD_ENOMEM, "queue: out of memory");
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].data) {
      if (msgs[i].len) {
        free_entries(e, i);
        return stead__err(STEAD_EINVAL, "queue: message %zu has NULL data and length %zu",
                          i, msgs[i].len);
      }
      continue;
    }
    /* One byte more so an empty message still has non-NULL data. */
    e[i].data = malloc(msgs[i].len + 1);
    if (!e[i].data) {
      free_entries(e, i);
      return stead__err(STEAD_ENOMEM, "queue: out of memory for a %zu-byte message",
                        msgs[i].len);
    }
    memcpy(e[i].data, msgs[i].data, msgs[i].len);
    e[i].len = msgs[i].len;
  }
  *out = e;
  return 0;
}

int stead_queue_put_many(stead_queue *q, const stead_msg *msgs, size_t n) {
  if (!q || (!msgs && n))
    return stead__err(STEAD_EINVAL, "queue_put: NULL queue or messages");
  if (n == 0)
    return 0;
  entry *e = NULL;
  int rc = copy_msgs(msgs, n, &e);
  if (rc)
    return rc;
  pthread_mutex_lock(&q->mu);
  if (q->closed)
    rc = stead__err(STEAD_ECLOSED, "queue: closed");
  else
    rc = grow(q, n);
  if (rc == 0) {
    for (size_t i = 0; i < n; i++)
      q->ring[(q->tail + i) & (q->cap - 1)] = e[i];
    q->tail += n;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  if (rc)
    free_entries(e, n);
  else
    free(e);
  return rc;
}

int stead_queue_put(stead_queue *q, const void *data, size_t len) {
  stead_msg m = {data, len};
  return stead_queue_put_many(q, &m, 1);
}

void stead_queue_close(stead_queue *q) {
  if (!q)
    return;
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static void wake(void *arg) {
  stead_queue *q = arg;
  pthread_mutex_lock(&q->mu);
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

/* Sleeps until signalled or the deadline. Called with mu held. */
static void sleep_until(stead_queue *q, int64_t deadline_ns) {
  if (deadline_ns == INT64_MAX) {
    pthread_cond_wait(&q->cv, &q->mu);
    return;
  }
  struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                        .tv_nsec = deadline_ns % 1000000000};
  pthread_cond_timedwait(&q->cv, &q->mu, &ts);
}

int stead_queue_get(stead_queue *q, stead_cancel *cancel, int wait, stead_msg *out) {
  if (!q || !out)
    return stead__err(STEAD_EINVAL, "queue_get: NULL queue or out");
  uint64_t wid = 0;
  int watching = 0;
  if (wait && cancel) {
    /* Before taking mu: the watcher takes mu under the token's lock. */
    int rc = stead_cancel_watch(cancel, wake, q, &wid);
    if (rc)
      return rc;
    watching = 1;
  }
  int rc;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    if (q->cursor != q->tail) {
      entry *e = &q->ring[q->cursor++ & (q->cap - 1)];
      *out = (stead_msg){e->data, e->len};
      rc = 0;
      break;
    }
    if (q->closed) {
      rc = stead__err(STEAD_ECLOSED, "queue: closed and drained");
      break;
    }
    if (!wait) {
      rc = stead__err(STEAD_ENOTFOUND, "queue: empty");
      break;
    }
    rc = stead_cancel_check(cancel);
    if (rc)
      break;
    sleep_until(q, stead_cancel_deadline_ns(cancel));
  }
  pthread_mutex_unlock(&q->mu);
  if (watching)
    stead_cancel_unwatch(cancel, wid);
  return rc;
}

int stead__queue_tryget(stead_queue *q, stead_msg *out) {
  pthread_mutex_lock(&q->mu);
  int got = q->cursor != q->tail;
  if (got) {
    entry *e = &q->ring[q->cursor++ & (q->cap - 1)];
    *out = (stead_msg){e->data, e->len};
  }
  pthread_mutex_unlock(&q->mu);
  return got;
}

int stead_queue_commit(stead_queue *q) {
  if (!q)
    return stead__err(STEAD_EINVAL, "queue_commit: NULL queue");
  pthread_mutex_lock(&q->mu);
  for (size_t i = q->head; i != q->cursor; i++) {
    entry *e = &q->ring[i & (q->cap - 1)];
    free(e->data);
    e->data = NULL;
  }
  q->head = q->cursor;
  pthread_mutex_unlock(&q->mu);
  return 0;
}

int stead_queue_rollback(stead_queue *q) {
  if (!q)
    return stead__err(STEAD_EINVAL, "queue_rollback: NULL queue");
  pthread_mutex_lock(&q->mu);
  q->cursor = q->head;
  pthread_mutex_unlock(&q->mu);
  return 0;
}

size_t stead_queue_len(stead_queue *q) {
  if (!q)
    return 0;
  pthread_mutex_lock(&q->mu);
  size_t n = q->tail - q->head;
  pthread_mutex_unlock(&q->mu);
  return n;
}

static int c_get(void *self, stead_cancel *cancel, int wait, stead_msg *out) {
  return stead_queue_get(self, cancel, wait, out);
}
static int c_commit(void *self) {
  return stead_queue_commit(self);
}
static int c_rollback(void *self) {
  return stead_queue_rollback(self);
}
static int p_put(void *self, const stead_msg *msgs, size_t n) {
  return stead_queue_put_many(self, msgs, n);
}

void stead_queue_consumer(stead_queue *q, stead_consumer *c) {
  *c = (stead_consumer){c_get, c_commit, c_rollback, q};
}

void stead_queue_producer(stead_queue *q, stead_producer *p) {
  *p = (stead_producer){p_put, q};
}
