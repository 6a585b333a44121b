#!/usr/bin/env bash
# bench/logcost.sh - what the access log costs a GET at full load.
#
# bufcache (one worker, core $SERVER_CPU) serves GET of a 4 KiB value to wrk
# (-c64 keep-alive, core $CLIENT_CPU), alternately with the access log on
# (JSON lines to a file, every request) and off, ROUNDS times each, and
# prints the median req/s and server CPU per request of each, and the ratio.
# Target (issue 11): logging costs <= 5% of GET throughput.
#   ROUNDS=3 DURATION=5 bench/logcost.sh
source "$(dirname "$0")/lib.sh"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
bench_init logcost
build_bufcache
head -c "$VALUE_SIZE" /dev/urandom >"$WORK/value"

declare -a RPS_ON RPS_OFF CPU_ON CPU_OFF
for r in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    BC_FLAGS=()
    if [[ "$mode" == on ]]; then
      start_bufcache "log-$mode-$r" --access-log=true --access-log-sample 1
    else
      start_bufcache "log-$mode-$r" --access-log=false
    fi
    curl -sf -X PUT --data-binary @"$WORK/value" "$BC_URL/v1/buffers/bench/v4k" >/dev/null
    measure "get-$mode-$r" 64 "$DURATION" 1 "$BC_PID" "$BC_URL/v1/buffers/bench/v4k"
    if [[ "$mode" == on ]]; then RPS_ON+=("$W_RPS"); CPU_ON+=("$M_CPU_US")
    else RPS_OFF+=("$W_RPS"); CPU_OFF+=("$M_CPU_US"); fi
    lines="$(grep -c '"msg":"request"' "$WORK/log-$mode-$r.out" || true)"
    log "access-log $mode: $lines request lines written"
    stop_pid "$BC_PID"
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
on="$(median "${RPS_ON[@]}")"; off="$(median "${RPS_OFF[@]}")"
con="$(median "${CPU_ON[@]}")"; coff="$(median "${CPU_OFF[@]}")"
{
  echo "## Access log cost, GET 4 KiB, wrk -c64, ${ROUNDS}x${DURATION}s each ($(date -u +%F' '%T) UTC)"
  echo
  echo "| access log | req/s (median) | server CPU us/req (median) | runs req/s |"
  echo "|---|---:|---:|---|"
  echo "| off | $off | $coff | ${RPS_OFF[*]} |"
  echo "| on (JSON, every request) | $on | $con | ${RPS_ON[*]} |"
  echo
  awk -v a="$on" -v b="$off" -v c="$con" -v d="$coff" 'BEGIN {
    printf "- throughput with the log / without: %.3f (target >= 0.95)\n", a / b
    printf "- CPU per request with the log / without: %.3f\n", c / d }'
} | tee "$WORK/summary.md"
