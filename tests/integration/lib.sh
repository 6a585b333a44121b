# lib.sh - shared helpers for the integration scripts (bash + curl).
# A test sources this, calls start_server [flags...], talks to $DATA and
# $ADMIN (http://127.0.0.1:PORT), and ends with `finish`.
set -uo pipefail

BIN="${BUFCACHE_BIN:?BUFCACHE_BIN must point at the bufcache binary}"
TMP="$(mktemp -d /tmp/bufcache-test.XXXXXX)"
PASS=0
FAIL=0
SERVER_PID=""

# A server still running at exit gets SIGTERM (a clean drain, so
# LeakSanitizer runs in sanitizer builds); a non-zero exit code (a leak, a
# crash, a hung drain) fails the test.
cleanup() {
  local src=0
  if [[ -n "$SERVER_PID" ]]; then
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      kill -TERM "$SERVER_PID" 2>/dev/null
      for _ in $(seq 1 200); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$SERVER_PID" 2>/dev/null
    fi
    wait "$SERVER_PID" 2>/dev/null
    src=$?
    SERVER_PID=""
    if [[ "$src" -ne 0 ]]; then
      echo "FAIL - server exited with code $src after SIGTERM; stderr tail:"
      tail -n 40 "$TMP/server.err" 2>/dev/null
    fi
  fi
  rm -rf "$TMP"
  [[ "$src" -eq 0 ]] || exit 1
}
trap cleanup EXIT

# start_server [flags...]: starts bufcache on free loopback ports (port 0),
# waits for its "listening on" lines, sets SERVER_PID, DATA, ADMIN.
start_server() {
  rm -f "$TMP/server.out" "$TMP/server.err" # never read a previous server's
  "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
    >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if grep -q "(admin)" "$TMP/server.out" 2>/dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited early:"; cat "$TMP/server.out" "$TMP/server.err"; exit 1
    fi
    sleep 0.05
  done
  DATA="$(grep -o 'http://[^ ]*' "$TMP/server.out" | sed -n 1p)"
  ADMIN="$(grep -o 'http://[^ ]*' "$TMP/server.out" | sed -n 2p)"
  [[ -n "$DATA" && -n "$ADMIN" ]] || { echo "no listen address"; cat "$TMP/server.out"; exit 1; }
}

# stop_server: SIGTERM by PID, waits, returns the exit code in $SERVER_RC;
# a non-zero code (LeakSanitizer, a crash) counts as a failure.
stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID"
  SERVER_RC=$?
  SERVER_PID=""
  if [[ "$SERVER_RC" -ne 0 ]]; then
    fail "server exited with code $SERVER_RC after SIGTERM"
    tail -n 40 "$TMP/server.err" 2>/dev/null
  fi
}

ok()   { PASS=$((PASS+1)); echo "ok   - $*"; }
fail() { FAIL=$((FAIL+1)); echo "FAIL - $*"; }

# check NAME EXPECTED ACTUAL
check() {
  if [[ "$2" == "$3" ]]; then ok "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# status METHOD URL [curl args...]: prints the HTTP status code
status() {
  local m="$1" u="$2"; shift 2
  curl -s -o /dev/null -w '%{http_code}' -X "$m" "$@" "$u"
}

# json_field FILE KEY: the integer/string value of a top-level or dotted key
# (uses only grep/sed: keys are unique enough in our JSON)
json_num() { grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2; }

finish() {
  echo "$PASS passed, $FAIL failed"
  [[ "$FAIL" -eq 0 ]]
  exit $?
}
