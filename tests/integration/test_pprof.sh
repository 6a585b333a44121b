#!/usr/bin/env bash
# test_pprof.sh - /debug/pprof/ read by Go's own tool (issue #7): heap and
# allocs name the PUT path's allocation sites, -tagfocus on the namespace
# label filters, a CPU profile under GET load names the request path, the
# requests profile lists a stalled upload, 409 for a second CPU profile,
# index, cmdline, symbol, legacy text forms, the admin token guard. Every
# profile is fetched with curl and read from the file, without the binary
# (-symbolize=none) as it would be on another machine. Bounded: ~30 s.
source "$(dirname "$0")/lib.sh"

command -v go >/dev/null || { echo "FAIL - go is needed (scripts/setup.sh installs golang-go)"; exit 1; }
export HOME="$TMP/home" GOCACHE="$TMP/gocache" GOFLAGS= GOTOOLCHAIN=local
mkdir -p "$HOME"
pprof() { go tool pprof -symbolize=none "$@" 2>"$TMP/pprof.err"; }

TOKEN=pprof-test-token
export BUFCACHE_ADMIN_TOKEN=$TOKEN
# a dense sampling rate so a few hundred small PUTs leave many samples
start_server --workers 2 --mem-profile-rate 16KiB --access-log=false
unset BUFCACHE_ADMIN_TOKEN
acurl() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }

# ---- the guard, the index, cmdline, symbol -------------------------------------
check "pprof without the token: 401" 401 "$(status GET "$ADMIN/debug/pprof/heap")"
acurl "$ADMIN/debug/pprof/" >"$TMP/index.html"
for p in allocs heap profile requests cmdline symbol; do
  grep -q "/debug/pprof/$p" "$TMP/index.html" && ok "index links $p" || fail "index links $p"
done
acurl "$ADMIN/debug/pprof/cmdline" >"$TMP/cmdline"
check "cmdline is argv, NUL-separated" "--workers" \
  "$(tr '\0' '\n' <"$TMP/cmdline" | grep -x -- --workers)"
check "symbol GET" "num_symbols: 1" "$(acurl "$ADMIN/debug/pprof/symbol")"
check "unknown profile: 404" 404 \
  "$(status GET "$ADMIN/debug/pprof/nosuch" -H "Authorization: Bearer $TOKEN")"

# ---- heap: PUT load in two namespaces ---------------------------------------------
python3 - "$DATA" <<'PY'
import http.client, sys
host, port = sys.argv[1].split("//")[1].split(":")
c = http.client.HTTPConnection(host, int(port), timeout=10)
body = bytes(range(256)) * 16  # 4 KiB
for i in range(300):
    for ns in ("users", "logs"):
        c.request("PUT", "/v1/buffers/%s/k%d" % (ns, i), body)
        r = c.getresponse(); r.read()
        assert r.status in (201, 204), r.status
PY
ok "600 PUTs of 4 KiB in namespaces users and logs"

acurl "$ADMIN/debug/pprof/heap?gc=1" -o "$TMP/heap.pb.gz"
check "heap is gzip" "1f8b" "$(head -c2 "$TMP/heap.pb.gz" | od -An -tx1 | tr -d ' \n')"
pprof -raw "$TMP/heap.pb.gz" >"$TMP/heap.raw"
grep -q "inuse_space/bytes\[dflt\]" "$TMP/heap.raw" && ok "heap: default sample type inuse_space" || fail "heap default type: $(head -5 "$TMP/heap.raw")"
grep -q "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" "$TMP/heap.raw" \
  && ok "heap: the four sample types" || fail "heap sample types"
for fn in cache_entry_new put_begin data_access; do
  grep -q " $fn " "$TMP/heap.raw" && ok "heap names $fn" || fail "heap names $fn: $(head -40 "$TMP/heap.raw")"
done
grep -q "Build ID:\|^1: .*bufcache [0-9a-f]\{40\}" "$TMP/heap.raw" || pprof -top "$TMP/heap.pb.gz" | grep -q "^Build ID: [0-9a-f]\{40\}" \
  && ok "heap: the binary's mapping has its build ID" || fail "no build ID"
