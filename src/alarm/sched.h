/*
 * sched.h -- the durable alarm scheduler: decides WHEN each stored alarm
 * fires, without knowing what firing means.
 *
 * Alarms live in the storage backend (written atomically with a turn's
 * other writes). The scheduler keeps in memory only the alarms due within
 * a window (default the next minute) and pages later ones in from the
 * backend's time index (alarms_scan) before they are needed, in bounded
 * pages. One scheduler thread sleeps until the next due alarm, the next
 * page load or a wake-up; nothing is per alarm.
 *
 * The runtime plugs in through callbacks and notifications:
 *   fire        an alarm is due: enqueue its on_alarm turn (0 = accepted);
 *   notify_*    after a commit changed alarms (from the committer thread);
 *   done        the fired turn finished, AFTER that turn's commit has been
 *               notified (or failed without touching the alarm);
 *   backoff     the delay before the next retry of a failed attempt.
 *
 * Attempts: a freshly set alarm has attempt 0. When its turn fails, the
 * runtime re-sets it with attempt+1 at now + backoff(attempt), or deletes
 * it and emits a dead letter when backoff() returns -1.
 */
#ifndef STEAD_ALARM_SCHED_H
#define STEAD_ALARM_SCHED_H

#include "storage/backend.h"
#include "util/metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct stead__alarms stead__alarms;

/* Fires one alarm: called on the scheduler thread (or the caller of
 * stead__alarms_run_due) without any scheduler lock held, so it may call
 * stead__alarms_done / notify_* itself. Strings and meta are owned by the
 * scheduler and valid during the call only. Return 0 if the turn was
 * accepted (the alarm is then in flight until stead__alarms_done), non-zero
 * if not (e.g. a full mailbox): the scheduler tries again after
 * refire_delay_ms, and holds back that object's other alarms until then. */
typedef int (*stead__alarm_fire_fn)(void *udata, const char *cls, const char *id,
                                    const char *name, int64_t at_ms, uint32_t attempt,
                                    const void *meta, size_t meta_len);

/* Shard of an object. Must be a pure function of (cls, id); called from
 * any thread without scheduler locks held. */
typedef uint32_t (*stead__alarm_shard_fn)(void *udata, const char *cls, const char *id);

/* Largest shard number + 1 that stead__alarms_own accepts. */
#define STEAD__ALARM_MAX_SHARDS (1u << 24)

typedef struct stead__alarms_opts {
  /* Clock in ms since the epoch (alarm times are wall times). NULL: the
   * system wall clock. Called from any thread. */
  int64_t (*now_ms)(void *udata);
  void *clock_udata;
  int64_t window_ms;   /* alarms due before now+window are in memory; 60000 */
  size_t page_size;    /* rows per backend page; 1000 */
  size_t max_inflight; /* fired, not yet done; 1000 */
  /* Retries of failed attempts: delay(attempt) = base * factor^attempt,
   * capped at retry_cap_ms (0: no cap); after max_attempts attempts in
   * all, no more retries (dead letter). Defaults 1000, 2.0, 6, 0. */
  int64_t retry_base_ms;
  double retry_factor;
  uint32_t max_attempts;
  int64_t retry_cap_ms;
  /* Delay before firing again an alarm whose fire was refused, or whose
   * turn was reported done without having changed it; 100. */
  int64_t refire_delay_ms;
  /* The thread re-reads the clock at least this often, so a wall-clock
   * jump is noticed; 1000. */
  int64_t max_sleep_ms;
  stead__alarm_fire_fn fire; /* required */
  void *fire_udata;
  /* NULL: every object is in shard 0, and shard 0 is owned from the start.
   * Otherwise no shard is owned until stead__alarms_own. */
  stead__alarm_shard_fn shard_of;
  void *shard_udata;
  /* 1: start no thread; the caller drives the scheduler with
   * stead__alarms_poke / stead__alarms_run_due (deterministic tests). */
  int manual;
} stead__alarms_opts;

/* Starts a scheduler over `b` (borrowed; must outlive the scheduler).
 * Zero fields of opts take their defaults. It begins by paging in what is
 * already due (catch-up after downtime, oldest first, bounded by
 * max_inflight). Errors: EINVAL (NULL b/opts/fire, negative or absurd
 * option), ENOMEM, EIO (thread). */
int stead__alarms_start(stead__backend *b, const stead__alarms_opts *opts,
                        stead__alarms **out);

