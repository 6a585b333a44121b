#!/usr/bin/env bash
# /debug/memstats, /debug/vars, POST /debug/gc, /debug/freeosmemory and the
# live knobs: Go's MemStats fields are all there and mean what Go says.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || { echo "jq is needed (scripts/setup.sh installs it)"; exit 1; }
start_server --workers 2
cd "$TMP"

# ms JQ: evaluates JQ on a fresh /debug/memstats
ms() { curl -sS "$ADMIN/debug/memstats" | jq -r "$1"; }
gc() { curl -sS -X POST "$ADMIN/debug/gc" > gc.json; }
# puts N keys PREFIX1..N with the bytes of FILE (one curl, keep-alive)
put_many() {
  local n=$1 prefix=$2 file=$3
  for i in $(seq 1 "$n"); do
    printf 'url = "%s/v1/buffers/%s%d"\nupload-file = "%s"\noutput = "/dev/null"\n' \
      "$DATA" "$prefix" "$i" "$file"
  done > put.cfg
  curl -sS -K put.cfg
}
del_many() {
  local n=$1 prefix=$2
  for i in $(seq 1 "$n"); do
    printf 'url = "%s/v1/buffers/%s%d"\nrequest = "DELETE"\noutput = "/dev/null"\n' \
      "$DATA" "$prefix" "$i"
  done > del.cfg
  curl -sS -K del.cfg
}

# ---- presence, types, shape ---------------------------------------------------
curl -sS -D h.txt "$ADMIN/debug/memstats" > m.json
grep -qi '^Content-Type: application/json' h.txt && ok "memstats is JSON" || fail "memstats Content-Type"
for f in Alloc TotalAlloc Sys Lookups Mallocs Frees HeapAlloc HeapSys HeapIdle HeapInuse \
         HeapReleased HeapObjects StackInuse StackSys MSpanInuse MSpanSys MCacheInuse \
         MCacheSys BuckHashSys GCSys OtherSys NextGC LastGC PauseTotalNs NumGC NumForcedGC; do
  t="$(jq -r --arg f "$f" '.[$f] | type' m.json)"
  v="$(jq -r --arg f "$f" '.[$f] | if type == "number" then (. >= 0 and . == floor) else false end' m.json)"
  [[ "$t" == number && "$v" == true ]] && ok "$f is a non-negative integer" || fail "$f: type $t"
done
check "GCCPUFraction is a number" number "$(jq -r '.GCCPUFraction|type' m.json)"
check "EnableGC is true (always, as in Go)" true "$(jq -r '.EnableGC' m.json)"
check "DebugGC is false" false "$(jq -r '.DebugGC' m.json)"
check "PauseNs holds 256" 256 "$(jq -r '.PauseNs|length' m.json)"
check "PauseEnd holds 256" 256 "$(jq -r '.PauseEnd|length' m.json)"
check "BySize[0] is class 0" '{"Size":0,"Mallocs":0,"Frees":0}' "$(jq -c '.BySize[0]' m.json)"
check "BySize entries are {Size,Mallocs,Frees}" true \
  "$(jq '[.BySize[] | keys == ["Frees","Mallocs","Size"]] | all' m.json)"
check "BySize sizes ascend" true \
  "$(jq '[.BySize[].Size] as $s | [range(1; $s|length) | $s[.] > $s[.-1]] | all' m.json)"
check "BySize has the size classes" true "$(jq '.BySize|length > 10' m.json)"
check "Cache section" true \
  "$(jq '.Cache | has("Entries") and has("Bytes") and has("Hits") and has("Misses") and has("Evictions")' m.json)"
check "Cache.Evictions by reason" '["memory","ttl"]' "$(jq -c '.Cache.Evictions|keys' m.json)"
check "Pools section: gets, puts, news, victim hits" true \
  "$(jq '[.Pools[] | has("Gets") and has("Puts") and has("News") and has("VictimHits")] | (length > 0 and all)' m.json)"
check "Requests section: in flight, cancellations by cause" true \
  "$(jq '.Requests | has("InFlight") and (.Canceled|has("client_gone") and has("deadline") and has("shutdown"))' m.json)"
check "Requests.InFlight counts this request" 1 "$(jq '.Requests.InFlight' m.json)"
# Go's identities
check "Sys = HeapSys+StackSys+MSpanSys+MCacheSys+BuckHashSys+GCSys+OtherSys" true \
  "$(jq '.Sys == .HeapSys+.StackSys+.MSpanSys+.MCacheSys+.BuckHashSys+.GCSys+.OtherSys' m.json)"