grep -q "namespace:\[users\]" "$TMP/heap.raw" && grep -q "namespace:\[logs\]" "$TMP/heap.raw" \
  && ok "heap samples carry namespace labels" || fail "namespace labels: $(grep namespace "$TMP/heap.raw" | head)"
grep -q "route:\[/v1/buffers/{key}\]" "$TMP/heap.raw" && ok "heap samples carry the route label" || fail "route label"
pprof -top -nodefraction=0 "$TMP/heap.pb.gz" >"$TMP/heap.top"
grep -q "cache_entry_new" "$TMP/heap.top" && ok "pprof -top on the heap profile" || fail "heap -top: $(cat "$TMP/heap.top" "$TMP/pprof.err" | head -20)"
# unbiased scaling: the in-use estimate is near the 2.4 MB really put
# (4,160-byte objects counted; sampling noise at 16 KiB is a few per cent)
total=$(pprof -top -unit=B "$TMP/heap.pb.gz" | sed -n 's/.*of \([0-9]*\)B total.*/\1/p')
if [[ -n "$total" ]] && (( total > 1800000 && total < 3600000 )); then ok "in-use estimate $total B ~ 2.5 MB"; else fail "in-use estimate [$total]"; fi
# -tagfocus on the namespace: only that namespace's samples remain
pprof -raw -tagfocus=namespace=users "$TMP/heap.pb.gz" >"$TMP/users.raw"
if grep -q "namespace:\[users\]" "$TMP/users.raw" && ! grep -q "namespace:\[logs\]" "$TMP/users.raw"; then
  ok "-tagfocus namespace=users keeps only users' samples"
else
  fail "-tagfocus: $(grep namespace "$TMP/users.raw" | sort | uniq -c)"
fi
u=$(pprof -top -unit=B -tagfocus=namespace=users "$TMP/heap.pb.gz" | sed -n 's/.*accounting for \([0-9]*\)B.*/\1/p')
if [[ -n "$u" && -n "$total" ]] && (( u > total / 4 && u < total * 3 / 4 )); then ok "users hold about half ($u of $total B)"; else fail "users' share [$u of $total]"; fi

acurl "$ADMIN/debug/pprof/allocs" -o "$TMP/allocs.pb.gz"
pprof -raw "$TMP/allocs.pb.gz" >"$TMP/allocs.raw"
grep -q "alloc_space/bytes\[dflt\]" "$TMP/allocs.raw" && ok "allocs: default sample type alloc_space" || fail "allocs default: $(head -5 "$TMP/allocs.raw")"
acurl "$ADMIN/debug/pprof/heap?debug=1" >"$TMP/heap.txt"
grep -q "^heap profile: [0-9]*: [0-9]* \[[0-9]*: [0-9]*\] @ heap/32768$" "$TMP/heap.txt" \
  && ok "heap?debug=1: Go's legacy header" || fail "legacy header: $(head -1 "$TMP/heap.txt")"
grep -q "cache_entry_new+0x[0-9a-f]*	.*cache/cache.c:[0-9]*" "$TMP/heap.txt" && ok "heap?debug=1 symbolized with file:line" || fail "legacy frames: $(sed -n 2,6p "$TMP/heap.txt")"

# symbol POST: an address from the profile maps back to its function
addr=$(grep -oP '^#\t\K0x[0-9a-f]+(?=\tcache_entry_new\+)' "$TMP/heap.txt" | head -1)
check "symbol POST names $addr" "$addr cache_entry_new" \
  "$(acurl -X POST --data "$addr+0x1" "$ADMIN/debug/pprof/symbol" | grep "^$addr ")"

# ---- CPU: a profile during GET load ---------------------------------------------------
# a small value: the server's own code, not the kernel's copy, is the work
curl -s -o /dev/null -X PUT --data "0123456789abcdef" "$DATA/v1/buffers/hot/one"
if command -v wrk >/dev/null; then
  wrk -t1 -c4 -d5s "$DATA/v1/buffers/hot/one" >"$TMP/wrk.out" 2>&1 &
else
  python3 - "$DATA" 5 <<'PY' &
import http.client, sys, time
host, port = sys.argv[1].split("//")[1].split(":")
end = time.time() + float(sys.argv[2])
c = http.client.HTTPConnection(host, int(port), timeout=10)
while time.time() < end:
    c.request("GET", "/v1/buffers/hot/one"); c.getresponse().read()
