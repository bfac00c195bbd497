#!/usr/bin/env bash
# `make soak MINUTES=N`: one `stead serve` node on SQLite under mixed load
# (counter calls, chat posts with bus events, reminder alarms, bus emits,
# an SSE stream) for N minutes (default 10), sampling RSS, open fds and
# latency every second (tests/soak/soak.c). Prints a row every
# SOAK_EVERY seconds (default 10), the growth after warm-up and p99 over
# time; fails if RSS grows by more than SOAK_RSS_BOUND_MIB (default 16)
# after warm-up, if fds grow, or if a request fails non-retryably.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
minutes=${MINUTES:-10}
secs=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); if (s < 20) s = 20; print s }')
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target soak_driver stead >/dev/null
exec "$build/tests/soak/soak_driver" "$build/src/server/stead" "$secs" \
  --rss-bound-mib "${SOAK_RSS_BOUND_MIB:-16}" --every "${SOAK_EVERY:-10}"
