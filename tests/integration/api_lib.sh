# api_lib.sh - helpers for the API contract tests (test_api_*.sh), sourced
# after lib.sh. Only curl, jq, cmp, head and bash's /dev/tcp; every request
# goes to 127.0.0.1.

command -v jq >/dev/null || { echo "jq is required"; exit 1; }

# A curl that never uses a proxy from the environment and never waits long.
CURL=(curl -sS --noproxy '*' --max-time 30)

# req METHOD URL [curl args...]: one request. Sets RS (status, 000 on a
# transport error), RC (curl's exit code), and leaves the body in $TMP/rb
# and the headers in $TMP/rh.
req() {
  local m="$1" u="$2"; shift 2
  local -a mflag=(-X "$m")
  [[ "$m" == HEAD ]] && mflag=(-I)
  RS="$("${CURL[@]}" "${mflag[@]}" -o "$TMP/rb" -D "$TMP/rh" -w '%{http_code}' "$@" "$u" 2>"$TMP/rerr")"
  RC=$?
  [[ -n "$RS" ]] || RS=000
  [[ "$RS" == 000 ]] && echo "# $m $u: curl exit $RC: $(head -c 300 "$TMP/rerr")"
  [[ -f "$TMP/rb" ]] || : >"$TMP/rb"
  [[ -f "$TMP/rh" ]] || : >"$TMP/rh"
}

# hdr NAME: the value of header NAME in the last response (last block), or "".
hdr() {
  awk -v n="$(printf '%s' "$1" | tr 'A-Z' 'a-z')" '
    /^HTTP\// { v = ""; next }
    { line = $0; sub(/\r$/, "", line); i = index(line, ":");
      if (i > 0 && tolower(substr(line, 1, i - 1)) == n) { v = substr(line, i + 1); sub(/^[ \t]+/, "", v) } }
    END { print v }' "$TMP/rh"
}

# count_hdr NAME: how many times header NAME appears in the last block.
count_hdr() {
  awk -v n="$(printf '%s' "$1" | tr 'A-Z' 'a-z')" '
    /^HTTP\// { c = 0; next }
    { i = index($0, ":"); if (i > 0 && tolower(substr($0, 1, i - 1)) == n) c++ }
    END { print c + 0 }' "$TMP/rh"
}

# expect_error NAME STATUS CODE: the last response is STATUS with a JSON
# body {"error":{"code":CODE,"message":"<non-empty>"}}.
expect_error() {
  local name="$1" st="$2" code="$3"
  check "$name: status" "$st" "$RS"
  local got msg ct
  got="$(jq -r '.error.code // "(none)"' "$TMP/rb" 2>/dev/null || echo '(not JSON)')"
  msg="$(jq -r '.error.message // ""' "$TMP/rb" 2>/dev/null)"
  ct="$(hdr Content-Type)"
  if [[ "$got" == "$code" && -n "$msg" && "$ct" == application/json* ]]; then
    ok "$name: JSON error $code"
  else
    fail "$name: JSON error: expected code [$code] with a message and application/json, got code [$got] message [$msg] Content-Type [$ct] body [$(head -c 200 "$TMP/rb")]"
  fi
}

# put_file KEY FILE [curl args...]: PUT the file as the value of KEY.
put_file() {
  local k="$1" f="$2"; shift 2
  req PUT "$DATA/v1/buffers/$k" --data-binary "@$f" "$@"
}

# get_to KEY OUT: GET KEY's value into OUT; sets RS.
get_to() {
  req GET "$DATA/v1/buffers/$1"
  cp "$TMP/rb" "$2"
}

# same_bytes NAME EXPECTED_FILE ACTUAL_FILE
same_bytes() {
  if cmp -s "$2" "$3"; then ok "$1"
  else fail "$1: bytes differ ($(stat -c %s "$2") expected, $(stat -c %s "$3") got; $(cmp "$2" "$3" 2>&1 | head -1))"; fi
}

# rand_file FILE SIZE: SIZE random bytes that contain NUL bytes (one at the
# start, one in the middle, one at the end, plus whatever /dev/urandom gives).
rand_file() {
  head -c "$2" /dev/urandom >"$1"
  if [[ "$2" -gt 0 ]]; then
    local at
    for at in 0 $(($2 / 2)) $(($2 - 1)); do
      printf '\0' | dd of="$1" bs=1 seek="$at" conv=notrunc status=none
    done
  fi
}

# memstat JQ_PATH: a field of GET /debug/memstats (e.g. .HeapInuse).
memstat() { "${CURL[@]}" "$ADMIN/debug/memstats" | jq -r "$1"; }

# force_gc: POST /debug/gc; prints the response's HeapInuse.
force_gc() { "${CURL[@]}" -X POST "$ADMIN/debug/gc" | jq -r '.HeapInuse'; }

# port_of URL
port_of() { local p="${1##*:}"; echo "${p%%/*}"; }

# raw_exchange PORT INFILE OUTFILE SECONDS: sends INFILE's bytes on a fresh
# TCP connection, then reads the answer until the server closes or SECONDS
# pass. Returns timeout's status (124 = the server kept quiet and open).
raw_exchange() {
  timeout "$4" bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 || exit 7; cat "$2" >&3; cat <&3' \
    _ "$1" "$2" >"$3" 2>/dev/null
}

# ref_setup: stores a reference value (random, with NULs) under ref/key; the
# `sanity` checks read it back after every bad input.
ref_setup() {
  rand_file "$TMP/ref.bin" 70001
  put_file "ref/key" "$TMP/ref.bin" -H 'Content-Type: application/x-ref'
  check "reference value stored" 201 "$RS"
}

# sanity LABEL: the server still answers a good request and the reference
# value still reads back byte-identical.
sanity() {
  req GET "$DATA/healthz"
  check "after $1: healthz" 200 "$RS"
  get_to "ref/key" "$TMP/ref.out"
  if [[ "$RS" == 200 ]] && cmp -s "$TMP/ref.bin" "$TMP/ref.out"; then
    ok "after $1: reference value intact"
  else
    fail "after $1: reference value: status $RS, $(stat -c %s "$TMP/ref.out") bytes"
  fi
}

# fresh_start [flags...]: start_server, after removing the previous server's
# output: lib.sh's start_server polls $TMP/server.out right after forking,
# possibly before the child has truncated it, and could read the stopped
# server's "listening on" lines (and its dead port).
fresh_start() {
  rm -f "$TMP/server.out" "$TMP/server.err"
  start_server "$@"
}
