# bench/lib.sh - helpers shared by run.sh, allocs.sh and conns.sh (sourced).
#
# Everything a script starts is recorded in BENCH_PIDS and stopped by PID on
# exit (TERM, then KILL after 5 s). Only 127.0.0.1 is ever contacted. Every
# wrk, curl and build step runs under `timeout`.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out"

SERVER_CPU="${SERVER_CPU:-1}"   # core for bufcache and nginx
CLIENT_CPU="${CLIENT_CPU:-0}"   # core for wrk
CLK_TCK="$(getconf CLK_TCK)"
VALUE_SIZE="${VALUE_SIZE:-4096}"

# BENCH_NICE (e.g. -10, needs root): run the servers and wrk at that nice
# level, so that on a machine shared with other work they keep most of
# their cores (the "others" column shows what was left to the rest).
BENCH_NICE="${BENCH_NICE:-}"
NICE=()
[[ -z "$BENCH_NICE" ]] || NICE=(nice -n "$BENCH_NICE")

BENCH_PIDS=()
WORK=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is not installed"
  done
}

bench_cleanup() {
  local pid i
  for pid in "${BENCH_PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
}

# bench_init NAME: work directory bench/out/NAME.<date>.XXXX, cleanup trap.
bench_init() {
  need taskset wrk curl ss getconf timeout
  mkdir -p "$OUT_DIR"
  WORK="$(mktemp -d "$OUT_DIR/$1.$(date +%Y%m%d-%H%M%S).XXXX")"
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  [[ "$(nproc)" -ge 2 ]] || log "warning: fewer than 2 cores online; pinning is meaningless"
}

# stop_pid PID: TERM, wait up to 10 s, KILL; removes it from BENCH_PIDS.
stop_pid() {
  local pid="$1" i
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${BENCH_PIDS[@]:-}"; do [[ "$p" == "$pid" || -z "$p" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]:-}")
}

# ---- build -------------------------------------------------------------------

# src_digest: a digest of the sources that make the binary (the tree may
# change while we look at it; the digest says which state was measured).
src_digest() {
  (cd "$ROOT_DIR" && find api base cache gc server -type f \( -name '*.c' -o -name '*.h' \) -print0 |
    sort -z | xargs -0 sha256sum | cat - CMakeLists.txt | sha256sum | cut -c1-12)
}

