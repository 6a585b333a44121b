"""test_dashboard_sse.py - GET /debug/dashboard/events (issue 10): the
Server-Sent Events stream behind the dashboard.

  - the admin token: 401 JSON without it, accepted as Bearer or ?token=
    (percent-encoded), the page itself answers 401 with the page
  - well-formed events: retry hint, an init event, then one JSON sample a
    second with the fields the page draws, ids "<boot>-<seq>" in order
  - a stream outlives the request deadline (--request-timeout 5s) and keeps
    going for 30 s; idle streams cost the server no CPU
  - at most --max-dashboard-streams at once: the next gets 503 JSON
  - a client that leaves ends its stream: counted "client gone", the slot is
    free again; Last-Event-ID replays only what was missed
  - SIGTERM ends open streams with a "bye" event and the server exits 0
"""
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse

import bctest
from bctest import Server, finish


def check(name, cond, detail=""):
    bctest.check(name, bool(cond), detail if isinstance(detail, str) else repr(detail))


TOKEN = "dash-Token_42+/=~%"  # needs percent-encoding in a URL
os.environ["BUFCACHE_ADMIN_TOKEN"] = TOKEN
MAX = 3
srv = Server("--workers", "2", "--request-timeout", "5s", "--access-log=false",
             "--max-dashboard-streams", str(MAX))
del os.environ["BUFCACHE_ADMIN_TOKEN"]
AUTH = {"Authorization": "Bearer " + TOKEN}
QTOKEN = "?token=" + urllib.parse.quote(TOKEN, safe="")


