#!/usr/bin/env bash
# Structured logs, access log, request IDs (issue 11).
exec python3 "$(dirname "$0")/py/test_logs.py"
