#!/usr/bin/env bash
# SIGTERM drain (issue 2, part 5):
#  1. a slow upload is in flight; SIGTERM: /readyz on the admin listener
#     turns 503, the data listener stops taking connections (refused), the
#     upload still completes with 201, an idle keep-alive connection does not
#     hold the drain up, and the process exits 0 within the drain timeout;
#  2. --drain-timeout 1s with a stalled upload: exit 0 after about 1 s, and
#     the stalled client's connection is closed;
#  3. an idle server exits 0 at once;
#  4. SIGTERM sent the moment the "listening" lines appear (what a
#     supervisor may do) still drains and exits 0: 20 tries.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
is_num() { [[ "$1" =~ ^[0-9]+$ ]]; }

# wait_exit PID SECONDS: waits for our child to exit; sets EC to its exit
# code, or "timeout" (not in a subshell: only the parent can wait for it).
wait_exit() {
  local pid="$1" deadline=$(( $(now_ms) + $2 * 1000 ))
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $(now_ms) -ge $deadline ]]; then EC=timeout; return; fi
    sleep 0.02
  done
  wait "$pid"
  EC=$?
}

# ---- 1. slow upload in flight -------------------------------------------------
fresh_start --drain-timeout 8s --workers 2
DPORT="$(port_of "$DATA")"
rand_file "$TMP/slow" 400000
# ~4 s at 100 KB/s
( "${CURL[@]}" -o "$TMP/slow.body" -X PUT --limit-rate 100k -H 'Expect:' \
    --data-binary "@$TMP/slow" -w '%{http_code}' "$DATA/v1/buffers/drain/slow" \
    >"$TMP/slow.status" 2>"$TMP/slow.err"; echo $? >"$TMP/slow.rc" ) &
upload=$!
# an idle keep-alive connection: one request answered, then silence
( exec 3<>"/dev/tcp/127.0.0.1/$DPORT"
  printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3
  timeout 20 cat <&3 >"$TMP/idle.out" ) &
idle=$!
# wait until the upload is in flight (its request is counted)
for _ in $(seq 1 100); do
  n="$(memstat .Requests.InFlight)"
  is_num "$n" && [[ $n -ge 2 ]] && break
  sleep 0.05
done
sleep 0.5
req GET "$ADMIN/readyz"
check "readyz before SIGTERM" 200 "$RS"

t0=$(now_ms)
kill -TERM "$SERVER_PID"
ready=""
for _ in $(seq 1 40); do
  ready="$("${CURL[@]}" --max-time 2 -o /dev/null -w '%{http_code}' "$ADMIN/readyz" 2>/dev/null)"
  [[ "$ready" == 503 ]] && break
  sleep 0.05
done
check "readyz (admin) turns 503 while draining" 503 "$ready"
req GET "$ADMIN/healthz"
check "healthz (admin) still 200 while draining" 200 "$RS"

# new connections to the data listener are refused (curl exit 7), not
# accepted and left hanging; try for 2 s while the upload is still running
refused=no
last=""
deadline=$(( $(now_ms) + 2000 ))
while [[ $(now_ms) -lt $deadline ]] && kill -0 "$upload" 2>/dev/null; do
  code="$("${CURL[@]}" --max-time 1 -o /dev/null -w '%{http_code}' "$DATA/healthz" 2>/dev/null)"
  rc=$?
  last="curl rc $rc, status $code"
  if [[ $rc -eq 7 ]]; then refused=yes; break; fi
  sleep 0.1
done
if [[ $refused == yes ]]; then ok "new data connections refused during the drain"
else fail "new data connections during the drain were not refused within 2 s ($last; 28 = accepted and left hanging)"; fi
kill -0 "$upload" 2>/dev/null && ok "the upload was still in flight when that was checked" ||
  fail "the upload ended before the drain could be observed (too fast?)"

wait_exit "$SERVER_PID" 15; ec="$EC"
t1=$(now_ms)
check "server exits 0 after the drain" 0 "$ec"
[[ "$ec" == timeout ]] && kill -KILL "$SERVER_PID" 2>/dev/null
SERVER_PID=""
wait "$upload"
check "in-flight upload completed with 201" 201 "$(cat "$TMP/slow.status")"
check "in-flight upload: curl exit 0" 0 "$(cat "$TMP/slow.rc")"
el=$((t1 - t0))
[[ $el -lt 8000 ]] && ok "exit within the 8 s drain timeout (${el} ms)" || fail "exit took ${el} ms (drain timeout 8 s)"
# the upload needed ~4 s: exiting well before that would mean it was cut off
[[ $el -ge 1500 ]] && ok "the drain waited for the upload (${el} ms)" || fail "exit after only ${el} ms: the upload cannot have finished"
wait "$idle" 2>/dev/null
grep -q '^HTTP/1.1 200' "$TMP/idle.out" && ok "idle keep-alive connection had its answer" || fail "idle connection: no answer"
"${CURL[@]}" --max-time 2 -o /dev/null "$DATA/healthz" 2>/dev/null
check "after exit: data port refuses (curl 7)" 7 "$?"
"${CURL[@]}" --max-time 2 -o /dev/null "$ADMIN/healthz" 2>/dev/null
check "after exit: admin port refuses (curl 7)" 7 "$?"

