#!/usr/bin/env bash
# tests/fuzz/run.sh - builds the libFuzzer targets into build-fuzz (clang,
# ASan+UBSan, coverage of the code under test) and runs each one for a
# bounded time on its seed corpus (tests/fuzz/corpus/<target>/). Fails on any
# crash, sanitizer report, leak, timeout or out-of-memory.
#
#   tests/fuzz/run.sh                          the test command's short run:
#                                              30 s for all eight targets
#   FUZZ_SECONDS=3600 tests/fuzz/run.sh [target...]
#                                              the long run (docs/operations.md)
#
# New inputs go to build-fuzz/fuzz-corpus/<target>/ (not into the tree);
# crashes to build-fuzz/fuzz-artifacts/<target>/. A crash, once fixed, is kept
# as a regression input: copy it into tests/fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUFCACHE_FUZZ_BUILD:-build-fuzz}"
ALL=(fuzz_key fuzz_query fuzz_duration fuzz_size fuzz_range fuzz_etags
     fuzz_route fuzz_request)
# the short run's split of its 30 s: whole requests are the slow, deep one
declare -A SHORT=([fuzz_key]=3 [fuzz_query]=3 [fuzz_duration]=3 [fuzz_size]=3
                  [fuzz_range]=3 [fuzz_etags]=3 [fuzz_route]=3 [fuzz_request]=9)

CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBUFCACHE_FUZZ=ON -DBUFCACHE_SANITIZE=address -DBUFCACHE_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fuzz >/dev/null

targets=("$@")
((${#targets[@]})) || targets=("${ALL[@]}")
failed=0
for t in "${targets[@]}"; do
  [[ -x "$BUILD/tests/fuzz/$t" ]] || { echo "fuzz: no target $t"; exit 2; }
  secs="${FUZZ_SECONDS:-${SHORT[$t]}}"
  work="$BUILD/fuzz-corpus/$t" art="$BUILD/fuzz-artifacts/$t"
  mkdir -p "$work" "$art"
  log="$BUILD/fuzz-artifacts/$t.log"
  dict=()
  [[ -f "tests/fuzz/$t.dict" ]] && dict=("-dict=tests/fuzz/$t.dict")
  rc=0
  # stdout is the in-process server's access log: dropped
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    timeout -k 10 $((secs + 120)) "$BUILD/tests/fuzz/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
    "$work" "tests/fuzz/corpus/$t" >/dev/null 2>"$log" || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
  if ((rc == 0)); then
    printf 'fuzz: %-14s ok   %10s executions in %ss (cov %s, corpus %s)\n' \
      "$t" "${execs:-?}" "$secs" "${cov:-?}" "$(ls "$work" | wc -l)"
  else
    failed=1
    printf 'fuzz: %-14s FAIL (exit %d) after %s executions; log %s\n' \
      "$t" "$rc" "${execs:-?}" "$log"
    grep -E 'ERROR|SUMMARY|property failed|Test unit written|^    #[0-9] .* in [^ ]* \/work' "$log" | head -20 || true
  fi
done
exit "$failed"
