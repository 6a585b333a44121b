#!/usr/bin/env bash
# bench/gc_mixed.sh - the collector benchmark of issue #3, two experiments:
#
# 1. "Collector under mixed load": bufcache --gctrace --memory-limit LIMIT
#    (4GiB), KEYS (1,000,000) values of 1 KiB loaded by PUT, a forced cycle,
#    then DURATION (30) s of 80% GET / 20% PUT over random existing keys at
#    full speed (bench/gcload.c, C keep-alive connections, one request in
#    flight each). Phase A keeps GOGC at its default and forces a cycle
#    every FORCE_EVERY s (the pacer alone starts none in 30 s: the overwrites
#    make ~20 MB/s of garbage against a 1.1 GB goal's headroom); phase B
#    (PACER_GCP set) sets PUT /debug/gc-percent PACER_GCP and lets the pacer
#    alone start the cycles for another DURATION s.
#    Reported per phase: cycles, both STW pauses of every cycle (from the
#    gctrace lines) p50/p99/max, GC CPU fraction over the window, RSS and
#    HeapInuse against the limit, request rate inside marking / inside whole
#    cycles / between cycles (1 ms buckets aligned with the cycles through
#    /debug/memstats PauseEnd; bench/gc_analyze.py).
# 2. "Memory limit under a write flood": --memory-limit FLOOD_LIMIT (256MiB),
#    PUTs of new 1 KiB keys totalling FLOOD_BYTES (800 MiB, > 3x the limit),
#    RSS sampled every 100 ms: max RSS against limit x 1.05.
#
# Each experiment runs RUNS (2) times (the machine is shared; compare runs).
# bufcache (--workers WORKERS, default 1) is pinned to SERVER_CPU (1), the
# client to CLIENT_CPU (0), like bench/run.sh. Everything is loopback and
# stopped by PID on exit. Results: bench/out/gc_mixed.<date>.XXXX/gc_mixed.md.
#
# Usage: bench/gc_mixed.sh [--runs N] [--keys N] [--duration S] [--conns N]
#          [--limit SIZE] [--force-every S] [--pacer-gcp PCT|""]
#          [--flood-limit SIZE] [--flood-bytes BYTES] [--no-mixed] [--no-flood]
# Environment: SERVER_CPU, CLIENT_CPU, BUILD_DIR (default bench/out/build-gc).
source "$(dirname "$0")/lib.sh"

RUNS="${RUNS:-2}"
KEYS="${KEYS:-1000000}"
DURATION="${DURATION:-30}"
CONNS="${CONNS:-64}"
WORKERS="${WORKERS:-1}"
LIMIT="${LIMIT:-4GiB}"
FORCE_EVERY="${FORCE_EVERY:-1}"
PACER_GCP="${PACER_GCP-5}"
FLOOD_LIMIT="${FLOOD_LIMIT:-256MiB}"
FLOOD_BYTES="${FLOOD_BYTES:-$((800 << 20))}"
DO_MIXED=1
DO_FLOOD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
  --runs) RUNS="$2"; shift 2 ;;
  --keys) KEYS="$2"; shift 2 ;;
  --duration) DURATION="$2"; shift 2 ;;
  --conns) CONNS="$2"; shift 2 ;;
  --limit) LIMIT="$2"; shift 2 ;;
  --force-every) FORCE_EVERY="$2"; shift 2 ;;
  --pacer-gcp) PACER_GCP="$2"; shift 2 ;;
  --flood-limit) FLOOD_LIMIT="$2"; shift 2 ;;
  --flood-bytes) FLOOD_BYTES="$2"; shift 2 ;;
  --no-mixed) DO_MIXED=0; shift ;;
  --no-flood) DO_FLOOD=0; shift ;;
  -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
  *) die "unknown argument $1" ;;
  esac
done

bench_init gc_mixed
need python3 jq cc
export BUILD_DIR="${BUILD_DIR:-$OUT_DIR/build-gc}"
build_bufcache
GCLOAD="$WORK/gcload"
cc -O2 -g -Wall -Wextra -o "$GCLOAD" "$BENCH_DIR/gcload.c" || die "cannot build gcload"

# size_bytes 4GiB -> 4294967296 (the server's own parser is stricter; this
# only has to agree with it on the values used here)
size_bytes() {
  awk -v s="$1" 'BEGIN {
    n = s; u = s; sub(/[A-Za-z]+$/, "", n); sub(/^[0-9.]+/, "", u)
    m = 1
    if (u == "KiB") m = 1024; else if (u == "MiB") m = 1048576
    else if (u == "GiB") m = 1073741824; else if (u == "TiB") m = 1099511627776
    else if (u == "KB") m = 1e3; else if (u == "MB") m = 1e6; else if (u == "GB") m = 1e9
    printf "%.0f", n * m }'
}

# ms_snap FILE: /debug/memstats into FILE, the unix ns it was asked at in FILE.t
ms_snap() {
  date +%s%N >"$1.t"
  timeout 30 curl -sf "$BC_ADMIN/debug/memstats" -o "$1" || die "memstats failed"
}

