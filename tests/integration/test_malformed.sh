#!/usr/bin/env bash
# Malformed and hostile HTTP (issue 9): >= 100 raw requests - framing
# conflicts with a smuggled request, bad lengths and chunk sizes, header and
# request-line limits (431, 414), NUL and control bytes, target forms, `..`
# and %2F in keys, HTTP/0.9 and HTTP/2 prefaces, pipelined garbage - each
# answered 4xx or closed, bounded, no key created, sentinels intact.
exec python3 "$(dirname "$0")/py/test_malformed.py"
