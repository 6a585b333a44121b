#!/usr/bin/env bash
# bench/conns.sh - GET of a 4 KiB cached value at 10,000 concurrent
# keep-alive connections: bufcache (--workers 1 --max-connections 12000),
# then nginx (one worker, worker_connections 12000), each pinned to core
# SERVER_CPU, wrk -t1 -c10000 pinned to CLIENT_CPU, with `ulimit -n` raised
# to the hard limit (20000 here) for everything started.
#
# Reports req/s, p50/p99, wrk's socket errors, the server's CPU per request,
# and, sampled in the middle of the run, the established connections on the
# server's port (ss, server side) and the sockets the server process holds
# (/proc/PID/fd), which show whether all 10,000 connections were accepted.
# Also prints any "max-connections lowered" notice of the server.
#
# Usage: bench/conns.sh [--conns N] [--duration S] [--no-nginx] [--append FILE]
source "$(dirname "$0")/lib.sh"

NCONNS="${NCONNS:-10000}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
DO_NGINX=1
APPEND=""
while [[ $# -gt 0 ]]; do
  case "$1" in
  --conns) NCONNS="$2"; shift 2 ;;
  --duration) DURATION="$2"; shift 2 ;;
  --no-nginx) DO_NGINX=0; shift ;;
  --append) APPEND="$2"; shift 2 ;;
  -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done

bench_init conns
# at 10,000 connections ksoftirqd takes a few % of the server's core by
# itself: judge a run disturbed only above 10 % (unless OTHERS_MAX is set)
export OTHERS_MAX="${OTHERS_MAX:-10}"
HARD="$(ulimit -Hn)"
ulimit -n "$HARD" || die "cannot raise the open files limit"
[[ "$HARD" == unlimited || "$HARD" -ge $((NCONNS + 100)) ]] ||
  die "open files hard limit $HARD is too low for $NCONNS connections (wrk needs one fd each)"
log "open files limit $(ulimit -n) for the servers and wrk"
build_bufcache

# sample_conns PORT PID DELAY OUTFILE: in the background, after DELAY
# seconds, the server-side established connections and the fds of PID and
# its children; the caller waits for it.
sample_conns() {
  local port="$1" pid="$2" delay="$3" out="$4"
  (
    sleep "$delay"
    est="$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)"
    fds=0
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
      n="$(ls "/proc/$p/fd" 2>/dev/null | wc -l)"
      fds=$((fds + n))
    done
    echo "$est $fds" >"$out"
  ) &
  SAMPLER_PID=$!
  BENCH_PIDS+=("$SAMPLER_PID")
}

fd_count() {
  local fds=0 p n
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    n="$(ls "/proc/$p/fd" 2>/dev/null | wc -l)"
    fds=$((fds + n))
  done
  echo "$fds"
}

ROWS=""
# run10k LABEL PORT PIDS URL
run10k() {
  local label="$1" port="$2" pid="$3" url="$4" fd0
  fd0="$(fd_count "$pid")"
  # each try: warm-up at $NCONNS connections, then the sampler starts with
  # the measured run
  MEASURE_HOOK="sample_conns $port $pid $((DURATION / 2)) $WORK/$label.sample" \
    measure "$label" "$NCONNS" "$DURATION" "$WARMUP" "$pid" "$url"
  wait "$SAMPLER_PID" 2>/dev/null || true
  local est fds
  read -r est fds <"$WORK/$label.sample" || { est="?"; fds="?"; }
  local socks="?"
  [[ "$fds" == "?" ]] || socks=$((fds - fd0))
  log "$label: mid-run $est established on :$port (server side), server holds $socks more fds than idle"
  ROWS+="$(printf '| %s | %s | %s | %s | %s | %s | %s%% | %s%% / %s%% | %s | %s | %s | %s |' "$label" "$W_RPS" "$W_P50" "$W_P99" \
    "$M_CPU_US" "$W_ERRS, non-2xx $W_NON2XX" "$M_SRV_CORE" "$M_OTHERS" "$M_OTHERS_CLI" "$est" "$socks" "$M_ACCEPTS" "$M_TRIES")"$'\n'
  eval "P99_${label//-/_}=$W_P99"
  eval "EST_${label//-/_}=$est"
}

start_bufcache bufcache --max-connections 12000
NOTICE="$(grep -h 'lowered' "$WORK/bufcache.out" "$WORK/bufcache.err" || true)"
[[ -z "$NOTICE" ]] || log "server notice: $NOTICE"
head -c "$VALUE_SIZE" /dev/urandom >"$WORK/value.bin"
chmod 644 "$WORK/value.bin"
timeout 10 curl -sf -X PUT --data-binary @"$WORK/value.bin" \
  -H 'Content-Type: application/octet-stream' "$BC_URL/v1/buffers/bench-get" -o /dev/null ||
  die "PUT of the value failed"
BC_PORT="${BC_URL##*:}"
run10k bufcache-get-10k "$BC_PORT" "$BC_PID" "$BC_URL/v1/buffers/bench-get"
timeout 10 curl -sf "$BC_ADMIN/debug/memstats" -o "$WORK/memstats.json" || true
stop_pid "$BC_PID"
BC_EXIT_LINES="$(grep -E 'stopped' "$WORK/bufcache.out" | tail -1)"

if [[ "$DO_NGINX" == 1 ]]; then
  start_nginx nginx 12000
  cp "$WORK/value.bin" "$WORK/nginx/www/value.bin"
  NGX_PORT="${NGX_URL##*:}"
  run10k nginx-get-10k "$NGX_PORT" "$NGX_PID" "$NGX_URL/value.bin"
  stop_pid "$NGX_PID"
fi

RESULT="$WORK/conns.md"
{
  echo
  echo "## GET of 4 KiB at $NCONNS keep-alive connections, wrk -t1 -c$NCONNS -d${DURATION}s (warm-up ${WARMUP}s)"
  echo
  echo "| load | req/s | p50 us | p99 us | server CPU us/req | socket errors | server core | others on core $SERVER_CPU / $CLIENT_CPU | established (mid-run, ss) | server sockets (mid-run, fds) | TCP accepts | tries |"
  echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$ROWS"
  echo
  echo "- server: \`$BC_CMDLINE\`; 'max-connections lowered' notice: ${NOTICE:-none}"
  echo "- open files limit for servers and wrk: $(ulimit -n)"
  if [[ "$DO_NGINX" == 1 ]]; then
    echo "- GET p99 at $NCONNS connections, bufcache / nginx: $(awk -v a="$P99_bufcache_get_10k" -v b="$P99_nginx_get_10k" 'BEGIN { printf "%.2f", a / b }')"
  fi
  echo "- all $NCONNS connections held by bufcache: $([[ "$EST_bufcache_get_10k" == "$NCONNS" ]] && echo yes || echo "NO ($EST_bufcache_get_10k established)")"
  echo "- bufcache's exit line: \`$BC_EXIT_LINES\`"
} >"$RESULT"
if [[ -s "$WORK/memstats.json" ]] && command -v python3 >/dev/null; then
  python3 - "$WORK/memstats.json" >>"$RESULT" <<'EOF' || true
import json, sys
d = json.load(open(sys.argv[1]))
r = d.get("Requests", {})
print("- bufcache after the run: requests %s, canceled %s" % (r.get("Total"), r.get("Canceled")))
EOF
fi
cat "$RESULT"
[[ -z "$APPEND" ]] || cat "$RESULT" >>"$APPEND"
log "written to $RESULT"
