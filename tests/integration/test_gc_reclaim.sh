#!/usr/bin/env bash
# The collector gives memory back (issue #3):
#   1. deleting everything, then POST /debug/freeosmemory (a forced cycle
#      plus a full scavenge), brings HeapInuse back to the empty server's
#      baseline (+ <= 1 MiB), releases pages (HeapReleased > 0), and RSS
#      falls with it: by at least 3/4 of the payload from the loaded peak;
#   2. --gctrace prints one line per cycle in Go's shape, numbered 1, 2, 3...
#      in order, "(forced)" exactly on the forced ones;
#   3. --gc-percent off: the pacer starts no cycle under a write load that
#      makes it start several at the default GOGC; a forced one still runs.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || { echo "jq is needed (scripts/setup.sh installs it)"; exit 1; }
cd "$TMP"

ms() { curl -sS "$ADMIN/debug/memstats" | jq -r "$1"; }
rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$SERVER_PID/status"; }
MIB=1048576

# values of 8..64 KiB: eight files, key i gets file i % 8 (fixed contents)
for k in 1 2 3 4 5 6 7 8; do
  head -c $((k * 8192)) /dev/urandom > "v$k"
done
N=2000
payload=0
for i in $(seq 0 $((N - 1))); do
  k=$((i % 8 + 1))
  payload=$((payload + k * 8192))
  printf 'url = "/v1/buffers/r%d"\nupload-file = "v%d"\noutput = "/dev/null"\n' "$i" "$k"
done > put.tmpl
for i in $(seq 0 $((N - 1))); do
  printf 'url = "/v1/buffers/r%d"\nrequest = "DELETE"\noutput = "/dev/null"\n' "$i"
done > del.tmpl
# the templates get the server's address when it is known
cfgs() {
  sed "s|^url = \"|url = \"$DATA|" put.tmpl > put.cfg
  sed "s|^url = \"|url = \"$DATA|" del.tmpl > del.cfg
}

# ---- 1 + 2: reclaim to the baseline, with --gctrace ------------------------------
start_server --workers 2 --gctrace --memory-limit 2GiB
curl -sS -X POST -o /dev/null "$ADMIN/debug/gc"
curl -sS "$ADMIN/debug/memstats" > base.json
base_inuse="$(jq .HeapInuse base.json)"
base_rss="$(rss)"
echo "# empty server: HeapInuse $base_inuse, RSS $base_rss"

cfgs
curl -sS -K put.cfg
# read a tenth of them back: their cached responses (libc memory, freed by
# the finalizer when the entry is reclaimed) must go too
for i in $(seq 0 10 $((N - 1))); do
  printf 'url = "%s/v1/buffers/r%d"\noutput = "/dev/null"\n' "$DATA" "$i"
done > get.cfg
curl -sS -K get.cfg
curl -sS "$ADMIN/debug/memstats" > loaded.json
check "all $N values stored" "$N" "$(jq .Cache.Entries loaded.json)"
check "Cache.Bytes is the payload" "$payload" "$(jq .Cache.Bytes loaded.json)"
loaded_rss="$(rss)"
loaded_inuse="$(jq .HeapInuse loaded.json)"
echo "# loaded: payload $payload, HeapInuse $loaded_inuse, RSS $loaded_rss"
(( loaded_inuse >= payload )) && ok "HeapInuse holds the payload ($loaded_inuse >= $payload)" \
  || fail "HeapInuse $loaded_inuse < payload $payload"
(( loaded_rss - base_rss >= payload * 9 / 10 )) && ok "RSS grew by the payload ($((loaded_rss - base_rss)))" \
  || fail "RSS grew by only $((loaded_rss - base_rss)) for a payload of $payload"

curl -sS -K del.cfg
check "all deleted" 0 "$(ms .Cache.Entries)"
curl -sS -X POST "$ADMIN/debug/freeosmemory" > free.json
curl -sS "$ADMIN/debug/memstats" > after.json
after_inuse="$(jq .HeapInuse after.json)"
after_rss="$(rss)"
echo "# after DELETE + freeosmemory: HeapInuse $after_inuse, HeapReleased $(jq .HeapReleased after.json), RSS $after_rss"
(( after_inuse <= base_inuse + MIB )) && ok "HeapInuse back to the baseline + <= 1 MiB ($base_inuse -> $after_inuse)" \
  || fail "HeapInuse $after_inuse > baseline $base_inuse + 1 MiB"
