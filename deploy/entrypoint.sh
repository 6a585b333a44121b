#!/bin/bash
# entrypoint.sh - the container's entrypoint (deploy/Dockerfile).
#
#   entrypoint.sh [bufcache flags...]  replaces itself with bufcache (exec):
#       the server is the container's main process, PID 1, so the SIGTERM of
#       `docker stop` or of the kubelet reaches it and starts its drain (it
#       handles SIGTERM/SIGINT itself and starts no children, so no init is
#       needed; `docker run --init` adds one if wanted).
#   entrypoint.sh healthcheck          GET /healthz on the data listener
#       (BUFCACHE_LISTEN): exit 0 on 200. For HEALTHCHECK: the slim image
#       has no curl, so this is bash's /dev/tcp.
#   entrypoint.sh COMMAND [ARGS...]    runs COMMAND (e.g. `bash`) instead.
#
# Configuration is by environment (BUFCACHE_*; `bufcache --help` lists them):
# the image sets BUFCACHE_LISTEN=0.0.0.0:8080 and
# BUFCACHE_ADMIN_LISTEN=0.0.0.0:6060. Leave --memory-limit unset and the
# server takes 75% of the container's memory limit.
set -euo pipefail

healthcheck() {
  local addr="${BUFCACHE_LISTEN:-127.0.0.1:8080}" host port line
  port="${addr##*:}"
  host="${addr%:*}"
  case "$host" in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    "[::]") host=::1 ;;
    \[*\]) host="${host:1:${#host}-2}" ;;
  esac
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
  IFS= read -r -t 5 line <&3 || return 1
  exec 3<&-
  [[ "$line" =~ ^HTTP/1\.[01]\ 200 ]]
}

case "${1:-}" in
  healthcheck)
    healthcheck 2>/dev/null
    exit $?
    ;;
  "" | -*)
    exec bufcache "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
