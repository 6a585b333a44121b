#!/usr/bin/env bash
# Security defaults (issue 9): loopback-only listeners by default, debug
# endpoints on the admin listener only, and the limits with their flags
# (connections per client address, key, value, header and request-line
# size, request timeout).
exec python3 "$(dirname "$0")/py/test_security_defaults.py"
