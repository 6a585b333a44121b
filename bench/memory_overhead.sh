#!/usr/bin/env bash
# bench/memory_overhead.sh - the memory benchmark of issue #4, in one run:
#
#   1,000,000 values of 1,024 bytes under 11-byte keys ("k" + 10 digits),
#   loaded into bufcache (HTTP PUT), Debian's memcached (text protocol "set")
#   and Debian's redis-server (RESP "SET") by bench/memload.c (4 keep-alive
#   connections, 32 requests in flight on each); then, for bufcache, a forced
#   cycle (POST /debug/gc); then each server's VmRSS from /proc/PID/status.
#   The figure is RSS / payload, payload = N x VALUE bytes (keys and
#   metadata are overhead).
#
# bufcache runs with --memory-limit 4GiB (nothing is evicted), --workers 1,
# no access log; memcached with -m 4096 -t 2; redis without persistence.
# Every server listens on a free 127.0.0.1 port and is stopped by PID.
# Prints a Markdown table (docs/BENCHMARKS.md, "Memory overhead") with
# bufcache's breakdown from /debug/memstats, and keeps it in
# bench/out/memory.<date>.XXXX/memory.md.
#
# Usage: bench/memory_overhead.sh          (N and VALUE from the environment)
# Environment: N (1000000), VALUE (1024), BUILD_DIR (see lib.sh).
source "$(dirname "$0")/lib.sh"

N="${N:-1000000}"
VALUE="${VALUE:-1024}"
PAYLOAD=$((N * VALUE))

bench_init memory
need memcached redis-server cc python3
build_bufcache
LOADER="$WORK/memload"
cc -O2 -Wall -Wextra -o "$LOADER" "$BENCH_DIR/memload.c" || die "cannot build memload"

rss_of() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
ratio() { python3 -c "print('%.3f' % ($1 / $PAYLOAD))"; }
mib() { python3 -c "print('%.1f' % ($1 / 1048576))"; }

# wait_listen PORT PID LOG: until something listens on 127.0.0.1:PORT (30 s)
wait_listen() {
  local i
  for i in $(seq 1 600); do
    [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]] && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "server $2 exited"; }
    sleep 0.05
  done
  cat "$3" >&2
  die "nothing listens on port $1"
}

declare -A RSS0 RSS1 SECS

# load_peer NAME PID PORT PROTO LOG: waits for PID to listen on PORT, then
# loads the N values over PROTO; RSS0/RSS1/SECS[NAME] get RSS before, RSS
# a second after, and the load's seconds.
load_peer() {
  local name="$1" pid="$2" port="$3" proto="$4" t0
  wait_listen "$port" "$pid" "$5"
  RSS0[$name]="$(rss_of "$pid")"
  t0=$(date +%s.%N)
  timeout 600 "$LOADER" "$proto" 127.0.0.1 "$port" "$N" "$VALUE" 4 32 \
    2>"$WORK/load.$name" || { cat "$WORK/load.$name" >&2; die "$name load failed"; }
  SECS[$name]=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
  sleep 1
  RSS1[$name]="$(rss_of "$pid")"
}

# ---- bufcache -----------------------------------------------------------------
start_bufcache bufcache --memory-limit 4GiB
RSS0[bufcache]="$(rss_of "$BC_PID")"
t0=$(date +%s.%N)
timeout 600 "$LOADER" http 127.0.0.1 "${BC_URL##*:}" "$N" "$VALUE" 4 32 \
  2>"$WORK/load.bufcache" || { cat "$WORK/load.bufcache" >&2; die "bufcache load failed"; }
SECS[bufcache]=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
timeout 120 curl -fsS -X POST "$BC_ADMIN/debug/gc" >/dev/null || die "POST /debug/gc failed"
sleep 1
timeout 30 curl -fsS "$BC_ADMIN/debug/memstats" >"$WORK/memstats.json"
RSS1[bufcache]="$(rss_of "$BC_PID")"
cp "/proc/$BC_PID/smaps_rollup" "$WORK/smaps.bufcache" 2>/dev/null || true
stop_pid "$BC_PID"

