#!/usr/bin/env bash
# bench/allocs.sh - libc heap allocations (malloc, calloc, realloc,
# posix_memalign, aligned_alloc, memalign, valloc, pvalloc calls) per GET
# hit and per PUT of a 4 KiB value, in steady state, counted inside the
# bufcache process only by the LD_PRELOAD library bench/malloc_count.c.
#
# Method: bufcache (--workers 1, pinned) runs under the preload; a 4 KiB
# value is stored; wrk warms up GET and PUT. Then, for each of GET and PUT,
# wrk runs for WINDOW+4 s on 64 keep-alive connections and the counters are
# snapshotted (SIGUSR2 -> file, no allocation) 2 s after its start and
# WINDOW s later, so connection set-up and tear-down fall outside the
# window. Allocations / responses queued (MHD_queue_response calls counted
# by the same library) in the window is the figure. wrk is not preloaded.
#
# Also reported (no target): a GET miss (404 with a JSON body), and the
# allocations for one new connection carrying one GET (curl).
#
# Usage: bench/allocs.sh [--trace get|put|miss] [--window S] [--conns N]
#                        [--flags "SERVER FLAGS"] [--append FILE]
#   --trace: also record the backtraces of that window's allocations
#            (at most TRACE_MAX, default 200) and print the distinct stacks,
#            symbolized with addr2line.
source "$(dirname "$0")/lib.sh"

WINDOW="${WINDOW:-5}"
CONNS="${CONNS:-64}"
TRACE=""
TRACE_MAX="${TRACE_MAX:-200}"
APPEND=""
EXTRA_FLAGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --trace) TRACE="$2"; shift 2 ;;
  --window) WINDOW="$2"; shift 2 ;;
  --conns) CONNS="$2"; shift 2 ;;
  --append) APPEND="$2"; shift 2 ;;
  --flags) read -r -a EXTRA_FLAGS <<<"$2"; shift 2 ;;
  -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done
[[ -z "$TRACE" || "$TRACE" == get || "$TRACE" == put || "$TRACE" == miss ]] || die "--trace get|put|miss"

bench_init allocs
build_bufcache
build_malloc_count

MC_FILE="$WORK/malloc_count.txt"
BC_ENV=("LD_PRELOAD=$MALLOC_COUNT_SO" "MALLOC_COUNT_FILE=$MC_FILE")
# snapshots: 1-2 the GET window, 3-4 PUT, 5-6 GET miss, 7-8 one connection
if [[ -n "$TRACE" ]]; then
  BC_ENV+=("MALLOC_COUNT_TRACE=$WORK/trace.txt" "MALLOC_COUNT_TRACE_MAX=$TRACE_MAX")
  case "$TRACE" in
  get) BC_ENV+=("MALLOC_COUNT_TRACE_FROM=1") ;;
  put) BC_ENV+=("MALLOC_COUNT_TRACE_FROM=3") ;;
  miss) BC_ENV+=("MALLOC_COUNT_TRACE_FROM=5") ;;
  esac
fi
start_bufcache bufcache "${EXTRA_FLAGS[@]}"

SEQ=0
# snapshot: signals the server and waits for its file; sets SNAP_<name>.
snapshot() {
  SEQ=$((SEQ + 1))
  kill -USR2 "$BC_PID"
  local i
  for i in $(seq 1 100); do
    [[ -f "$MC_FILE" ]] && [[ "$(awk '$1 == "seq" { print $2 }' "$MC_FILE")" == "$SEQ" ]] && break
    sleep 0.01
  done
  [[ "$(awk '$1 == "seq" { print $2 }' "$MC_FILE")" == "$SEQ" ]] || die "no snapshot $SEQ from the server"
  cp "$MC_FILE" "$WORK/snap.$SEQ"
}
snapval() { awk -v k="$2" '$1 == k { print $2 }' "$WORK/snap.$1"; }

head -c "$VALUE_SIZE" /dev/urandom >"$WORK/value.bin"
timeout 10 curl -sf -X PUT --data-binary @"$WORK/value.bin" \
  -H 'Content-Type: application/octet-stream' "$BC_URL/v1/buffers/bench-get" -o /dev/null ||
  die "cannot store the value"
GET_URL="$BC_URL/v1/buffers/bench-get"
PUT_URL="$BC_URL/v1/buffers/bench-put"

log "warm-up: GET 2 s, PUT 2 s"
wrk_pinned "$CONNS" 2 "$WORK/warm-get.txt" "$GET_URL"
wrk_pinned "$CONNS" 2 "$WORK/warm-put.txt" -s "$BENCH_DIR/put.lua" "$PUT_URL"

# window LABEL [wrk args...]: a wrk run with two snapshots inside it.
window() {
  local label="$1"
  shift
  wrk_pinned "$CONNS" $((WINDOW + 4)) "$WORK/$label.txt" "$@" &
  local wpid=$!
  BENCH_PIDS+=("$wpid")
  sleep 2
  snapshot
  local a="$SEQ"
  sleep "$WINDOW"
  snapshot
  local b="$SEQ"
  wait "$wpid" || die "wrk failed"
  parse_wrk "$WORK/$label.txt"
  local da dr df db
  da=$(($(snapval "$b" allocs) - $(snapval "$a" allocs)))
  dr=$(($(snapval "$b" responses) - $(snapval "$a" responses)))
  df=$(($(snapval "$b" free) - $(snapval "$a" free)))
  db=$(($(snapval "$b" bytes) - $(snapval "$a" bytes)))
  [[ "$dr" -gt 0 ]] || die "no responses in the $label window"
  local per
  per="$(awk -v a="$da" -v r="$dr" 'BEGIN { printf "%.3f", a / r }')"
  local kinds=""
  local k d
  for k in malloc calloc realloc posix_memalign aligned_alloc memalign valloc pvalloc; do
    d=$(($(snapval "$b" "$k") - $(snapval "$a" "$k")))
    [[ "$d" -eq 0 ]] || kinds+="$k $d, "
  done
  kinds="${kinds%, }"
  [[ -n "$kinds" ]] || kinds="none"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$dr" "$da" "$per" \
    "$kinds" "$df" "$(awk -v x="$db" -v r="$dr" 'BEGIN { printf "%.1f", x / r }')" "$W_NON2XX" \
    >>"$WORK/table.md"
  eval "PER_${label^^}=$per"
  log "$label: $da allocations / $dr responses = $per per request ($kinds; free $df)"
}

