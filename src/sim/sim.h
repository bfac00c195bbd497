/*
 * sim.h -- deterministic simulation of the runtime (internal; used by the
 * `stead-sim` program and tests/sim/).
 *
 * One seed drives everything: the virtual clock, which runnable object
 * runs next, when commit batches complete and how big they are, which
 * commits fail or are slow, crashes that lose the unsynced tail, idle
 * deactivations, and the workload's requests. The runtime runs in manual
 * mode (core.h: no threads), so a seed replays exactly: the same seed
 * gives the same trace hash. Invariants are checked as the run goes and at
 * its end; a violation names the seed that reproduces it.
 */
#ifndef STEAD_SIM_SIM_H
#define STEAD_SIM_SIM_H

#include "core/core.h"
#include "storage/backend.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the simulated disk (simbe.c) -------------------------------------- */

typedef struct stead__simdisk stead__simdisk;

/* A new empty disk. normal: durability normal (commits are durable only at
 * the next stead__simdisk_sync), else every commit syncs. */
int stead__simdisk_new(int normal, stead__simdisk **out);
void stead__simdisk_free(stead__simdisk *d);
/* A backend over the disk for a new incarnation: replays the durable log
 * (after a clean close the unsynced tail is synced first). The caller owns
 * the backend; the disk must outlive it. Errors: ENOMEM. */
int stead__simbe_open(stead__simdisk *d, stead__backend **out);
/* Makes the unsynced tail durable. Errors: ENOMEM. */
int stead__simdisk_sync(stead__simdisk *d);
/* Power loss: the unsynced tail is gone; commits fail until reopened. */
void stead__simdisk_crash(stead__simdisk *d);
/* The next n commits fail with ESTORAGE and write nothing. */
void stead__simdisk_fail_next(stead__simdisk *d, int n);
/* The next n commits report success and write nothing: a lying disk, for
 * tests that prove the invariants catch a lost write. */
void stead__simdisk_lie_next(stead__simdisk *d, int n);
uint64_t stead__simdisk_syncs(const stead__simdisk *d);
uint64_t stead__simdisk_lost(const stead__simdisk *d);
uint64_t stead__simdisk_failed(const stead__simdisk *d);
size_t stead__simdisk_unsynced(const stead__simdisk *d);

/* Shared mode (the cluster simulation): one live store for every node,
 * durability full. fence(u, who, shard, epoch) decides whether node `who`
 * may commit a write set of tenure (shard, epoch != 0): 0, or non-zero to
 * refuse the whole batch with ENOTOWNER (as PostgreSQL does). */
typedef int (*stead__simdisk_fence_fn)(void *u, int who, uint32_t shard, uint64_t epoch);
/* A handle of node `who` on the disk's shared store (created on first
 * use). The caller owns the handle; closing it leaves the store. */
int stead__simbe_open_shared(stead__simdisk *d, int who, stead__simdisk_fence_fn fence,
                             void *fence_u, stead__backend **out);
/* Node of handle b was killed: its commits fail from now on. */
void stead__simbe_kill(stead__backend *b);
/* The shared store (final checks read it), or NULL before the first handle. */
stead__backend *stead__simdisk_shared(stead__simdisk *d);

/* ---- a run ------------------------------------------------------------- */

typedef struct stead__sim_opts {
  uint64_t seed;
  int steps;       /* driver steps with faults and load; default 2000 */
  int faults;      /* 0: no injected faults (default 1) */
  int durability;  /* STEAD_DURABILITY_FULL/NORMAL; -1: the seed picks */
  FILE *trace;     /* non-NULL: every trace line is printed here */
  int lying_disk;  /* tests: some commits are acknowledged but not written */
  int lease_steps; /* steps of the lease model (lease.c); default 3000 */
  int lease_bug;   /* tests: nodes measure lease validity from the reply */
  /* stead__simnet_run: 2..4 nodes (0: the seed picks), and a planted bug
   * for the tests that prove the checks can fail (STEAD__NETBUG_*). */
  int nodes;
  int net_bug;
} stead__sim_opts;

#define STEAD__NETBUG_NO_DEDUP 1 /* the runtime's duplicate defence off */
#define STEAD__NETBUG_NO_FENCE 2 /* the store accepts stale tenures */
#define STEAD__NETBUG_REORDER  3 /* the network reorders within a connection */

/* What a run did and found. */
typedef struct stead__sim_report {
  uint64_t seed;
  uint64_t trace_hash; /* FNV-1a of every trace line */
  int durability;
  uint64_t steps, slices, commit_batches, clock_advances, timers_fired;
  uint64_t alarms_fired, bus_events, deliveries, requests, acked, failed, unknown;
  /* faults injected */
  uint64_t commit_failures, slow_commits, crashes, lost_sets, deactivations, syncs;
  uint64_t handler_failures;
  /* lease model */
  uint64_t lease_epochs, lease_commits, lease_commits_fenced, lease_lost_replies;
  uint64_t lease_kills, lease_joins, lease_pauses;
  /* cluster simulation (simnet.c) */
  uint64_t net_nodes, net_messages, net_delivered, net_delayed, net_reordered;
  uint64_t net_dropped, net_duplicated, net_retries, net_tenures, net_moves, net_lost;
  uint64_t net_kills, net_restarts, net_pauses, net_fenced, net_commits;
  uint64_t net_event_redelivered; /* an event again after its subscriber moved */
  uint64_t checks;                /* invariant checks made */
  uint64_t violations;            /* must be 0 */
  char first_violation[512];
} stead__sim_report;

