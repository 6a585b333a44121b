#!/usr/bin/env bash
# TTLs: ?ttl= takes a Go duration (90s, 1h30m, 1.5s) or whole seconds;
# 0 or absent means none. An entry with a TTL answers Cache-Control:
# max-age=N (seconds left) on GET and HEAD, and 404 once it has expired
# (GET, HEAD, DELETE); a PUT over an expired key creates it anew (201).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

fresh_start
printf 'ttl value \0 with a NUL' >"$TMP/v"

# max_age: N from the last response's Cache-Control: max-age=N, or "".
max_age() { hdr Cache-Control | sed -n 's/^max-age=\([0-9][0-9]*\)$/\1/p'; }
# in_range NAME LO HI VALUE
in_range() {
  if [[ "$4" =~ ^[0-9]+$ && $4 -ge $2 && $4 -le $3 ]]; then ok "$1 ($4)"
  else fail "$1: expected $2..$3, got [$4] (Cache-Control [$(hdr Cache-Control)])"; fi
}

put_file "t/90s?ttl=90s" "$TMP/v"
check "PUT ?ttl=90s" 201 "$RS"
req GET "$DATA/v1/buffers/t/90s"
check "GET ttl=90s" 200 "$RS"
in_range "ttl=90s: max-age" 85 90 "$(max_age)"
req HEAD "$DATA/v1/buffers/t/90s"
in_range "ttl=90s: HEAD max-age" 85 90 "$(max_age)"

put_file "t/hm?ttl=1h30m" "$TMP/v"
check "PUT ?ttl=1h30m" 201 "$RS"
req GET "$DATA/v1/buffers/t/hm"
in_range "ttl=1h30m: max-age" 5395 5400 "$(max_age)"

put_file "t/bare?ttl=120" "$TMP/v"
check "PUT ?ttl=120 (whole seconds)" 201 "$RS"
req GET "$DATA/v1/buffers/t/bare"
in_range "ttl=120: max-age" 115 120 "$(max_age)"

put_file "t/ms?ttl=2500ms" "$TMP/v"
check "PUT ?ttl=2500ms" 201 "$RS"
req GET "$DATA/v1/buffers/t/ms"
in_range "ttl=2500ms: max-age" 0 3 "$(max_age)"

for t in 0 0s; do
  put_file "t/zero$t?ttl=$t" "$TMP/v"
  check "PUT ?ttl=$t" 201 "$RS"
  req GET "$DATA/v1/buffers/t/zero$t"
  check "ttl=$t: 200" 200 "$RS"
  check "ttl=$t: no Cache-Control" "" "$(hdr Cache-Control)"
done
put_file "t/none" "$TMP/v"
req GET "$DATA/v1/buffers/t/none"
check "no ttl: no Cache-Control" "" "$(hdr Cache-Control)"

# expiry: 1.5s (fractional Go duration) and 1 (bare second)
put_file "t/short?ttl=1.5s" "$TMP/v"
check "PUT ?ttl=1.5s" 201 "$RS"
put_file "t/one?ttl=1" "$TMP/v"
check "PUT ?ttl=1" 201 "$RS"
put_file "t/del?ttl=1s" "$TMP/v"
put_file "t/head?ttl=1s" "$TMP/v"
put_file "t/reput?ttl=1s" "$TMP/v"
put_file "t/keep?ttl=1s" "$TMP/v"
# replacing without a ttl removes the TTL
put_file "t/keep" "$TMP/v"
check "replace a TTL entry without ttl: 204" 204 "$RS"
get_to "t/short" "$TMP/short.out"
check "ttl=1.5s: 200 before expiry" 200 "$RS"
same_bytes "ttl=1.5s: bytes before expiry" "$TMP/v" "$TMP/short.out"
exp0="$(memstat .Cache.Expired)"
sleep 2.2
req GET "$DATA/v1/buffers/t/short"
expect_error "ttl=1.5s: GET after 2.2 s" 404 not_found
req GET "$DATA/v1/buffers/t/one"
check "ttl=1: GET after 2.2 s" 404 "$RS"
req HEAD "$DATA/v1/buffers/t/head"
check "ttl=1s: HEAD after expiry" 404 "$RS"
req DELETE "$DATA/v1/buffers/t/del"
check "ttl=1s: DELETE after expiry" 404 "$RS"
put_file "t/reput" "$TMP/v"
check "PUT over an expired key creates it: 201" 201 "$RS"
req GET "$DATA/v1/buffers/t/reput"
check "re-PUT value readable" 200 "$RS"
check "re-PUT value has no TTL" "" "$(hdr Cache-Control)"
req GET "$DATA/v1/buffers/t/keep"
check "entry whose TTL was removed outlives it" 200 "$RS"
check "entry whose TTL was removed: no Cache-Control" "" "$(hdr Cache-Control)"
req GET "$DATA/v1/buffers/t/90s"
check "ttl=90s entry still there" 200 "$RS"
exp1="$(memstat .Cache.Expired)"
[[ "$exp0" =~ ^[0-9]+$ && "$exp1" =~ ^[0-9]+$ && $((exp1 - exp0)) -ge 4 ]] &&
  ok "Cache.Expired counted the expired entries ($exp0 -> $exp1)" || fail "Cache.Expired $exp0 -> $exp1, expected +4 or more"

stop_server
check "server exits 0" 0 "$SERVER_RC"

# expired entries are reaped by the collector without anyone reading them
fresh_start
put_file "u/unseen1?ttl=1s" "$TMP/v"
put_file "u/unseen2?ttl=1s" "$TMP/v"
put_file "u/durable" "$TMP/v"
e0="$(memstat .Cache.Entries)"
check "three entries stored" 3 "$e0"
sleep 1.3
force_gc >/dev/null
force_gc >/dev/null
check "expired entries nobody read leave Cache.Entries after cycles" 1 "$(memstat .Cache.Entries)"
check "Cache.Expired counts them" 2 "$(memstat .Cache.Expired)"
req GET "$DATA/v1/buffers/u/durable"
check "the entry without a TTL stays" 200 "$RS"
stop_server
check "server exits 0" 0 "$SERVER_RC"
finish
