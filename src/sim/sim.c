/*
 * sim.c -- the deterministic simulation driver (policy in sim.h).
 *
 * Owns: the seeded generator, the virtual clock, the disk, the runtime of
 * the current incarnation (opened in manual mode: core.h), the trace hash
 * and the report. Everything runs on the caller's thread; the only source
 * of choice is the generator, so a seed replays exactly.
 *
 * Determinism rules the driver keeps: the next activation is chosen among
 * the runnable ones sorted by (class, id), never by run-queue position or
 * address (the activation table's iteration order depends on addresses);
 * time is only the virtual clock; every fault is decided by the generator.
 *
 * A step: run one activation's slice, complete one commit batch (maybe
 * failing it, or after a slow-disk delay), advance the clock (firing due
 * timers -- call deadlines, the idle sweep -- and alarms), issue a client
 * request, or inject a fault (deactivate an object, sync the disk, make
 * the disk slow, crash). A crash closes the runtime with a dead disk
 * (every commit fails; answers are lost), drops the unsynced tail and
 * opens a new incarnation on what survived.
 */
#include "sim/sim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RUNNABLE 4096
#define WALL_BASE_MS INT64_C(1700000000000)

struct stead__sim {
  stead__sim_opts o;
  stead__sim_report *r;
  uint64_t rng;
  int64_t now_ns;     /* virtual monotonic clock */
  int64_t disk_ready; /* commits wait until the clock reaches this (slow disk) */
  int normal;
  int fail_permille, slow_permille, crash_permille;
  int turns_per_slice;
  stead__simdisk *disk;
  stead_rt *rt;
  int incarnation;
  int crashing;
  int draining; /* inside drain: no faults */
  stead__workload *w;
  stead__act *runnable[MAX_RUNNABLE];
};

/* ---- generator, clock, trace ----------------------------------------- */

static uint64_t next64(stead__sim *s) {
  /* splitmix64: tiny, full-period, good enough to drive choices. */
  uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t stead__sim_rand(stead__sim *s, uint64_t n) {
  return n ? next64(s) % n : 0;
}

static int chance(stead__sim *s, int permille) {
  return (int)stead__sim_rand(s, 1000) < permille;
}

int64_t stead__sim_now_ms(stead__sim *s) {
  return WALL_BASE_MS + s->now_ns / 1000000;
}

static int64_t clock_ms(void *u) {
  return stead__sim_now_ms(u);
}

static int64_t mono_ns(void *u) {
  return ((stead__sim *)u)->now_ns;
}

void stead__sim_trace_v(uint64_t *hash, FILE *out, int64_t now_us, const char *fmt,
                        va_list ap) {
  char line[512];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  uint64_t h = *hash;
  for (int i = 0; i < n; i++)
    h = (h ^ (uint8_t)line[i]) * 0x100000001B3ULL;
  *hash = (h ^ '\n') * 0x100000001B3ULL;
  if (out)
    fprintf(out, "%lld %s\n", (long long)now_us, line);
}

void stead__sim_trace(stead__sim *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  stead__sim_trace_v(&s->r->trace_hash, s->o.trace, s->now_ns / 1000, fmt, ap);
  va_end(ap);
}

void stead__sim_check(stead__sim *s, int ok, const char *fmt, ...) {
  s->r->checks++;
  if (ok)
    return;
  if (s->r->violations++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->r->first_violation, sizeof s->r->first_violation, fmt, ap);
    va_end(ap);
  }
  stead__sim_trace(s, "VIOLATION %s", s->r->first_violation);
}

stead__sim *stead__sim_of(stead_ctx *ctx) {
  stead_rt *rt = stead__ctx_rt(ctx);
  return rt && rt->manual ? rt->manual->u : NULL;
}

stead_rt *stead__sim_rt(stead__sim *s) {
  return s->rt;
}

int stead__sim_incarnation(stead__sim *s) {
  return s->incarnation;
}

int stead__sim_crashing(stead__sim *s) {
  return s->crashing;
}

