#!/usr/bin/env bash
# bench/run.sh - the benchmark of issue #2, in one run:
#
#   bufcache GET  4 KiB cached value   \
#   nginx    GET  4 KiB static file     > wrk -t1 -c64 keep-alive, --latency
#   bufcache PUT  4 KiB value          /
#
# bufcache (--workers 1) and nginx (one worker) are pinned to core
# SERVER_CPU (1), wrk to core CLIENT_CPU (0). Each load gets a short warm-up,
# then a DURATION-second measured run; the server's utime+stime from
# /proc/PID/stat (nginx: master + worker) is sampled around it, giving its
# CPU time per request. Prints a table with the ratios against nginx and
# writes it to bench/out/results-<date>.md. Then, unless --no-10k, runs
# bench/conns.sh (GET at 10,000 connections) and bench/allocs.sh (libc
# allocations per GET and per PUT) and appends their tables.
#
# Variants: each --variant "FLAGS" adds a row "bufcache GET" for a second
# server started with those flags (and an allocs.sh table). By default, when
# the binary has the flags: the non-default --request-id-header mode
# ("always" adds a generated X-Request-Id to every response, so a GET hit
# cannot use the shared cached response), and --max-header-size 8KiB
# (libmicrohttpd zeroes its whole per-connection pool, 32 KiB by default,
# between keep-alive requests). Likewise each --nginx-variant
# "DIRECTIVES" adds a row "nginx GET" for an nginx with those directives in
# its http block; by default a tuned nginx is measured as well, "sendfile
# off; open_file_cache max=64 inactive=60s; open_file_cache_valid 60s;"
# (no open/fstat/close per request). The targets are judged against the
# Debian-default nginx; the ratios to the tuned one are printed too.
# --no-variants drops both defaults.
#
# The bufcache GET / nginx GET pair is measured REPEAT (3) times,
# alternating, and the table shows medians (each repetition is listed too).
#
# Usage: bench/run.sh [--duration S] [--warmup S] [--conns N] [--repeat N] [--no-10k]
#                     [--no-allocs] [--variant "FLAGS"]...
#                     [--nginx-variant "DIRECTIVES"]... [--no-variants]
# Environment: SERVER_CPU, CLIENT_CPU, BUILD_DIR, BUFCACHE_FLAGS (lib.sh),
# VALUE_SIZE.
source "$(dirname "$0")/lib.sh"

DURATION="${DURATION:-10}"
REPEAT="${REPEAT:-3}"
WARMUP="${WARMUP:-3}"
CONNS="${CONNS:-64}"
DO_10K=1
DO_ALLOCS=1
VARIANTS=()
NGX_VARIANTS=()
DEFAULT_VARIANTS=1
TUNED_NGINX="sendfile off; open_file_cache max=64 inactive=60s; open_file_cache_valid 60s;"
while [[ $# -gt 0 ]]; do
  case "$1" in
  --duration) DURATION="$2"; shift 2 ;;
  --warmup) WARMUP="$2"; shift 2 ;;
  --conns) CONNS="$2"; shift 2 ;;
  --repeat) REPEAT="$2"; shift 2 ;;
  --no-10k) DO_10K=0; shift ;;
  --no-allocs) DO_ALLOCS=0; shift ;;
  --variant) VARIANTS+=("$2"); shift 2 ;;
  --nginx-variant) NGX_VARIANTS+=("$2"); shift 2 ;;
  --no-variants) DEFAULT_VARIANTS=0; shift ;;
  -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done

bench_init run
build_bufcache
export BENCH_BUFCACHE_BIN="$BUFCACHE_BIN" BENCH_SRC_DIGEST="$SRC_DIGEST"
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$OUT_DIR/results-$STAMP.md"

if [[ "$DEFAULT_VARIANTS" == 1 ]]; then
  # the non-default X-Request-Id mode (its cost on GET hits)
  if has_flag request-id-header; then
    if "$BUFCACHE_BIN" --help 2>&1 | grep -A1 -- '--request-id-header' | grep -q 'default always'; then
      VARIANTS+=("--request-id-header incoming")
    else
      VARIANTS+=("--request-id-header always")
    fi
  fi
  # a smaller libmicrohttpd connection pool: MHD 0.9.75 zeroes the whole
  # pool between keep-alive requests (see docs/BENCHMARKS.md)
  ! has_flag max-header-size || VARIANTS+=("--max-header-size 8KiB")
  NGX_VARIANTS+=("$TUNED_NGINX")
