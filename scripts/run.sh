#!/usr/bin/env bash
# Quick start 1: set up, build (Release) and run the server on its defaults
# (data API on 127.0.0.1:8080, admin on 127.0.0.1:6060), in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec ./build/bufcache "$@"
