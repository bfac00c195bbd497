#!/usr/bin/env bash
# `make fuzz`: builds every libFuzzer target with clang (ASan+UBSan, all
# library code instrumented) and runs each for FUZZ_SECONDS (default 60),
# starting from its checked-in corpus plus what earlier runs grew, kept in
# build/fuzz/corpus-<name>/ (not in git: the checked-in corpora stay small;
# copy an input worth keeping into tests/fuzz/corpus/<name>/ by hand). A
# crash stops the script with the reproducer's path: add it to the
# checked-in corpus with the fix, so `make test` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
build=build/fuzz
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSTEAD_FUZZ=ON -DSTEAD_BENCH=OFF >/dev/null
targets=$(ls tests/fuzz/corpus)
for t in $targets; do
  cmake --build "$build" -j "$(nproc)" --target "fuzz_$t" >/dev/null
done
for t in $targets; do
  bin=$(find "$build" -name "fuzz_$t" -type f -executable | head -1)
  work="$build/corpus-$t"
  mkdir -p "$work"
  cp -rn "tests/fuzz/corpus/$t/." "$work/"
  echo "== fuzz_$t for ${secs}s"
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$build/crash-$t-" \
    "$work" 2>&1 | grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY" || true
  if ls "$build"/crash-"$t"-* >/dev/null 2>&1; then
    echo "fuzz_$t found a crash: $(ls "$build"/crash-"$t"-*)" >&2
    exit 1
  fi
done
echo "fuzz: no crashes; grown corpora in $build/corpus-*"
