#!/usr/bin/env bash
# bench/allocbench.sh - the allocator microbenchmark of issue #3: ns per
# object for allocating and reclaiming the service's size mix (64 B .. 64 KiB,
# log-uniform, fixed seed) in steady state, in one run:
#
#   gc        the project's heap: gc_alloc, the objects' share of mark and
#             sweep included (the collector thread's CPU time counts)
#   glibc     malloc + free
#   jemalloc  malloc + free, LD_PRELOAD of libjemalloc.so.2 (Debian's libjemalloc2)
#   mimalloc  malloc + free, LD_PRELOAD of libmimalloc.so.2 (Debian's libmimalloc2.0)
#
# at 1 and 2 threads, each REPS (2) times, interleaved (gc, glibc, jemalloc,
# mimalloc, then again), so a noisy neighbour hits every allocator alike.
# The same executable (bench/allocbench.c) runs every variant. Each thread
# replaces a ring of RING (100,000) live objects in order; WARMUP
# replacements per thread (3,000,000: ~30 GB, tens of cycles) reach steady
# state before OBJECTS (5,000,000) measured ones. Primary figure: process CPU ns per object
# (every thread, the collector's included); also wall ns per object per
# thread. Results: bench/out/allocbench.<date>.XXXX/allocbench.md.
#
# Usage: bench/allocbench.sh [--reps N] [--ring N] [--objects N] [--warmup N]
#                            [--threads "1 2"] [--gc-percent P]
# Environment: BUILD_DIR (default bench/out/build-bench).
source "$(dirname "$0")/lib.sh"

REPS="${REPS:-2}"
RING="${RING:-100000}"
OBJECTS="${OBJECTS:-5000000}"
WARMUP="${WARMUP:-3000000}"
THREADS="${THREADS:-1 2}"
GC_PERCENT="${GC_PERCENT:-100}"
while [[ $# -gt 0 ]]; do
  case "$1" in
  --reps) REPS="$2"; shift 2 ;;
  --ring) RING="$2"; shift 2 ;;
  --objects) OBJECTS="$2"; shift 2 ;;
  --warmup) WARMUP="$2"; shift 2 ;;
  --threads) THREADS="$2"; shift 2 ;;
  --gc-percent) GC_PERCENT="$2"; shift 2 ;;
  -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done

mkdir -p "$OUT_DIR"
WORK="$(mktemp -d "$OUT_DIR/allocbench.$(date +%Y%m%d-%H%M%S).XXXX")"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
need cmake cc ldconfig python3

# ---- build (Release, bench on, tests off) -----------------------------------
BDIR="${BUILD_DIR:-$OUT_DIR/build-bench}"
timeout 600 cmake -S "$ROOT_DIR" -B "$BDIR" -DCMAKE_BUILD_TYPE=Release -DBUFCACHE_TESTS=OFF \
  -DBUFCACHE_BENCH=ON >"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; die "cmake configure failed"; }
timeout 900 cmake --build "$BDIR" -j"$(nproc)" --target allocbench >>"$WORK/cmake.log" 2>&1 ||
  { tail -30 "$WORK/cmake.log" >&2; die "build failed"; }
SRC_DIGEST="$(src_digest)"
BIN="$WORK/allocbench"
cp "$BDIR/bench/allocbench" "$BIN"

# (awk reads all of ldconfig's output: an early exit would SIGPIPE it)
lib_path() { ldconfig -p | awk -v n="$1" '!f && $1 == n { p = $NF; f = 1 } END { print p }'; }
JEMALLOC="$(lib_path libjemalloc.so.2)"
MIMALLOC="$(lib_path libmimalloc.so.2)"
[[ -n "$JEMALLOC" ]] || log "warning: libjemalloc.so.2 not found (apt-get install libjemalloc2); skipping jemalloc"
[[ -n "$MIMALLOC" ]] || log "warning: libmimalloc.so.2 not found (apt-get install libmimalloc2.0); skipping mimalloc"

