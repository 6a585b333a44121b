#!/usr/bin/env bash
# Flags (issue 2, part 6): --help exits 0 and lists the documented flags;
# a bad flag value exits 2 with a message naming the flag; the
# BUFCACHE_MAX_VALUE_SIZE environment twin works and the flag wins over it;
# --workers and --gc-percent take effect.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

# run_bin OUTFILE ARGS...: runs the binary (bounded), stdout+stderr to
# OUTFILE; sets RUN_RC. Anything that would start a server binds to port 0
# on 127.0.0.1 only.
run_bin() {
  local out="$1"; shift
  timeout 20 "$BIN" "$@" >"$out" 2>&1
  RUN_RC=$?
}

run_bin "$TMP/help" --help
check "--help exits 0" 0 "$RUN_RC"
for f in --listen --admin-listen --workers --memory-limit --max-value-size \
         --gc-percent --request-timeout --drain-timeout; do
  grep -q -- "$f\b" "$TMP/help" && ok "--help lists $f" || fail "--help does not list $f"
done
grep -q 'BUFCACHE_MAX_VALUE_SIZE' "$TMP/help" && ok "--help names the environment twins" ||
  fail "--help does not mention BUFCACHE_MAX_VALUE_SIZE"
# --help does not start a server (it exited 0 above, within the timeout)
[[ $RUN_RC -ne 124 ]] && ok "--help returns at once" || fail "--help kept running"

# bad values: exit 2, the message names the flag
bad_flag() { # FLAG VALUE
  run_bin "$TMP/bad" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$1" "$2"
  check "$1 $2 exits 2" 2 "$RUN_RC"
  grep -q -- "$1" "$TMP/bad" && ok "$1 $2: message names $1" ||
    fail "$1 $2: message does not name $1: $(head -c 300 "$TMP/bad")"
}
bad_flag --workers abc
bad_flag --workers 0
bad_flag --workers -3
bad_flag --max-value-size lots
bad_flag --memory-limit 12XB
bad_flag --gc-percent abc
bad_flag --drain-timeout 5      # a duration needs a unit
bad_flag --drain-timeout 5x
bad_flag --request-timeout -1s
bad_flag --listen nohostport
run_bin "$TMP/bad" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --workers=abc
check "--workers=abc exits 2" 2 "$RUN_RC"
grep -q -- '--workers' "$TMP/bad" && ok "--workers=abc: message names --workers" || fail "--workers=abc: $(head -c 300 "$TMP/bad")"
run_bin "$TMP/bad" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --no-such-flag 1
check "unknown flag exits 2" 2 "$RUN_RC"
grep -q -- 'no-such-flag' "$TMP/bad" && ok "unknown flag is named" || fail "unknown flag: $(head -c 300 "$TMP/bad")"
run_bin "$TMP/bad" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --workers
check "flag without its value exits 2" 2 "$RUN_RC"
BUFCACHE_WORKERS=abc run_bin "$TMP/bad" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
check "BUFCACHE_WORKERS=abc exits 2" 2 "$RUN_RC"
grep -q 'BUFCACHE_WORKERS\|--workers' "$TMP/bad" && ok "bad env value: message names it" || fail "bad env value: $(head -c 300 "$TMP/bad")"

# size_limit_probe LIMIT: with the server running, PUT LIMIT and LIMIT+1
# bytes: 201 then 413
size_limit_probe() {
  local lim="$1" what="$2"
  head -c "$lim" /dev/urandom >"$TMP/at"
  head -c $((lim + 1)) /dev/urandom >"$TMP/over"
  put_file "lim/at" "$TMP/at"
  check "$what: PUT of $lim bytes accepted" 201 "$RS"
  put_file "lim/over" "$TMP/over"
  check "$what: PUT of $((lim + 1)) bytes refused" 413 "$RS"
}

# the environment twin alone
export BUFCACHE_MAX_VALUE_SIZE=1KiB
fresh_start
size_limit_probe 1024 "BUFCACHE_MAX_VALUE_SIZE=1KiB"
stop_server
check "server exits 0" 0 "$SERVER_RC"
# the flag wins over the environment (both directions)
fresh_start --max-value-size 3KiB
size_limit_probe 3072 "env 1KiB, flag 3KiB"
stop_server
export BUFCACHE_MAX_VALUE_SIZE=1MiB
fresh_start --max-value-size 2000
size_limit_probe 2000 "env 1MiB, flag 2000"
stop_server
unset BUFCACHE_MAX_VALUE_SIZE
# and the default is 64 MiB: 64 MiB + 1 announced is refused up front
fresh_start
req PUT "$DATA/v1/buffers/lim/huge" -H 'Content-Length: 67108865' -H 'Expect: 100-continue' \
  --data-binary @/dev/null --max-time 5
check "default limit: Content-Length 64MiB+1 refused" 413 "$RS"
stop_server
check "server exits 0" 0 "$SERVER_RC"

# --workers N shows in the listening line
fresh_start --workers 3
grep -q 'listening on http://[^ ]* (data, 3 workers)' "$TMP/server.out" && ok "--workers 3 takes effect" ||
  fail "--workers 3: $(grep -m1 'listening' "$TMP/server.out")"
stop_server
BUFCACHE_WORKERS=1 fresh_start
grep -q '(data, 1 workers)' "$TMP/server.out" && ok "BUFCACHE_WORKERS=1 takes effect" ||
  fail "BUFCACHE_WORKERS=1: $(grep -m1 'listening' "$TMP/server.out")"
stop_server

# --gc-percent reaches the collector (memstats GC.GCPercent)
fresh_start --gc-percent 37
check "--gc-percent 37 in memstats" 37 "$(memstat .GC.GCPercent)"
stop_server
fresh_start --gc-percent off
gp="$(memstat .GC.GCPercent)"
[[ "$gp" =~ ^-?[0-9]+$ && "$gp" != 100 && "$gp" != 37 ]] && ok "--gc-percent off accepted (GCPercent $gp)" || fail "--gc-percent off: GCPercent [$gp]"
stop_server
finish
