"""cachelib.py - helpers for the test_cache_* integration tests (issue #4):
a keep-alive HTTP client, RSS of the server by PID, memstats shortcuts.
Builds on bctest.Server (free loopback ports, stopped by PID)."""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bctest  # noqa: E402
from bctest import Server, check, finish, ok, fail  # noqa: E402,F401


class Client:
    """One keep-alive connection to the data listener. request() returns
    (status, body bytes, headers as a dict with lower-case names; a name
    sent twice has its values joined by ', ')."""

    def __init__(self, srv, admin=False, timeout=30):
        self.port = srv.admin_port if admin else srv.port
        self.timeout = timeout
        self.c = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port,
                                                    timeout=self.timeout)
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                hdrs = {}
                for k, v in r.getheaders():
                    k = k.lower()
                    hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
                if r.will_close:
                    self.close()
                return r.status, data, hdrs
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cache_stats(srv):
    return srv.memstats()["Cache"]


def jget(c, path):
    st, body, _ = c.request("GET", path)
    return st, (json.loads(body) if body else None)