uint64_t stead__sim_syncs(stead__sim *s) {
  return stead__simdisk_syncs(s->disk);
}

int stead__sim_normal(stead__sim *s) {
  return s->normal;
}

stead__workload *stead__sim_workload(stead__sim *s) {
  return s->w;
}

stead__sim_report *stead__sim_report_of(stead__sim *s) {
  return s->r;
}

/* ---- actions ---------------------------------------------------------- */

static int by_name(const void *a, const void *b) {
  const stead__act *x = *(stead__act *const *)a, *y = *(stead__act *const *)b;
  int c = strcmp(x->crec->cls->name, y->crec->cls->name);
  return c ? c : strcmp(x->id, y->id);
}

/* Runs one slice of a runnable activation; 0 if none was runnable. */
static int run_slice(stead__sim *s) {
  size_t n = stead__rq_snapshot(s->rt, s->runnable, MAX_RUNNABLE);
  if (n == 0)
    return 0;
  if (n > MAX_RUNNABLE)
    n = MAX_RUNNABLE;
  qsort(s->runnable, n, sizeof *s->runnable, by_name);
  stead__act *a = s->runnable[stead__sim_rand(s, n)];
  stead__sim_trace(s, "slice %s/%s", a->crec->cls->name, a->id);
  stead__rq_take(s->rt, a);
  /* Handlers and the runtime see a worker thread of this runtime. */
  stead__set_current_rt(s->rt);
  stead__run_slice(s->rt, a);
  stead__set_current_rt(NULL);
  s->r->slices++;
  return 1;
}

/* Completes one commit batch of a random size; maybe fails it. */
static int commit_batch(stead__sim *s, int faults) {
  size_t q = stead__committer_queued(s->rt->committer);
  if (q == 0 || (faults && s->now_ns < s->disk_ready))
    return 0;
  size_t max = 1 + (size_t)stead__sim_rand(s, q < 8 ? q : 8);
  if (s->o.lying_disk && chance(s, 100)) {
    stead__simdisk_lie_next(s->disk, 1);
    stead__sim_trace(s, "lie");
  }
  int fail = faults && chance(s, s->fail_permille);
  if (fail) {
    stead__simdisk_fail_next(s->disk, 1);
    s->r->commit_failures++;
  }
  size_t n = stead__committer_step(s->rt->committer, max);
  stead__sim_trace(s, "commit %zu%s", n, fail ? " FAIL" : "");
  s->r->commit_batches++;
  return 1;
}

/* Runs one event queued on the runtime's bus (its object deliveries). */
static int bus_event(stead__sim *s) {
  if (!stead__bus_rt_run_one(s->rt))
    return 0;
  stead__sim_trace(s, "bus event");
  s->r->bus_events++;
  return 1;
}

/* Fires what the clock made due: timers (deadlines, sweep) and alarms. */
static void fire_due(stead__sim *s) {
  int t = stead__timerq_fire_due(&s->rt->timers, s->now_ns);
  int a = stead__alarm_rt_run_due(s->rt);
  s->r->timers_fired += (uint64_t)t;
  if (a > 0)
    s->r->alarms_fired += (uint64_t)a;
  if (t || a)
    stead__sim_trace(s, "fired timers=%d alarms=%d", t, a);
}

static void advance(stead__sim *s, int64_t ns) {
  s->now_ns += ns;
  s->r->clock_advances++;
  stead__sim_trace(s, "clock +%lldus", (long long)(ns / 1000));
  fire_due(s);
}

/* Mostly small steps (turns interleave within a commit's latency), now
 * and then a jump (deadlines, retries, idle timeouts). */
static void advance_random(stead__sim *s) {
  uint64_t k = stead__sim_rand(s, 100);
  int64_t us = k < 70   ? 1 + (int64_t)stead__sim_rand(s, 2000)
               : k < 95 ? 2000 + (int64_t)stead__sim_rand(s, 200000)
                        : 200000 + (int64_t)stead__sim_rand(s, 5000000);
  advance(s, us * 1000);
}

static int open_incarnation(stead__sim *s);
static void close_incarnation(stead__sim *s);

