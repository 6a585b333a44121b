#!/usr/bin/env bash
# Binary round trips (issue 2, part 2): values with NUL bytes of sizes 0, 1,
# 32767, 32768, 32769, 1 MiB and exactly --max-value-size come back byte for
# byte with the right Content-Length and Content-Type; ETags are strong, equal
# for equal bytes and different otherwise; HEAD has the headers and no body;
# replace answers 204 with the new bytes; DELETE then GET is 404; keys with
# '/' and percent-encoded bytes ("a%2Fb" is "a/b").
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

MAX=$((4 * 1048576))
fresh_start --max-value-size 4MiB
DPORT="$(port_of "$DATA")"

ETAG_RE='^"[0-9a-f]{16}"$'
declare -A ETAG_OF

for size in 0 1 32767 32768 32769 1048576 "$MAX"; do
  f="$TMP/v$size"
  rand_file "$f" "$size"
  put_file "bin/$size" "$f" -H 'Content-Type: application/x-test-binary'
  check "PUT $size bytes: 201" 201 "$RS"
  pe="$(hdr ETag)"
  [[ "$pe" =~ $ETAG_RE ]] && ok "PUT $size bytes: strong ETag $pe" || fail "PUT $size bytes: ETag [$pe]"
  get_to "bin/$size" "$f.out"
  check "GET $size bytes: 200" 200 "$RS"
  same_bytes "GET $size bytes: identical bytes" "$f" "$f.out"
  check "GET $size bytes: Content-Length" "$size" "$(hdr Content-Length)"
  check "GET $size bytes: Content-Type" "application/x-test-binary" "$(hdr Content-Type)"
  check "GET $size bytes: ETag as on PUT" "$pe" "$(hdr ETag)"
  check "GET $size bytes: no Cache-Control without a TTL" "" "$(hdr Cache-Control)"
  ETAG_OF[$size]="$pe"
  # HEAD: the same headers, no body (checked on the wire below too)
  req HEAD "$DATA/v1/buffers/bin/$size"
  check "HEAD $size bytes: 200" 200 "$RS"
  check "HEAD $size bytes: Content-Length" "$size" "$(hdr Content-Length)"
  check "HEAD $size bytes: Content-Type" "application/x-test-binary" "$(hdr Content-Type)"
  check "HEAD $size bytes: ETag" "$pe" "$(hdr ETag)"
  # curl -I never reads a body: look at the wire for that
  printf 'HEAD /v1/buffers/bin/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$size" >"$TMP/head.req"
  raw_exchange "$DPORT" "$TMP/head.req" "$TMP/head.out" 5
  check "raw HEAD $size bytes: 200" "HTTP/1.1 200" "$(head -1 "$TMP/head.out" | cut -c1-12)"
  check "raw HEAD $size bytes: no body bytes after the headers" 0 \
    "$(awk 'f{n+=length($0)+1} /^\r?$/{f=1} END{print n+0}' "$TMP/head.out")"
done
# the files contained NULs (rand_file puts some in): be sure they did
[[ "$(tr -dc '\0' <"$TMP/v1048576" | wc -c)" -gt 0 ]] && ok "values contain NUL bytes" || fail "values lack NUL bytes"

# one byte over the max is refused; the max itself was accepted above
rand_file "$TMP/over" $((MAX + 1))
put_file "bin/over" "$TMP/over"
expect_error "PUT max+1 bytes" 413 value_too_large

# distinct values: distinct ETags
n_distinct="$(printf '%s\n' "${ETAG_OF[@]}" | sort -u | wc -l)"
check "7 distinct values, 7 distinct ETags" 7 "$n_distinct"

# equal bytes under another key: the same ETag
put_file "copy/of/32768" "$TMP/v32768" -H 'Content-Type: text/plain'
check "PUT copy: 201" 201 "$RS"
check "equal bytes, equal ETag" "${ETAG_OF[32768]}" "$(hdr ETag)"
# one byte different: another ETag
cp "$TMP/v32768" "$TMP/v32768b"
printf '\x01' | dd of="$TMP/v32768b" bs=1 seek=1000 conv=notrunc status=none
cmp -s "$TMP/v32768" "$TMP/v32768b" && fail "test bug: flipped byte not flipped"
put_file "copy/flipped" "$TMP/v32768b"
fl="$(hdr ETag)"
[[ "$fl" =~ $ETAG_RE && "$fl" != "${ETAG_OF[32768]}" ]] && ok "one byte different, different ETag ($fl)" ||
  fail "one byte different: ETag [$fl] vs [${ETAG_OF[32768]}]"

# Content-Type: default, and odd-but-legal values round trip
put_file "ct/default" "$TMP/v1" -H 'Content-Type:'
check "PUT without Content-Type" 201 "$RS"
req GET "$DATA/v1/buffers/ct/default"
check "default Content-Type" "application/octet-stream" "$(hdr Content-Type)"
for ct in 'image/jpeg' 'text/plain; charset=utf-8' 'application/vnd.example+json; v="2"'; do
  put_file "ct/x" "$TMP/v32767" -H "Content-Type: $ct"
  req GET "$DATA/v1/buffers/ct/x"
  check "Content-Type round trip [$ct]" "$ct" "$(hdr Content-Type)"
done