PY
fi
LOAD=$!
sleep 0.3
t0=$(date +%s.%N)
acurl "$ADMIN/debug/pprof/profile?seconds=4" -o "$TMP/cpu.pb.gz" &
CPU=$!
sleep 0.5
check "a second CPU profile at once: 409" 409 \
  "$(status GET "$ADMIN/debug/pprof/profile?seconds=1" -H "Authorization: Bearer $TOKEN")"
# the admin loop is not blocked while the profile runs
t1=$(date +%s.%N)
check "heap answers while the CPU profile runs" 200 \
  "$(status GET "$ADMIN/debug/pprof/heap" -H "Authorization: Bearer $TOKEN" --max-time 2)"
wait "$CPU"
t2=$(date +%s.%N)
wait "$LOAD"
python3 -c "import sys; d=float(sys.argv[2])-float(sys.argv[1]); sys.exit(0 if 3.8 < d < 9 else 1)" "$t0" "$t2" \
  && ok "profile?seconds=4 answered after about 4 s" || fail "profile took $t0 .. $t2"
pprof -raw "$TMP/cpu.pb.gz" >"$TMP/cpu.raw"
grep -q "samples/count cpu/nanoseconds" "$TMP/cpu.raw" && ok "cpu: sample types samples/count cpu/nanoseconds" || fail "cpu types: $(head -5 "$TMP/cpu.raw" "$TMP/pprof.err")"
pprof -top -nodefraction=0 -nodecount=400 "$TMP/cpu.pb.gz" >"$TMP/cpu.top"
for fn in data_access MHD_run; do
  grep -q " $fn\( (inline)\)\?$" "$TMP/cpu.top" && ok "cpu profile names $fn" || fail "cpu names $fn: $(head -30 "$TMP/cpu.top")"
done
if grep -qE " (get|cache_get)( \(inline\))?$" "$TMP/cpu.top"; then ok "cpu profile names get/cache_get"; else fail "no get/cache_get: $(head -40 "$TMP/cpu.top")"; fi
n=$(grep -o "Total samples = [0-9.]*m\?s" "$TMP/cpu.top" | cut -d' ' -f4)
python3 -c "import sys; v=sys.argv[1]; s=float(v[:-2])/1000 if v.endswith('ms') else float(v[:-1] or 0); sys.exit(0 if s >= 0.05 else 1)" "${n:-0s}" \
  && ok "cpu profile has $n of samples" || fail "cpu samples: [$n]"
grep -q "thread:\[worker [01]\]" "$TMP/cpu.raw" && ok "cpu samples carry the thread label" || fail "thread label"
grep -q "route:\[/v1/buffers/{key}\]" "$TMP/cpu.raw" && ok "cpu samples in handlers carry the route label" || fail "cpu route label"

# ---- requests: a stalled upload ----------------------------------------------------------
python3 - "$DATA" <<'PY' &
import socket, sys, time
host, port = sys.argv[1].split("//")[1].split(":")
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"PUT /v1/buffers/stall/k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
time.sleep(8)
s.close()
PY
STALL=$!
for _ in $(seq 1 50); do  # until the server has read the partial body
  acurl "$ADMIN/debug/pprof/requests?debug=1" >"$TMP/req.txt"
  grep -q "bytes_in 7 " "$TMP/req.txt" && break
  sleep 0.1
done
grep -q "^request .*\[age [0-9.]*s, deadline in [0-9.]*s\]: PUT /v1/buffers/stall/k1$" "$TMP/req.txt" \
  && ok "requests?debug=1 lists the stalled PUT" || fail "requests text: $(cat "$TMP/req.txt")"
grep -q "bytes_in 7 " "$TMP/req.txt" && ok "the stalled PUT has 7 bytes in" || fail "bytes_in: $(cat "$TMP/req.txt")"
acurl "$ADMIN/debug/pprof/requests" -o "$TMP/req.pb.gz"
pprof -raw "$TMP/req.pb.gz" >"$TMP/req.raw"
grep -q "namespace:\[stall\].*path:\[/v1/buffers/stall/k1\].*route:\[/v1/buffers/{key}\].*worker:\[[01]\]" "$TMP/req.raw" \
  && ok "requests profile: the stalled PUT with its labels" || fail "requests raw: $(cat "$TMP/req.raw" "$TMP/pprof.err")"