/* Stops the thread (waiting for a fire callback in progress) and frees the
 * scheduler. No callback runs after it returns; the runtime must not call
 * into the scheduler concurrently or afterwards. NULL allowed. */
void stead__alarms_stop(stead__alarms *s);

/* Notifications after a commit changed alarms: call them in commit order
 * (the committer thread does), after the commit is durable. The strings and
 * meta are copied. Thread-safe. Errors: EINVAL (NULL or empty string),
 * ETOOBIG (name over STEAD__MAX_NAME bytes, meta over STEAD__MAX_ALARM_META),
 * ENOMEM (the scheduler's memory is then stale: it resets its window and
 * reloads from the backend, so nothing is lost). */
int stead__alarms_notify_set(stead__alarms *s, const char *cls, const char *id,
                             const char *name, int64_t at_ms, uint32_t attempt,
                             const void *meta, size_t meta_len);
int stead__alarms_notify_del(stead__alarms *s, const char *cls, const char *id,
                             const char *name);
int stead__alarms_notify_clear(stead__alarms *s, const char *cls, const char *id);

/* The turn of a fired alarm finished. `attempt` is the one passed to fire.
 * Call it after notifying the turn's commit: if the alarm was deleted or
 * re-set, the scheduler follows that; if it was left unchanged, it fires
 * again after refire_delay_ms. Thread-safe. Errors: EINVAL, ENOTFOUND (no
 * such alarm in flight with that attempt). */
int stead__alarms_done(stead__alarms *s, const char *cls, const char *id,
                       const char *name, uint32_t attempt);

/* Delay in ms before retrying after attempt `attempt` (0-based) failed, or
 * -1 if that was the last allowed attempt (the runtime then deletes the
 * alarm, emits a dead letter and calls stead__alarms_dead_letter). */
int64_t stead__alarms_backoff(const stead__alarms *s, uint32_t attempt);

/* Counts one dead-lettered alarm (the runtime reports it). */
void stead__alarms_dead_letter(stead__alarms *s);

/* Cluster: only alarms of owned shards fire. Disowning drops the shard's
 * alarms from memory (one in flight finishes, then is forgotten); owning
 * reloads the window from the backend. Thread-safe. Errors: EINVAL (shard
 * >= STEAD__ALARM_MAX_SHARDS), ENOMEM. */
int stead__alarms_own(stead__alarms *s, uint32_t shard);
int stead__alarms_disown(stead__alarms *s, uint32_t shard);
/* 1 if the shard is owned. */
int stead__alarms_owns(stead__alarms *s, uint32_t shard);

/* Re-evaluates now (after an injected clock moved): wakes the thread, or
 * in manual mode loads the pages the new window needs (without firing).
 * Returns 0 or the backend's error of a failed page load. */
int stead__alarms_poke(stead__alarms *s);

/* Fires on the caller's thread everything due now (paging as needed),
 * until nothing is due or max_inflight alarms are in flight. Returns the
 * number of alarms fired (accepted), or a negative error of a page load. */
int stead__alarms_run_due(stead__alarms *s);

/* Alarms held in memory: waiting in the index plus in flight. */
size_t stead__alarms_pending_in_memory(stead__alarms *s);

typedef struct stead__alarm_stats {
  uint64_t pending;       /* in memory now (index + in flight) */
  uint64_t pending_peak;  /* high-water mark of `pending` */
  uint64_t inflight;      /* fired, not yet done */
  uint64_t fired;         /* fire callbacks that accepted */
  uint64_t refused;       /* fire callbacks that refused */
  uint64_t retried;       /* done with the alarm re-set at a higher attempt */
  uint64_t dead_lettered; /* reported by the runtime */
  uint64_t pages_loaded;  /* backend scans */
  uint64_t rows_loaded;   /* alarms read by those scans */
  uint64_t page_errors;   /* failed scans (retried after a second) */
  uint64_t replayed;      /* notifications that raced a scan, replayed */
  /* Due time to fire callback, in seconds (stead__latency_bounds). Owned
   * by the scheduler, valid until stead__alarms_stop. */
  const stead__hist *lateness;
} stead__alarm_stats;

/* A snapshot of the counters. Thread-safe. */
void stead__alarms_stats(stead__alarms *s, stead__alarm_stats *out);

/* Appends the counters in Prometheus text (stead_alarms_* families) to b.
 * Errors: ENOMEM. */
int stead__alarms_metrics_text(stead__alarms *s, stead__buf *b);

#endif
