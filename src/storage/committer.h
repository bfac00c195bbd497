/*
 * committer.h -- group commit: one thread turns write sets submitted by
 * many activations into few backend transactions.
 *
 * Batching: the committer takes everything queued (up to max_batch) as one
 * transaction. While a commit runs (one sync), new submissions queue up
 * and form the next batch, so the batch size grows with load on its own.
 * An idle committer commits a lone submission at once; max_delay_us only
 * applies under load (the previous batch held more than one set): then it
 * waits up to that long after the first set arrived for the batch to fill.
 *
 * Callbacks: every accepted submission's callback runs exactly once, on
 * the committer thread, in submission order: rc 0 (durable), the batch's
 * error (the whole batch failed; nothing of it was written), or
 * STEAD_ECANCELED for a set whose `cancelled` flag was set before its batch
 * formed (the activation store sets it when an earlier set of the same
 * object failed). For exact cancellation the activation store's on_failed
 * must be called from within the failed set's callback.
 */
#ifndef STEAD_STORAGE_COMMITTER_H
#define STEAD_STORAGE_COMMITTER_H

#include "storage/backend.h"

typedef struct stead__committer stead__committer;

/* Called once per submitted set. `ws` is still referenced by the committer
 * during the call; take a reference to keep it. Must not block for long
 * and must not call flush/close. */
typedef void (*stead__commit_cb)(void *udata, stead__wset *ws, int rc);

typedef struct stead__committer_opts {
  size_t max_batch; /* sets per transaction; default 256 */
  int max_delay_us; /* linger under load; default 1000; 0 disables */
  /* 1: no thread (deterministic simulation). Batches run only on the
   * caller's thread: stead__committer_step, or flush/close, which commit
   * everything queued inline. Callbacks then run on that thread. */
  int manual;
} stead__committer_opts;

/* Starts the thread. `b` is borrowed and must outlive the committer. opts
 * may be NULL for defaults. Errors: EINVAL, ENOMEM, EIO (thread). */
int stead__committer_start(stead__backend *b, const stead__committer_opts *opts,
                           stead__committer **out);

/* Queues `ws` (the committer takes its own reference). Thread-safe. On 0
 * the callback will run exactly once; on error (ECLOSED, ENOMEM) never. */
int stead__committer_submit(stead__committer *c, stead__wset *ws, stead__commit_cb cb,
                            void *udata);

/* Blocks until every set submitted before the call has had its callback
 * run. Must not be called on the committer thread (EMISUSE). */
int stead__committer_flush(stead__committer *c);

/* Refuses new submissions, commits what is queued, runs its callbacks,
 * stops the thread and frees the committer. NULL allowed. Not from the
 * committer thread. */
void stead__committer_close(stead__committer *c);

/* Histogram bucket upper bounds (the last bucket is +Inf). */
#define STEAD__BATCH_BUCKETS 10 /* 1 2 4 8 16 32 64 128 256 +Inf */
#define STEAD__LAT_BUCKETS                                                               \
  14 /* us: 100 250 500 1e3 2.5e3 5e3 1e4 2.5e4 5e4 1e5                                  \
        2.5e5 5e5 1e6 +Inf */
extern const double stead__batch_le[STEAD__BATCH_BUCKETS - 1];
extern const double stead__lat_le_us[STEAD__LAT_BUCKETS - 1];

/* A snapshot of the counters. Bucket counts are per bucket (not
 * cumulative); Prometheus exposition sums them. */
typedef struct stead__commit_stats {
  uint64_t batches;        /* backend transactions attempted */
  uint64_t batches_failed; /* of which failed */
  uint64_t sets_committed; /* write sets made durable */
  uint64_t sets_failed;    /* in failed batches */
  uint64_t sets_canceled;  /* skipped because an earlier set failed */
  uint64_t queued;         /* submitted, callback not yet run */
  uint64_t batch_size[STEAD__BATCH_BUCKETS];
  uint64_t batch_size_sum;
  uint64_t latency[STEAD__LAT_BUCKETS]; /* backend commit time */
  uint64_t latency_sum_us;
} stead__commit_stats;

/* Manual mode: commits one batch of at most max_sets queued sets (0: the
 * configured max_batch) on the caller's thread and runs its callbacks.
 * Returns how many sets the batch held (0: the queue was empty). */
size_t stead__committer_step(stead__committer *c, size_t max_sets);
/* Sets submitted whose callback has not run yet. */
size_t stead__committer_queued(stead__committer *c);

/* Reads the counters. Thread-safe, lock-free. */
void stead__committer_stats(stead__committer *c, stead__commit_stats *out);

#endif
