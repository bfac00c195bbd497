#!/usr/bin/env bash
# `make faults`: the fault campaigns, long version: the single-node ones
# (tests/faults/campaign.c: kill9, diskfull, pg, clock) and the multi-node
# one (tests/faults/cluster_campaign.c: "cluster"); each runs for
# FAULT_SECONDS (default 60) with FAULT_THREADS client threads (default 4),
# repeated FAULT_RUNS times (default 1). Prints one line per campaign run
# (requests sent, acknowledged, failed retryable, unknown, lost,
# duplicates; double owners for cluster) and fails on any invariant
# violation. FAULT_SEED fixes the cluster campaign's seed (default: new
# each run, printed). The short version runs
# in `make test` as the ctest tests faults_* (label slow).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
secs=${FAULT_SECONDS:-60}
threads=${FAULT_THREADS:-4}
runs=${FAULT_RUNS:-1}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target faults_campaign faults_cluster stead >/dev/null
bin="$build/tests/faults/faults_campaign"
fail=0
for r in $(seq 1 "$runs"); do
  for c in ${FAULT_CAMPAIGNS:-kill9 diskfull pg clock cluster}; do
    if [ "$c" = cluster ]; then
      "$build/tests/faults/faults_cluster" --seconds "$secs" ${FAULT_SEED:+--seed "$FAULT_SEED"} || fail=1
    else
      "$bin" "$c" --seconds "$secs" --threads "$threads" || fail=1
    fi
  done
done
exit $fail