force_gc() { timeout 60 curl -sf -X POST "$BC_ADMIN/debug/gc" -o "${1:-/dev/null}" || die "POST /debug/gc failed"; }

# bg_start VAR cmd...: starts cmd in the background, records its PID
bg_start() {
  local var="$1"
  shift
  "$@" &
  printf -v "$var" '%s' "$!"
  BENCH_PIDS+=("$!")
}

# force_loop PERIOD STOPFILE: POST /debug/gc every PERIOD s until STOPFILE
force_loop() {
  local period="$1" stop="$2"
  while [[ ! -e "$stop" ]]; do
    sleep "$period"
    [[ -e "$stop" ]] && break
    timeout 60 curl -sf -X POST "$BC_ADMIN/debug/gc" -o /dev/null || true
  done
}

# window NAME FORCE_EVERY LIMIT_BYTES gcload-args...: one measured load
# window against the running server; analysis in $WORK/NAME.json
window() {
  local name="$1" force="$2" limit="$3"
  shift 3
  local d="$WORK/$name" sp fp=""
  mkdir -p "$d"
  bg_start sp python3 "$BENCH_DIR/gc_sample.py" "$BC_PID" "$BC_ADMIN" "$d/samples.csv" \
    --interval 0.1 --every 10 --seconds 3600 --stopfile "$d/stop" --threads "$d/threads.txt"
  ms_snap "$d/ms0.json"
  local c0 c1 k0 k1 o0 o1
  c0="$(cpu_ticks "$BC_PID")"
  k0="$(core_jiffies "$SERVER_CPU")"
  o0="$(core_jiffies "$CLIENT_CPU")"
  if [[ "$force" != 0 ]]; then
    bg_start fp force_loop "$force" "$d/stop"
  fi
  timeout 7200 taskset -c "$CLIENT_CPU" "$GCLOAD" --port "${BC_URL##*:}" --conns "$CONNS" \
    --buckets "$d/buckets.txt" "$@" >"$d/client.txt" || die "gcload failed ($name)"
  c1="$(cpu_ticks "$BC_PID")"
  k1="$(core_jiffies "$SERVER_CPU")"
  o1="$(core_jiffies "$CLIENT_CPU")"
  touch "$d/stop"
  [[ -n "$fp" ]] && { wait "$fp" 2>/dev/null || true; }
  wait "$sp" 2>/dev/null || true
  ms_snap "$d/ms1.json"
  python3 "$BENCH_DIR/gc_analyze.py" --gctrace "$WORK/$SERVER_NAME.err" --memstats "$d/ms1.json" \
    --buckets "$d/buckets.txt" --samples "$d/samples.csv" --ms0 "$d/ms0.json" --ms1 "$d/ms1.json" \
    --cpu0 "$c0" --cpu1 "$c1" --clk-tck "$CLK_TCK" --limit "$limit" --threads "$d/threads.txt" \
    --json "$d/analysis.json" \
    >"$d/analysis.txt" || die "analysis failed ($name)"
  # noise: how busy the two cores were with anything but this server
  python3 - "$d/analysis.json" "$d/client.txt" "$c0" "$c1" "$CLK_TCK" $k0 $k1 $o0 $o1 <<'EOF'
import json, sys
f, client, c0, c1, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
kb0, kt0, kb1, kt1, ob0, ot0, ob1, ot1 = map(int, sys.argv[6:14])
a = json.load(open(f))
for line in open(client):
    k, _, v = line.strip().partition("=")
    a["client_" + k] = v
a["server_core_busy"] = round((kb1 - kb0) / max(1, kt1 - kt0), 3)
a["server_core_others"] = round(max(0, (kb1 - kb0) - (c1 - c0)) / max(1, kt1 - kt0), 3)
a["client_core_busy"] = round((ob1 - ob0) / max(1, ot1 - ot0), 3)
json.dump(a, open(f, "w"), indent=1)
EOF
  log "$name: $(tr '\n' ' ' <"$d/analysis.txt" | cut -c1-600)"
}


