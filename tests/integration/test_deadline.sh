#!/usr/bin/env bash
# Request deadlines (issue 5): stalled uploads get 408 or a closed connection
# within the deadline + 100 ms, their memory is reclaimed, the counters see
# them, other clients are served meanwhile; X-Request-Timeout override, cap
# and bad values; slow readers; clients that vanish mid-upload/download.
exec python3 "$(dirname "$0")/py/test_deadline.py"