# build_bufcache: sets BUFCACHE_BIN and SRC_DIGEST. Builds (Release, no
# sanitizers, no tests) into bench/out/build unless BUILD_DIR names another
# build tree (cmake rebuilds only what changed), retrying if the sources
# change during the build, then copies the binary to
# bench/out/bufcache.<digest> so a later rebuild cannot swap it mid-run.
build_bufcache() {
  if [[ -n "${BENCH_BUFCACHE_BIN:-}" ]]; then # handed down by run.sh
    BUFCACHE_BIN="$BENCH_BUFCACHE_BIN"
    SRC_DIGEST="${BENCH_SRC_DIGEST:-?}"
    [[ -x "$BUFCACHE_BIN" ]] || die "no binary at $BUFCACHE_BIN"
    return 0
  fi
  need cmake cc sha256sum
  local dir="${BUILD_DIR:-$OUT_DIR/build}" try d0 d1
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    log "configuring $dir (Release)"
    timeout 600 cmake -S "$ROOT_DIR" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
      -DBUFCACHE_TESTS=OFF >"$WORK/cmake.log" 2>&1 ||
      { cat "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  fi
  for try in 1 2 3 4 5; do
    d0="$(src_digest)"
    if timeout 900 cmake --build "$dir" -j"$(nproc)" --target bufcache >>"$WORK/cmake.log" 2>&1; then
      d1="$(src_digest)"
      [[ "$d0" == "$d1" ]] && break
      log "sources changed during the build; building again"
    else
      d1=""
      log "build failed (sources being edited?); retrying in 20 s"
      tail -5 "$WORK/cmake.log" >&2
      sleep 20
    fi
  done
  [[ -n "$d1" && "$d0" == "$d1" ]] || { tail -30 "$WORK/cmake.log" >&2; die "no consistent build"; }
  SRC_DIGEST="$d0"
  [[ -x "$dir/bufcache" ]] || die "no binary at $dir/bufcache"
  if grep -q '^BUFCACHE_SANITIZE:[A-Z]*=\(address\|thread\)' "$dir/CMakeCache.txt" ||
     ! grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Release$' "$dir/CMakeCache.txt"; then
    log "warning: $dir is not a plain Release build; figures will not be comparable"
  fi
  BUFCACHE_BIN="$OUT_DIR/bufcache.$SRC_DIGEST"
  cp -f "$dir/bufcache" "$BUFCACHE_BIN.tmp.$$" && mv -f "$BUFCACHE_BIN.tmp.$$" "$BUFCACHE_BIN"
  log "bufcache built from sources $SRC_DIGEST: $BUFCACHE_BIN"
}

# build_malloc_count: sets MALLOC_COUNT_SO (rebuilt when the source is newer).
build_malloc_count() {
  need cc
  MALLOC_COUNT_SO="$OUT_DIR/malloc_count.so"
  if [[ ! -f "$MALLOC_COUNT_SO" || "$BENCH_DIR/malloc_count.c" -nt "$MALLOC_COUNT_SO" ]]; then
    cc -O2 -g -Wall -Wextra -fPIC -shared -o "$MALLOC_COUNT_SO" \
      "$BENCH_DIR/malloc_count.c" -ldl || die "cannot build malloc_count.so"
  fi
}

# ---- processes ------------------------------------------------------------------

# free_port: a TCP port below the ephemeral range (so no client socket of
# wrk can hold it) that no socket of any state uses now.
free_port() {
  local lo p i
  lo="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  [[ "$lo" -gt 12000 ]] || lo=61000
  for i in $(seq 1 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if [[ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]]; then
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# bufcache_flags: sets BC_FLAGS, the flags every bench server gets:
# --access-log=false where the binary has an access log (nginx runs with
# access_log off), then the words of $BUFCACHE_FLAGS (user's extras).
bufcache_flags() {
  BC_FLAGS=()
  if "$BUFCACHE_BIN" --help 2>&1 | grep -q -- '--access-log '; then
    BC_FLAGS+=(--access-log=false)
  fi
  # shellcheck disable=SC2206
  [[ -z "${BUFCACHE_FLAGS:-}" ]] || BC_FLAGS+=($BUFCACHE_FLAGS)
}

# has_flag FLAG: does this bufcache binary know --FLAG?
has_flag() { "$BUFCACHE_BIN" --help 2>&1 | grep -q -- "--$1 "; }

# start_bufcache NAME [flags...]: bufcache on free loopback ports, pinned to
# SERVER_CPU, with BC_FLAGS and then the given flags; extra environment via
# the BC_ENV array (e.g. LD_PRELOAD=...). Sets BC_PID, BC_URL, BC_ADMIN,
# BC_CMDLINE; stdout/stderr in $WORK/NAME.out/.err.
start_bufcache() {
  local name="$1"
  shift
  local out="$WORK/$name.out" err="$WORK/$name.err"
  [[ -n "${BC_FLAGS+x}" ]] || bufcache_flags
  BC_CMDLINE="bufcache --workers 1 ${BC_FLAGS[*]:-} $*"
  env "${BC_ENV[@]:-BENCH=1}" "${NICE[@]}" taskset -c "$SERVER_CPU" "$BUFCACHE_BIN" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --workers 1 "${BC_FLAGS[@]}" "$@" >"$out" 2>"$err" &
  BC_PID=$!
  BENCH_PIDS+=("$BC_PID")
  local i
  for i in $(seq 1 200); do
    grep -q '(admin)' "$out" 2>/dev/null && break
    kill -0 "$BC_PID" 2>/dev/null || { cat "$out" "$err" >&2; die "bufcache exited early"; }
    sleep 0.05
  done
  # the listening lines, plain text or JSON: "listening on http://HOST:PORT (data|admin"
  BC_URL="$(grep -o 'listening on http://[^ ]* (data' "$out" | head -1 | sed 's/^listening on //; s/ (data$//')"
  BC_ADMIN="$(grep -o 'listening on http://[^ ]* (admin' "$out" | head -1 | sed 's/^listening on //; s/ (admin$//')"
  [[ -n "$BC_URL" && -n "$BC_ADMIN" ]] || { cat "$out" >&2; die "bufcache did not report its addresses"; }
  log "bufcache pid $BC_PID on $BC_URL (admin $BC_ADMIN), core $SERVER_CPU: $BC_CMDLINE"
}

# start_nginx NAME WORKER_CONNECTIONS: Debian's nginx, one worker, pinned to
# SERVER_CPU, serving $WORK/NAME/www/ (the caller puts files there) on a
# free loopback port. Sets NGX_PID (the master), NGX_URL. NGINX_HTTP_EXTRA
# adds directives to the http block (e.g. "open_file_cache max=16;"); if
# they set sendfile or tcp_nopush, Debian's "on" for it is left out.
start_nginx() {
  need nginx
  local name="$1" wconns="$2"
  local d="$WORK/$name"
  mkdir -p "$d/www" "$d/tmp"
  chmod 755 "$d" "$d/www"
  local port attempt
  for attempt in 1 2 3; do
  port="$(free_port)"
  local extra="${NGINX_HTTP_EXTRA:-}"
  local sf_line="sendfile on;    # as in Debian's /etc/nginx/nginx.conf"
  local np_line="tcp_nopush on;  # as in Debian's /etc/nginx/nginx.conf"
  [[ "$extra" != *sendfile* ]] || sf_line=""
  [[ "$extra" != *tcp_nopush* ]] || np_line=""
  cat >"$d/nginx.conf" <<EOF
# generated by bench/lib.sh
worker_processes 1;
daemon off;
master_process on;
user root;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 20000;
events {
    worker_connections $wconns;
}
http {
    access_log off;
    $sf_line
    $np_line
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    default_type application/octet-stream;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    $extra
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $d/www;
        location / { }
    }
}
EOF
  (ulimit -n 20000 2>/dev/null || true
   exec "${NICE[@]}" taskset -c "$SERVER_CPU" nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log") \
    >"$d/stdout" 2>"$d/stderr" &
  NGX_PID=$!
  BENCH_PIDS+=("$NGX_PID")
  NGX_URL="http://127.0.0.1:$port"
  local i up=0
  for i in $(seq 1 100); do
    if timeout 2 curl -s -o /dev/null "$NGX_URL/" 2>/dev/null; then up=1; break; fi
    kill -0 "$NGX_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ "$up" == 1 ]] && break
  stop_pid "$NGX_PID"
  if grep -q 'Address already in use' "$d/stderr" 2>/dev/null && [[ "$attempt" -lt 3 ]]; then
    log "nginx: port $port taken meanwhile, trying another"
    continue
  fi
  cat "$d/stderr" "$d/error.log" >&2 2>/dev/null
  die "nginx did not start"
  done
  log "nginx master pid $NGX_PID (workers: $(pgrep -P "$NGX_PID" | tr '\n' ' ')) on $NGX_URL, core $SERVER_CPU"
}

# ---- measurements ------------------------------------------------------------------

# cpu_ticks PID...: utime+stime (clock ticks) of each PID and of its child
# processes (nginx's workers), summed. For a threaded process the PID's
# /proc/PID/stat already includes all its threads.
cpu_ticks() {
  local total=0 pid c
  local pids=()
  for pid in "$@"; do
    pids+=("$pid")
    for c in $(pgrep -P "$pid" 2>/dev/null || true); do pids+=("$c"); done
  done
  for pid in "${pids[@]}"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    # fields after the ")" that ends comm: state is field 3, utime 14, stime 15
    local rest
    rest="$(sed 's/^.*) //' "/proc/$pid/stat")"
    # shellcheck disable=SC2086
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# core_jiffies CPU: "busy total" jiffies of one core from /proc/stat (busy:
# user nice system irq softirq steal; total adds idle and iowait).
core_jiffies() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# machine_jiffies: "busy total" of the whole machine (the /proc/stat "cpu"
# line), like core_jiffies for one core.
machine_jiffies() { core_jiffies ""; }

# wait_machine_quiet LABEL: for the benchmarks that use both cores (no
# pinning to a quiet core pair): waits (up to QUIET_MAX s, default 300)
# until other processes use less than QUIET_BUSY (0.35) of the machine over
# 3 s.
wait_machine_quiet() {
  local t0=$SECONDS a b busy
  while :; do
    a="$(machine_jiffies)"
    sleep 3
    b="$(machine_jiffies)"
    busy="$(echo "$a $b" | awk '{ printf "%.2f", ($3 - $1) / ($4 - $2) }')"
    if awk -v b="$busy" -v q="${QUIET_BUSY:-0.35}" 'BEGIN { exit !(b < q) }'; then
      log "machine busy $busy before $1 (waited $((SECONDS - t0)) s)"
      return 0
    fi
    if ((SECONDS - t0 >= ${QUIET_MAX:-300})); then
      log "machine still busy ($busy) after ${QUIET_MAX:-300}s; running $1 anyway"
      return 0
    fi
  done
}

# tcp_passive_opens: system-wide accepted TCP connections so far.
tcp_passive_opens() {
  awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1 } else print $c }' /proc/net/snmp
}

# to_us VALUE: wrk's 448.00us / 1.14ms / 2.00s -> microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.0f", v }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.0f", v * 1000 }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60e6 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.0f", v * 1e6 }
    else printf "%s", v }'
}

