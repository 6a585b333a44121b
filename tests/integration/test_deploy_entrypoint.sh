#!/usr/bin/env bash
# The container's entrypoint (deploy/entrypoint.sh, issue #8), run as the
# image runs it: environment only (BUFCACHE_LISTEN etc., loopback here),
# bufcache found on PATH.
#   - it execs the server: the PID docker/kubelet signal is bufcache itself;
#   - `entrypoint.sh healthcheck` (the HEALTHCHECK) is 0 while it serves;
#   - SIGTERM to that PID drains: an upload in flight completes, exit 0;
#   - the same as PID 1 of a new PID namespace (a container's init), when
#     unshare(1) is allowed here.
source "$(dirname "$0")/lib.sh"
# a private copy of the binary under test: a rebuild of the shared build
# tree while this runs cannot swap it
cp "$BIN" "$TMP/bufcache" && BIN="$TMP/bufcache"
SRC="${BUFCACHE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
EP="$SRC/deploy/entrypoint.sh"
[[ -x "$EP" ]] || { fail "deploy/entrypoint.sh is executable"; finish; }
cd "$TMP"
# the image's environment, on loopback and free ports
export PATH="$(dirname "$BIN"):$PATH"
export BUFCACHE_LISTEN=127.0.0.1:0 BUFCACHE_ADMIN_LISTEN=127.0.0.1:0 BUFCACHE_DRAIN_TIMEOUT=10s
[[ "$(basename "$BIN")" == bufcache ]] || { echo "the binary must be named bufcache (is $BIN)"; exit 1; }

# wait_listening OUT PID: waits for both listeners, sets DATA and ADMIN
wait_listening() {
  for _ in $(seq 1 200); do
    grep -q "(admin)" "$1" 2>/dev/null && break
    kill -0 "$2" 2>/dev/null || { echo "exited early:"; cat "$1"; exit 1; }
    sleep 0.05
  done
  DATA="$(grep -o 'http://[0-9.]*:[0-9]*' "$1" | sed -n 1p)"
  ADMIN="$(grep -o 'http://[0-9.]*:[0-9]*' "$1" | sed -n 2p)"
  [[ -n "$DATA" && -n "$ADMIN" ]] || { echo "no listen address"; cat "$1"; exit 1; }
}

"$EP" > ep.out 2> ep.err &
SERVER_PID=$!     # lib.sh's cleanup stops it if the test dies
wait_listening ep.out "$SERVER_PID"
check "the entrypoint execs bufcache (same PID)" "$(readlink -f "$BIN")" "$(readlink -f "/proc/$SERVER_PID/exe")"
grep -q "memory limit" ep.out && ok "the server logs its memory limit at start" || fail "no memory limit line"
check "/healthz through the env-configured listener" 200 "$(status GET "$DATA/healthz")"
BUFCACHE_LISTEN="${DATA#http://}" "$EP" healthcheck
check "entrypoint.sh healthcheck while serving" 0 "$?"
BUFCACHE_LISTEN="0.0.0.0:${DATA##*:}" "$EP" healthcheck
check "entrypoint.sh healthcheck with the image's 0.0.0.0 address" 0 "$?"

# an upload in flight when SIGTERM arrives still completes
head -c 600000 /dev/urandom > body
curl -sS -o /dev/null -w '%{http_code}' --limit-rate 300k -X PUT --data-binary @body \
  "$DATA/v1/buffers/inflight" > put.code 2> put.err &
CURL_PID=$!
sleep 0.7
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
rc=$?
SERVER_PID=""
wait "$CURL_PID"
check "SIGTERM to the entrypoint's PID: exit 0" 0 "$rc"
grep -q "draining" ep.out && ok "the server logged its drain" || fail "no drain in the log: $(cat ep.out)"
grep -q "stopped" ep.out && ok "the server logged its stop" || fail "no stop in the log"
check "the upload in flight at SIGTERM completed" 201 "$(cat put.code)"
BUFCACHE_LISTEN="${DATA#http://}" "$EP" healthcheck
check "entrypoint.sh healthcheck fails once stopped" 1 "$?"
"$EP" --help > help.out 2>&1
check "flags pass through the entrypoint (--help)" 0 "$?"
grep -q BUFCACHE_LISTEN help.out && ok "--help through the entrypoint lists BUFCACHE_LISTEN" || fail "--help output"
check "a command other than flags runs instead" hello "$("$EP" echo hello)"

# as PID 1 of its own PID namespace, like in a container
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  unshare --pid --fork --kill-child --mount-proc "$EP" > pid1.out 2>&1 &
  US_PID=$!
  SERVER_PID=$US_PID
  for _ in $(seq 1 100); do
    CHILD="$(cat /proc/$US_PID/task/*/children 2>/dev/null | tr -s ' ' '\n' | grep -m1 .)"
    [[ -n "$CHILD" ]] && break
    sleep 0.05
  done
  wait_listening pid1.out "$US_PID"
  check "in a PID namespace the server is PID 1" 1 "$(awk '/^NSpid:/ {print $NF}' /proc/$CHILD/status)"
  check "PID 1 is bufcache" "$(readlink -f "$BIN")" "$(readlink -f /proc/$CHILD/exe)"
  check "PID 1 serves" 201 "$(status PUT "$DATA/v1/buffers/k" --data-binary v)"
  kill -TERM "$CHILD"
  wait "$US_PID"
  check "SIGTERM to PID 1 (as docker stop sends it): drained, exit 0" 0 "$?"
  SERVER_PID=""
  grep -q "stopped" pid1.out && ok "PID 1 logged its stop" || fail "PID 1 did not log a stop: $(tail -3 pid1.out)"
else
  ok "# skip PID-namespace check: unshare --pid not permitted here"
fi
finish
