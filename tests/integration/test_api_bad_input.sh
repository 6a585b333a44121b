#!/usr/bin/env bash
# Bad input (issue 2, part 1): every malformed request gets the documented
# 4xx/5xx with a JSON error, nothing is stored, and afterwards the server
# still answers and a stored value still reads back byte-identical.
#   keys: empty, 513 bytes (512 fine, also after decoding), control bytes
#         (%00 %1f %7f ...), bad escapes (%zz, trailing %4, trailing %);
#   ttl: abc, -5s, 5x, 1.5 (bare seconds must be whole);
#   routes: unknown path 404 no_route; PATCH/POST on a key 405 with Allow;
#   size: Content-Length over --max-value-size -> 413 before the body is
#         read; chunked body over the max -> closed or 413, nothing stored;
#   memory: a value that cannot fit under --memory-limit -> 507;
#   (malformed framing on the wire is in test_api_framing.sh)
#   clients that vanish mid-upload: nothing stored, heap back to baseline.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

MAX=1048576
fresh_start --max-value-size 1MiB --workers 2
DPORT="$(port_of "$DATA")"
ref_setup

# ---- keys -------------------------------------------------------------------
req PUT "$DATA/v1/buffers/" --data-binary x
expect_error "PUT empty key" 400 bad_key
req GET "$DATA/v1/buffers/"
expect_error "GET empty key" 400 bad_key

k512="$(printf 'k%.0s' $(seq 1 512))"
k513="${k512}k"
printf 'five hundred and twelve' >"$TMP/v512"
put_file "$k512" "$TMP/v512"
check "PUT 512-byte key" 201 "$RS"
get_to "$k512" "$TMP/v512.out"
check "GET 512-byte key" 200 "$RS"
same_bytes "512-byte key reads back" "$TMP/v512" "$TMP/v512.out"
put_file "$k513" "$TMP/v512"
expect_error "PUT 513-byte key" 400 bad_key
req GET "$DATA/v1/buffers/$k513"
expect_error "GET 513-byte key" 400 bad_key
# the limit is on the decoded key: 512 x "%41" is 512 bytes, 513 x is not
e512="$(printf '%%41%.0s' $(seq 1 512))"
put_file "$e512" "$TMP/v512"
check "PUT key of 512 percent-encoded bytes" 201 "$RS"
put_file "${e512}%41" "$TMP/v512"
expect_error "PUT key of 513 percent-encoded bytes" 400 bad_key
sanity "key length"

for bad in 'a%00b' 'a%1f' '%7f' 'a%0a' 'tab%09' 'x%00'; do
  put_file "$bad" "$TMP/v512"
  expect_error "PUT key with control byte ($bad)" 400 bad_key
  req GET "$DATA/v1/buffers/$bad"
  expect_error "GET key with control byte ($bad)" 400 bad_key
done
req DELETE "$DATA/v1/buffers/a%00b"
expect_error "DELETE key with control byte" 400 bad_key
for bad in 'a%zz' 'a%4' 'a%' '%g1x' 'a%2'; do
  put_file "$bad" "$TMP/v512"
  expect_error "PUT key with bad escape ($bad)" 400 bad_key
  req GET "$DATA/v1/buffers/$bad"
  expect_error "GET key with bad escape ($bad)" 400 bad_key
done
# nothing was stored under a prefix of the bad keys
req GET "$DATA/v1/buffers/a"
check "no key 'a' after rejected PUTs" 404 "$RS"
sanity "bad keys"

# ---- ttl ---------------------------------------------------------------------
for ttl in abc -5s 5x 1.5 10d '1h-5m'; do
  put_file "ttl/bad?ttl=$ttl" "$TMP/v512"
  expect_error "PUT ?ttl=$ttl" 400 bad_ttl
  req GET "$DATA/v1/buffers/ttl/bad"
  check "nothing stored after ?ttl=$ttl" 404 "$RS"
done
sanity "bad ttl"

# ---- routes and methods -------------------------------------------------------
for p in /nope /v1/buffer/x /v2/buffers/x /healthz/x /v1/buffersx; do
  req GET "$DATA$p"
  expect_error "GET $p" 404 no_route
done
for m in PATCH POST OPTIONS; do
  req "$m" "$DATA/v1/buffers/ref/key" --data-binary 'not stored'
  expect_error "$m on a key" 405 method_not_allowed
  allow="$(hdr Allow)"
  missing=""
  for want in GET HEAD PUT DELETE; do
    [[ ",$(echo "$allow" | tr -d ' ')," == *",$want,"* ]] || missing+=" $want"
  done
  if [[ -n "$allow" && -z "$missing" ]]; then ok "$m: Allow lists GET, HEAD, PUT, DELETE ($allow)"
  else fail "$m: Allow header [$allow] lacks:$missing"; fi
done
req PUT "$DATA/healthz" --data-binary x
expect_error "PUT /healthz" 405 method_not_allowed
check "PUT /healthz: Allow" "GET, HEAD" "$(hdr Allow)"
sanity "bad methods"

