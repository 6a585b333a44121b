#!/usr/bin/env bash
# Scale-out behind nginx (deploy/nginx/bufcache-shards.conf, issue #8): three
# bufcache instances and Debian's nginx with the shard config on loopback.
#   1. 10,000 keys PUT through nginx land roughly a third on each instance
#      (each 20-46%, counted by Cache.Entries in /debug/memstats) and every
#      one reads back through nginx with its own bytes;
#   2. one instance is stopped (SIGTERM) while GETs run through nginx: no 5xx
#      beyond a handful in flight at that moment;
#   3. afterwards every request gets 200 or 404 (no 5xx at all), exactly the
#      keys of the surviving instances hit (about two thirds), and PUTs of
#      the lost keys store them on the survivors.
# All processes are started here and stopped by PID; loopback only.
source "$(dirname "$0")/lib.sh"
# a private copy of the binary under test: a rebuild of the shared build
# tree while this runs cannot swap it
cp "$BIN" "$TMP/bufcache" && BIN="$TMP/bufcache"
command -v nginx >/dev/null || { echo "nginx is needed (Debian's nginx-light; scripts/setup.sh)"; exit 1; }
SRC="${BUFCACHE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
SHARDS_CONF="$SRC/deploy/nginx/bufcache-shards.conf"
[[ -f "$SHARDS_CONF" ]] || { echo "missing $SHARDS_CONF"; exit 1; }
cd "$TMP"

N=10000
NI=3
PIDS=()
DATAS=()
ADMINS=()
NGINX_PID=""

stop_pid() { # stop_pid PID: SIGTERM, wait up to 10s, then SIGKILL
  local p="$1"
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
stop_all() {
  [[ -n "$NGINX_PID" ]] && { kill -QUIT "$NGINX_PID" 2>/dev/null; stop_pid "$NGINX_PID"; }
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
}
trap 'stop_all; cleanup' EXIT

# ---- three instances ----------------------------------------------------
start_instance() { # start_instance I
  local i="$1" out="$TMP/inst$1.out"
  "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --workers 1 \
    --memory-limit 256MiB --drain-timeout 3s >"$out" 2>"$TMP/inst$i.err" &
  PIDS[$i]=$!
  for _ in $(seq 1 200); do
    grep -q "(admin)" "$out" 2>/dev/null && break
    kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "instance $i exited early"; cat "$out" "$TMP/inst$i.err"; exit 1; }
    sleep 0.05
  done
  DATAS[$i]="$(grep -o 'http://[0-9.]*:[0-9]*' "$out" | sed -n 1p)"
  ADMINS[$i]="$(grep -o 'http://[0-9.]*:[0-9]*' "$out" | sed -n 2p)"
  [[ -n "${DATAS[$i]}" && -n "${ADMINS[$i]}" ]] || { echo "instance $i: no listen address"; cat "$out"; exit 1; }
}
for i in $(seq 0 $((NI - 1))); do start_instance "$i"; done
ok "started $NI instances: ${DATAS[*]}"

entries() { # entries I: Cache.Entries of instance I
  curl -sS "${ADMINS[$1]}/debug/memstats" | grep -o '"Entries":[0-9]*' | head -1 | cut -d: -f2
}

# ---- nginx with the shard config as shipped ------------------------------
# The upstream list is what a deployment writes; the shipped file is used
# unchanged except for its one listen line (a free loopback port here).
: > bufcache-upstreams.conf
for i in $(seq 0 $((NI - 1))); do
  echo "server ${DATAS[$i]#http://} max_fails=1 fail_timeout=10s;" >> bufcache-upstreams.conf
