#!/usr/bin/env bash
# Issue #4: TTL with short durations (max-age and Expires, 404 once
# expired, reaped by a cycle with no GET: Cache.Expired grows and the heap
# shrinks) and --default-ttl, against the real binary.
exec python3 "$(dirname "$0")/py/test_cache_ttl.py"