# ---- sizes -------------------------------------------------------------------
rand_file "$TMP/max" "$MAX"
put_file "size/max" "$TMP/max"
check "PUT of exactly --max-value-size bytes" 201 "$RS"
get_to "size/max" "$TMP/max.out"
same_bytes "max-size value reads back" "$TMP/max" "$TMP/max.out"

rand_file "$TMP/over" $((MAX + 1))
put_file "size/over" "$TMP/over"
expect_error "PUT of max+1 bytes (Content-Length)" 413 value_too_large
req GET "$DATA/v1/buffers/size/over"
check "max+1 value not stored" 404 "$RS"

# 413 before the body is read, seen by curl: with Expect: 100-continue the
# server must answer at once (curl would wait 10 s for a 100) and curl never
# sends a byte of the body.
rand_file "$TMP/two" $((2 * MAX))
t0=$(date +%s%N)
out="$("${CURL[@]}" -o "$TMP/rb" -D "$TMP/rh" -X PUT --data-binary "@$TMP/two" \
  -H 'Expect: 100-continue' --expect100-timeout 10 \
  -w '%{http_code} %{size_upload}' "$DATA/v1/buffers/size/two")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
RS="${out% *}"
expect_error "PUT 2 MiB with Expect: 100-continue" 413 value_too_large
check "curl sent none of the body" 0 "${out#* }"
[[ $ms -lt 5000 ]] && ok "413 came before the body (${ms} ms)" || fail "413 took ${ms} ms: the server waited for the body"

# the same on a raw socket: headers only, never a body; the answer must come
printf 'PUT /v1/buffers/size/raw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n' \
  $((64 * MAX)) >"$TMP/raw.req"
raw_exchange "$DPORT" "$TMP/raw.req" "$TMP/raw.out" 5
rc=$?
line1="$(head -1 "$TMP/raw.out" | tr -d '\r')"
check "raw: 413 status line with no body sent" "HTTP/1.1 413" "${line1:0:12}"
if [[ $rc -ne 124 ]]; then ok "raw: server answered and closed (rc $rc)"
else fail "raw: the connection stayed open for 5 s after the 413 (or no answer)"; fi
req GET "$DATA/v1/buffers/size/raw"
check "raw oversize not stored" 404 "$RS"
sanity "413"

# chunked (no Content-Length) over the max: closed or 413, nothing stored,
# and a value already stored under that key survives untouched
rand_file "$TMP/victim" 4321
put_file "size/victim" "$TMP/victim"
check "victim stored" 201 "$RS"
for total in $((MAX + 1)) $((2 * MAX)) $((24 * MAX)); do
  head -c "$total" /dev/zero | tr '\0' 'z' >"$TMP/chunked"
  req PUT "$DATA/v1/buffers/size/victim" -H 'Transfer-Encoding: chunked' \
    --data-binary "@$TMP/chunked"
  if [[ "$RS" == 413 ]]; then
    expect_error "chunked $total bytes: 413" 413 value_too_large
  elif [[ "$RC" -ne 0 && ( "$RS" == 000 || "$RS" == 100 ) ]]; then
    # (curl reports 100 when the close came after a 100 Continue)
    ok "chunked $total bytes: connection closed (curl rc $RC)"
  else
    fail "chunked $total bytes over the max: expected 413 or a closed connection, got $RS"
  fi
  get_to "size/victim" "$TMP/victim.out"
  check "chunked $total bytes: victim still 200" 200 "$RS"
  same_bytes "chunked $total bytes: victim unchanged" "$TMP/victim" "$TMP/victim.out"
  req GET "$DATA/v1/buffers/size/chunked-new"
  check "chunked $total bytes: no stray key" 404 "$RS"
done
# a chunked body of exactly the max is fine
head -c "$MAX" /dev/urandom >"$TMP/chunkmax"
req PUT "$DATA/v1/buffers/size/chunkmax" -H 'Transfer-Encoding: chunked' --data-binary "@$TMP/chunkmax"
check "chunked body of exactly the max" 201 "$RS"
get_to "size/chunkmax" "$TMP/chunkmax.out"
same_bytes "chunked max value reads back" "$TMP/chunkmax" "$TMP/chunkmax.out"
req DELETE "$DATA/v1/buffers/size/chunkmax"
req DELETE "$DATA/v1/buffers/size/max"
sanity "chunked over the max"

# ---- clients that vanish mid-upload --------------------------------------------
force_gc >/dev/null
base="$(force_gc)"
[[ "$base" =~ ^[0-9]+$ ]] && ok "baseline HeapInuse $base" || fail "baseline HeapInuse: [$base]"
# 1. raw socket: announce the max, send a quarter, close
head -c $((MAX / 4)) /dev/urandom >"$TMP/quarter"
( exec 3<>"/dev/tcp/127.0.0.1/$DPORT"
  printf 'PUT /v1/buffers/gone/raw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n' "$MAX" >&3
  cat "$TMP/quarter" >&3
  sleep 0.3 ) # the subshell exits: the socket closes mid-body
# 2. the same over a reference key: the old value must survive
( exec 3<>"/dev/tcp/127.0.0.1/$DPORT"
  printf 'PUT /v1/buffers/ref/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n' "$MAX" >&3
  cat "$TMP/quarter" >&3
  sleep 0.3 )
