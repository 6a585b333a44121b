#!/usr/bin/env bash
# Installs what bufcache needs on Debian 12 (as root; skips what is present)
# and configures + builds it with CMake.
#   scripts/setup.sh [build-dir] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config
      libmicrohttpd-dev libuv1-dev libjansson-dev
      libcurl4-openssl-dev libcmocka-dev curl
      clang libclang-rt-14-dev)
# peers and tools used by the tests and benchmarks
PKGS+=(nginx-light wrk procps prometheus jq memcached redis-server redis-tools dwarves)
PKGS+=(python3-yaml)  # deploy/ manifest checks (tests/integration/test_deploy_manifests.sh)
# the dashboard's browser test (tests/browser) and the OpenAPI lint
# (tools/redocly): Debian's Chromium, and Node.js with npm unless the machine
# has them (a NodeSource nodejs conflicts with npm)
PKGS+=(chromium); command -v npm >/dev/null || PKGS+=(nodejs npm)
# /debug/pprof: stacks, symbols, gzip; Go's own pprof tool for the tests
# (tests/integration/test_pprof*.sh)
PKGS+=(libunwind-dev libdw-dev zlib1g-dev golang-go)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD="${1:-build}"
shift || true
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