static void crash(stead__sim *s) {
  s->r->crashes++;
  uint64_t syncs = stead__simdisk_syncs(s->disk);
  stead__sim_trace(s, "CRASH unsynced=%zu", stead__simdisk_unsynced(s->disk));
  stead__simdisk_crash(s->disk);
  s->crashing = 1;
  stead__workload_crashed(s->w, syncs);
  close_incarnation(s);
  s->crashing = 0;
  if (open_incarnation(s) != 0)
    stead__sim_check(s, 0, "seed %llu: cannot reopen after a crash: %s",
                     (unsigned long long)s->o.seed, stead_errmsg());
}

static void fault(stead__sim *s) {
  uint64_t k = stead__sim_rand(s, 1000);
  if (k < 500) {
    const char *cls, *id;
    stead__workload_pick_object(s->w, &cls, &id);
    const stead__class_rec *c = stead__class_find(s->rt, cls);
    int q = c ? stead__queue_deactivate(s->rt, c, id, NULL) : 0;
    stead__sim_trace(s, "deactivate %s/%s -> %d", cls, id, q);
    s->r->deactivations += q == 1;
  } else if (k < 800) {
    stead__simdisk_sync(s->disk);
    stead__sim_trace(s, "sync");
  } else if (k < (uint64_t)(1000 - s->crash_permille)) {
    int64_t d = 1000000 * (1 + (int64_t)stead__sim_rand(s, 500));
    s->disk_ready = s->now_ns + d;
    s->r->slow_commits++;
    stead__sim_trace(s, "slow disk %lldms", (long long)(d / 1000000));
  } else {
    crash(s);
  }
}

int stead__sim_step(stead__sim *s) {
  /* Weighted choice; an action that cannot run falls through to the
   * clock, which always can. */
  static const int weight[STEAD__SIM_NACTIONS] = {40, 20, 15, 20, 5, 8};
  int total = 0;
  for (int i = 0; i < STEAD__SIM_NACTIONS; i++)
    total += (i == STEAD__SIM_FAULT && !s->o.faults) ? 0 : weight[i];
  int k = (int)stead__sim_rand(s, (uint64_t)total), act = 0;
  while (k >= weight[act] || (act == STEAD__SIM_FAULT && !s->o.faults)) {
    if (!(act == STEAD__SIM_FAULT && !s->o.faults))
      k -= weight[act];
    act++;
  }
  s->r->steps++;
  switch (act) {
  case STEAD__SIM_SLICE:
    if (run_slice(s))
      return act;
    break;
  case STEAD__SIM_COMMIT:
    if (commit_batch(s, s->o.faults))
      return act;
    break;
  case STEAD__SIM_REQUEST:
    stead__workload_request(s->w);
    s->r->requests++;
    return act;
  case STEAD__SIM_FAULT:
    fault(s);
    return act;
  case STEAD__SIM_BUS:
    if (bus_event(s))
      return act;
    break;
  default:
    break;
  }
  advance_random(s);
  return STEAD__SIM_CLOCK;
}

/* Runs until nothing is in flight: slices and commits only (no faults);
 * the clock moves only if something waits for it. What stead_close and
 * stead_run_until_idle wait for in manual mode. */
static void drain(void *u) {
  stead__sim *s = u;
  s->draining++;
  for (int guard = 0; guard < 1000000; guard++) {
    if (run_slice(s) || bus_event(s))
      continue;
    if (stead__committer_queued(s->rt->committer) > 0) {
      commit_batch(s, 0);
      continue;
    }
    if (atomic_load(&s->rt->inflight) == 0)
      break;
    int64_t when;
    if (!stead__timerq_next(&s->rt->timers, &when)) {
      stead__sim_check(s, 0, "seed %llu: %ld messages in flight, nothing can run",
                       (unsigned long long)s->o.seed,
                       (long)atomic_load(&s->rt->inflight));
      break;
    }
    advance(s, when > s->now_ns ? when - s->now_ns : 0);
  }
  s->draining--;
}

/* ---- incarnations ----------------------------------------------------- */