check "HeapAlloc back to the baseline's" "$(jq .HeapAlloc base.json)" "$(jq .HeapAlloc after.json)"
check "HeapObjects back to the baseline's" "$(jq .HeapObjects base.json)" "$(jq .HeapObjects after.json)"
check "HeapReleased > 0" true "$(jq '.HeapReleased > 0' after.json)"
check "every idle page is released" true "$(jq '.HeapReleased == .HeapIdle' after.json)"
check "freeosmemory says it released pages" true "$(jq '.ReleasedNow > 0' free.json)"
drop=$((loaded_rss - after_rss))
(( drop * 4 >= payload * 3 )) && ok "RSS fell by >= 3/4 of the payload ($drop of $payload)" \
  || fail "RSS fell by only $drop of a $payload payload ($loaded_rss -> $after_rss)"
(( after_rss <= base_rss + payload / 4 )) && ok "RSS is near the empty server's ($base_rss -> $after_rss)" \
  || fail "RSS $after_rss is far above the empty server's $base_rss"

# a second round reuses the released pages and gives them back again
curl -sS -K put.cfg
curl -sS -K del.cfg
curl -sS -X POST -o /dev/null "$ADMIN/debug/freeosmemory"
check "second round: HeapInuse back to the baseline + <= 1 MiB" true \
  "$(ms ".HeapInuse <= $base_inuse + $MIB")"

# ---- gctrace --------------------------------------------------------------------------
curl -sS -X POST -o /dev/null "$ADMIN/debug/gc"
curl -sS "$ADMIN/debug/memstats" > final.json
numgc="$(jq .NumGC final.json)"
forced="$(jq .NumForcedGC final.json)"
grep '^gc ' "$TMP/server.err" > trace.txt
re='^gc [0-9]+ @[0-9]+\.[0-9]{3}s [0-9]+%: [0-9]+\.[0-9]{3}\+[0-9]+\.[0-9]{3}\+[0-9]+\.[0-9]{3}\+[0-9]+\.[0-9]{3} ms clock, [0-9]+\.[0-9]->[0-9]+\.[0-9]->[0-9]+\.[0-9] MB, [0-9]+\.[0-9] MB goal, 2 W( \(forced\))?$'
check "one gctrace line per cycle" "$numgc" "$(wc -l < trace.txt)"
check "every line has Go's shape" 0 "$(grep -Evc "$re" trace.txt)"
grep -Ev "$re" trace.txt | head -3
check "cycles numbered 1..NumGC in order" "$(seq -s' ' 1 "$numgc")" "$(awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 }' trace.txt)"
check "the clock (@T) never goes back" 0 \
  "$(awk '{ t = substr($3, 2) + 0; if (NR > 1 && t < p) bad++; p = t } END { print bad + 0 }' trace.txt)"
check "'(forced)' marks exactly the forced cycles" "$forced" "$(grep -c ' (forced)$' trace.txt)"
(( numgc > forced )) && ok "the payload made the pacer start cycles ($((numgc - forced)) of $numgc)" \
  || fail "no pacer cycle at GOGC 100 under $payload bytes of writes"
goal_mb="$(tail -1 trace.txt | sed -E 's/.* ([0-9.]+) MB goal.*/\1/')"
check "the last line's goal is NextGC" true \
  "$(jq --argjson g "$goal_mb" '(.NextGC / 1048576 - $g) | fabs < 0.06' final.json)"
stop_server
check "clean exit" 0 "$SERVER_RC"

# ---- 3: --gc-percent off ----------------------------------------------------------------
start_server --workers 2 --gctrace --gc-percent off --memory-limit 2GiB
cfgs
check "GCPercent is -1" -1 "$(ms .GC.GCPercent)"
curl -sS -K put.cfg
curl -sS -K del.cfg
curl -sS -K put.cfg
check "no cycle under GOGC=off" 0 "$(ms .NumGC)"
check "no gctrace line either" 0 "$(grep -c '^gc ' "$TMP/server.err")"
curl -sS -X POST -o /dev/null "$ADMIN/debug/gc"
curl -sS "$ADMIN/debug/memstats" > off.json
check "a forced cycle still runs" 1 "$(jq .NumGC off.json)"
check "and counts as forced" 1 "$(jq .NumForcedGC off.json)"
check "it reclaimed the deleted round" true "$(jq --argjson p "$payload" '.HeapAlloc < $p * 1.2' off.json)"
# with GOGC off the only goal left is the memory limit's
check "NextGC: the limit's goal, past the heap" true \
  "$(jq '.NextGC > .HeapAlloc and .NextGC <= .GC.MemoryLimit' off.json)"
stop_server
check "clean exit" 0 "$SERVER_RC"
finish
