#!/usr/bin/env bash
# bench/pprof_cost.sh - what profiling costs (issue #7), measured inside one
# server process so that process-to-process differences (layout, placement)
# do not swamp a few percent:
#   1. allocation sampling: GET and PUT of a 4 KiB value with the sampling
#      rate at its default (512 KiB) and off (0), switched live through
#      PUT /debug/mem-profile-rate (+ POST /debug/gc, which hands the rate to
#      the worker);
#   2. a CPU profile: GET with /debug/pprof/profile running and without.
# bufcache --workers 1 is pinned to SERVER_CPU (1), wrk -t1 -c64 to
# CLIENT_CPU (0). The figure is the server's CPU time per request
# (utime+stime from /proc/PID/stat around each measured run; throughput is
# printed too). Each round measures every variant once, in alternating
# order; the cost is the median over ROUNDS (default 6) of each round's
# ratio. Loopback only; the server is stopped by PID.
#   bench/pprof_cost.sh [BUILD_DIR]      (default: build)
# Environment: SERVER_CPU, CLIENT_CPU, DURATION (s per run, default 5),
# ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/bufcache"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-6}"
OUT="$(mktemp -d /tmp/bufcache-pprof-cost.XXXXXX)"
SPID=""
PROF=""
cleanup() {
  [[ -n "$PROF" ]] && kill "$PROF" 2>/dev/null
  [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$OUT"
}
trap cleanup EXIT
TCK=$(getconf CLK_TCK)
[[ -x "$BIN" ]] || { echo "no $BIN: build first (scripts/setup.sh)" >&2; exit 2; }

taskset -c "$SERVER_CPU" "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --workers 1 --access-log=false --memory-limit 2GiB >"$OUT/out" 2>"$OUT/err" &
SPID=$!
for _ in $(seq 1 100); do grep -q "(admin)" "$OUT/out" 2>/dev/null && break; sleep 0.05; done
DATA=$(grep -o 'http://[^ "]*' "$OUT/out" | sed -n 1p)
ADMIN=$(grep -o 'http://[^ "]*' "$OUT/out" | sed -n 2p)
[[ -n "$ADMIN" ]] || { cat "$OUT/err" >&2; exit 1; }
head -c 4096 /dev/urandom >"$OUT/v"
curl -s -o /dev/null -X PUT --data-binary @"$OUT/v" "$DATA/v1/buffers/bench-get"
DEFAULT_RATE="$(curl -s "$ADMIN/debug/mem-profile-rate")"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
set_rate() {
  curl -s -o /dev/null -X PUT --data "$1" "$ADMIN/debug/mem-profile-rate"
  curl -s -o /dev/null -X POST "$ADMIN/debug/gc" # the worker takes it now
}

# run NAME URL [wrk args]: appends "NAME rps us_cpu_per_req" to $OUT/runs
run() {
  local name="$1" url="$2"; shift 2
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d1s "$@" "$url" >/dev/null 2>&1 # warm-up
  local c0 c1 n
  c0=$(cpu_ticks)
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "$@" "$url" >"$OUT/wrk" 2>&1
  c1=$(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' "$OUT/wrk")
  awk -v name="$name" -v n="$n" -v c0="$c0" -v c1="$c1" -v tck="$TCK" -v d="$DURATION" \
    'BEGIN { printf "%s %.0f %.4f\n", name, n / d, (c1 - c0) / tck * 1e6 / n }' | tee -a "$OUT/runs"
}

for r in $(seq 1 "$ROUNDS"); do
  echo "# round $r"
  order="$DEFAULT_RATE 0"
  ((r % 2 == 0)) && order="0 $DEFAULT_RATE"
  for rate in $order; do
    set_rate "$rate"
    tag=$([[ "$rate" == 0 ]] && echo off || echo on)
    run "get_sampling_$tag" "$DATA/v1/buffers/bench-get"
    run "put_sampling_$tag" "$DATA/v1/buffers/bench-put" -s bench/put.lua
  done
  set_rate "$DEFAULT_RATE"
  for prof in $( ((r % 2)) && echo "off on" || echo "on off"); do
    if [[ "$prof" == on ]]; then
      curl -s -o /dev/null "$ADMIN/debug/pprof/profile?seconds=$((DURATION + 2))" &
      PROF=$!
      sleep 0.3
    fi
    run "get_cpuprofile_$prof" "$DATA/v1/buffers/bench-get"
    if [[ -n "$PROF" ]]; then wait "$PROF" || true; PROF=""; fi
  done
done

echo
python3 - "$OUT/runs" "$ROUNDS" <<'PY'
import sys, statistics as st
runs = {}
for line in open(sys.argv[1]):
    name, rps, cpu = line.split()
    runs.setdefault(name, []).append((float(rps), float(cpu)))
def ratios(on, off):
    return [a[1] / b[1] for a, b in zip(runs[on], runs[off])]
print("| comparison | server CPU us/req (median on / off) | per-round ratios of CPU/req | median ratio | cost |")
print("|---|---|---|---|---|")
for label, on, off, target in [
        ("GET, sampling 512 KiB vs off", "get_sampling_on", "get_sampling_off", 2.0),
        ("PUT, sampling 512 KiB vs off", "put_sampling_on", "put_sampling_off", 2.0),
        ("GET, CPU profile running vs not", "get_cpuprofile_on", "get_cpuprofile_off", 5.0)]:
    rs = ratios(on, off)
    m = st.median(rs)
    cost = (m - 1) * 100
    print("| %s | %.3f / %.3f | %s | %.4f | %+.2f%% (target <= %.0f%%: %s) |" % (
        label, st.median(c for _, c in runs[on]), st.median(c for _, c in runs[off]),
        " ".join("%.3f" % x for x in rs), m, cost, target, "met" if cost <= target else "MISSED"))
print()
for name in sorted(runs):
    print("- %s: req/s %s" % (name, " ".join("%.0f" % r for r, _ in runs[name])))
PY
