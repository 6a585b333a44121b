"""Security defaults and limits (issue 9).

- Both listeners bind to loopback by default: the binary is started with no
  address flags inside a private network namespace (unshare -n: the default
  ports are free there) and its listening sockets are read with ss.
- Debug endpoints exist on the admin listener only; buffers on the data
  listener only.
- The limits and their flags: --max-connections-per-ip (a connection over
  the limit is closed at once, the others keep working), key length (512),
  --max-value-size (413), --max-header-size (431) and the request line
  (414), --request-timeout (408).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import bctest  # noqa: E402
from bctest import Server, check, connect, finish, ok, read_until_close  # noqa: E402

SANITIZED = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ


def status(port, req, limit=10.0):
    s = connect(port)
    s.sendall(req)
    data, _, _ = read_until_close(s, limit)
    s.close()
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def req(method, path, headers=b"", body=b""):
    cl = b"Content-Length: %d\r\n" % len(body) if method == b"PUT" else b""
    return (method + b" " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            + cl + headers + b"\r\n" + body)


def default_binding():
    helptext = subprocess.run([bctest.BIN, "--help"], capture_output=True, text=True).stdout
    check("--help: data listener defaults to 127.0.0.1:8080",
          "default 127.0.0.1:8080" in helptext, helptext[:300])
    check("--help: admin listener defaults to 127.0.0.1:6060",
          "default 127.0.0.1:6060" in helptext)
    if not (shutil.which("unshare") and shutil.which("ip") and shutil.which("ss")):
        ok("default binding in a namespace: skipped (no unshare/ip/ss)")
        return
    script = r'''
ip link set lo up || exit 77
"$BIN" --access-log=false --workers 1 >"$OUT" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "(admin)" "$OUT" 2>/dev/null && break; sleep 0.05; done
ss -Hltn
kill -TERM $pid
wait $pid
echo "exit=$?"
'''
    out = os.path.join(tempfile.mkdtemp(prefix="bufcache-ns."), "out")
    env = dict(os.environ, BIN=bctest.BIN, OUT=out)
    try:
        r = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True,
                           text=True, env=env, timeout=60)
    finally:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    if r.returncode != 0 and "exit=" not in r.stdout:
        ok("default binding in a namespace: skipped (unshare -n: %s)" % r.stderr.strip()[:80])
        return
    listens = [ln.split()[3] for ln in r.stdout.splitlines() if ln.startswith("LISTEN")]
    check("default: data listener on 127.0.0.1:8080 only (%s)" % listens,
          "127.0.0.1:8080" in listens)
    check("default: admin listener on 127.0.0.1:6060 only",
          "127.0.0.1:6060" in listens)
    check("default: nothing listens on a wildcard or another address",
          all(a.startswith("127.0.0.1:") for a in listens), str(listens))
    check("default: exits 0 on SIGTERM", "exit=0" in r.stdout, r.stdout[-200:])


def listeners():
    srv = Server("--workers", "1")
    try:
        for m, p in [(b"GET", b"/debug/memstats"), (b"GET", b"/debug/vars"), (b"POST", b"/debug/gc"),
                     (b"POST", b"/debug/freeosmemory"), (b"PUT", b"/debug/memory-limit"),
                     (b"PUT", b"/debug/gc-percent"), (b"PUT", b"/debug/mem-profile-rate"),
                     (b"GET", b"/debug/pprof/heap"),
                     (b"GET", b"/debug/pprof/"), (b"GET", b"/debug/dashboard"),
                     (b"POST", b"/debug/fault")]:
            st = status(srv.port, req(m, p))
            check("data listener: %s %s -> 404" % (m.decode(), p.decode()), st == 404, str(st))
        st = status(srv.admin_port, req(b"GET", b"/debug/memstats"))
        check("admin listener: GET /debug/memstats -> 200", st == 200, str(st))
        st = status(srv.admin_port, req(b"PUT", b"/v1/buffers/x", body=b"v"))
        check("admin listener: no buffers (PUT -> 404)", st == 404, str(st))
    finally:
        srv.stop()


def limits():
    # one worker: MHD counts connections per daemon, and each worker takes
    # its share of the limit, so with one the count is exact
    srv = Server("--workers", "1", "--max-connections-per-ip", "4", "--max-value-size", "64KiB",
                 "--max-header-size", "8KiB", "--request-timeout", "1s")
    try:
        # per client address: hold 4, then try more
        held = []
        for _ in range(4):
            s = connect(srv.port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            held.append(s)
        time.sleep(0.2)
        refused = 0
        for _ in range(4):
            s = connect(srv.port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data, closed, _ = read_until_close(s, 2.0)
            refused += closed and not data
            s.close()
        check("--max-connections-per-ip 4: connections over it are closed unanswered (%d of 4)"
              % refused, refused == 4)
        alive = 0
        for s in held:
            data, _, _ = read_until_close(s, 0.3)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data2, _, _ = read_until_close(s, 0.3)
            alive += (data + data2).count(b"HTTP/1.1 200") == 2
            s.close()
        check("... while the 4 held connections keep working (%d)" % alive, alive == 4)
        time.sleep(0.2)
        st = status(srv.port, req(b"GET", b"/healthz"))
        check("... and once they close, a new one is served", st == 200, str(st))
        # keys: 1..512 bytes
        st = status(srv.port, req(b"PUT", b"/v1/buffers/" + b"k" * 512, body=b"v"))
        check("a key of 512 bytes is stored", st == 201, str(st))
        st = status(srv.port, req(b"PUT", b"/v1/buffers/" + b"k" * 513, body=b"v"))
        check("a key of 513 bytes is refused (400)", st == 400, str(st))
        # values: --max-value-size
        st = status(srv.port, req(b"PUT", b"/v1/buffers/v64k", body=b"x" * 65536))
        check("--max-value-size 64KiB: 64 KiB is stored", st == 201, str(st))
        st = status(srv.port, req(b"PUT", b"/v1/buffers/v64k1", body=b"x" * 65537))
        check("--max-value-size 64KiB: 64 KiB + 1 gets 413", st == 413, str(st))
        # the head: --max-header-size covers the request line and the headers
        st = status(srv.port, req(b"GET", b"/healthz", headers=b"X-Big: " + b"a" * 9000 + b"\r\n"))
        check("--max-header-size 8KiB: a 9 KB header gets 431", st == 431, str(st))
        st = status(srv.port, req(b"GET", b"/v1/buffers/" + b"a" * 9000))
        check("--max-header-size 8KiB: a 9 KB request line gets 414", st == 414, str(st))
        st = status(srv.port, req(b"GET", b"/healthz", headers=b"X-Ok: " + b"a" * 6000 + b"\r\n"))
        check("--max-header-size 8KiB: a 6 KB header is fine", st == 200, str(st))
        # --request-timeout: an upload that stalls gets 408
        s = connect(srv.port)
        t0 = time.time()
        s.sendall(b"PUT /v1/buffers/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        data, closed, _ = read_until_close(s, 10)
        s.close()
        secs = time.time() - t0
        check("--request-timeout 1s: a stalled upload gets 408 after %.2f s" % secs,
              data.startswith(b"HTTP/1.1 408") and closed and secs < (4 if SANITIZED else 2),
              repr(data[:40]))
    finally:
        srv.stop()
    r = subprocess.run([bctest.BIN, "--max-connections-per-ip", "-1"], capture_output=True, text=True)
    check("--max-connections-per-ip -1 is refused (exit 2)", r.returncode == 2, r.stderr[-200:])


default_binding()
listeners()
limits()
finish()