fi

# ---- servers -----------------------------------------------------------------------
start_bufcache bufcache
MAIN_CMDLINE="$BC_CMDLINE"
start_nginx nginx 4096
head -c "$VALUE_SIZE" /dev/urandom >"$WORK/nginx/www/value.bin"
chmod 644 "$WORK/nginx/www/value.bin"

GET_URL="$BC_URL/v1/buffers/bench-get"
PUT_URL="$BC_URL/v1/buffers/bench-put"
NGX_GET_URL="$NGX_URL/value.bin"

# preload the same bytes into bufcache, then check both serve them
timeout 10 curl -sf -X PUT --data-binary @"$WORK/nginx/www/value.bin" \
  -H 'Content-Type: application/octet-stream' "$GET_URL" -o /dev/null || die "PUT of the value failed"
timeout 10 curl -sf "$GET_URL" -o "$WORK/check-bufcache.bin" -D "$WORK/headers-bufcache.txt" || die "GET from bufcache failed"
timeout 10 curl -sf "$NGX_GET_URL" -o "$WORK/check-nginx.bin" -D "$WORK/headers-nginx.txt" || die "GET from nginx failed"
cmp -s "$WORK/check-bufcache.bin" "$WORK/nginx/www/value.bin" || die "bufcache returned other bytes"
cmp -s "$WORK/check-nginx.bin" "$WORK/nginx/www/value.bin" || die "nginx returned other bytes"
HDR_BC=$(($(wc -c <"$WORK/headers-bufcache.txt")))
HDR_NGX=$(($(wc -c <"$WORK/headers-nginx.txt")))

# ---- the three loads ----------------------------------------------------------------
ROWS=""
row() { # LABEL
  ROWS+="$(printf '| %s | %s | %s | %s | %s | %s%% | %s%% | %s%% / %s%% | %s | %s | %s | %s |' "$1" "$W_RPS" \
    "$W_P50" "$W_P99" "$M_CPU_US" "$M_SRV_CORE" "$M_CLI_CORE" "$M_OTHERS" "$M_OTHERS_CLI" "$W_REQS" "$W_ERRS, non-2xx $W_NON2XX" "$M_ACCEPTS" "$M_TRIES")"$'\n'
}