# ---- memcached ------------------------------------------------------------------
port="$(free_port)"
taskset -c "$SERVER_CPU" memcached -l 127.0.0.1 -p "$port" -U 0 -m 4096 -t 2 \
  -u root >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
BENCH_PIDS+=("$MC_PID")
load_peer memcached "$MC_PID" "$port" memcache "$WORK/memcached.log"
printf 'stats\r\nstats slabs\r\nquit\r\n' | timeout 10 python3 -c "
import socket,sys
s=socket.create_connection(('127.0.0.1',$port)); s.sendall(sys.stdin.buffer.read())
d=b''
while True:
    x=s.recv(65536)
    if not x: break
    d+=x
sys.stdout.write(d.decode())" >"$WORK/memcached.stats" 2>/dev/null || true
stop_pid "$MC_PID"

# ---- redis ---------------------------------------------------------------------
port="$(free_port)"
taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save '' \
  --appendonly no --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
RD_PID=$!
BENCH_PIDS+=("$RD_PID")
load_peer redis "$RD_PID" "$port" redis "$WORK/redis.log"
command -v redis-cli >/dev/null &&
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" info memory >"$WORK/redis.info" 2>/dev/null || true
stop_pid "$RD_PID"

# ---- the table -----------------------------------------------------------------
MC_VER="$(memcached -V 2>/dev/null | head -1)"
RD_VER="$(redis-server --version 2>/dev/null | grep -o 'v=[^ ]*' | head -1)"
{
  echo "$N values of $VALUE B, 11-byte keys; payload $PAYLOAD B ($(mib $PAYLOAD) MiB);"
  echo "bufcache sources $SRC_DIGEST, $MC_VER, redis $RD_VER; $(nproc) cores, $(uname -r)."
  echo
  echo "| server | RSS empty (MiB) | RSS loaded (MiB) | RSS / payload | load time (s) |"
  echo "|---|---:|---:|---:|---:|"
  for s in bufcache memcached redis; do
    echo "| $s | $(mib "${RSS0[$s]}") | $(mib "${RSS1[$s]}") | $(ratio "${RSS1[$s]}") | ${SECS[$s]} |"
  done
  echo
  echo "bufcache after the forced cycle (/debug/memstats):"
  echo
  python3 - "$WORK/memstats.json" "$N" "$PAYLOAD" "${RSS1[bufcache]}" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
n, payload, rss = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = m["Cache"]
rows = [
    ("entries (Cache.Entries)", c["Entries"], None),
    ("HeapAlloc (objects' size classes)", m["HeapAlloc"], m["HeapAlloc"] / n),
    ("HeapInuse (pages of in-use spans)", m["HeapInuse"], m["HeapInuse"] / n),
    ("MSpanSys (span structs)", m["MSpanSys"], m["MSpanSys"] / n),
    ("GCSys (span map)", m["GCSys"], m["GCSys"] / n),
    ("Cache.IndexBytes (slot tables)", c["IndexBytes"], c["IndexBytes"] / n),
    ("RSS", rss, rss / n),
    ("RSS - HeapInuse - MSpanSys - GCSys - index (binary, stacks, MHD, libc)",
     rss - m["HeapInuse"] - m["MSpanSys"] - m["GCSys"] - c["IndexBytes"],
     (rss - m["HeapInuse"] - m["MSpanSys"] - m["GCSys"] - c["IndexBytes"]) / n),
]
print("| figure | bytes | per entry |")
print("|---|---:|---:|")
for name, v, per in rows:
    print("| %s | %d | %s |" % (name, v, "" if per is None else "%.1f" % per))
EOF
} | tee "$WORK/memory.md"
log "results in $WORK/memory.md"
