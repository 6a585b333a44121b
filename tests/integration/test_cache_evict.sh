#!/usr/bin/env bash
# Issue #4: with --memory-limit 64MiB, writing 500 MiB of 4 KiB values
# succeeds (all 201), RSS stays <= 1.05 x the limit during and after, and
# the cache evicts (Evictions.memory > 0).
exec python3 "$(dirname "$0")/py/test_cache_evict.py"
