#!/bin/sh
# bench/http/run.sh BUILD_DIR [SECONDS]
#
# Requests per second through the HTTP gateway (`stead serve` + wrk) against
# the example counter's `increment`, beside the in-process rate of durable
# turns through the runtime (bench/turns) measured in the same run, so the
# gateway's cost shows. Prints a markdown table.
#
# Workloads: 10,000 counters (a random id per request, random.lua) and one
# hot counter (hot.lua); 64 connections, 2 wrk threads; SQLite storage with
# --durability full and normal. Each server starts on a free port with a
# fresh temporary --data and is stopped with SIGTERM after its runs.
# After each hot run the counter is read back: its count must be at least
# the number of 2xx answers wrk saw (no acknowledged increment lost).
#
# Needs: wrk (Debian package `wrk`), a Release build with benchmarks
# (cmake -DCMAKE_BUILD_TYPE=Release -DSTEAD_BENCH=ON), curl.
set -eu

B=${1:?usage: bench/http/run.sh BUILD_DIR [SECONDS]}
SECS=${2:-5}
CONNS=64
HERE=$(cd "$(dirname "$0")" && pwd)
STEAD=$B/src/server/stead
TURNS=$B/bench/turns/bench_turns
for f in "$STEAD" "$TURNS"; do
  [ -x "$f" ] || { echo "bench/http: $f not built (build with -DSTEAD_BENCH=ON)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "bench/http: wrk not found (apt-get install wrk)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/stead-bench-http-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# start_server DURABILITY: sets PID and URL.
start_server() {
  d=$1
  rm -rf "$TMP/data-$d"
  "$STEAD" serve --listen 127.0.0.1:0 --storage sqlite --data "$TMP/data-$d" \
    --durability "$d" --log-level warn >"$TMP/out-$d" 2>"$TMP/err-$d" &
  PID=$!
  i=0
  while ! grep -q 'serving on http://127.0.0.1:[0-9]*' "$TMP/out-$d" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$PID" 2>/dev/null; then
      echo "bench/http: stead serve did not start:" >&2
      cat "$TMP/err-$d" >&2
      exit 1
    fi
    sleep 0.05
  done
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$TMP/out-$d" | head -1)
}

stop_server() {
  kill -TERM "$PID"
  wait "$PID" || { echo "bench/http: stead serve exited with $?" >&2; exit 1; }
  PID=
}

# run_wrk SCRIPT [CONNECTIONS]: prints "rps p50 p99 requests errors" (errors:
# non-2xx answers plus wrk's socket errors).
run_wrk() {
  wrk -t2 -c"${2:-$CONNS}" -d"${SECS}s" --latency -s "$HERE/$1" "$URL" >"$TMP/wrk.out" 2>&1 || {
    cat "$TMP/wrk.out" >&2
    exit 1
  }
  awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    / requests in / { n = $1 }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    /Socket errors:/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    END { printf "%.0f %s %s %s %d\n", rps, p50, p99, n, bad + sock }
  ' "$TMP/wrk.out"
}

ROWS=
for d in full normal; do
  start_server "$d"
  if [ "$d" = full ]; then
    # The HTTP floor on this machine: no object, no storage.
    set -- $(run_wrk healthz.lua)
    ROWS="${ROWS}- healthz $1 $2 $3 $5
"
  fi
  for w in random hot; do
    set -- $(run_wrk "$w.lua")
    rps=$1 p50=$2 p99=$3 n=$4 bad=$5
    check=
    if [ "$w" = hot ]; then
      count=$(curl -s -X POST "$URL/v1/objects/counter/hot/get")
      ok=$((n - bad))
      if [ "$count" -ge "$ok" ]; then check="count $count >= $ok acked"; else check="LOST: count $count < $ok acked"; fi
    fi
    ROWS="$ROWS$d $w $rps $p50 $p99 $bad ${check:-}
"
  done
  if [ "$d" = full ]; then
    # As many requests in flight as bench/turns keeps (1,000), to separate
    # the gateway's cost from the concurrency the client offers.
    set -- $(run_wrk random.lua 1000)
    ROWS="$ROWS$d random1000 $1 $2 $3 $5
"
  fi
  stop_server
done

# In-process durable turns, same machine, same run.
"$TURNS" "$TMP/turns" "$SECS" --only-turns >"$TMP/turns.out"
tfull=$(awk -F'|' '/stead turns, durability full/ { gsub(/ /, "", $3); print $3 }' "$TMP/turns.out")
tnormal=$(awk -F'|' '/stead turns, durability normal/ { gsub(/ /, "", $3); print $3 }' "$TMP/turns.out")

echo "bench/http: wrk -t2 -c$CONNS -d${SECS}s against POST /v1/objects/counter/{id}/increment,"
echo "SQLite storage; in-process: bench/turns (1,000 objects, 2 workers) in the same run. $(nproc) CPUs."
echo
echo "| workload | durability | HTTP req/s | p50 | p99 | errors | in-process turns/s | HTTP / in-process | check |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
printf '%s' "$ROWS" | while read -r d w rps p50 p99 bad check; do
  [ -n "$d" ] || continue
  if [ "$w" = healthz ]; then
    echo "| GET /healthz (HTTP only: no object, no storage) | - | $rps | $p50 | $p99 | $bad | - | - | |"
    continue
  fi
  if [ "$d" = full ]; then t=$tfull; else t=$tnormal; fi
  case $w in
  random) name="10,000 counters, random id" ;;
  random1000) name="10,000 counters, random id, 1,000 connections" ;;
  *) name="1 hot counter" ;;
  esac
  ratio=$(awk -v a="$rps" -v b="$t" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
  echo "| $name | $d | $rps | $p50 | $p99 | $bad | $t | ${ratio}x | ${check:-} |"
done