# parse_wrk FILE: sets W_REQS W_RPS W_P50 W_P99 (us) W_ERRS W_NON2XX W_SECS.
parse_wrk() {
  local f="$1"
  W_REQS="$(awk '/ requests in / { print $1 }' "$f")"
  W_SECS="$(awk '/ requests in / { s = $4; sub(/s,$/, "", s); print s }' "$f")"
  W_RPS="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$f")"
  W_P50="$(to_us "$(awk '$1 == "50%" { print $2 }' "$f")")"
  W_P99="$(to_us "$(awk '$1 == "99%" { print $2 }' "$f")")"
  W_ERRS="$(awk '/Socket errors:/ { gsub(/,/, ""); printf "connect %s read %s write %s timeout %s", $4, $6, $8, $10 }' "$f")"
  [[ -n "$W_ERRS" ]] || W_ERRS="none"
  W_NON2XX="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")"
  [[ -n "$W_NON2XX" ]] || W_NON2XX=0
  [[ -n "$W_REQS" && -n "$W_RPS" ]] || { cat "$f" >&2; die "cannot parse wrk output $f"; }
}

# wrk_pinned CONNS DURATION_S OUT [wrk args...]: wrk -t1, pinned to
# CLIENT_CPU, bounded; its own user+sys seconds go to OUT.time.
wrk_pinned() {
  local conns="$1" dur="$2" out="$3"
  shift 3
  local TIMEFORMAT='%U %S'
  { time timeout $((dur + 60)) "${NICE[@]}" taskset -c "$CLIENT_CPU" \
      wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency "$@" >"$out" 2>&1; } 2>"$out.time" ||
    { cat "$out" >&2; die "wrk failed ($out)"; }
}