check "HeapIdle = HeapSys - HeapInuse" true "$(jq '.HeapIdle == .HeapSys - .HeapInuse' m.json)"
check "HeapAlloc = Alloc" true "$(jq '.HeapAlloc == .Alloc' m.json)"
check "HeapObjects = Mallocs - Frees" true "$(jq '.HeapObjects == .Mallocs - .Frees' m.json)"
check "HeapReleased <= HeapIdle" true "$(jq '.HeapReleased <= .HeapIdle' m.json)"
check "StackSys covers the threads (workers, admin, collector, main)" true \
  "$(jq '.StackSys >= 5 * 65536' m.json)"

# ---- TotalAlloc grows by at least the bytes PUT --------------------------------
head -c 65536 /dev/urandom > v64k
t0="$(ms .TotalAlloc)"
put_many 40 big v64k
t1="$(ms .TotalAlloc)"
(( t1 - t0 >= 40 * 65536 )) && ok "TotalAlloc grew by >= the 2.5 MiB PUT ($((t1 - t0)))" \
  || fail "TotalAlloc grew by $((t1 - t0)) < $((40 * 65536))"
check "Cache.Bytes counts the values" $((40 * 65536)) "$(ms .Cache.Bytes)"

# ---- NumGC, PauseNs, PauseEnd, LastGC, NumForcedGC after POST /debug/gc ------------
curl -sS "$ADMIN/debug/memstats" > before.json
gc
curl -sS "$ADMIN/debug/memstats" > after.json
n0="$(jq .NumGC before.json)"; n1="$(jq .NumGC after.json)"
(( n1 >= n0 + 1 )) && ok "NumGC grew after POST /debug/gc ($n0 -> $n1)" || fail "NumGC $n0 -> $n1"
check "POST /debug/gc answers its cycle's NumGC" true "$(jq --argjson n "$n1" '.NumGC <= $n and .NumGC > 0' gc.json)"
check "NumForcedGC counts the forced cycle" $(( $(jq .NumForcedGC before.json) + 1 )) "$(jq .NumForcedGC after.json)"
check "PauseNs[(NumGC+255)%256] is the last pause, > 0" true \
  "$(jq '.PauseNs[(.NumGC+255)%256] > 0' after.json)"
check "PauseNs changed" true "$(jq -n --slurpfile a before.json --slurpfile b after.json '$a[0].PauseNs != $b[0].PauseNs')"
check "PauseEnd of the last cycle is LastGC" true "$(jq '.PauseEnd[(.NumGC+255)%256] == .LastGC' after.json)"
now_ns="$(date +%s%N)"
check "LastGC is Unix ns, recent" true \
  "$(jq --argjson now "$now_ns" '(.LastGC > $now - 60e9) and (.LastGC <= $now + 1e9)' after.json)"
check "PauseTotalNs grew by the last pause" true \
  "$(jq -n --slurpfile a before.json --slurpfile b after.json '$b[0].PauseTotalNs - $a[0].PauseTotalNs >= $b[0].PauseNs[($b[0].NumGC+255)%256]')"
check "gc answer carries its figures" true \
  "$(jq 'has("NumGC") and has("PauseNs") and has("HeapAlloc") and has("HeapInuse") and has("NextGC")' gc.json)"
f0="$(ms .NumForcedGC)"
gc; gc; gc
check "three more forced cycles" $((f0 + 3)) "$(ms .NumForcedGC)"

# automatic cycles are not forced: a low GOGC and 10 MiB of garbage
check "PUT /debug/gc-percent answers the previous value" 100 \
  "$(curl -sS -X PUT --data 10 "$ADMIN/debug/gc-percent")"
head -c 262144 /dev/urandom > v256k
a0="$(ms '[.NumGC, .NumForcedGC]|@tsv')"
for i in $(seq 1 40); do
  printf 'url = "%s/v1/buffers/churn"\nupload-file = "v256k"\noutput = "/dev/null"\n' "$DATA"
done > churn.cfg
curl -sS -K churn.cfg
a1="$(ms '[.NumGC, .NumForcedGC]|@tsv')"
read -r g0 fc0 <<< "$a0"; read -r g1 fc1 <<< "$a1"
(( g1 > g0 )) && ok "garbage ran automatic cycles ($g0 -> $g1)" || fail "no automatic cycle ($g0 -> $g1)"
check "automatic cycles leave NumForcedGC alone" "$fc0" "$fc1"
check "GET /debug/gc-percent" 10 "$(curl -sS "$ADMIN/debug/gc-percent")"
check "gc-percent off answers 10" 10 "$(curl -sS -X PUT --data off "$ADMIN/debug/gc-percent")"
check "GCPercent -1 when off" -1 "$(ms .GC.GCPercent)"
check "EnableGC stays true with GOGC off" true "$(ms .EnableGC)"
check "gc-percent back to 100 answers -1" -1 "$(curl -sS -X PUT --data 100 "$ADMIN/debug/gc-percent")"
check "gc-percent rejects junk" 400 "$(status PUT "$ADMIN/debug/gc-percent" --data 12abc)"
check "gc-percent rejects an empty body" 400 "$(status PUT "$ADMIN/debug/gc-percent")"
check "gc-percent is GET/HEAD/PUT" 405 "$(status POST "$ADMIN/debug/gc-percent")"

