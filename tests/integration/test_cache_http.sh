#!/usr/bin/env bash
# Issue #4: conditional requests (304, 412, If-None-Match: * create-only,
# If-Match compare-and-swap, also under racing writers), Range (206, 416,
# several ranges, If-Range, Accept-Ranges) and TTL headers (Cache-Control,
# Expires) against the real binary.
exec python3 "$(dirname "$0")/py/test_cache_http.py"
