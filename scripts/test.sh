#!/usr/bin/env bash
# The whole test suite: once normally (gcc, release), once under
# ASan+UBSan (clang, so both compilers build with -Werror), and the
# concurrency tests under TSan (gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

build() { # dir type compiler
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE="$2" -DCMAKE_C_COMPILER="$3" \
    -DCMAKE_CXX_COMPILER="$4" -DSTEAD_BENCH=OFF >/dev/null
  cmake --build "$1" -j "$jobs"
}

echo "== release (gcc)"
build build/test-release Release gcc g++
ctest --test-dir build/test-release --output-on-failure -j "$jobs"

echo "== asan+ubsan (clang)"
build build/test-asan Asan clang clang++
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/test-asan --output-on-failure -j "$jobs" -LE slow

echo "== tsan (gcc): concurrency tests"
build build/test-tsan Tsan gcc g++
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build/test-tsan --output-on-failure -j "$jobs" -L concurrency