# wait_quiet: waits (at most QUIET_WAIT s, default 60) until both cores
# were at least QUIET_IDLE % (default 90) idle for QUIET_SECS (default 3)
# seconds in a row, so a run does not start while other processes load the
# machine. Sets QUIET_NOTE ("" or "busy").
wait_quiet() {
  local max="${QUIET_WAIT:-60}" want="${QUIET_IDLE:-90}" need="${QUIET_SECS:-3}"
  local i ok=0 a0 a1 b0 b1 ia ib
  QUIET_NOTE=""
  for ((i = 0; i < max; i++)); do
    a0="$(core_jiffies "$SERVER_CPU")" b0="$(core_jiffies "$CLIENT_CPU")"
    sleep 1
    a1="$(core_jiffies "$SERVER_CPU")" b1="$(core_jiffies "$CLIENT_CPU")"
    ia="$(echo "$a0 $a1" | awk '{ t = $4 - $2; printf "%.0f", (t > 0 ? 100 - ($3 - $1) / t * 100 : 0) }')"
    ib="$(echo "$b0 $b1" | awk '{ t = $4 - $2; printf "%.0f", (t > 0 ? 100 - ($3 - $1) / t * 100 : 0) }')"
    if [[ "$ia" -ge "$want" && "$ib" -ge "$want" ]]; then
      ok=$((ok + 1))
      if [[ "$ok" -ge "$need" ]]; then
        [[ "$i" -lt "$need" ]] || log "machine quiet after ${i}s"
        return 0
      fi
    else
      ok=0
      [[ "$i" -gt 0 ]] || log "waiting for a quiet machine (cores idle: $SERVER_CPU ${ia}%, $CLIENT_CPU ${ib}%)"
    fi
  done
  QUIET_NOTE="busy"
  log "warning: the machine stayed busy (cores idle: $SERVER_CPU ${ia}%, $CLIENT_CPU ${ib}%); measuring anyway"
}