static int open_incarnation(stead__sim *s) {
  stead__backend *be;
  int rc = stead__simbe_open(s->disk, &be);
  if (rc)
    return rc;
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.clock = clock_ms;
  cfg.clock_udata = s;
  cfg.durability = s->normal ? STEAD_DURABILITY_NORMAL : STEAD_DURABILITY_FULL;
  cfg.turns_per_slice = s->turns_per_slice;
  cfg.mailbox_limit = 64;
  cfg.default_timeout_ms = 2000;
  cfg.alarm_retry_base_ms = 100;
  cfg.alarm_max_attempts = 4;
  cfg.alarm_window_ms = 10000;
  stead__manual man = {.mono_ns = mono_ns, .drain = drain, .u = s, .backend = be};
  if ((rc = stead__open_manual(&cfg, &man, &s->rt)) != 0)
    return rc;
  s->incarnation++;
  s->disk_ready = 0;
  if ((rc = stead__workload_register(s->w, s->rt)) != 0)
    return rc;
  stead__workload_reopened(s->w);
  /* Alarms that were due while down fire now. */
  fire_due(s);
  stead__sim_trace(s, "open incarnation %d", s->incarnation);
  return 0;
}

static void close_incarnation(stead__sim *s) {
  if (!s->rt)
    return;
  stead_close(s->rt);
  s->rt = NULL;
}

/* ---- a run ------------------------------------------------------------ */

/* Lets everything settle with faults off: drain, then move the clock
 * until every owed alarm fired (retries included), bounded. */
static void quiesce(stead__sim *s) {
  s->disk_ready = 0;
  drain(s);
  for (int i = 0; i < 600 && stead__workload_alarms_owed(s->w); i++) {
    advance(s, 1000000000);
    drain(s);
  }
  drain(s);
}

static void pick_profile(stead__sim *s) {
  s->normal = s->o.durability == STEAD_DURABILITY_NORMAL ||
              (s->o.durability < 0 && stead__sim_rand(s, 2) == 1);
  s->turns_per_slice = 1 + (int)stead__sim_rand(s, 4);
  if (s->o.faults) {
    s->fail_permille = (int)stead__sim_rand(s, 150);
    s->crash_permille = (int)stead__sim_rand(s, 40);
  }
  stead__sim_trace(s, "profile normal=%d slice=%d fail=%d crash=%d", s->normal,
                   s->turns_per_slice, s->fail_permille, s->crash_permille);
}

int stead__sim_run(const stead__sim_opts *o, stead__sim_report *r) {
  memset(r, 0, sizeof *r);
  r->trace_hash = 0xCBF29CE484222325ULL;
  r->seed = o->seed;
  stead__sim *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory");
  s->o = *o;
  if (s->o.steps <= 0)
    s->o.steps = 2000;
  s->r = r;
  s->rng = o->seed;
  s->now_ns = 1000000000;
  pick_profile(s);
  r->durability = s->normal ? STEAD_DURABILITY_NORMAL : STEAD_DURABILITY_FULL;
  int rc = stead__simdisk_new(s->normal, &s->disk);
  if (rc == 0)
    rc = stead__workload_new(s, &s->w);
  if (rc == 0)
    rc = open_incarnation(s);
  if (rc == 0) {
    for (int i = 0; i < s->o.steps && s->rt; i++)
      stead__sim_step(s);
    quiesce(s);
    stead__workload_final(s->w);
    stead__sim_lease_run(s, s->o.lease_steps > 0 ? s->o.lease_steps : 3000,
                         s->o.lease_bug);
  } else {
    stead__sim_check(s, 0, "seed %llu: the simulation could not start: %s",
                     (unsigned long long)o->seed, stead_errmsg());
  }
  close_incarnation(s);
  r->lost_sets = s->disk ? stead__simdisk_lost(s->disk) : 0;
  r->syncs = s->disk ? stead__simdisk_syncs(s->disk) : 0;
  stead__workload_free(s->w);
  stead__simdisk_free(s->disk);
  free(s);
  return rc;
}