# 3. chunked, closed mid-body
( exec 3<>"/dev/tcp/127.0.0.1/$DPORT"
  printf 'PUT /v1/buffers/gone/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n' >&3
  for _ in 1 2 3 4; do printf '10000\r\n' >&3; head -c 65536 /dev/urandom >&3; printf '\r\n' >&3; done
  sleep 0.3 )
# 4. curl with a rate-limited body, killed mid-upload
"${CURL[@]}" -o /dev/null -X PUT --limit-rate 200k --data-binary "@$TMP/max" \
  "$DATA/v1/buffers/gone/curl" 2>/dev/null &
cpid=$!
sleep 1
kill -KILL "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
for k in gone/raw gone/chunked gone/curl; do
  req GET "$DATA/v1/buffers/$k"
  check "aborted upload $k not stored" 404 "$RS"
done
sanity "aborted uploads"
# the abandoned upload buffers are garbage: cycles give the heap back
inuse=""
for _ in $(seq 1 50); do
  force_gc >/dev/null
  inuse="$(force_gc)"
  [[ "$inuse" =~ ^[0-9]+$ ]] && [[ $inuse -le $((base + 262144)) ]] && break
  sleep 0.2
done
if [[ "$inuse" =~ ^[0-9]+$ && "$base" =~ ^[0-9]+$ && $inuse -le $((base + 262144)) ]]; then
  ok "HeapInuse back near baseline after aborted uploads ($base -> $inuse)"
else
  fail "HeapInuse after aborted uploads: baseline $base, now $inuse (each upload held $MAX bytes)"
fi
# InFlight counts the memstats request itself
infl="$(memstat '.Requests.InFlight')"
[[ "$infl" =~ ^[0-9]+$ && $infl -le 1 ]] && ok "no upload left in flight ($infl)" || fail "uploads left in flight: $infl"

stop_server
check "server exits 0 after the bad-input table" 0 "$SERVER_RC"

# ---- 507: a value that cannot fit under the memory limit -------------------------
# The soft limit bounds the whole process (RSS), not only the heap, so the
# limit is the binary's idle RSS plus 10 MiB (at least 8 MiB: the figure of
# the issue; an ASan build idles at ~14 MiB, a Release build at ~6 MiB), and
# the value is twice the limit: it can never fit.
fresh_start
rss_kb="$(awk '/^VmRSS:/{print $2}' "/proc/$SERVER_PID/status")"
stop_server
LIMIT_MIB=$(( (${rss_kb:-0} + 1023) / 1024 + 10 ))
[[ $LIMIT_MIB -lt 8 ]] && LIMIT_MIB=8
VALUE=$((2 * LIMIT_MIB * MAX))
MAXV_MIB=$((4 * LIMIT_MIB)); [[ $MAXV_MIB -lt 64 ]] && MAXV_MIB=64
echo "# idle RSS ${rss_kb} KiB: --memory-limit ${LIMIT_MIB}MiB, value of $((2 * LIMIT_MIB)) MiB"
fresh_start --memory-limit "${LIMIT_MIB}MiB" --max-value-size "${MAXV_MIB}MiB" --workers 2
ref_setup
rand_file "$TMP/huge" "$VALUE"
t0=$(date +%s%N)
out="$("${CURL[@]}" -o "$TMP/rb" -D "$TMP/rh" -X PUT --data-binary "@$TMP/huge" \
  -H 'Expect: 100-continue' --expect100-timeout 10 \
  -w '%{http_code} %{size_upload}' "$DATA/v1/buffers/mem/huge")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
RS="${out% *}"
expect_error "PUT 2x the memory limit" 507 memory_limit
check "507 before the body: curl sent none of it" 0 "${out#* }"
[[ $ms -lt 5000 ]] && ok "507 came at once (${ms} ms)" || fail "507 took ${ms} ms"
# without Expect: the body is sent anyway; the answer is still 507
put_file "mem/huge" "$TMP/huge" -H 'Expect:'
expect_error "PUT 2x the limit without Expect" 507 memory_limit
req GET "$DATA/v1/buffers/mem/huge"
check "the oversized value was not stored" 404 "$RS"
# chunked: there is no Content-Length to refuse early; it must fail too
req PUT "$DATA/v1/buffers/mem/chunked" -H 'Transfer-Encoding: chunked' --data-binary "@$TMP/huge"
[[ "$RS" == 507 || "$RS" == 413 || ( "$RC" -ne 0 && ( "$RS" == 000 || "$RS" == 100 ) ) ]] && ok "chunked 2x the limit refused ($RS)" ||
  fail "chunked 2x the limit: got $RS"
req GET "$DATA/v1/buffers/mem/chunked"
check "the chunked oversized value was not stored" 404 "$RS"
sanity "507"
rand_file "$TMP/small" 100000
put_file "mem/small" "$TMP/small"
check "a value that fits is still accepted" 201 "$RS"
get_to "mem/small" "$TMP/small.out"
same_bytes "the value that fits reads back" "$TMP/small" "$TMP/small.out"

stop_server
check "server exits 0" 0 "$SERVER_RC"
finish