def admin(method, path, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", srv.admin_port, timeout=timeout)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def memstats():
    return json.loads(admin("GET", "/debug/memstats", AUTH)[2])


def process_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stream:
    """One event stream on a raw socket: the head, then the chunked body
    decoded as it arrives, cut into events at blank lines."""

    def __init__(self, query="", headers=None):
        self.sock = socket.create_connection(("127.0.0.1", srv.admin_port), timeout=10)
        req = "GET /debug/dashboard/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % query
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self.raw = b""
        while b"\r\n\r\n" not in self.raw:
            d = self.sock.recv(65536)
            if not d:
                break
            self.raw += d
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
        self.text = ""
        self.ended = False

    def _dechunk(self):
        """Moves whole chunks from raw to text; True at the last chunk."""
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return False
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return True
            if len(rest) < size + 2:
                return False
            self.text += rest[:size].decode()
            self.raw = rest[size + 2:]

    def events(self, seconds):
        """Yields (received_at, fields) for each event within seconds."""
        end = time.time() + seconds
        self.sock.settimeout(0.2)
        while time.time() < end and not self.ended:
            self.ended = self._dechunk()
            while "\n\n" in self.text:
                block, self.text = self.text.split("\n\n", 1)
                fields = {}
                for line in block.split("\n"):
                    k, _, v = line.partition(":")
                    fields[k] = v[1:] if v.startswith(" ") else v
                yield time.time(), fields
            if self.ended:
                return
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            self.raw += d

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


try:
    # ---- the token -------------------------------------------------------
    st, h, body = admin("GET", "/debug/dashboard/events")
    check("events without a token: 401", st == 401, st)
    check("... as JSON", json.loads(body)["error"]["code"] == "unauthorized", body)
    st, _, _ = admin("GET", "/debug/dashboard/events?token=wrong")
    check("events with a wrong ?token=: 401", st == 401, st)
    st, _, _ = admin("GET", "/debug/dashboard/events?token=" + urllib.parse.quote(TOKEN[:-1], safe=""))
    check("events with a prefix of the token: 401", st == 401, st)
    st, _, _ = admin("GET", "/debug/dashboard/info" + QTOKEN)
    check("/debug/dashboard/info does not take ?token= (fetch sends headers)", st == 401, st)
    st, _, _ = admin("GET", "/debug/memstats" + QTOKEN)
    check("other routes do not take ?token=", st == 401, st)
    st, h, body = admin("GET", "/debug/dashboard")
    check("the page without a token: 401", st == 401, st)
    check("... with the page itself, which asks for the token",
          h.get("Content-Type", "").startswith("text/html") and b"bufcacheDashboard" in body, h)
    check("... and WWW-Authenticate", h.get("WWW-Authenticate", "").startswith("Bearer"), h)
    st, h, body = admin("GET", "/debug/dashboard" + QTOKEN)
    check("the page with ?token=: 200", st == 200, st)
    check("the page forbids other origins (CSP)",
          "default-src 'none'" in h.get("Content-Security-Policy", "") and
          "connect-src 'self'" in h.get("Content-Security-Policy", ""), h)
    check("the page loads nothing from elsewhere", b"src=\"http" not in body and b"href=\"http" not in body)
    st, _, info = admin("GET", "/debug/dashboard/info", AUTH)
    info = json.loads(info)
    check("info with Bearer: 200 and the static figures", st == 200 and
          len(info["classes"]) > 60 and info["max_streams"] == MAX and
          len(info["pause_bounds_ns"]) == 16 and info["token_required"] is True, info)
    st, h, _ = admin("HEAD", "/debug/dashboard/events", AUTH)
    check("HEAD on the events route: 405", st == 405, (st, h))
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    c.request("GET", "/debug/dashboard")
    check("the data listener has no dashboard: 404", c.getresponse().status == 404)
    c.close()

    # some traffic, so the request figures are not empty
    for i in range(40):
        srv.request("PUT", "/v1/buffers/sse-%d" % i, b"x" * (100 * i + 1))
        srv.request("GET", "/v1/buffers/sse-%d" % (i // 2))

    # ---- three streams, the fourth refused ---------------------------------
    a = Stream(QTOKEN)
    b = Stream(headers=AUTH)
    c3 = Stream(QTOKEN)
    check("a stream with ?token=: 200", a.status == 200, a.status)
    check("a stream with Bearer: 200", b.status == 200, b.status)
    check("the stream is text/event-stream",
          a.headers.get("Content-Type", "").startswith("text/event-stream"), a.headers)
    check("... chunked, not cached", a.headers.get("Transfer-Encoding") == "chunked" and
          a.headers.get("Cache-Control") == "no-store", a.headers)
    st, h, body = admin("GET", "/debug/dashboard/events", AUTH)
    check("stream %d of --max-dashboard-streams %d: 503" % (MAX + 1, MAX), st == 503, st)
    check("... JSON too_many_streams with Retry-After",
          json.loads(body)["error"]["code"] == "too_many_streams" and "Retry-After" in h, (h, body))

    # ---- 30 s of events on one stream; CPU of the idle ones ----------------
    pid = srv.proc.pid
    events = []
    cpu0 = None
    t_start = time.time()
    for at, f in a.events(31):
        events.append((at, f))
        if cpu0 is None and at - t_start > 5:
            cpu0, cpu_t0 = process_cpu_s(pid), time.time()
    cpu_used = process_cpu_s(pid) - cpu0
    cpu_span = time.time() - cpu_t0
    t_end = time.time()
    check("the stream stayed open for 30 s (past the 5 s request deadline)",
          t_end - t_start >= 30, t_end - t_start)
    check("first a retry hint", events and events[0][1].get("retry") == "2000", events[:1])
    init = [f for _, f in events if f.get("event") == "init"]
    check("then an init event with the static figures",
          len(init) == 1 and json.loads(init[0]["data"])["classes"] == info["classes"], init[:1])
    boot = json.loads(init[0]["data"])["boot"] if init else ""
    samples = [(at, f) for at, f in events if "id" in f and "event" not in f]
    check("about one sample a second for 30 s (%d)" % len(samples), 28 <= len(samples) <= 33, len(samples))
    good = True
    detail = None
    prev = None
    for at, f in samples:
        try:
            s = json.loads(f["data"])
            ok = (f["id"] == "%s-%d" % (boot, s["seq"]) and
                  (prev is None or s["seq"] == prev["seq"] + 1) and
                  all(k in s["heap"] for k in ("inuse", "idle", "released", "goal", "limit", "objects")) and
                  all(k in s["gc"] for k in ("num", "pauses", "hist", "cpu_fraction")) and
                  len(s["alloc"]["classes"]) == len(info["classes"]) and
                  all(k in s["cache"] for k in ("entries", "hit_ratio", "evictions")) and
                  all(k in s["req"] for k in ("rps", "p50_us", "p99_us", "inflight", "canceled")) and
                  s["admin"]["streams"] == MAX and 0.8 < s["dt"] < 1.3 and
                  (prev is None or 700 <= s["t"] - prev["t"] <= 1300))
        except (ValueError, KeyError, TypeError) as e:
            ok, detail = False, repr(e)
        if not ok:
            good, detail = False, detail or f
            break
        prev = s
    check("every sample is well-formed JSON with the page's fields, in order", good, detail)
    gaps = [b2[0] - b1[0] for b1, b2 in zip(samples, samples[1:])]
    check("the samples arrive about a second apart (max gap %.2f s)" % max(gaps or [0]),
          gaps and max(gaps) < 1.6 and min(gaps) > 0.4, gaps)
    first = json.loads(samples[0][1]["data"]) if samples else {}
    check("the request figures saw the traffic",
          any(json.loads(f["data"])["cache"]["entries"] >= 40 for _, f in samples), first.get("cache"))
    pct = 100 * cpu_used / cpu_span
    check("%d idle streams: the server used %.2f%% of a core" % (MAX, pct), pct < 2.0, cpu_used)

    # ---- clients that leave --------------------------------------------------
    gone0 = memstats()["Requests"]["Canceled"]["client_gone"]
    a.close()
    b.close()
    c3.close()
    deadline = time.time() + 5
    gone = gone0
    while time.time() < deadline:
        gone = memstats()["Requests"]["Canceled"]["client_gone"]
        streams = json.loads(admin("GET", "/debug/dashboard/info", AUTH)[2])["streams"]
        if gone >= gone0 + 3 and streams == 0:
            break
        time.sleep(0.2)
    check("three clients left: client_gone +3 (%d -> %d)" % (gone0, gone), gone == gone0 + 3)
    check("... and their streams ended (info.streams 0)", streams == 0, streams)

    # ---- reconnecting: Last-Event-ID -----------------------------------------
    last = json.loads(samples[-1][1]["data"])["seq"] if samples else 0
    r = Stream(headers=dict(AUTH, **{"Last-Event-ID": "%s-%d" % (boot, last)}))
    seqs = [json.loads(f["data"])["seq"] for _, f in r.events(1.5) if "id" in f]
    r.close()
    check("Last-Event-ID: the replay starts after it", seqs and seqs[0] == last + 1, (last, seqs[:5]))
    r = Stream(headers=dict(AUTH, **{"Last-Event-ID": "00000000-5"}))
    seqs = [json.loads(f["data"])["seq"] for _, f in r.events(1.5) if "id" in f]
    r.close()
    check("another process's Last-Event-ID: the whole history (%d samples)" % len(seqs),
          len(seqs) >= 30 and seqs == sorted(seqs), seqs[:3])

    # ---- shutdown ends open streams -------------------------------------------
    d = Stream(QTOKEN)
    got = []

    def reader():
        for _, f in d.events(40):
            got.append(f)

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(1.5)
    t0 = time.time()
    rc = srv.stop()
    th.join(15)
    check("SIGTERM with a stream open: the server exits 0 at once (%.1f s)" % (time.time() - t0),
          rc == 0 and time.time() - t0 < 5, rc)
    check("... the stream gets a bye event and ends",
          not th.is_alive() and any(f.get("event") == "bye" for f in got), got[-2:])
finally:
    srv.stop()
finish()
