#!/usr/bin/env bash
# The admin bearer token: every admin-listener request needs it; the data
# listener's /metrics, /healthz, /readyz never do; /debug/* is admin-only.
source "$(dirname "$0")/lib.sh"
cd "$TMP"
TOKEN='s3cr3t-Token_0123456789abcdef'

# guard_checks WHAT: runs against the current server (token $TOKEN)
guard_checks() {
  local w="$1" auth=(-H "Authorization: Bearer $TOKEN")
  # admin listener: 401 without, 200 with, on every route
  for p in /debug/memstats /debug/vars /metrics /healthz /readyz /debug/gc-percent /nope; do
    check "$w: admin GET $p without a token" 401 "$(status GET "$ADMIN$p")"
  done
  for p in /debug/memstats /debug/vars /metrics /healthz /readyz /debug/gc-percent; do
    check "$w: admin GET $p with the token" 200 "$(status GET "$ADMIN$p" "${auth[@]}")"
  done
  check "$w: admin unknown route with the token" 404 "$(status GET "$ADMIN/nope" "${auth[@]}")"
  check "$w: wrong token" 401 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer ${TOKEN%?}X")"
  check "$w: a prefix of the token" 401 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer ${TOKEN:0:10}")"
  check "$w: the token plus more" 401 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer ${TOKEN}x")"
  check "$w: empty bearer" 401 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer ")"
  check "$w: Basic is not Bearer" 401 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Basic $TOKEN")"
  check "$w: the scheme is case-insensitive" 200 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: bearer $TOKEN")"
  curl -sS -D h.txt -o body.json "$ADMIN/debug/memstats"
  grep -qi '^WWW-Authenticate: Bearer' h.txt && ok "$w: 401 names the Bearer scheme" || fail "$w: WWW-Authenticate missing"
  check "$w: 401 is a JSON error" unauthorized "$(jq -r .error.code body.json)"
  ! grep -q "$TOKEN" h.txt body.json && ok "$w: the 401 does not echo the token" || fail "$w: token echoed"
  # no side effects without the token
  n0="$(curl -sS "${auth[@]}" "$ADMIN/debug/memstats" | jq .NumGC)"
  check "$w: POST /debug/gc without a token" 401 "$(status POST "$ADMIN/debug/gc")"
  check "$w: PUT gc-percent without a token" 401 "$(status PUT "$ADMIN/debug/gc-percent" --data 5)"
  check "$w: ... ran no cycle" "$n0" "$(curl -sS "${auth[@]}" "$ADMIN/debug/memstats" | jq .NumGC)"
  check "$w: ... changed no knob" 100 "$(curl -sS "${auth[@]}" "$ADMIN/debug/gc-percent")"
  check "$w: POST /debug/gc with the token" 200 "$(status POST "$ADMIN/debug/gc" "${auth[@]}")"
  check "$w: ... ran one" $((n0 + 1)) "$(curl -sS "${auth[@]}" "$ADMIN/debug/memstats" | jq .NumGC)"
  # data listener: read-only endpoints open, with or without a token
  for p in /metrics /healthz /readyz; do
    check "$w: data GET $p without a token" 200 "$(status GET "$DATA$p")"
    check "$w: data GET $p with the token" 200 "$(status GET "$DATA$p" "${auth[@]}")"
  done
  for p in /debug/memstats /debug/vars; do
    check "$w: data GET $p without a token" 404 "$(status GET "$DATA$p")"
    check "$w: data GET $p with the token" 404 "$(status GET "$DATA$p" "${auth[@]}")"
  done
  check "$w: data POST /debug/gc with the token" 404 "$(status POST "$DATA/debug/gc" "${auth[@]}")"
  check "$w: the data API needs no token" 201 \
    "$(status PUT "$DATA/v1/buffers/tok-$RANDOM$RANDOM" --data-binary x)"
  # the token never shows up where it could leak
  curl -sS "${auth[@]}" "$ADMIN/debug/vars" > vars.json
  ! grep -q "$TOKEN" vars.json && ok "$w: /debug/vars does not show the token" || fail "$w: token in /debug/vars"
  ! curl -sS "$DATA/metrics" | grep -q "$TOKEN" && ok "$w: /metrics does not show the token" || fail "$w: token in /metrics"
}

# 1. the token from the environment
BUFCACHE_ADMIN_TOKEN="$TOKEN" start_server --workers 2
guard_checks env
stop_server

# 2. the token from a file (trailing newline dropped); the flag wins over the env
printf '%s\n' "$TOKEN" > token.txt
BUFCACHE_ADMIN_TOKEN=other-token start_server --workers 2 --admin-token-file "$TMP/token.txt"
guard_checks file
check "file: the env token is not accepted when the flag is given" 401 \
  "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer other-token")"
stop_server

# 3. no token: the admin listener is open (loopback by default)
start_server --workers 1
check "no token: admin open" 200 "$(status GET "$ADMIN/debug/memstats")"
check "no token: any Authorization is ignored" 200 "$(status GET "$ADMIN/debug/memstats" -H "Authorization: Bearer x")"
stop_server

# 4. bad configurations refuse to start
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --admin-token-file "$TMP/missing" >/dev/null 2>err.txt
check "a missing token file: exit 2" 2 "$?"
: > empty.txt
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --admin-token-file "$TMP/empty.txt" >/dev/null 2>err.txt
check "an empty token file: exit 2" 2 "$?"
BUFCACHE_ADMIN_TOKEN='has space' "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >/dev/null 2>err.txt
check "a token with a space: exit 2" 2 "$?"
! grep -q 'has space' err.txt && ok "the bad env token is not echoed" || fail "env token echoed: $(cat err.txt)"
"$BIN" --help | grep -q 'BUFCACHE_ADMIN_TOKEN' && ok "--help names BUFCACHE_ADMIN_TOKEN" || fail "--help"
finish