# ---- 2. a stalled upload and --drain-timeout 1s ---------------------------------
fresh_start --drain-timeout 1s --workers 2
DPORT="$(port_of "$DATA")"
( exec 3<>"/dev/tcp/127.0.0.1/$DPORT"
  printf 'PUT /v1/buffers/drain/stalled HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n' >&3
  head -c 1000 /dev/urandom >&3
  # stall: send nothing more; see whether (and when) the server closes
  timeout 15 cat <&3 >"$TMP/stalled.out"; echo $? >"$TMP/stalled.rc" ) &
stalled=$!
for _ in $(seq 1 100); do
  n="$(memstat .Requests.InFlight)"
  is_num "$n" && [[ $n -ge 2 ]] && break
  sleep 0.05
done
check "stalled upload is in flight" yes "$([[ "${n:-0}" -ge 2 ]] && echo yes || echo "no ($n)")"
t0=$(now_ms)
kill -TERM "$SERVER_PID"
sleep 0.3
if kill -0 "$SERVER_PID" 2>/dev/null; then
  req GET "$ADMIN/readyz"
  check "readyz 503 while the stalled upload holds the drain" 503 "$RS"
else
  fail "server exited before the 1 s drain timeout with an upload in flight"
fi
wait_exit "$SERVER_PID" 10; ec="$EC"
el=$(( $(now_ms) - t0 ))
check "server exits 0 after the drain timeout" 0 "$ec"
[[ "$ec" == timeout ]] && kill -KILL "$SERVER_PID" 2>/dev/null
SERVER_PID=""
[[ $el -ge 800 && $el -le 4000 ]] && ok "exit after about 1 s (${el} ms)" || fail "exit after ${el} ms, expected about 1000"
wait "$stalled"
check "the stalled client's connection was closed (cat ended, not timed out)" 0 "$(cat "$TMP/stalled.rc" 2>/dev/null)"

# ---- 3. an idle server --------------------------------------------------------
fresh_start --drain-timeout 5s
t0=$(now_ms)
kill -TERM "$SERVER_PID"
wait_exit "$SERVER_PID" 10; ec="$EC"
el=$(( $(now_ms) - t0 ))
check "idle server exits 0 on SIGTERM" 0 "$ec"
[[ "$ec" == timeout ]] && kill -KILL "$SERVER_PID" 2>/dev/null
SERVER_PID=""
[[ $el -lt 2000 ]] && ok "idle server exits at once (${el} ms)" || fail "idle server took ${el} ms to exit"

# ---- 4. SIGTERM right after the server says it listens ------------------------
# Once the "listening" lines are out, SIGTERM must drain (exit 0); a server
# that announces itself before its handlers are in place dies of the signal
# (143) or loses it (keeps running: "timeout").
bad=0
detail=""
for i in $(seq 1 20); do
  rm -f "$TMP/server.out" "$TMP/server.err"
  "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  # spin (no sleep, no forks but grep's): signal as early as a watcher
  # possibly could; give up after 20 s or if the server is gone
  dl=$(( ${EPOCHREALTIME/./} + 20000000 ))
  n=0
  until grep -q '(admin)' "$TMP/server.out" 2>/dev/null; do
    n=$((n + 1))
    if (( n % 64 == 0 )); then
      (( ${EPOCHREALTIME/./} >= dl )) && break
      kill -0 "$SERVER_PID" 2>/dev/null || break
    fi
  done
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait_exit "$SERVER_PID" 5
  if [[ "$EC" == timeout ]]; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
  if [[ "$EC" != 0 ]]; then
    bad=$((bad + 1))
    detail+=" try $i: $EC;"
    [[ $bad -ge 3 ]] && break
  fi
done
check "SIGTERM right after the listening lines: every try exits 0 (143 = killed by the signal, timeout = signal lost)" \
  "0 bad" "$bad bad${detail:+ (}${detail}${detail:+)}"
finish
