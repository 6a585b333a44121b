#!/usr/bin/env bash
# GET /metrics: `promtool check metrics` reports nothing on live scrapes
# taken under load, on both listeners; histograms are self-consistent; the
# process_* and request figures agree with /proc and with the load sent.
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || { echo "promtool is needed (Debian's prometheus; scripts/setup.sh)"; exit 1; }
command -v jq >/dev/null || { echo "jq is needed"; exit 1; }
cd "$TMP"
t_start="$(date +%s)"
start_server --workers 2
LOADPIDS=()
WRKPID=""
stop_load() { for p in "${LOADPIDS[@]}" $WRKPID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; LOADPIDS=(); WRKPID=""; }
trap 'stop_load; cleanup' EXIT

head -c 4096 /dev/urandom > v4k
curl -sS -X PUT --data-binary @v4k -o /dev/null "$DATA/v1/buffers/hot"
curl -sS -X POST -o /dev/null "$ADMIN/debug/gc"   # pauses exist before the first scrape

# a request whose client goes away mid-body: a client_gone cancellation
exec 3<>"/dev/tcp/127.0.0.1/${DATA##*:}"
printf 'PUT /v1/buffers/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc' >&3
sleep 0.2
exec 3>&-

# ---- load: GETs (wrk) plus a mix of PUT/DELETE/404/405/HEAD/gc --------------------
if command -v wrk >/dev/null; then
  timeout 20 wrk -t1 -c16 -d4s "$DATA/v1/buffers/hot" > wrk.txt 2>&1 &
  WRKPID=$!
else
  (for _ in $(seq 1 2000); do curl -s -o /dev/null "$DATA/v1/buffers/hot"; done) &
  LOADPIDS+=($!)
fi
(
  i=0
  while :; do
    i=$((i + 1))
    curl -s -o /dev/null -X PUT --data-binary @v4k "$DATA/v1/buffers/mix$((i % 50))"
    curl -s -o /dev/null "$DATA/v1/buffers/absent$i"
    curl -s -o /dev/null -I "$DATA/v1/buffers/hot"
    curl -s -o /dev/null -X DELETE "$DATA/v1/buffers/mix$(((i + 25) % 50))"
    curl -s -o /dev/null -X DELETE "$DATA/metrics"
    (( i % 5 == 0 )) && curl -s -o /dev/null -X POST "$ADMIN/debug/gc"
  done
) &
LOADPIDS+=($!)
sleep 0.5

# ---- scrapes under load --------------------------------------------------------------
for k in 1 2 3; do
  for l in data admin; do
    url="$DATA"; [[ $l == admin ]] && url="$ADMIN"
    curl -sS -D "h.$l.$k" -o "m.$l.$k" "$url/metrics"
    out="$(promtool check metrics < "m.$l.$k" 2>&1)"; rc=$?
    if [[ $rc -eq 0 && -z "$out" ]]; then ok "promtool: $l scrape $k under load is clean"
    else fail "promtool: $l scrape $k: rc $rc: $out"; fi
  done
  sleep 0.7
done
grep -qi '^Content-Type: text/plain; version=0.0.4' h.data.1 && ok "Content-Type is text 0.0.4" || fail "Content-Type: $(grep -i content-type h.data.1)"
M=m.admin.3

# ---- the families an operator expects ------------------------------------------------
for f in go_memstats_alloc_bytes go_memstats_alloc_bytes_total go_memstats_sys_bytes \
         go_memstats_heap_inuse_bytes go_memstats_heap_idle_bytes go_memstats_heap_released_bytes \
         go_memstats_heap_objects go_memstats_mallocs_total go_memstats_frees_total \
         go_memstats_next_gc_bytes go_memstats_last_gc_time_seconds go_memstats_stack_sys_bytes \
         go_memstats_gc_cpu_fraction go_gc_duration_seconds go_gc_pauses_seconds \
         go_gc_cycles_forced_gc_cycles_total go_gc_gogc_percent go_gc_gomemlimit_bytes \
         bufcache_cache_entries bufcache_cache_hits_total bufcache_cache_misses_total \
         bufcache_cache_evictions_total bufcache_pool_gets_total \
         bufcache_http_requests_total bufcache_http_request_duration_seconds \
         bufcache_http_requests_in_flight bufcache_http_requests_canceled_total \
         process_cpu_seconds_total process_open_fds process_max_fds \
         process_virtual_memory_bytes process_virtual_memory_max_bytes \
         process_resident_memory_bytes process_start_time_seconds; do
  grep -q "^# TYPE $f " "$M" && ok "family $f" || fail "family $f missing"
done
grep -q '^# TYPE go_gc_pauses_seconds histogram' "$M" && ok "GC pauses are a histogram" || fail "GC pause histogram"