done
mkdir -p ngx_body ngx_proxy ngx_fastcgi ngx_uwsgi ngx_scgi
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_nginx() {
  local n
  n="$(grep -cE '^[[:space:]]*listen[[:space:]]+8080;' "$SHARDS_CONF")"
  [[ "$n" == 1 ]] || { fail "the shard conf has exactly one 'listen 8080;' line (has $n)"; finish; }
  for _ in $(seq 1 20); do
    NPORT=$((20000 + RANDOM % 40000))
    port_free "$NPORT" || continue
    sed -E "s/^([[:space:]]*)listen[[:space:]]+8080;/\1listen 127.0.0.1:$NPORT;/" "$SHARDS_CONF" > bufcache-shards.conf
    {
      [[ "$(id -u)" == 0 ]] && echo "user root;"
      echo "worker_processes 1;"
      echo "error_log $TMP/nginx-error.log warn;"
      echo "pid $TMP/nginx.pid;"
      echo "events { worker_connections 1024; }"
      echo "http {"
      echo "  access_log $TMP/nginx-access.log;"
      for d in client_body:ngx_body proxy:ngx_proxy fastcgi:ngx_fastcgi uwsgi:ngx_uwsgi scgi:ngx_scgi; do
        echo "  ${d%%:*}_temp_path $TMP/${d#*:};"
      done
      echo "  include $TMP/bufcache-shards.conf;"
      echo "}"
    } > nginx.conf
    if ! nginx -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" -t >nginx-t.out 2>&1; then
      fail "nginx -t accepts the shard config"; cat nginx-t.out; finish
    fi
    nginx -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" -g 'daemon off;' >nginx.out 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
      [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NPORT/healthz")" == 200 ]] && return 0
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_pid "$NGINX_PID"; NGINX_PID=""   # port taken meanwhile: another one
  done
  echo "nginx did not start"; cat nginx.out nginx-error.log 2>/dev/null; exit 1
}
start_nginx
ok "nginx -t accepts deploy/nginx/bufcache-shards.conf; nginx routes on 127.0.0.1:$NPORT"
ROUTER="http://127.0.0.1:$NPORT"

# ---- curl batches: one curl, many requests on kept-alive connections -----
# batch METHOD FIRST LAST > cfg: a curl config; each response writes
# "<body> <code> <url>\n" (PUT bodies are "v-<i>").
batch() {
  local m="$1" first="$2" last="$3" i
  for ((i = first; i <= last; i++)); do
    printf 'url = "%s/v1/buffers/shard/key-%d"\n' "$ROUTER" "$i"
    if [[ "$m" == PUT ]]; then
      printf 'request = "PUT"\ndata-binary = "v-%d"\noutput = "/dev/null"\n' "$i"
    fi
    printf 'write-out = " %%{http_code} %%{url_effective}\\n"\nnext\n'
  done
}
run_batch() { # run_batch CFG OUT: runs it, output lines "<body> <code> <url>"
  curl -sS -K "$1" > "$2" 2>"$2.err"
}
# codes OUT: "<count> <code>" per status code
codes() { awk '{print $(NF-1)}' "$1" | sort | uniq -c | sort -rn | tr '\n' ';'; }
count_code() { awk -v c="$2" '$(NF-1)==c' "$1" | wc -l; }
count_5xx() { awk '$(NF-1) ~ /^5/ || $(NF-1) == "000"' "$1" | wc -l; }

# ---- 1. writes, distribution, read-back -----------------------------------
batch PUT 1 $N > put.cfg
t0=$(date +%s.%N)
run_batch put.cfg put.out
t1=$(date +%s.%N)
check "10,000 PUTs through nginx all answer 201" "$N" "$(count_code put.out 201)"
echo "# PUTs: $(codes put.out) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"

total=0
for i in $(seq 0 $((NI - 1))); do
  E[$i]="$(entries "$i")"
  total=$((total + E[i]))
done
check "every key is stored on exactly one instance (sum of Cache.Entries)" "$N" "$total"
for i in $(seq 0 $((NI - 1))); do
  pct=$((E[i] * 100 / N))
  if ((E[i] * 100 >= 20 * N && E[i] * 100 <= 46 * N)); then
    ok "instance $i holds ${E[i]} keys (${pct}%, within 20-46%)"
  else
    fail "instance $i holds ${E[i]} keys (${pct}%), not within 20-46%"
  fi
done

