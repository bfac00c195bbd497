/*
 * sim_main.c -- `stead-sim`: runs seeds of the deterministic simulation
 * (src/sim/) and prints, for every failing seed, the seed and the command
 * that replays it with a trace.
 *
 *   stead-sim [--seeds N] [--first F] [--seed S] [--steps K]
 *             [--durability full|normal] [--no-faults] [--trace]
 *             [--cluster [--nodes K]]
 *
 * --cluster runs the cluster simulation instead (src/sim/simnet.c): 2..4
 * runtimes (K, or drawn per seed) over a simulated network and leases.
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
          "          [--durability full|normal] [--no-faults] [--trace]\n"
          "          [--cluster [--nodes K]]\n",
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
  t->net_nodes += r->net_nodes;
  t->net_messages += r->net_messages;
  t->net_delivered += r->net_delivered;
  t->net_delayed += r->net_delayed;
  t->net_reordered += r->net_reordered;
  t->net_dropped += r->net_dropped;
  t->net_duplicated += r->net_duplicated;
  t->net_retries += r->net_retries;
  t->net_tenures += r->net_tenures;
  t->net_moves += r->net_moves;
  t->net_lost += r->net_lost;
  t->net_kills += r->net_kills;
  t->net_restarts += r->net_restarts;
  t->net_pauses += r->net_pauses;
  t->net_fenced += r->net_fenced;
  t->net_commits += r->net_commits;
  t->net_event_redelivered += r->net_event_redelivered;
  t->checks += r->checks;
  t->violations += r->violations;
}

int main(int argc, char **argv) {
  stead__sim_opts o = {.steps = 2000, .faults = 1, .durability = -1};
  unsigned long long first = 1, nseeds = 100;
  int one = 0, trace = 0, cluster = 0;
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
    } else if (strcmp(a, "--cluster") == 0) {
      cluster = 1;
    } else if (strcmp(a, "--nodes") == 0 && v) {
      o.nodes = atoi(v);
      if (o.nodes < 2 || o.nodes > 4)
        return usage(argv[0]);
      i++;
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
    if (cluster)
      stead__simnet_run(&o, &r);
    else
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
      char extra[64];
      snprintf(extra, sizeof extra, "%s%s", cluster ? " --cluster" : "",
               cluster && o.nodes ? " --nodes " : "");
      if (cluster && o.nodes)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%d", o.nodes);
      printf("FAIL seed %llu: %s\n  reproduce: %s --seed %llu --steps %d%s%s%s --trace\n",
             (unsigned long long)r.seed, r.first_violation, argv[0],
             (unsigned long long)r.seed, o.steps, extra, o.faults ? "" : " --no-faults",
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
  if (cluster)
    printf(
        "cluster: nodes %llu, messages %llu (delivered %llu, delayed %llu, reordered "
        "%llu, dropped %llu, duplicated %llu), retries %llu, tenures %llu, moves %llu, "
        "leases lost %llu, kills %llu, restarts %llu, pauses %llu, commits accepted "
        "%llu, fenced %llu, events again after a move %llu\n",
        (unsigned long long)total.net_nodes, (unsigned long long)total.net_messages,
        (unsigned long long)total.net_delivered, (unsigned long long)total.net_delayed,
        (unsigned long long)total.net_reordered, (unsigned long long)total.net_dropped,
        (unsigned long long)total.net_duplicated, (unsigned long long)total.net_retries,
        (unsigned long long)total.net_tenures, (unsigned long long)total.net_moves,
        (unsigned long long)total.net_lost, (unsigned long long)total.net_kills,
        (unsigned long long)total.net_restarts, (unsigned long long)total.net_pauses,
        (unsigned long long)total.net_commits, (unsigned long long)total.net_fenced,
        (unsigned long long)total.net_event_redelivered);
  printf("invariant checks %llu, violations %llu, failing seeds %llu\n",
         (unsigned long long)total.checks, (unsigned long long)total.violations, failing);
  return failing ? 1 : 0;
}
