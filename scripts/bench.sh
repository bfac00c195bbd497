#!/usr/bin/env bash
# `make bench`: runs every benchmark from a release build and prints their
# tables (each beside its baseline). Takes a few minutes; needs a quiet
# machine to mean anything. Usage: scripts/bench.sh BUILD_DIR
set -uo pipefail
build=${1:-build/release}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # name command...
  echo; echo "== $1"; shift
  "$@" || echo "(failed: $*)"
}
run calls "$build/bench/calls/bench_calls"
run turns "$build/bench/turns/bench_turns" "$tmp/turns" 3
run storage "$build/bench/storage/bench_storage" "$tmp/storage" 3 2
[ -x "$build/bench/bus/bench_bus" ] && run bus "$build/bench/bus/bench_bus"
[ -x "$build/bench/loop/bench_loop" ] && run loop "$build/bench/loop/bench_loop"
[ -x "$build/bench/alarms/bench_alarms" ] && run alarms "$build/bench/alarms/bench_alarms"
# cluster: transport and runtime path beside raw nats.c (runtime rows need PostgreSQL)
[ -x "$build/bench/cluster/bench_cluster_nats" ] && run cluster "$build/bench/cluster/bench_cluster_nats"
[ -x "$build/bench/connections/bench_connections" ] &&
  run connections "$build/bench/connections/bench_connections" "$build/src/server/stead"
[ -x bench/http/run.sh ] && run http bash bench/http/run.sh "$build"
exit 0