/* Runs one seed to the end (load, quiesce, final checks). Returns 0 when
 * the run completed (look at report->violations), or a negative code when
 * the simulation itself could not run (ENOMEM, a runtime that would not
 * open): that is reported as a violation too. */
int stead__sim_run(const stead__sim_opts *o, stead__sim_report *r);

/* The cluster simulation (simnet.c): K runtimes in manual mode, each a
 * cluster node on a simulated node (leases, a seeded network that delays,
 * reorders across connections, drops and duplicates), sharing one fenced
 * store, all driven by o->seed on the caller's thread. Same contract as
 * stead__sim_run. */
int stead__simnet_run(const stead__sim_opts *o, stead__sim_report *r);

/* ---- inside the simulation (sim.c, workload.c) ------------------------- */

typedef struct stead__sim stead__sim;
typedef struct stead__workload stead__workload;

/* Driver actions (sim.c). */
typedef enum stead__sim_action {
  STEAD__SIM_SLICE,   /* run one runnable activation's slice */
  STEAD__SIM_COMMIT,  /* complete one commit batch */
  STEAD__SIM_CLOCK,   /* advance the clock; fire timers and alarms */
  STEAD__SIM_REQUEST, /* a client request (the workload picks) */
  STEAD__SIM_FAULT,   /* a fault: deactivation, sync, slow disk, crash */
  STEAD__SIM_BUS,     /* run one event queued on the runtime's bus */
  STEAD__SIM_NACTIONS
} stead__sim_action;

/* One step: picks an action by the seed and runs it. Returns the action
 * taken, or -1 if nothing could be done. */
int stead__sim_step(stead__sim *s);

/* Uniform in [0, n) from the run's generator (n > 0). */
uint64_t stead__sim_rand(stead__sim *s, uint64_t n);
/* Folds a formatted line into *hash (FNV-1a, the line then '\n') and
 * prints it with the time in us when `out` is non-NULL: one trace format
 * for the single-runtime and the cluster simulations. */
void stead__sim_trace_v(uint64_t *hash, FILE *out, int64_t now_us, const char *fmt,
                        va_list ap);
/* A decimal uint64 stored under `key` (0 when absent; *err set on a
 * storage error), and its write. For the workloads' handlers. */
uint64_t stead__sim_get_u64(stead_ctx *ctx, const char *key, int *err);
int stead__sim_put_u64(stead_ctx *ctx, const char *key, uint64_t x);
/* Adds a formatted line to the trace (and prints it if tracing). */
void stead__sim_trace(stead__sim *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Records an invariant check; ok == 0 is a violation with its message. */
void stead__sim_check(stead__sim *s, int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The simulation a turn runs in (handlers reach it through their ctx). */
stead__sim *stead__sim_of(stead_ctx *ctx);
stead_rt *stead__sim_rt(stead__sim *s);
/* The virtual wall clock, ms. */
int64_t stead__sim_now_ms(stead__sim *s);
/* The runtime incarnation (bumped by every crash and reopen). */
int stead__sim_incarnation(stead__sim *s);
/* 1 while a crash is being carried out: answers arriving now never reach
 * a client, so the workload counts them as unknown. */
int stead__sim_crashing(stead__sim *s);
/* Syncs of the disk so far, and whether durability is normal. */
uint64_t stead__sim_syncs(stead__sim *s);
int stead__sim_normal(stead__sim *s);
stead__sim_report *stead__sim_report_of(stead__sim *s);
stead__workload *stead__sim_workload(stead__sim *s);

/* The lease model (lease.c): nodes, the store's compare-and-set, message
 * delays, kills, joins and pauses, driven by the run's generator. */
void stead__sim_lease_run(stead__sim *s, int steps, int bug);

/* The workload (workload.c). */
int stead__workload_new(stead__sim *s, stead__workload **out);
void stead__workload_free(stead__workload *w);
/* Registers the classes with a fresh incarnation. */
int stead__workload_register(stead__workload *w, stead_rt *rt);
/* Issues one client request chosen by the seed. */
void stead__workload_request(stead__workload *w);
/* A crash happened: pending and not-yet-durable outcomes become unknown. */
void stead__workload_crashed(stead__workload *w, uint64_t syncs_at_crash);
/* A new incarnation opened (per-incarnation trackers reset). */
void stead__workload_reopened(stead__workload *w);
/* Everything acknowledged has settled: 1 while alarms are still owed. */
int stead__workload_alarms_owed(stead__workload *w);
/* The final checks against storage. */
void stead__workload_final(stead__workload *w);
/* A random object to deactivate: class and id (static storage). */
void stead__workload_pick_object(stead__workload *w, const char **cls, const char **id);

#endif
