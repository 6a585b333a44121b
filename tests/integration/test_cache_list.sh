#!/usr/bin/env bash
# Issue #4: listing (fields, limits, cursors, non-UTF-8 keys, pagination
# under concurrent inserts without duplicates) and namespace deletion
# (DELETE /v1/buffers?prefix=, ?all=true, 400 without a prefix).
exec python3 "$(dirname "$0")/py/test_cache_list.py"