# HEAD on the wire: the status line and Content-Length
printf 'HEAD /v1/buffers/bin/32769 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >"$TMP/head.req"
raw_exchange "$DPORT" "$TMP/head.req" "$TMP/head.out" 5
check "raw HEAD: 200" "HTTP/1.1 200" "$(head -1 "$TMP/head.out" | cut -c1-12)"
grep -qi '^Content-Length: 32769' "$TMP/head.out" && ok "raw HEAD: Content-Length 32769" || fail "raw HEAD: no Content-Length 32769"
# two requests on one connection (keep-alive): HEAD must not send a body
# that the next response would be confused with
printf 'HEAD /v1/buffers/bin/32769 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /v1/buffers/bin/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >"$TMP/pipe.req"
raw_exchange "$DPORT" "$TMP/pipe.req" "$TMP/pipe.out" 5
check "HEAD then GET on one connection: two status lines" 2 "$(grep -c '^HTTP/1.1 200' "$TMP/pipe.out")"
tail -c 1 "$TMP/pipe.out" | cmp -s - "$TMP/v1" && ok "HEAD then GET: the GET's 1-byte body ends the stream" ||
  fail "HEAD then GET: stream does not end with the 1-byte value"

# replace: 204, new bytes, new ETag, new Content-Type; then delete
rand_file "$TMP/new" 5000
put_file "bin/1048576" "$TMP/new" -H 'Content-Type: text/x-new'
check "replace: 204" 204 "$RS"
ne="$(hdr ETag)"
[[ "$ne" =~ $ETAG_RE && "$ne" != "${ETAG_OF[1048576]}" ]] && ok "replace: new ETag" || fail "replace: ETag [$ne]"
get_to "bin/1048576" "$TMP/new.out"
same_bytes "replace: GET returns the new bytes" "$TMP/new" "$TMP/new.out"
check "replace: new Content-Length" 5000 "$(hdr Content-Length)"
check "replace: new Content-Type" "text/x-new" "$(hdr Content-Type)"
check "replace: ETag on GET" "$ne" "$(hdr ETag)"
# replacing with the very same bytes: 204 and the same ETag
put_file "bin/1048576" "$TMP/new" -H 'Content-Type: text/x-new'
check "replace with equal bytes: 204" 204 "$RS"
check "replace with equal bytes: same ETag" "$ne" "$(hdr ETag)"
# replacing with an empty value
put_file "bin/1048576" "$TMP/v0"
check "replace with empty value: 204" 204 "$RS"
get_to "bin/1048576" "$TMP/e.out"
check "replaced by empty: GET 200" 200 "$RS"
check "replaced by empty: Content-Length 0" 0 "$(hdr Content-Length)"
check "replaced by empty: no bytes" 0 "$(stat -c %s "$TMP/e.out")"

for size in 0 1 32767 32768 32769 1048576 "$MAX"; do
  req DELETE "$DATA/v1/buffers/bin/$size"
  check "DELETE $size: 204" 204 "$RS"
  req GET "$DATA/v1/buffers/bin/$size"
  expect_error "GET after DELETE $size" 404 not_found
  req HEAD "$DATA/v1/buffers/bin/$size"
  check "HEAD after DELETE $size: 404" 404 "$RS"
done
req DELETE "$DATA/v1/buffers/bin/1"
expect_error "DELETE twice" 404 not_found
req DELETE "$DATA/v1/buffers/never/stored"
expect_error "DELETE of a key never stored" 404 not_found

# keys: '/' is part of the key; percent-decoding happens before lookup
printf 'slash value' >"$TMP/slash"
put_file "a/b" "$TMP/slash"
check "PUT a/b" 201 "$RS"
for alias in 'a%2Fb' 'a%2fb' '%61/b' '%61%2F%62'; do
  get_to "$alias" "$TMP/alias.out"
  check "GET $alias is key a/b" 200 "$RS"
  same_bytes "GET $alias bytes" "$TMP/slash" "$TMP/alias.out"
done
printf 'other' >"$TMP/other"
put_file "a%2Fb" "$TMP/other"
check "PUT a%2Fb replaces a/b: 204" 204 "$RS"
get_to "a/b" "$TMP/alias.out"
same_bytes "a/b now holds what a%2Fb stored" "$TMP/other" "$TMP/alias.out"
req GET "$DATA/v1/buffers/a"
check "key 'a' is not 'a/b'" 404 "$RS"
req GET "$DATA/v1/buffers/a/b/"
check "key 'a/b/' is not 'a/b'" 404 "$RS"
# deep paths, a trailing slash, a leading slash, spaces and UTF-8 as escapes
i=0
for k in 'x/y/z/1/2/3' 'trailing/' '/leading' 'sp%20ace' 'caf%C3%A9' 'plus+sign' '%25percent'; do
  i=$((i + 1))
  printf 'value %s' "$i" >"$TMP/k$i"
  put_file "$k" "$TMP/k$i"
  check "PUT key [$k]" 201 "$RS"
  get_to "$k" "$TMP/k$i.out"
  same_bytes "GET key [$k]" "$TMP/k$i" "$TMP/k$i.out"
done
get_to "caf%c3%a9" "$TMP/k5.out"
same_bytes "lower-case escapes name the same key" "$TMP/k5" "$TMP/k5.out"
req GET "$DATA/v1/buffers/%2Fleading"
check "%2Fleading is /leading" 200 "$RS"
req GET "$DATA/v1/buffers/percent"
check "%25percent is not 'percent'" 404 "$RS"
req DELETE "$DATA/v1/buffers/a%2Fb"
check "DELETE a%2Fb deletes a/b" 204 "$RS"
req GET "$DATA/v1/buffers/a/b"
check "a/b gone" 404 "$RS"

stop_server
check "server exits 0" 0 "$SERVER_RC"
finish
