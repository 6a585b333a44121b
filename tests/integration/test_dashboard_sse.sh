#!/usr/bin/env bash
# The dashboard's event stream (issue 10): GET /debug/dashboard/events is
# well-formed Server-Sent Events, one sample a second for 30 s past the
# request deadline, costs no CPU while idle, is limited to
# --max-dashboard-streams, ends cleanly when the client leaves ("client
# gone") and on SIGTERM; the token guard takes ?token= there. See
# py/test_dashboard_sse.py.
exec python3 "$(dirname "$0")/py/test_dashboard_sse.py"