: >"$WORK/table.md"
window get "$GET_URL"
window put -s "$BENCH_DIR/put.lua" "$PUT_URL"
window miss "$BC_URL/v1/buffers/no-such-key"

# one new connection carrying one GET
snapshot
timeout 10 curl -sf -o /dev/null "$GET_URL" || die "GET failed"
sleep 0.2
snapshot
CONN_ALLOCS=$(($(snapval "$SEQ" allocs) - $(snapval $((SEQ - 1)) allocs)))
CONN_RESP=$(($(snapval "$SEQ" responses) - $(snapval $((SEQ - 1)) responses)))
log "one new connection with one GET: $CONN_ALLOCS allocations ($CONN_RESP response)"

verdict() { awk -v x="$1" -v t="$2" 'BEGIN { print (x <= t + 1e-9) ? "met" : "MISSED" }'; }
RESULT="$WORK/allocs.md"
{
  echo "## libc allocations per request, bufcache sources $SRC_DIGEST ($(date '+%Y-%m-%d %H:%M:%S'))"
  echo
  echo "\`$BC_CMDLINE\` under bench/malloc_count.so; wrk -t1 -c$CONNS keep-alive;"
  echo "a ${WINDOW} s window inside each run (connection set-up excluded)."
  echo
  echo "| load | responses | allocations | per request | by function | free() calls | bytes asked / req | non-2xx (whole wrk run) |"
  echo "|---|---:|---:|---:|---|---:|---:|---:|"
  cat "$WORK/table.md"
  echo
  echo "- target 0 per GET hit: $(verdict "$PER_GET" 0) ($PER_GET)"
  echo "- target <= 4 per PUT: $(verdict "$PER_PUT" 4) ($PER_PUT)"
  echo "- GET miss (404, JSON error body; no target): $PER_MISS per request"
  echo "- one new connection carrying one GET (curl): $CONN_ALLOCS allocations"
} >"$RESULT"

if [[ -n "$TRACE" ]]; then
  # symbolize: module(+0xOFF) -> function (file:line) via addr2line
  T="$WORK/trace.txt"
  awk '/^  / && match($1, /\(\+0x[0-9a-f]+\)$/) { m = substr($1, 1, RSTART - 1); o = substr($1, RSTART + 2, RLENGTH - 3); print m, o }' "$T" |
    sort -u >"$WORK/frames.txt"
  : >"$WORK/symbols.txt"
  for mod in $(awk '{ print $1 }' "$WORK/frames.txt" | sort -u); do
    [[ -f "$mod" ]] || continue
    offs=$(awk -v m="$mod" '$1 == m { print $2 }' "$WORK/frames.txt")
    # shellcheck disable=SC2086
    paste -d'\t' <(printf '%s\n' $offs | sed "s|^|$mod |") \
      <(addr2line -f -C -p -e "$mod" $offs | sed 's|/work/main/||; s| (discriminator [0-9]*)||') >>"$WORK/symbols.txt"
  done
  awk -F'\t' 'FNR == NR { sym[$1] = $2; next }
    function flush() { if (stack != "") print stack; stack = "" }
    /^== / { flush(); stack = $0; sub(/^== /, "", stack); sub(/ tid=[0-9]+/, "", stack); depth = 0; next }
    /^  / {
      f = $1; sub(/^  /, "", f); s = f
      if (match(f, /\(\+0x[0-9a-f]+\)$/)) {
        k = substr(f, 1, RSTART - 1) " " substr(f, RSTART + 2, RLENGTH - 3)
        n = split(substr(f, 1, RSTART - 1), p, "/"); raw = p[n] substr(f, RSTART)
        # a file:line from debug info wins; without it, addr2line and dladdr
        # only know the nearest exported symbol, shown as a hint
        if ((k in sym) && sym[k] !~ /^\?\?/ && sym[k] !~ / at \?\?:/) s = sym[k]
        else if ($2 != "") s = raw " (after " $2 ")"
        else s = raw
      }
      if (depth++ < 12) stack = stack " <- " s
    }
    END { flush() }' "$WORK/symbols.txt" <(sed 's/^  \([^ ]*\) \(.*\)$/  \1\t\2/' "$T") |
    sort | uniq -c | sort -rn >"$WORK/stacks.txt"
  {
    echo
    echo "### allocation sites in the $TRACE window (first $TRACE_MAX calls, count, stack)"
    echo
    echo '```'
    sed 's/ <- /\n        <- /g' "$WORK/stacks.txt"
    echo '```'
  } >>"$RESULT"
fi

stop_pid "$BC_PID"
cat "$RESULT"
[[ -z "$APPEND" ]] || { echo; cat "$RESULT"; } >>"$APPEND"
log "written to $RESULT"