# ---- memory limit -----------------------------------------------------------------
lim0="$(ms .GC.MemoryLimit)"
check "PUT /debug/memory-limit answers the previous limit" "$lim0" \
  "$(curl -sS -X PUT --data 1073741824 "$ADMIN/debug/memory-limit")"
check "a negative limit only reads it (Go's SetMemoryLimit(-1))" 1073741824 \
  "$(curl -sS -X PUT --data -1 "$ADMIN/debug/memory-limit")"
check "memstats shows the new limit" 1073741824 "$(ms .GC.MemoryLimit)"
check "sizes with units" 1073741824 "$(curl -sS -X PUT --data 512MiB "$ADMIN/debug/memory-limit")"
check "GET /debug/memory-limit" 536870912 "$(curl -sS "$ADMIN/debug/memory-limit")"
check "memory-limit rejects junk" 400 "$(status PUT "$ADMIN/debug/memory-limit" --data lots)"
curl -sS -X PUT --data "$lim0" "$ADMIN/debug/memory-limit" > /dev/null

# ---- HeapObjects follows inserts and deletes after a cycle ---------------------------
del_many 40 big
curl -sS -X DELETE -o /dev/null "$DATA/v1/buffers/churn"
gc
h0="$(ms .HeapObjects)"; e0="$(ms .Cache.Entries)"
head -c 1000 /dev/urandom > v1k
put_many 300 obj v1k
gc
h1="$(ms .HeapObjects)"
check "HeapObjects +300 after 300 inserts and a cycle" $((h0 + 300)) "$h1"
check "Cache.Entries +300" $((e0 + 300)) "$(ms .Cache.Entries)"
del_many 200 obj
gc
check "HeapObjects -200 after 200 deletes and a cycle" $((h1 - 200)) "$(ms .HeapObjects)"
check "Cache.Entries -200" $((e0 + 100)) "$(ms .Cache.Entries)"
check "HeapObjects = Mallocs - Frees still" true "$(ms '.HeapObjects == .Mallocs - .Frees')"

# ---- FreeOSMemory: a forced cycle, then every free page back to the OS -------------
f0="$(ms .NumForcedGC)"
curl -sS -X POST "$ADMIN/debug/freeosmemory" > free.json
check "freeosmemory runs a forced cycle" $((f0 + 1)) "$(jq .NumForcedGC free.json)"
curl -sS "$ADMIN/debug/memstats" > m.json
check "after freeosmemory all idle heap is released" true "$(jq '.HeapReleased == .HeapIdle and .HeapIdle > 0' m.json)"
check "freeosmemory answers what it released" true "$(jq '.ReleasedNow >= 0 and .HeapReleased > 0' free.json)"

# ---- TTL reaping is reported as Evictions.ttl -------------------------------------
x0="$(ms .Cache.Evictions.ttl)"
curl -sS -X PUT --data-binary short -o /dev/null "$DATA/v1/buffers/ttl1?ttl=1s"
sleep 1.2
check "expired key is a miss" 404 "$(status GET "$DATA/v1/buffers/ttl1")"
check "Evictions.ttl counts it" $((x0 + 1)) "$(ms .Cache.Evictions.ttl)"
check "Evictions.ttl = Expired" true "$(ms '.Cache.Evictions.ttl == .Cache.Expired')"

# ---- /debug/vars: expvar's shape with the real command line -------------------------
curl -sS "$ADMIN/debug/vars" > vars.json
check "vars.cmdline is argv" \
  "[\"$BIN\",\"--listen\",\"127.0.0.1:0\",\"--admin-listen\",\"127.0.0.1:0\",\"--workers\",\"2\"]" \
  "$(jq -c .cmdline vars.json)"
check "vars.memstats is MemStats" true "$(jq '.memstats | has("HeapInuse") and has("PauseNs") and has("BySize")' vars.json)"

# ---- where the routes live ----------------------------------------------------------
check "/debug/memstats is not on the data port" 404 "$(status GET "$DATA/debug/memstats")"
check "/debug/gc is not on the data port" 404 "$(status POST "$DATA/debug/gc")"
check "POST /debug/gc only" 405 "$(status GET "$ADMIN/debug/gc")"
for l in "$DATA" "$ADMIN"; do
  for p in /metrics /healthz /readyz; do
    check "$p on $l" 200 "$(status GET "$l$p")"
  done
done
finish
