#!/usr/bin/env bash
# api/openapi.yaml against the running server, both ways: every route in
# api/api_internal.h's API_ROUTES is documented with the methods and
# listeners the server really has, and every documented operation answers a
# documented status, content type and body (py/test_openapi_drift.py).
exec python3 "$(dirname "$0")/py/test_openapi_drift.py"