# ---- histograms are self-consistent: cumulative buckets, +Inf == _count ----------------
hist_check() { # FILE NAME
  awk -v n="$2" '
    function key(s) { sub(/,?le="[^"]*"/, "", s); sub(/\{\}/, "", s); return s }
    $1 ~ "^"n"_bucket" {
      lbl = $1; sub(/^[^{]*/, "", lbl); k = key(lbl)
      if ((k in last) && $2 + 0 < last[k]) { print "not cumulative: " $0; bad = 1 }
      last[k] = $2 + 0
      if ($1 ~ /le="\+Inf"/) inf[k] = $2 + 0
      next
    }
    $1 ~ "^"n"_count" { lbl = $1; sub(/^[^{]*/, "", lbl); cnt[key(lbl)] = $2 + 0 }
    END {
      for (k in cnt) { if (!(k in inf) || inf[k] != cnt[k]) { print "+Inf != count for " k; bad = 1 } ; nser++ }
      if (nser == 0) { print "no series"; bad = 1 }
      exit bad
    }' "$1"
}
for l in data admin; do
  for h in bufcache_http_request_duration_seconds go_gc_pauses_seconds; do
    out="$(hist_check "m.$l.3" "$h")" && ok "$l: $h consistent" || fail "$l: $h: $out"
  done
done
val() { grep -E "^$2( |\{)" "$1" | grep -F -- "${3:-}" | head -1 | awk '{print $NF}'; }
check "GC pause count is two per cycle" true \
  "$(awk -v a="$(val $M go_gc_pauses_seconds_count)" -v b="$(val $M go_gc_duration_seconds_count)" 'BEGIN{print (a == 2*b && b > 0) ? "true" : "false"}')"
check "405s are counted by route" true \
  "$(awk -v a="$(val $M bufcache_http_requests_total 'route="/metrics",method="DELETE",code="405"')" 'BEGIN{print (a > 0) ? "true" : "false"}')"
check "404 misses are counted" true \
  "$(awk -v a="$(val $M bufcache_http_requests_total 'route="/v1/buffers/{key}",method="GET",code="404"')" 'BEGIN{print (a > 0) ? "true" : "false"}')"
check "the client that went away is a client_gone cancellation" true \
  "$(awk -v a="$(val $M bufcache_http_requests_canceled_total 'cause="client_gone"')" 'BEGIN{print (a >= 1) ? "true" : "false"}')"

[[ -n "$WRKPID" ]] && wait "$WRKPID"   # wrk ends by itself and prints its count
WRKPID=""
stop_load
# ---- after the load: counts match what was sent; figures match /proc -----------------
# (a curl the load loop had started may still be finishing: wait until only
# the scrape itself is in flight)
for _ in $(seq 1 50); do
  curl -sS -o m.end "$DATA/metrics"
  [[ "$(val m.end bufcache_http_requests_in_flight)" == 1 ]] && break
  sleep 0.1
done
curl -sS "$ADMIN/debug/memstats" > ms.json
out="$(promtool check metrics < m.end 2>&1)" && [[ -z "$out" ]] && ok "promtool: quiet scrape clean" || fail "promtool: $out"
if [[ -s wrk.txt ]] && grep -q 'requests in' wrk.txt; then
  sent="$(awk '/requests in/{print $1}' wrk.txt)"
  got="$(val m.end bufcache_http_requests_total 'route="/v1/buffers/{key}",method="GET",code="200"')"
  (( got >= sent )) && ok "GET 200 count $got >= wrk's $sent" || fail "GET 200 count $got < wrk's $sent"
fi
check "heap objects agree with memstats" "$(jq .HeapObjects ms.json)" "$(val m.end go_memstats_heap_objects)"
check "TotalAlloc agrees with memstats" "$(jq .TotalAlloc ms.json)" "$(val m.end go_memstats_alloc_bytes_total)"
check "NumGC agrees with memstats" "$(jq .NumGC ms.json)" "$(val m.end go_gc_duration_seconds_count)"
check "NumForcedGC agrees with memstats" "$(jq .NumForcedGC ms.json)" "$(val m.end go_gc_cycles_forced_gc_cycles_total)"
check "Sys agrees with memstats" "$(jq .Sys ms.json)" "$(val m.end go_memstats_sys_bytes)"
pid="$SERVER_PID"
st="$(val m.end process_start_time_seconds)"
check "process_start_time_seconds is when the server started" true \
  "$(awk -v s="$st" -v t="$t_start" 'BEGIN{print (s >= t - 2 && s <= t + 5) ? "true" : "false"}')"
rss_kb="$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")"
check "process_resident_memory_bytes is VmRSS (within 25%)" true \
  "$(awk -v r="$(val m.end process_resident_memory_bytes)" -v k="$rss_kb" 'BEGIN{x = k * 1024; print (r > 0.75 * x && r < 1.25 * x) ? "true" : "false"}')"
nfd="$(ls "/proc/$pid/fd" | wc -l)"
check "process_open_fds is /proc/PID/fd (within 4)" true \
  "$(awk -v a="$(val m.end process_open_fds)" -v b="$nfd" 'BEGIN{d = a - b; if (d < 0) d = -d; print (d <= 4) ? "true" : "false"}')"
check "process_max_fds is the soft limit" "$(awk '/^Max open files/{print $4}' "/proc/$pid/limits")" \
  "$(val m.end process_max_fds)"
check "process_virtual_memory_bytes >= resident" true \
  "$(awk -v v="$(val m.end process_virtual_memory_bytes)" -v r="$(val m.end process_resident_memory_bytes)" 'BEGIN{print (v + 0 >= r + 0) ? "true" : "false"}')"
check "process_cpu_seconds_total > 0" true \
  "$(awk -v c="$(val m.end process_cpu_seconds_total)" 'BEGIN{print (c > 0) ? "true" : "false"}')"
check "go_threads is the thread count" "$(awk '/^Threads:/{print $2}' "/proc/$pid/status")" "$(val m.end go_threads)"
check "nothing in flight but the scrape" 1 "$(val m.end bufcache_http_requests_in_flight)"
finish
