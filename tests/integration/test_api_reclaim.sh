#!/usr/bin/env bash
# Memory is reclaimed after deletes (issue 2, part 3): PUT 200 values of
# 64 KiB, note HeapInuse, DELETE them all, force two cycles: HeapInuse must
# drop by at least 90% of what the values took, Frees must grow by at least
# the number of values, Cache.Entries/Bytes return to 0. The same for 1000
# small values (small-object spans), and a second round must reuse the
# memory instead of growing the heap.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api_lib.sh"

fresh_start --workers 2

is_num() { [[ "$1" =~ ^[0-9]+$ ]]; }

# put_many PREFIX COUNT FILE: PUT FILE under PREFIX/1..COUNT over one
# connection; prints how many answered 201.
put_many() {
  "${CURL[@]}" -X PUT --data-binary "@$3" -H 'Content-Type:' -o /dev/null \
    -w '%{http_code}\n' "$DATA/v1/buffers/$1/[1-$2]" | grep -c '^201$'
}
# del_many PREFIX COUNT: prints how many DELETEs answered 204.
del_many() {
  "${CURL[@]}" -X DELETE -o /dev/null -w '%{http_code}\n' \
    "$DATA/v1/buffers/$1/[1-$2]" | grep -c '^204$'
}

# round NAME PREFIX COUNT SIZE: one fill / delete / collect round; sets PEAK.
round() {
  local name="$1" prefix="$2" n="$3" size="$4"
  local took=$((n * size))
  rand_file "$TMP/val" "$size"
  force_gc >/dev/null
  local base; base="$(force_gc)"
  is_num "$base" && ok "$name: baseline HeapInuse $base" || fail "$name: baseline HeapInuse [$base]"

  check "$name: $n PUTs of $size bytes answered 201" "$n" "$(put_many "$prefix" "$n" "$TMP/val")"
  "${CURL[@]}" "$ADMIN/debug/memstats" >"$TMP/ms.full"
  local full frees_full objs_full
  full="$(jq -r .HeapInuse "$TMP/ms.full")"
  frees_full="$(jq -r .Frees "$TMP/ms.full")"
  objs_full="$(jq -r .HeapObjects "$TMP/ms.full")"
  check "$name: Cache.Entries" "$n" "$(jq -r .Cache.Entries "$TMP/ms.full")"
  check "$name: Cache.Bytes" "$took" "$(jq -r .Cache.Bytes "$TMP/ms.full")"
  if is_num "$full" && is_num "$base" && [[ $((full - base)) -ge $took ]]; then
    ok "$name: HeapInuse grew by at least the values' $took bytes ($base -> $full)"
  else
    fail "$name: HeapInuse $base -> $full, expected growth >= $took"
  fi
  is_num "$objs_full" && [[ $objs_full -ge $n ]] && ok "$name: HeapObjects >= $n ($objs_full)" ||
    fail "$name: HeapObjects [$objs_full] < $n"
  # a sample reads back
  get_to "$prefix/$((n / 2))" "$TMP/val.out"
  same_bytes "$name: a stored value reads back" "$TMP/val" "$TMP/val.out"
  PEAK="$full"

  check "$name: $n DELETEs answered 204" "$n" "$(del_many "$prefix" "$n")"
  local gcs0; gcs0="$(memstat .NumForcedGC)"
  force_gc >/dev/null
  force_gc >/dev/null
  "${CURL[@]}" "$ADMIN/debug/memstats" >"$TMP/ms.after"
  local after frees_after objs_after gcs1
  after="$(jq -r .HeapInuse "$TMP/ms.after")"
  frees_after="$(jq -r .Frees "$TMP/ms.after")"
  objs_after="$(jq -r .HeapObjects "$TMP/ms.after")"
  gcs1="$(jq -r .NumForcedGC "$TMP/ms.after")"
  check "$name: Cache.Entries back to 0" 0 "$(jq -r .Cache.Entries "$TMP/ms.after")"
  check "$name: Cache.Bytes back to 0" 0 "$(jq -r .Cache.Bytes "$TMP/ms.after")"
  if is_num "$after" && is_num "$full" && [[ $((full - after)) -ge $((took * 9 / 10)) ]]; then
    ok "$name: HeapInuse dropped by >= 90% of $took ($full -> $after)"
  else
    fail "$name: HeapInuse $full -> $after; expected a drop of at least $((took * 9 / 10))"
  fi
  if is_num "$frees_after" && is_num "$frees_full" && [[ $((frees_after - frees_full)) -ge $n ]]; then
    ok "$name: Frees grew by >= $n ($frees_full -> $frees_after)"
  else
    fail "$name: Frees $frees_full -> $frees_after, expected growth >= $n"
  fi
  if is_num "$objs_after" && [[ $((objs_full - objs_after)) -ge $n ]]; then
    ok "$name: HeapObjects dropped by >= $n ($objs_full -> $objs_after)"
  else
    fail "$name: HeapObjects $objs_full -> $objs_after"
  fi
  is_num "$gcs0" && is_num "$gcs1" && [[ $((gcs1 - gcs0)) -ge 2 ]] && ok "$name: NumForcedGC counted 2 cycles" ||
    fail "$name: NumForcedGC $gcs0 -> $gcs1"
  req GET "$DATA/v1/buffers/$prefix/1"
  check "$name: deleted values are gone" 404 "$RS"
}

round "64KiB x 200" big 200 65536
peak1="$PEAK"
round "1000B x 1000" small 1000 1000
# a second round of big values reuses the freed memory
round "64KiB x 200, again" big2 200 65536
if [[ "$PEAK" =~ ^[0-9]+$ && "$peak1" =~ ^[0-9]+$ && $PEAK -le $((peak1 + peak1 / 10)) ]]; then
  ok "second round peaked no higher than the first (+10%): $peak1 then $PEAK"
else
  fail "second round peaked at $PEAK, first at $peak1: memory not reused"
fi

# freeosmemory answers with the cycle's figures
req POST "$ADMIN/debug/freeosmemory"
check "POST /debug/freeosmemory" 200 "$RS"
v="$(jq -r '.NumGC' "$TMP/rb" 2>/dev/null)"
[[ "$v" =~ ^[0-9]+$ && $v -gt 0 ]] && ok "freeosmemory reports NumGC ($v)" || fail "freeosmemory body: $(head -c 200 "$TMP/rb")"

stop_server
check "server exits 0" 0 "$SERVER_RC"
finish
