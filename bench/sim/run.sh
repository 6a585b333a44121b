#!/usr/bin/env bash
# bench/sim/run.sh - the eviction-policy simulation (issue #4): builds
# bench/sim/sim.c with one cc command and replays Zipf 0.8/0.99/1.2 and a
# scan-polluted trace (1M keys, 10M requests each) against LRU, SIEVE (one
# queue, and 512 shards as bufcache runs it), S3-FIFO and W-TinyLFU at cache
# sizes of 1% and 10% of the key space. Prints the Markdown hit-ratio table
# (docs/BENCHMARKS.md, "Eviction policy (hit ratio)") and keeps a copy in
# bench/out/sim-<date>.md. About a minute on one core, 200 MB of memory.
#
# Usage: bench/sim/run.sh [sim flags: -k keys -r requests -s seed -l scan_len -f scan_frac]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/../out"
mkdir -p "$OUT"
BIN="$(mktemp /tmp/bufcache-sim.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
cc -std=c11 -O2 -Wall -Wextra -Werror -o "$BIN" "$HERE/sim.c" -lm
RES="$OUT/sim-$(date +%Y%m%d-%H%M%S).md"
timeout 600 "$BIN" "$@" | tee "$RES"
echo "(saved in $RES)" >&2