grep -q "age:\[[0-9]* nanoseconds\]" "$TMP/req.raw" && ok "requests profile: age in nanoseconds" || fail "age label"
pprof -top "$TMP/req.pb.gz" | grep -q "PUT /v1/buffers/{key}" && ok "requests -top shows the route" || fail "requests -top"
# the profile names its binary: a mapping with the build ID, and no notice
# from pprof that the main binary is unknown
grep -A2 "^Mappings" "$TMP/req.raw" | grep -q "bufcache [0-9a-f]\{40\}" \
  && ok "requests profile: the binary's mapping with its build ID" || fail "requests mappings: $(grep -A3 "^Mappings" "$TMP/req.raw")"
go tool pprof -top "$TMP/req.pb.gz" >/dev/null 2>"$TMP/req.err"
grep -qi "main binary" "$TMP/req.err" && fail "pprof: $(cat "$TMP/req.err")" || ok "pprof reads the requests profile without a notice"
kill "$STALL" 2>/dev/null; wait "$STALL" 2>/dev/null

# ---- the sampling rate, live (runtime.MemProfileRate) ---------------------------------
# sampled allocations so far: the [alloc_objects: ...] of the text form's
# header, as of a cycle run first
allocs_now() {
  acurl "$ADMIN/debug/pprof/heap?gc=1&debug=1" | sed -n '1s/^heap profile: [0-9]*: [0-9]* \[\([0-9]*\): .*/\1/p'
}
put_n() { # PREFIX N: N PUTs of 4 KiB
  python3 - "$DATA" "$1" "$2" <<'PY'
import http.client, sys
host, port = sys.argv[1].split("//")[1].split(":")
c = http.client.HTTPConnection(host, int(port), timeout=10)
for i in range(int(sys.argv[3])):
    c.request("PUT", "/v1/buffers/%s/k%d" % (sys.argv[2], i), b"r" * 4096)
    r = c.getresponse(); r.read()
    assert r.status in (201, 204), r.status
PY
}
check "GET /debug/mem-profile-rate: the flag's value" 16384 "$(acurl "$ADMIN/debug/mem-profile-rate")"
check "PUT 0 answers the previous rate" 16384 "$(acurl -X PUT --data 0 "$ADMIN/debug/mem-profile-rate")"
check "the rate is now 0" 0 "$(acurl "$ADMIN/debug/mem-profile-rate")"
acurl -X POST -o /dev/null "$ADMIN/debug/gc" # every worker takes the rate at a cycle
a0="$(allocs_now)"
put_n quiet 200
a1="$(allocs_now)"
[[ -n "$a0" && "$a1" == "$a0" ]] && ok "rate 0: 200 PUTs, no new sample ($a0)" || fail "rate 0: sampled allocations $a0 -> $a1"
check "PUT 1 (every allocation) answers 0" 0 "$(acurl -X PUT --data 1 "$ADMIN/debug/mem-profile-rate")"
acurl -X POST -o /dev/null "$ADMIN/debug/gc"
put_n every 50
a2="$(allocs_now)"
[[ -n "$a2" && "$a2" -ge $((a1 + 50)) ]] && ok "rate 1: 50 PUTs, at least 50 samples ($a1 -> $a2)" || fail "rate 1: $a1 -> $a2"
check "sizes with units" 1 "$(acurl -X PUT --data 512KiB "$ADMIN/debug/mem-profile-rate")"
check "GET after 512KiB" 524288 "$(acurl "$ADMIN/debug/mem-profile-rate")"
check "junk: 400" 400 "$(status PUT "$ADMIN/debug/mem-profile-rate" -H "Authorization: Bearer $TOKEN" --data lots)"
check "over 1 TiB: 400" 400 "$(status PUT "$ADMIN/debug/mem-profile-rate" -H "Authorization: Bearer $TOKEN" --data 2TiB)"
check "POST: 405" 405 "$(status POST "$ADMIN/debug/mem-profile-rate" -H "Authorization: Bearer $TOKEN")"
check "without the token: 401" 401 "$(status GET "$ADMIN/debug/mem-profile-rate")"

stop_server
finish