# measure_once LABEL CONNS DURATION WARMUP "PIDS" URL [wrk args...]: warm-up,
# then one measured wrk run with the server's CPU ticks sampled around it.
# Sets the W_* values plus M_CPU_US (server CPU us per request),
# M_SRV_CORE (% of one core), M_CLI_CORE (wrk, % of one core), M_ACCEPTS,
# M_CORE_BUSY (% of SERVER_CPU busy, all tasks), M_OTHERS (that minus the
# server: other processes or ksoftirqd on the server's core) and
# M_OTHERS_CLI (the same on wrk's core). MEASURE_HOOK, if set, is eval'd
# just before the measured wrk starts (conns.sh starts a sampler there).
measure_once() {
  local label="$1" conns="$2" dur="$3" warm="$4" pids="$5" url="$6"
  shift 6
  if [[ "$warm" -gt 0 ]]; then
    wrk_pinned "$conns" "$warm" "$WORK/$label.warmup.txt" "$@" "$url"
  fi
  local t0 t1 a0 a1 c0 c1 k0 k1
  [[ -z "${MEASURE_HOOK:-}" ]] || eval "$MEASURE_HOOK"
  # shellcheck disable=SC2086
  t0="$(cpu_ticks $pids)"
  c0="$(core_jiffies "$SERVER_CPU")"
  k0="$(core_jiffies "$CLIENT_CPU")"
  a0="$(tcp_passive_opens)"
  wrk_pinned "$conns" "$dur" "$WORK/$label.txt" "$@" "$url"
  a1="$(tcp_passive_opens)"
  # shellcheck disable=SC2086
  t1="$(cpu_ticks $pids)"
  c1="$(core_jiffies "$SERVER_CPU")"
  k1="$(core_jiffies "$CLIENT_CPU")"
  parse_wrk "$WORK/$label.txt"
  M_CORE_BUSY="$(echo "$c0 $c1" | awk '{ printf "%.0f", ($3 - $1) / ($4 - $2) * 100 }')"
  M_OTHERS="$(echo "$c0 $c1 $((t1 - t0))" | awk '{ o = (($3 - $1) - $5) / ($4 - $2) * 100; printf "%.0f", o < 0 ? 0 : o }')"
  M_OTHERS_CLI="$(echo "$k0 $k1 $(cat "$WORK/$label.txt.time")" | awk -v hz="$CLK_TCK" \
    '{ o = (($3 - $1) - ($5 + $6) * hz) / ($4 - $2) * 100; printf "%.0f", o < 0 ? 0 : o }')"
  M_ACCEPTS=$((a1 - a0))
  M_CPU_US="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$W_REQS" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')"
  M_SRV_CORE="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$W_SECS" 'BEGIN { printf "%.0f", d / hz / s * 100 }')"
  M_CLI_CORE="$(awk -v s="$W_SECS" '{ printf "%.0f", ($1 + $2) / s * 100 }' "$WORK/$label.txt.time")"
}

