#!/usr/bin/env bash
# Quick start 2: set up, build, and run the whole test suite through ctest:
#   1. Release build: unit, integration and external-client tests;
#   2. ASan+UBSan build: unit and integration tests;
#   3. ThreadSanitizer build: the concurrency tests (label "concurrency");
#   4. the libFuzzer targets (clang, ASan+UBSan), 30 s in all (tests/fuzz);
#   5. clang-tidy and cppcheck, no finding allowed (tests/lint.sh).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
J="$(nproc)"

scripts/setup.sh build
(cd build && ctest --output-on-failure -j"$J" --timeout 600)

scripts/setup.sh build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUFCACHE_SANITIZE=address
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j"$J" --timeout 900 -L "unit|integration")

scripts/setup.sh build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUFCACHE_SANITIZE=thread
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --output-on-failure -j"$J" --timeout 900 -L concurrency)

tests/fuzz/run.sh
tests/lint.sh