# the GET pair, alternated REPEAT times (bufcache, nginx, bufcache, ...);
# the table shows the median of each column, the ratios use the medians,
# every repetition is listed below the table
REPS=""
save_rep() { # PREFIX REP
  local v
  for v in $MEASURE_VARS M_TRIES; do
    eval "${1}_${v}_$2=\"\${$v}\""
  done
  REPS+="$(printf '| %s #%s | %s | %s | %s | %s | %s%% | %s%% / %s%% |' "$3" "$2" "$W_RPS" "$W_P50" "$W_P99" \
    "$M_CPU_US" "$M_SRV_CORE" "$M_OTHERS" "$M_OTHERS_CLI")"$'\n'
}
median_of() { # PREFIX VAR: median over the repetitions
  local r vals=()
  for ((r = 1; r <= REPEAT; r++)); do
    eval "vals+=(\"\${${1}_${2}_$r}\")"
  done
  printf '%s\n' "${vals[@]}" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
use_medians() { # PREFIX: W_*/M_* := medians (errors, accepts, tries: worst/sum)
  local v r
  for v in W_RPS W_P50 W_P99; do
    eval "$v=\"\$(printf '%.0f' \"\$(median_of $1 $v)\")\""
  done
  M_CPU_US="$(printf '%.2f' "$(median_of "$1" M_CPU_US)")"
  for v in M_SRV_CORE M_CLI_CORE M_OTHERS M_OTHERS_CLI; do # integers
    eval "$v=\"\$(printf '%.0f' \"\$(median_of $1 $v)\")\""
  done
  local reqs=0 tries=0 acc=0 non2xx=0 errs=""
  for ((r = 1; r <= REPEAT; r++)); do
    eval "reqs=\$((reqs + ${1}_W_REQS_$r)); tries=\$((tries + ${1}_M_TRIES_$r)); non2xx=\$((non2xx + ${1}_W_NON2XX_$r))"
    eval "[[ \${${1}_M_ACCEPTS_$r} -le \$acc ]] || acc=\${${1}_M_ACCEPTS_$r}"
    eval "[[ \"\${${1}_W_ERRS_$r}\" == none ]] || errs+=\"#$r: \${${1}_W_ERRS_$r}; \""
  done
  W_REQS="$reqs (all)" M_TRIES="$tries" M_ACCEPTS="$acc" W_NON2XX="$non2xx" W_ERRS="${errs:-none}"
}

NGX_PIDS="$NGX_PID"
for ((rep = 1; rep <= REPEAT; rep++)); do
  measure "bufcache-get-$rep" "$CONNS" "$DURATION" "$WARMUP" "$BC_PID" "$GET_URL"
  save_rep BCG "$rep" "bufcache GET"
  measure "nginx-get-$rep" "$CONNS" "$DURATION" "$WARMUP" "$NGX_PIDS" "$NGX_GET_URL"
  save_rep NGG "$rep" "nginx GET"
done
use_medians BCG
BC_GET_RPS="$W_RPS" BC_GET_CPU="$M_CPU_US" BC_GET_P99="$W_P99"
DISTURBED=$((M_OTHERS > M_OTHERS_CLI ? M_OTHERS : M_OTHERS_CLI))
row "bufcache GET (median of $REPEAT)"
use_medians NGG
NGX_GET_RPS="$W_RPS" NGX_GET_CPU="$M_CPU_US" NGX_GET_P99="$W_P99"
d=$((M_OTHERS > M_OTHERS_CLI ? M_OTHERS : M_OTHERS_CLI))
[[ "$d" -le "$DISTURBED" ]] || DISTURBED="$d"
row "nginx GET, static file (median of $REPEAT)"
measure bufcache-put "$CONNS" "$DURATION" "$WARMUP" "$BC_PID" "$PUT_URL" -s "$BENCH_DIR/put.lua"
row "bufcache PUT"

# memstats after the run: GC cycles, pool, cancels (admin listener)
timeout 10 curl -sf "$BC_ADMIN/debug/memstats" -o "$WORK/memstats.json" || true

stop_pid "$NGX_PID"
stop_pid "$BC_PID"

# ---- variants: GET again, on a server started with other flags ----------------------
VNOTES=""
vi=0
for v in "${NGX_VARIANTS[@]}"; do
  vi=$((vi + 1))
  NGINX_HTTP_EXTRA="$v" start_nginx "nginx-variant$vi" 4096
  cp "$WORK/nginx/www/value.bin" "$WORK/nginx-variant$vi/www/value.bin"
  measure "nginx-variant$vi-get" "$CONNS" "$DURATION" "$WARMUP" "$NGX_PID" "$NGX_URL/value.bin"
  row "nginx GET, $v"
  VNOTES+="- nginx variant \`$v\`: bufcache GET / this nginx: throughput $(awk -v a="$BC_GET_RPS" -v b="$W_RPS" 'BEGIN { printf "%.2f", a / b }'), CPU per GET $(awk -v a="$BC_GET_CPU" -v b="$M_CPU_US" 'BEGIN { printf "%.2f", a / b }')"$'\n'
  stop_pid "$NGX_PID"
done
vi=0
for v in "${VARIANTS[@]}"; do
  vi=$((vi + 1))
  read -r -a vflags <<<"$v"
  start_bufcache "variant$vi" "${vflags[@]}"
  timeout 10 curl -sf -X PUT --data-binary @"$WORK/nginx/www/value.bin" \
    -H 'Content-Type: application/octet-stream' "$BC_URL/v1/buffers/bench-get" -o /dev/null ||
    die "PUT of the value failed (variant $v)"
  measure "variant$vi-get" "$CONNS" "$DURATION" "$WARMUP" "$BC_PID" "$BC_URL/v1/buffers/bench-get"
  row "bufcache GET, $v"
  VNOTES+="- bufcache variant \`$v\`: CPU per GET vs the main bufcache row $(awk -v a="$M_CPU_US" -v b="$BC_GET_CPU" 'BEGIN { printf "%.2f", a / b }'); GET / Debian-default nginx: throughput $(awk -v a="$W_RPS" -v b="$NGX_GET_RPS" 'BEGIN { printf "%.2f", a / b }'), CPU per GET $(awk -v a="$M_CPU_US" -v b="$NGX_GET_CPU" 'BEGIN { printf "%.2f", a / b }')"$'\n'
  stop_pid "$BC_PID"
done

RPS_RATIO="$(awk -v a="$BC_GET_RPS" -v b="$NGX_GET_RPS" 'BEGIN { printf "%.2f", a / b }')"
CPU_RATIO="$(awk -v a="$BC_GET_CPU" -v b="$NGX_GET_CPU" 'BEGIN { printf "%.2f", a / b }')"
P99_RATIO="$(awk -v a="$BC_GET_P99" -v b="$NGX_GET_P99" 'BEGIN { printf "%.2f", a / b }')"
ok_ge() { awk -v x="$1" -v t="$2" 'BEGIN { print ((x >= t) ? "met" : "MISSED") }'; }
ok_le() { awk -v x="$1" -v t="$2" 'BEGIN { print ((x <= t) ? "met" : "MISSED") }'; }

{
  echo "# bufcache benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  machine_md
  echo
  echo "## GET and PUT of 4 KiB, wrk -t1 -c$CONNS -d${DURATION}s --latency (warm-up ${WARMUP}s), keep-alive"
  echo
  echo "| load | req/s | p50 us | p99 us | server CPU us/req | server core | wrk core | others on core $SERVER_CPU / $CLIENT_CPU | requests | socket errors | TCP accepts | tries |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
  printf '%s' "$ROWS"
  echo
  echo "Every repetition of the GET pair (in the order run):"
  echo
  echo "| run | req/s | p50 us | p99 us | server CPU us/req | server core | others on core $SERVER_CPU / $CLIENT_CPU |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$REPS"
  echo
  if [[ "$DISTURBED" -gt "${OTHERS_MAX:-5}" ]]; then
    echo "- **the GET runs were disturbed** (up to $DISTURBED% of a core went to other processes):"
    echo "  the ratios below are not a valid comparison; run again on a quiet machine"
  fi
  echo "- GET throughput bufcache / nginx: **$RPS_RATIO** (target >= 0.9: $(ok_ge "$RPS_RATIO" 0.9))"
  echo "- server CPU per GET bufcache / nginx: **$CPU_RATIO** (target <= 1.1: $(ok_le "$CPU_RATIO" 1.1))"
  echo "- GET p99 bufcache / nginx: $P99_RATIO"
  printf '%s' "$VNOTES"
  echo "- bufcache: \`$MAIN_CMDLINE\`; nginx: 1 worker, access_log off, keepalive_requests 1e9, Debian's sendfile on and tcp_nopush on${NGINX_HTTP_EXTRA:+, plus $NGINX_HTTP_EXTRA}"
  echo "- response header bytes: bufcache $HDR_BC, nginx $HDR_NGX (body $VALUE_SIZE each)"
  echo "- server core / wrk core: share of one core used during the measured run; others on"
  echo "  core $SERVER_CPU / $CLIENT_CPU: busy time of the server's / wrk's core (/proc/stat) not charged"
  echo "  to the server / wrk (other processes, ksoftirqd): above ${OTHERS_MAX:-5}% the run was disturbed"
  echo "  and was repeated (tries), keeping the least disturbed one;"
  echo "  TCP accepts: system-wide PassiveOpens during the run (keep-alive: about $CONNS)"
} >"$RESULTS"

if [[ -s "$WORK/memstats.json" ]] && command -v python3 >/dev/null; then
  python3 - "$WORK/memstats.json" >>"$RESULTS" <<'EOF' || true
import json, sys
d = json.load(open(sys.argv[1]))
r, p = d.get("Requests", {}), d.get("Pools", {})
print("- bufcache after the run: NumGC %s, PauseTotalNs %s, requests %s, canceled %s, pools %s"
      % (d.get("NumGC"), d.get("PauseTotalNs"), r.get("Total"), r.get("Canceled"), p))
ps = sorted(x for x in d.get("PauseNs", []) if x)
if ps:
    q = lambda f: ps[min(len(ps) - 1, int(len(ps) * f))] / 1000.0
    print("- GC pauses (PauseNs ring, last %d cycles, both STW phases summed): p50 %.0f us, p99 %.0f us, max %.0f us"
          % (len(ps), q(0.5), q(0.99), ps[-1] / 1000.0))
EOF
fi

cat "$RESULTS"

if [[ "$DO_10K" == 1 ]]; then
  "$BENCH_DIR/conns.sh" --append "$RESULTS" || log "conns.sh failed"
fi
if [[ "$DO_ALLOCS" == 1 ]]; then
  "$BENCH_DIR/allocs.sh" --append "$RESULTS" || log "allocs.sh failed"
  for v in "${VARIANTS[@]}"; do
    "$BENCH_DIR/allocs.sh" --flags "$v" --append "$RESULTS" || log "allocs.sh --flags '$v' failed"
  done
fi
log "results written to $RESULTS"