run_mixed() {
  local run="$1" lim
  lim="$(size_bytes "$LIMIT")"
  SERVER_NAME="mixed$run"
  wait_machine_quiet "mixed$run"
  start_bufcache "$SERVER_NAME" --workers "$WORKERS" --gctrace --memory-limit "$LIMIT"
  local d="$WORK/mixed$run"
  mkdir -p "$d"
  force_gc
  ms_snap "$d/empty.json"
  grep VmRSS "/proc/$BC_PID/status" | awk '{ print $2 * 1024 }' >"$d/empty.rss"
  log "mixed$run: loading $KEYS keys of 1 KiB"
  timeout 3600 taskset -c "$CLIENT_CPU" "$GCLOAD" --port "${BC_URL##*:}" --conns "$CONNS" \
    --mode load --keys "$KEYS" --duration 3000 >"$d/load.txt" || die "load failed"
  log "mixed$run: loaded: $(tr '\n' ' ' <"$d/load.txt")"
  force_gc "$d/loaded-gc.json"
  ms_snap "$d/loaded.json"
  grep VmRSS "/proc/$BC_PID/status" | awk '{ print $2 * 1024 }' >"$d/loaded.rss"
  log "mixed$run: after the load and a cycle: HeapInuse $(jq .HeapInuse "$d/loaded.json"), RSS $(cat "$d/loaded.rss"), entries $(jq .Cache.Entries "$d/loaded.json")"
  window "mixed$run/A" "$FORCE_EVERY" "$lim" --mode mixed --keys "$KEYS" --duration "$DURATION" \
    --get-pct 80 --seed "$run"
  if [[ -n "$PACER_GCP" ]]; then
    timeout 10 curl -sf -X PUT --data "$PACER_GCP" "$BC_ADMIN/debug/gc-percent" -o /dev/null ||
      die "PUT /debug/gc-percent failed"
    window "mixed$run/B" 0 "$lim" --mode mixed --keys "$KEYS" --duration "$DURATION" \
      --get-pct 80 --seed "$((run + 100))"
  fi
  stop_pid "$BC_PID"
}

run_flood() {
  local run="$1" lim
  lim="$(size_bytes "$FLOOD_LIMIT")"
  SERVER_NAME="flood$run"
  wait_machine_quiet "flood$run"
  start_bufcache "$SERVER_NAME" --workers "$WORKERS" --gctrace --memory-limit "$FLOOD_LIMIT"
  mkdir -p "$WORK/flood$run"
  log "flood$run: PUT $FLOOD_BYTES bytes of new 1 KiB values under a $FLOOD_LIMIT limit"
  window "flood$run/W" 0 "$lim" --mode flood --keys 1 --bytes "$FLOOD_BYTES" --duration 3000 \
    --prefix f
  stop_pid "$BC_PID"
}

for run in $(seq 1 "$RUNS"); do
  [[ "$DO_MIXED" == 1 ]] && run_mixed "$run"
  [[ "$DO_FLOOD" == 1 ]] && run_flood "$run"
done

# ---- the report -------------------------------------------------------------
{
  echo "## gc_mixed.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  machine_md
  echo "- keys $KEYS x 1 KiB, $CONNS connections, $DURATION s per window, workers $WORKERS, limit $LIMIT (phase A: GOGC 100 + a forced cycle every ${FORCE_EVERY}s; phase B: GOGC ${PACER_GCP:-skipped}, pacer only); flood: limit $FLOOD_LIMIT, $FLOOD_BYTES bytes"
  echo
  python3 - "$WORK" <<'EOF'
import glob, json, os, sys
work = sys.argv[1]
rows = []
for f in sorted(glob.glob(os.path.join(work, "*", "*", "analysis.json"))):
    a = json.load(open(f))
    rows.append((os.path.relpath(os.path.dirname(f), work), a))
mib = lambda b: "%.0f" % (b / 1048576.0) if isinstance(b, (int, float)) else "?"
print("| window | cycles (pacer/forced) | pause p50 / p99 / max us | pauses > 100 us | mark p50 ms | GC CPU (window) | GC share of server CPU | RSS max MiB (x limit) | HeapInuse max MiB (x limit) | req/s between | req/s marking (ratio) | req/s in cycles (ratio) | worker CPU share between / marking | collector CPU share marking | req per worker CPU-s between / marking | others on server core |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, a in rows:
    g = a.get
    print("| %s | %s (%s/%s) | %s / %s / %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s | %s (%s) | %s (%s) | %s / %s | %s | %s / %s | %s |" % (
        name, g("cycles"), g("cycles_pacer"), g("cycles_forced"),
        g("pause_p50_us"), g("pause_p99_us"), g("pause_max_us"), g("pauses_over_100us"),
        g("mark_p50_ms"), g("gc_cpu_fraction_window"), g("gc_share_of_server_cpu"),
        mib(g("rss_max")), g("rss_max_vs_limit"), mib(g("heap_inuse_max")), g("heap_inuse_max_vs_limit"),
        g("rps_between"), g("rps_marking"), g("marking_vs_between"),
        g("rps_in_cycles"), g("cycles_vs_between"),
        g("worker_cpu_share_between"), g("worker_cpu_share_marking"), g("collector_cpu_share_marking"),
        g("req_per_worker_cpu_s_between"), g("req_per_worker_cpu_s_marking"), g("server_core_others")))
print()
for name, a in rows:
    print("- %s: client %s req/s, latency p50/p99/max %s/%s/%s us, errors %s, status %s" % (
        name, a.get("client_rps"), a.get("client_lat_p50_us"), a.get("client_lat_p99_us"),
        a.get("client_lat_max_us"), a.get("client_errors"), a.get("client_status")))
EOF
} >"$WORK/gc_mixed.md"
cat "$WORK/gc_mixed.md"
log "results: $WORK/gc_mixed.md"
