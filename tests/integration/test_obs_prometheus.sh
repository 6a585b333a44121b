#!/usr/bin/env bash
# A real Prometheus server (Debian's prometheus) scrapes bufcache on
# loopback, the data port without credentials and the admin port with the
# bearer token, and its HTTP query API returns the heap-in-use series.
source "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null || { echo "prometheus is needed (Debian's prometheus; scripts/setup.sh)"; exit 1; }
command -v jq >/dev/null || { echo "jq is needed"; exit 1; }
cd "$TMP"
PROM_PID=""
stop_prom() {
  if [[ -n "$PROM_PID" ]]; then
    kill -TERM "$PROM_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PROM_PID" 2>/dev/null
    wait "$PROM_PID" 2>/dev/null
    PROM_PID=""
  fi
}
trap 'stop_prom; cleanup' EXIT

TOKEN="prom-$RANDOM$RANDOM$RANDOM"
printf '%s\n' "$TOKEN" > token.txt
start_server --workers 2 --admin-token-file "$TMP/token.txt"
curl -sS -X PUT --data-binary @/dev/null -o /dev/null "$DATA/v1/buffers/seed"
head -c 100000 /dev/urandom > v100k
for i in $(seq 1 20); do
  curl -sS -X PUT --data-binary @v100k -o /dev/null "$DATA/v1/buffers/k$i"
done

# a free loopback port: one nobody answers on (Prometheus exits if it is taken)
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_prom() {
  for _ in $(seq 1 20); do
    PORT=$((20000 + RANDOM % 40000))
    port_free "$PORT" || continue
    prometheus --config.file="$TMP/prometheus.yml" \
      --web.listen-address="127.0.0.1:$PORT" \
      --storage.tsdb.path="$TMP/tsdb" --storage.tsdb.retention.time=1h \
      --log.level=warn > prom.out 2>&1 &
    PROM_PID=$!
    for _ in $(seq 1 150); do
      [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" == 200 ]] && return 0
      kill -0 "$PROM_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_prom
  done
  return 1
}

cat > prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bufcache-data
    static_configs:
      - targets: ['${DATA#http://}']
  - job_name: bufcache-admin
    authorization:
      type: Bearer
      credentials_file: $TMP/token.txt
    static_configs:
      - targets: ['${ADMIN#http://}']
EOF
promtool check config prometheus.yml > check.out 2>&1 && ok "promtool accepts the scrape config" \
  || fail "scrape config: $(cat check.out)"

if ! start_prom; then
  fail "prometheus did not start: $(tail -5 prom.out)"
  finish
fi
ok "prometheus ready on 127.0.0.1:$PORT"

# q QUERY: the API's answer (JSON)
q() { curl -sS -G "http://127.0.0.1:$PORT/api/v1/query" --data-urlencode "query=$1"; }

# wait (bounded) until both targets have been scraped
got=""
for _ in $(seq 1 200); do
  got="$(q 'go_memstats_heap_inuse_bytes' | jq -r '[.data.result[].metric.job] | sort | join(",")' 2>/dev/null)"
  [[ "$got" == "bufcache-admin,bufcache-data" ]] && break
  sleep 0.1
done
check "the query API returns heap-in-use from both listeners" "bufcache-admin,bufcache-data" "$got"
q 'go_memstats_heap_inuse_bytes{job="bufcache-data"}' > heap.json
check "query status" success "$(jq -r .status heap.json)"
heap="$(jq -r '.data.result[0].value[1]' heap.json)"
live="$(curl -sS -H "Authorization: Bearer $TOKEN" "$ADMIN/debug/memstats" | jq .HeapInuse)"
check "heap in use holds the 2 MB stored" true \
  "$(awk -v h="$heap" 'BEGIN{print (h >= 2000000) ? "true" : "false"}')"
check "Prometheus's heap in use is /debug/memstats's" "$live" "$heap"
check "both targets are up" "1,1" "$(q 'up{job=~"bufcache-.*"}' | jq -r '[.data.result[].value[1]] | join(",")')"
check "no scrape samples were rejected" "0" \
  "$(q 'sum(scrape_samples_post_metric_relabeling) - sum(scrape_samples_scraped)' | jq -r '.data.result[0].value[1]')"
n="$(q 'bufcache_http_requests_total{job="bufcache-data",route="/v1/buffers/{key}",method="PUT",code="201"}' | jq -r '.data.result[0].value[1]')"
check "request counters by route, method and status" 21 "$n"
# a scrape's own request is counted once it ends: it shows from the next one
seen=false
for _ in $(seq 1 50); do
  seen="$(q 'bufcache_http_requests_total{job="bufcache-admin",route="/metrics",code="200"}' | jq '.data.result | length > 0')"
  [[ "$seen" == true ]] && break
  sleep 0.1
done
check "Prometheus's scrapes of /metrics show in the admin's counts" true "$seen"
check "the histogram_quantile of GET latency is computable" success \
  "$(q 'histogram_quantile(0.99, sum by (le) (rate(bufcache_http_request_duration_seconds_bucket[5s])))' | jq -r .status)"
check "process_resident_memory_bytes is scraped" true \
  "$(q 'process_resident_memory_bytes{job="bufcache-data"}' | jq '(.data.result[0].value[1] | tonumber) > 0')"

# without the token the admin target fails (401), and Prometheus says so
cat > prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: bufcache-admin-notoken
    static_configs:
      - targets: ['${ADMIN#http://}']
EOF
kill -HUP "$PROM_PID"
health=""
for _ in $(seq 1 100); do
  health="$(curl -sS "http://127.0.0.1:$PORT/api/v1/targets" | jq -r '.data.activeTargets[] | select(.labels.job=="bufcache-admin-notoken") | .health + " " + .lastError' 2>/dev/null)"
  [[ "$health" == down* ]] && break
  sleep 0.1
done
[[ "$health" == *401* ]] && ok "a scrape of the admin port without the token is refused (401)" \
  || fail "admin target without token: [$health]"
stop_prom
ok "prometheus stopped"
finish
