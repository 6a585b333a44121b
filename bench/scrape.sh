#!/usr/bin/env bash
# bench/scrape.sh - what a once-a-second scrape costs the GET path (issue #6:
# "cheap enough to scrape every second without moving the GET benchmark by
# more than 1%").
#
# bufcache (--workers 1) is pinned to core SERVER_CPU, wrk -t1 -c64 (GET of a
# 4 KiB cached value, keep-alive) and the scraper to CLIENT_CPU. ROUNDS times,
# alternating, one DURATION-second run without scraping and one with a
# scraper that every second fetches /metrics on the DATA port (so the one
# data worker builds it between GETs: the worst case) and /debug/memstats on
# the admin port. Prints req/s and server CPU per request of every run, the
# medians and the difference; then the server CPU of one scrape, measured
# over SCRAPES back-to-back scrapes of each endpoint, and what one scrape a
# second is as a share of one core.
#
# Usage: bench/scrape.sh [--duration S] [--rounds N] [--scrapes N]
# Environment: SERVER_CPU, CLIENT_CPU, BUILD_DIR (see lib.sh), VALUE_SIZE.
source "$(dirname "$0")/lib.sh"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
SCRAPES="${SCRAPES:-1000}"
CONNS=64
while [[ $# -gt 0 ]]; do
  case "$1" in
  --duration) DURATION="$2"; shift 2 ;;
  --rounds) ROUNDS="$2"; shift 2 ;;
  --scrapes) SCRAPES="$2"; shift 2 ;;
  -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done

bench_init scrape
build_bufcache
start_bufcache bufcache --workers 1
GET_URL="$BC_URL/v1/buffers/bench-get"
head -c "$VALUE_SIZE" /dev/urandom >"$WORK/value.bin"
timeout 10 curl -sf -X PUT --data-binary @"$WORK/value.bin" "$GET_URL" -o /dev/null || die "PUT failed"
timeout 10 curl -sf "$GET_URL" -o "$WORK/check.bin" || die "GET failed"
cmp -s "$WORK/check.bin" "$WORK/value.bin" || die "GET returned other bytes"
timeout 10 curl -sf "$BC_URL/metrics" -o "$WORK/metrics.txt" || die "GET /metrics failed"
timeout 10 curl -sf "$BC_ADMIN/debug/memstats" -o "$WORK/memstats.json" || die "GET /debug/memstats failed"

# the scraper: once a second, both endpoints, pinned with wrk
SCRAPER_PID=""
start_scraper() {
  (
    while :; do
      timeout 5 taskset -c "$CLIENT_CPU" curl -sf -o /dev/null "$BC_URL/metrics" || echo "scrape failed" >&2
      timeout 5 taskset -c "$CLIENT_CPU" curl -sf -o /dev/null "$BC_ADMIN/debug/memstats" || echo "scrape failed" >&2
      sleep 1
    done
  ) 2>>"$WORK/scraper.err" &
  SCRAPER_PID=$!
  BENCH_PIDS+=("$SCRAPER_PID")
}
stop_scraper() { [[ -n "$SCRAPER_PID" ]] && stop_pid "$SCRAPER_PID"; SCRAPER_PID=""; }

RPS_OFF=() RPS_ON=() CPU_OFF=() CPU_ON=()
for r in $(seq 1 "$ROUNDS"); do
  measure "get-off-$r" "$CONNS" "$DURATION" "$WARMUP" "$BC_PID" "$GET_URL"
  RPS_OFF+=("$W_RPS") CPU_OFF+=("$M_CPU_US")
  start_scraper
  measure "get-on-$r" "$CONNS" "$DURATION" "$WARMUP" "$BC_PID" "$GET_URL"
  stop_scraper
  RPS_ON+=("$W_RPS") CPU_ON+=("$M_CPU_US")
done
[[ ! -s "$WORK/scraper.err" ]] || log "warning: $(sort "$WORK/scraper.err" | uniq -c | tr '\n' ' ')"

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m_off="$(median "${RPS_OFF[@]}")" m_on="$(median "${RPS_ON[@]}")"
c_off="$(median "${CPU_OFF[@]}")" c_on="$(median "${CPU_ON[@]}")"

# CPU of one scrape: SCRAPES back-to-back requests, server ticks around them
scrape_cpu() { # URL -> us of server CPU per request
  local url="$1" t0 t1 i
  t0="$(cpu_ticks "$BC_PID")"
  for i in $(seq 1 "$SCRAPES"); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
  done >"$WORK/scrape.cfg"
  timeout 120 taskset -c "$CLIENT_CPU" curl -sf -K "$WORK/scrape.cfg" || die "scrapes of $url failed"
  t1="$(cpu_ticks "$BC_PID")"
  awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$SCRAPES" 'BEGIN { printf "%.0f", d * 1e6 / hz / n }'
}
wait_quiet
us_metrics="$(scrape_cpu "$BC_URL/metrics")"
us_memstats="$(scrape_cpu "$BC_ADMIN/debug/memstats")"
sz_metrics="$(wc -c <"$WORK/metrics.txt")" sz_memstats="$(wc -c <"$WORK/memstats.json")"

{
  echo "## scrape cost (bench/scrape.sh, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  machine_md
  echo
  echo "GET 4 KiB, wrk -t1 -c$CONNS, ${DURATION}s per run, $ROUNDS rounds alternating; scraper: /metrics (data port) + /debug/memstats (admin) once a second"
  echo
  echo "| run | req/s no scrape | req/s 1/s scrape | us CPU/req no scrape | us CPU/req scrape |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for i in $(seq 0 $((ROUNDS - 1))); do
    echo "| $((i + 1)) | ${RPS_OFF[$i]} | ${RPS_ON[$i]} | ${CPU_OFF[$i]} | ${CPU_ON[$i]} |"
  done
  echo "| median | $m_off | $m_on | $c_off | $c_on |"
  echo
  awk -v a="$m_off" -v b="$m_on" 'BEGIN { printf "req/s with scraping vs without (medians): %+.2f%%\n", (b - a) / a * 100 }'
  echo
  echo "server CPU per scrape ($SCRAPES back-to-back): /metrics ${us_metrics} us (${sz_metrics} bytes), /debug/memstats ${us_memstats} us (${sz_memstats} bytes)"
  awk -v m="$us_metrics" -v s="$us_memstats" 'BEGIN { printf "both once a second: %.3f%% of one core\n", (m + s) / 1e6 * 100 }'
} | tee "$WORK/result.md"
log "result in $WORK/result.md"