# one VARIANT THREADS REP: runs the benchmark, output in $WORK/VARIANT-tTHREADS-rREP.txt
one() {
  local v="$1" t="$2" r="$3" out="$WORK/$1-t$2-r$3.txt" pre="" alloc=malloc
  case "$v" in
  gc) alloc=gc ;;
  glibc) ;;
  jemalloc) pre="$JEMALLOC"; [[ -n "$pre" ]] || return 0 ;;
  mimalloc) pre="$MIMALLOC"; [[ -n "$pre" ]] || return 0 ;;
  esac
  local c0 c1
  c0="$(machine_jiffies)"
  local TIMEFORMAT='%U %S'
  { time timeout 900 env ${pre:+LD_PRELOAD=$pre} "$BIN" --alloc "$alloc" --threads "$t" --ring "$RING" \
      --objects "$OBJECTS" --warmup "$WARMUP" --gc-percent "$GC_PERCENT" >"$out" 2>"$out.err"; } 2>"$out.time" ||
    { cat "$out.err" >&2; die "allocbench $v t$t failed"; }
  c1="$(machine_jiffies)"
  # the share of the machine that other processes used meanwhile (noise)
  echo "others_busy=$(echo "$c0 $c1 $(cat "$out.time")" | awk -v hz="$CLK_TCK" \
    '{ o = (($3 - $1) / hz - $5 - $6) / (($4 - $2) / hz); printf "%.2f", o < 0 ? 0 : o }')" >>"$out"
  log "$v t$t r$r: $(grep -E '^(allocator|cpu_ns_per_obj|wall_ns_per_obj|gc_cycles|peak_rss_mib|others_busy)=' "$out" | tr '\n' ' ')"
}


log "allocbench: ring $RING, $OBJECTS measured objects per thread after $WARMUP, threads $THREADS, reps $REPS"
for r in $(seq 1 "$REPS"); do
  for t in $THREADS; do
    wait_machine_quiet "rep $r, $t thread(s)"
    for v in gc glibc jemalloc mimalloc; do
      one "$v" "$t" "$r"
    done
  done
done

# ---- the report ---------------------------------------------------------------
{
  echo "## allocbench.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- CPU: $(lscpu | awk -F: '/^Model name/ { sub(/^ +/, "", $2); print $2 }'), $(nproc) cores; kernel $(uname -r); $(ldd --version | head -1)"
  echo "- sources digest $SRC_DIGEST; ring $RING objects/thread (~$(awk -v r="$RING" 'BEGIN { printf "%.0f", r * 9458 / 1048576 }') MiB live/thread), sizes 64 B..64 KiB log-uniform (mean 9458 B), $OBJECTS measured objects/thread after $WARMUP warm-up; gc: GOGC $GC_PERCENT, STW root scan of the rings, safepoint every 64 allocations"
  echo
  python3 - "$WORK" "$REPS" "$THREADS" <<'EOF'
import glob, os, sys
work, reps, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(f):
    d = {}
    for line in open(f):
        k, _, v = line.strip().partition("=")
        d[k] = v
    return d
print("| threads | run | allocator | CPU ns/object | wall ns/object/thread | peak RSS MiB | gc cycles | others' CPU (share of machine) | gc ÷ glibc (CPU) | gc ÷ mimalloc (CPU) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for t in threads:
    for r in range(1, reps + 1):
        res = {}
        for v in ("gc", "glibc", "jemalloc", "mimalloc"):
            f = os.path.join(work, "%s-t%s-r%d.txt" % (v, t, r))
            if os.path.exists(f):
                res[v] = load(f)
        for v, d in res.items():
            ratio_g = ratio_m = ""
            if v == "gc" and "glibc" in res:
                ratio_g = "%.2f" % (float(d["cpu_ns_per_obj"]) / float(res["glibc"]["cpu_ns_per_obj"]))
            if v == "gc" and "mimalloc" in res:
                ratio_m = "%.2f" % (float(d["cpu_ns_per_obj"]) / float(res["mimalloc"]["cpu_ns_per_obj"]))
            print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, r, d.get("allocator"), d.get("cpu_ns_per_obj"), d.get("wall_ns_per_obj"),
                d.get("peak_rss_mib"), d.get("gc_cycles", ""), d.get("others_busy"), ratio_g, ratio_m))
EOF
} >"$WORK/allocbench.md"
cat "$WORK/allocbench.md"
log "results: $WORK/allocbench.md"
