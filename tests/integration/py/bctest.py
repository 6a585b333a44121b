"""bctest.py - helpers for the Python integration tests: start bufcache on
free loopback ports, stop it by PID, small HTTP helpers over raw sockets."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("BUFCACHE_BIN")
PASS = 0
FAIL = 0


def ok(msg):
    global PASS
    PASS += 1
    print("ok   - " + msg, flush=True)


def fail(msg):
    global FAIL
    FAIL += 1
    print("FAIL - " + msg, flush=True)


def check(name, cond, detail=""):
    (ok if cond else fail)(name + ("" if cond else ": " + detail))


def finish():
    print("%d passed, %d failed" % (PASS, FAIL), flush=True)
    sys.exit(0 if FAIL == 0 else 1)


class Server:
    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="bufcache-py.")
        self.out = open(os.path.join(self.dir, "out"), "w+")
        self.err = open(os.path.join(self.dir, "err"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"] + list(flags),
            stdout=self.out, stderr=self.err)
        deadline = time.time() + 10
        text = ""
        while time.time() < deadline:
            self.out.seek(0)
            text = self.out.read()
            if "(admin)" in text:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + text)
            time.sleep(0.05)
        addrs = re.findall(r"http://127\.0\.0\.1:(\d+)", text)
        self.port, self.admin_port = int(addrs[0]), int(addrs[1])

    def url(self, path, admin=False):
        return "http://127.0.0.1:%d%s" % (self.admin_port if admin else self.port, path)

    def memstats(self):
        with urllib.request.urlopen(self.url("/debug/memstats", True), timeout=10) as r:
            return json.load(r)

    def gc(self):
        req = urllib.request.Request(self.url("/debug/gc", True), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def request(self, method, path, body=None, headers=None, timeout=10):
        req = urllib.request.Request(self.url(path), data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def stop(self):
        """SIGTERM (a clean drain, so LeakSanitizer runs in sanitizer
        builds), bounded wait, SIGKILL. Returns the exit code; the first call
        counts a non-zero code (a leak, a crash, a hung drain) as a failure."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not getattr(self, "_exit_checked", False):
            self._exit_checked = True
            check("server exit code %s after SIGTERM is 0" % self.proc.returncode,
                  self.proc.returncode == 0, self.stderr_text()[-2000:])
        return self.proc.returncode

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_close(s, limit_s):
    """Reads until EOF/reset or limit_s; returns (bytes, closed, seconds)."""
    t0 = time.time()
    data = b""
    s.settimeout(0.05)
    while time.time() - t0 < limit_s:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, True, time.time() - t0
        if not d:
            return data, True, time.time() - t0
        data += d
    return data, False, time.time() - t0
