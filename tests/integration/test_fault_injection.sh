#!/usr/bin/env bash
# Fault injection (issue 9): bufcache-fault's POST /debug/fault makes heap
# page commits and libc allocations fail; requests get 503/507 JSON or a
# closed connection, stored values survive byte for byte, the server
# recovers and exits 0. bufcache itself has no /debug/fault.
exec python3 "$(dirname "$0")/py/test_fault_injection.py"
