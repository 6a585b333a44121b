#!/usr/bin/env bash
# bench/pprof_cost.sh - what profiling costs (issue #7): GET and PUT of a
# 4 KiB value with allocation sampling at the default rate (512 KiB) and off
# (--mem-profile-rate 0), and GET with a CPU profile running. bufcache
# --workers 1 pinned to SERVER_CPU (1), wrk -t1 -c64 to CLIENT_CPU (0); the
# server's CPU time per request (utime+stime from /proc/PID/stat around the
# measured run) is the figure, throughput is printed too. Variants are
# interleaved ROUNDS times (default 2), in alternating order, so drift on a
# shared machine hits both alike. Loopback only; every process stopped by PID.
#   bench/pprof_cost.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/bufcache"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-2}"
OUT="$(mktemp -d /tmp/bufcache-pprof-cost.XXXXXX)"
SPID=""
cleanup() { [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT
TCK=$(getconf CLK_TCK)

start() {
  taskset -c "$SERVER_CPU" "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --workers 1 --access-log=false --memory-limit 2GiB "$@" >"$OUT/out" 2>"$OUT/err" &
  SPID=$!
  for _ in $(seq 1 100); do grep -q "(admin)" "$OUT/out" 2>/dev/null && break; sleep 0.05; done
  DATA=$(grep -o 'http://[^ "]*' "$OUT/out" | sed -n 1p)
  ADMIN=$(grep -o 'http://[^ "]*' "$OUT/out" | sed -n 2p)
  head -c 4096 /dev/urandom >"$OUT/v"
  curl -s -o /dev/null -X PUT --data-binary @"$OUT/v" "$DATA/v1/buffers/bench-get"
}
stop() { kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }

# run NAME URL [wrk args]: prints "NAME req/s us-cpu/req"
run() {
  local name="$1" url="$2"; shift 2
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d2s "$@" "$url" >/dev/null 2>&1 # warm-up
  local c0; c0=$(cpu_ticks)
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "$@" "$url" >"$OUT/wrk" 2>&1
  local c1; c1=$(cpu_ticks)
  local n; n=$(awk '/requests in/ {print $1}' "$OUT/wrk")
  python3 -c "import sys; n=int(sys.argv[2]); t=(int(sys.argv[4])-int(sys.argv[3]))/int(sys.argv[5]); print('%-28s %9.0f req/s %7.3f us CPU/req' % (sys.argv[1], n/float(sys.argv[6]), t*1e6/n))" \
    "$name" "$n" "$c0" "$c1" "$TCK" "$DURATION"
}

for r in $(seq 1 "$ROUNDS"); do
  echo "# round $r"
  order="512KiB 0"
  ((r % 2 == 0)) && order="0 512KiB" # alternate the order: drift hits both
  for rate in $order; do
    start --mem-profile-rate "$rate"
    run "GET rate=$rate" "$DATA/v1/buffers/bench-get"
    run "PUT rate=$rate" "$DATA/v1/buffers/bench-put" -s bench/put.lua
    if [[ "$rate" != 0 ]]; then
      curl -s -o /dev/null "$ADMIN/debug/pprof/profile?seconds=$((DURATION + 4))" &
      local_cpu=$!
      sleep 0.5
      run "GET rate=$rate +CPU profile" "$DATA/v1/buffers/bench-get"
      wait "$local_cpu"
    fi
    stop
  done
done