# measure LABEL CONNS DURATION WARMUP "PIDS" URL [wrk args...]: measure_once
# until neither core lent more than OTHERS_MAX % (default 5) to other
# processes during the run, at most MEASURE_TRIES (default 4) times, each
# after wait_quiet (unless SKIP_QUIET=1); keeps the least disturbed try.
# Sets what measure_once sets, plus M_TRIES.
MEASURE_VARS="W_REQS W_SECS W_RPS W_P50 W_P99 W_ERRS W_NON2XX M_CORE_BUSY M_OTHERS M_OTHERS_CLI M_ACCEPTS M_CPU_US M_SRV_CORE M_CLI_CORE"
measure() {
  local label="$1" tries="${MEASURE_TRIES:-4}" maxo="${OTHERS_MAX:-5}" try best="" bestd=999 d
  for ((try = 1; try <= tries; try++)); do
    [[ "${SKIP_QUIET:-0}" == 1 ]] || wait_quiet
    measure_once "$@"
    d=$((M_OTHERS > M_OTHERS_CLI ? M_OTHERS : M_OTHERS_CLI))
    log "$label (try $try): $W_RPS req/s, p50 ${W_P50}us, p99 ${W_P99}us, server ${M_CPU_US} us CPU/req (core ${M_SRV_CORE}%; core $SERVER_CPU busy ${M_CORE_BUSY}%), wrk core ${M_CLI_CORE}%, others on server/wrk core ${M_OTHERS}%/${M_OTHERS_CLI}%, errors: $W_ERRS, non-2xx: $W_NON2XX, accepts: $M_ACCEPTS"
    cp "$WORK/$label.txt" "$WORK/$label.try$try.txt"
    if [[ "$d" -lt "$bestd" ]]; then
      bestd="$d"
      # shellcheck disable=SC2086
      best="$(declare -p $MEASURE_VARS)"
      cp "$WORK/$label.txt" "$WORK/$label.best.txt"
    fi
    [[ "$d" -gt "$maxo" ]] || break
    [[ "$try" -eq "$tries" ]] || log "$label: disturbed (others ${d}% > ${maxo}%), measuring again"
  done
  eval "${best//declare -- /}"
  cp "$WORK/$label.best.txt" "$WORK/$label.txt"
  M_TRIES="$((try > tries ? tries : try))"
}

# ---- description of the machine ------------------------------------------------

machine_md() {
  local model cores kern deb ngx wrkv mhd commit head
  model="$(lscpu | awk -F: '/^Model name/ { sub(/^ +/, "", $2); m = $2 } END { print m }' || true)"
  cores="$(nproc)"
  kern="$(uname -r)"
  deb="$(cat /etc/debian_version 2>/dev/null || echo '?')"
  ngx="$( (nginx -v 2>&1 || true) | sed 's/^nginx version: //')"
  wrkv="$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')"
  mhd="$(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null || echo '?')"
  # the commit, read from .git without running git
  commit="?"
  if [[ -f "$ROOT_DIR/.git/HEAD" ]]; then
    head="$(cat "$ROOT_DIR/.git/HEAD")"
    if [[ "$head" == ref:* ]]; then
      local ref="${head#ref: }"
      if [[ -f "$ROOT_DIR/.git/$ref" ]]; then
        commit="$(cut -c1-12 "$ROOT_DIR/.git/$ref")"
      elif [[ -f "$ROOT_DIR/.git/packed-refs" ]]; then
        commit="$(awk -v r="$ref" '$2 == r { print substr($1, 1, 12) }' "$ROOT_DIR/.git/packed-refs")"
      fi
    else
      commit="${head:0:12}"
    fi
  fi
  cat <<EOF
- CPU: $model, $cores cores ($(lscpu | awk -F: '/^Hypervisor vendor/ { sub(/^ +/, "", $2); h = $2 " guest" } END { print h }' || true))
- kernel $kern, Debian $deb
- nginx $ngx, wrk $wrkv, libmicrohttpd $mhd
- bufcache: .git HEAD $commit (the working tree may differ), sources digest $SRC_DIGEST (bench/lib.sh src_digest), binary $BUFCACHE_BIN
- server/nginx pinned to core $SERVER_CPU, wrk to core $CLIENT_CPU; CLK_TCK $CLK_TCK; nice level of servers and wrk: ${BENCH_NICE:-0 (not set)}
- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)
EOF
}