batch GET 1 $N > get.cfg
run_batch get.cfg get1.out
check "every key reads back through nginx (200)" "$N" "$(count_code get1.out 200)"
bad="$(awk '{n=$NF; sub(/.*key-/, "", n); if ($1 != "v-" n) b++} END{print b+0}' get1.out)"
check "every key reads back with its own bytes" 0 "$bad"
# the same key via a different query string goes to the same instance
check "GET with a query string routes like the PUT did" 200 \
  "$(status GET "$ROUTER/v1/buffers/shard/key-77?x=1")"
check "PUT ?ttl= then GET through nginx" "201 200" \
  "$(status PUT "$ROUTER/v1/buffers/shard/ttl-key?ttl=1h" --data-binary t) $(status GET "$ROUTER/v1/buffers/shard/ttl-key")"
check "DELETE through nginx" "204 404" \
  "$(status DELETE "$ROUTER/v1/buffers/shard/ttl-key") $(status GET "$ROUTER/v1/buffers/shard/ttl-key")"

# ---- 2. stop one instance while GETs run through nginx --------------------
VICTIM=1
dead="$(entries $VICTIM)"
run_batch get.cfg during.out &
LOAD_PID=$!
sleep 0.3
t0=$(date +%s.%N)
kill -TERM "${PIDS[$VICTIM]}"
wait "${PIDS[$VICTIM]}"
rc=$?
t1=$(date +%s.%N)
check "the stopped instance drained and exited 0" 0 "$rc"
PIDS[$VICTIM]=""
wait "$LOAD_PID"
echo "# stopped instance $VICTIM (${dead} keys) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s; GETs meanwhile: $(codes during.out)"
n5="$(count_5xx during.out)"
if ((n5 <= 5)); then ok "GETs during the stop: $n5 5xx/failed (at most 5 in flight allowed)"; else fail "GETs during the stop: $n5 5xx/failed"; fi
check "GETs during the stop: every one answered" "$N" "$(wc -l < during.out)"

# ---- 3. after the stop -----------------------------------------------------
run_batch get.cfg get2.out
check "after the stop: every GET answered" "$N" "$(wc -l < get2.out)"
check "after the stop: no 5xx, every GET is 200 or 404" 0 \
  "$(awk '$(NF-1) != "200" && $(NF-1) != "404"' get2.out | wc -l)"
hits="$(count_code get2.out 200)"
check "after the stop: exactly the survivors' keys hit" "$((N - dead))" "$hits"
if ((hits * 100 >= 54 * N && hits * 100 <= 80 * N)); then
  ok "hit ratio after losing one of three: $((hits * 100 / N))% (about two thirds)"
else
  fail "hit ratio after losing one of three: $((hits * 100 / N))%, expected about two thirds"
fi
bad="$(awk '$(NF-1)=="200" {n=$NF; sub(/.*key-/, "", n); if ($1 != "v-" n) b++} END{print b+0}' get2.out)"
check "after the stop: hits carry their own bytes" 0 "$bad"

# the lost keys, written again, are stored on the survivors
awk '$(NF-1)=="404" {n=$NF; sub(/.*key-/, "", n); print n}' get2.out > lost.txt
while read -r i; do
  printf 'url = "%s/v1/buffers/shard/key-%d"\nrequest = "PUT"\ndata-binary = "v-%d"\noutput = "/dev/null"\n' "$ROUTER" "$i" "$i"
  printf 'write-out = " %%{http_code} %%{url_effective}\\n"\nnext\n'
done < lost.txt > reput.cfg
run_batch reput.cfg reput.out
check "after the stop: PUTs of the lost keys answer 201" "$(wc -l < lost.txt)" "$(count_code reput.out 201)"
run_batch get.cfg get3.out
check "after re-PUT: every key hits again" "$N" "$(count_code get3.out 200)"
survivors=0
for i in $(seq 0 $((NI - 1))); do
  [[ "$i" == "$VICTIM" ]] && continue
  survivors=$((survivors + $(entries "$i")))
done
check "after re-PUT: the survivors hold all keys" "$N" "$survivors"
finish
