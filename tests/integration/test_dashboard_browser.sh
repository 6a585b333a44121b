#!/usr/bin/env bash
# The dashboard in a browser (issue 10): headless Chromium (Debian's
# /usr/bin/chromium, driven by playwright-core from tests/browser) opens
# GET /debug/dashboard against a live server under load, with an admin
# token: a wrong token gets a clear error, the right one typed into the page
# brings ten samples, the charts hold points, "Run GC" raises NumGC, and a
# screenshot goes to the build folder ($BUFCACHE_BUILD/dashboard.png).
# Installs tests/browser's pinned packages (npm ci) when they are missing.
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
BROWSER_DIR="$SRC/tests/browser"
OUT="${BUFCACHE_BUILD:-$PWD}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

[[ -x "$CHROMIUM" ]] || { echo "FAIL - no $CHROMIUM: scripts/setup.sh installs Debian's chromium"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "FAIL - node and npm are needed (scripts/setup.sh)"; exit 1; }
if [[ ! -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ]]; then
  echo "# installing tests/browser (npm ci)"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "FAIL - npm ci in tests/browser"; exit 1; }
fi

TOKEN="dash-$RANDOM$RANDOM-token"
BUFCACHE_ADMIN_TOKEN="$TOKEN" start_server --workers 2 --memory-limit 64MiB --access-log=false

# load: PUTs of several sizes (so several size classes allocate, some past
# 64 KiB: large objects) over 3000 keys (more than fit: evictions), GETs
# that hit and miss; curl's URL globbing keeps one connection per batch.
# Bounded: at most 150 rounds or 120 s, and stopped by PID below.
head -c 120 /dev/urandom > "$TMP/v120"
head -c 1500 /dev/urandom > "$TMP/v1500"
head -c 9000 /dev/urandom > "$TMP/v9000"
head -c 90000 /dev/urandom > "$TMP/v90000"
load() {
  local end=$((SECONDS + 120)) r=0
  while ((SECONDS < end && r < 150)); do
    for v in v120 v1500 v9000 v90000; do
      local from=$(((r * 97 + ${#v} * 13) % 2500))
      curl -s -o /dev/null -X PUT --data-binary "@$TMP/$v" "$DATA/v1/buffers/dash-$v-[$from-$((from + 60))]"
    done
    curl -s -o /dev/null "$DATA/v1/buffers/dash-v1500-[$((r % 2500))-$((r % 2500 + 300))]"
    r=$((r + 1))
    sleep 0.2
  done
}
load &
LOAD_PID=$!

ADMIN="$ADMIN" TOKEN="$TOKEN" OUT="$OUT" CHROMIUM="$CHROMIUM" \
  timeout 240 node "$BROWSER_DIR/dashboard.test.mjs"
rc=$?
kill "$LOAD_PID" 2>/dev/null
wait "$LOAD_PID" 2>/dev/null
check "the browser test passed" 0 "$rc"
[[ -f "$OUT/dashboard.png" ]] && ok "screenshot at $OUT/dashboard.png" || fail "no screenshot in $OUT"
stop_server
finish
