/*
 * sim_main.c -- `stead-sim`: runs seeds of the deterministic simulation
 * (src/sim/) and prints, for every failing seed, the seed and the command
 * that replays it with a trace.
 *
 *   stead-sim [--seeds N] [--first F] [--seed S] [--steps K]
 *             [--durability full|normal] [--no-faults] [--trace]
 *
 * Exit status: 0 when every run held every invariant, 1 otherwise, 2 on a
 * usage error.
 */
#include "sim/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--seeds N] [--first F] [--seed S] [--steps K]\n"
          "          [--durability full|normal] [--no-faults] [--trace]\n",
          argv0);
  return 2;
}

static void add(stead__sim_report *t, const stead__sim_report *r) {
  t->steps += r->steps;
  t->slices += r->slices;
  t->commit_batches += r->commit_batches;
  t->clock_advances += r->clock_advances;
  t->alarms_fired += r->alarms_fired;
  t->bus_events += r->bus_events;
  t->deliveries += r->deliveries;
  t->requests += r->requests;
  t->acked += r->acked;
  t->failed += r->failed;
  t->unknown += r->unknown;
  t->commit_failures += r->commit_failures;
  t->slow_commits += r->slow_commits;
  t->crashes += r->crashes;
  t->lost_sets += r->lost_sets;
  t->deactivations += r->deactivations;
  t->syncs += r->syncs;
  t->handler_failures += r->handler_failures;
  t->lease_epochs += r->lease_epochs;
  t->lease_commits += r->lease_commits;
  t->lease_commits_fenced += r->lease_commits_fenced;
  t->lease_lost_replies += r->lease_lost_replies;
  t->lease_kills += r->lease_kills;
  t->lease_joins += r->lease_joins;
  t->lease_pauses += r->lease_pauses;
  t->checks += r->checks;
  t->violations += r->violations;
}

int main(int argc, char **argv) {
  stead__sim_opts o = {.steps = 2000, .faults = 1, .durability = -1};
  unsigned long long first = 1, nseeds = 100;
  int one = 0, trace = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--seeds") == 0 && v) {
      nseeds = strtoull(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--first") == 0 && v) {
      first = strtoull(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--seed") == 0 && v) {
      first = strtoull(v, NULL, 10);
      nseeds = 1;
      one = 1;
      i++;
    } else if (strcmp(a, "--steps") == 0 && v) {
      o.steps = atoi(v);
      i++;
    } else if (strcmp(a, "--durability") == 0 && v) {
      if (strcmp(v, "full") == 0)
        o.durability = STEAD_DURABILITY_FULL;
      else if (strcmp(v, "normal") == 0)
        o.durability = STEAD_DURABILITY_NORMAL;
      else
        return usage(argv[0]);
      i++;
    } else if (strcmp(a, "--no-faults") == 0) {
      o.faults = 0;
    } else if (strcmp(a, "--trace") == 0) {
      trace = 1;
    } else {
      return usage(argv[0]);
    }
  }
  if (nseeds == 0 || o.steps <= 0)
    return usage(argv[0]);
  stead__sim_report total = {0};
  unsigned long long failing = 0;
  for (unsigned long long k = 0; k < nseeds; k++) {
    stead__sim_report r;
    o.seed = first + k;
    o.trace = trace ? stdout : NULL;
    stead__sim_run(&o, &r);
    add(&total, &r);
    if (one)
      printf("seed %llu: %s durability, trace %016llx, %llu steps, %llu checks, "
             "%llu violations\n",
             (unsigned long long)r.seed,
             r.durability == STEAD_DURABILITY_NORMAL ? "normal" : "full",
             (unsigned long long)r.trace_hash, (unsigned long long)r.steps,
             (unsigned long long)r.checks, (unsigned long long)r.violations);
    if (r.violations) {
      failing++;
      printf("FAIL seed %llu: %s\n  reproduce: %s --seed %llu --steps %d%s%s --trace\n",
             (unsigned long long)r.seed, r.first_violation, argv[0],
             (unsigned long long)r.seed, o.steps, o.faults ? "" : " --no-faults",
             o.durability == STEAD_DURABILITY_FULL     ? " --durability full"
             : o.durability == STEAD_DURABILITY_NORMAL ? " --durability normal"
                                                       : "");
    }
  }
  printf("runs %llu (seeds %llu..%llu), steps %llu, slices %llu, commit batches %llu, "
         "requests %llu (acked %llu, failed %llu, unknown %llu), alarms fired %llu, bus "
         "events %llu, object deliveries %llu\n",
         nseeds, first, first + nseeds - 1, (unsigned long long)total.steps,
         (unsigned long long)total.slices, (unsigned long long)total.commit_batches,
         (unsigned long long)total.requests, (unsigned long long)total.acked,
         (unsigned long long)total.failed, (unsigned long long)total.unknown,
         (unsigned long long)total.alarms_fired, (unsigned long long)total.bus_events,
         (unsigned long long)total.deliveries);
  printf("faults: commit failures %llu, slow disk %llu, crashes %llu (write sets lost "
         "%llu), deactivations %llu, syncs %llu, handler failures %llu\n",
         (unsigned long long)total.commit_failures,
         (unsigned long long)total.slow_commits, (unsigned long long)total.crashes,
         (unsigned long long)total.lost_sets, (unsigned long long)total.deactivations,
         (unsigned long long)total.syncs, (unsigned long long)total.handler_failures);
  printf("leases: tenures %llu, commits accepted %llu, fenced %llu, lost replies %llu, "
         "node kills %llu, joins %llu, pauses %llu\n",
         (unsigned long long)total.lease_epochs, (unsigned long long)total.lease_commits,
         (unsigned long long)total.lease_commits_fenced,
         (unsigned long long)total.lease_lost_replies,
         (unsigned long long)total.lease_kills, (unsigned long long)total.lease_joins,
         (unsigned long long)total.lease_pauses);
  printf("invariant checks %llu, violations %llu, failing seeds %llu\n",
         (unsigned long long)total.checks, (unsigned long long)total.violations, failing);
  return failing ? 1 : 0;
}
