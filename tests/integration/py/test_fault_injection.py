"""Fault injection (issue 9) against bufcache-fault, the test build of the
binary with POST /debug/fault (api/fault.c).

1. bufcache itself has no /debug/fault (404 on its admin listener).
2. Sentinel values are stored, then the heap's page commits fail
   (?heap=N): uploads that need new pages get 503 out_of_memory (or 507
   memory_limit) JSON, never a crash; GETs of the sentinels keep answering
   byte for byte meanwhile (a GET hit allocates nothing).
3. Faults off: the same uploads succeed again.
4. libc allocations fail (?malloc=1&after=K for K = 0..59, one failure at
   each step of a request sequence - jansson's "fail the Nth malloc" chaos
   test): every answer is a well-formed HTTP answer with the status the
   request deserves, or 503/507 JSON, or a closed connection; the server
   stays up, and once the countdown is spent answers every request right;
   then a storm (the next 200 allocations fail, whichever thread makes
   them) and the same checks.
   (Skipped in sanitizer builds, whose allocator is their own; the endpoint
   says "malloc_supported": false there.)
5. After all of it every sentinel is unchanged, the server exits 0.
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bctest  # noqa: E402
from bctest import Server, check, fail, finish, ok  # noqa: E402

BUILD = os.environ.get("BUFCACHE_BUILD") or os.path.dirname(bctest.BIN or "")
FAULT_BIN = os.path.join(BUILD, "bufcache-fault")
MiB = 1 << 20

SENTINELS = {
    "fault/empty": b"",
    "fault/small": b"sentinel value \x00\x01\x02",
    "fault/64k": os.urandom(65536),
    "fault/4m": os.urandom(4 * MiB),
}


def raw(port, data, limit=10.0, body=None):
    """Sends one request on a fresh connection; returns (status, body) or
    (None, reason) when the server closed the connection without an
    answer. With body, data is a head with "Expect: 100-continue" and the
    body goes out only after "100 Continue" (an early 503/413 stops it, as
    curl does)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=limit)
        s.sendall(data)
        s.settimeout(limit)
        buf = b""
        t0 = time.time()
        while time.time() - t0 < limit:
            d = s.recv(1 << 20)
            if not d:
                break
            buf += d
            if body is not None and buf.startswith(b"HTTP/1.1 100"):
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                buf = buf[end + 4:]
                s.sendall(body)
                body = None
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1").split("\r\n")
                cl = [h for h in head if h.lower().startswith("content-length:")]
                n = int(cl[0].split(":")[1]) if cl else 0
                if len(buf) >= end + 4 + n:
                    s.close()
                    return int(head[0].split(" ")[1]), buf[end + 4:end + 4 + n]
        s.close()
        return None, "closed after %d bytes" % len(buf)
    except OSError as e:
        return None, repr(e)


def put_big(port, key, body):
    head = (b"PUT /v1/buffers/%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % (key.encode(), len(body)))
    return raw(port, head, body=body)


def put_req(key, body):
    return (b"PUT /v1/buffers/%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (key.encode(), len(body))) + body


def get_req(key):
    return b"GET /v1/buffers/%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % key.encode()


def is_json_error(body, codes):
    try:
        return json.loads(body)["error"]["code"] in codes
    except (ValueError, KeyError, TypeError):
        return False


def fault(srv, query, method="POST", tries=1000):
    """Calls /debug/fault; retried, since a countdown still armed may fail
    the call itself (its connection closes)."""
    for _ in range(tries):
        data = (b"%s /debug/fault%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                % (method.encode(), query.encode()))
        st, body = raw(srv.admin_port, data)
        if st == 200:
            return json.loads(body)
        time.sleep(0.005)
    raise RuntimeError("/debug/fault%s never answered" % query)


def sentinels_ok(srv, label):
    bad = []
    for k, v in SENTINELS.items():
        st, body = raw(srv.port, get_req(k))
        if st != 200 or body != v:
            bad.append("%s: %s" % (k, st))
    check("%s: every sentinel reads back byte for byte" % label, not bad, "; ".join(bad))


def main():
    # 1. the production binary has no fault endpoint
    plain = Server()
    try:
        st, _ = raw(plain.admin_port, b"POST /debug/fault?heap=1 HTTP/1.1\r\nHost: t\r\n"
                                      b"Connection: close\r\n\r\n")
        check("bufcache has no /debug/fault (404)", st == 404, str(st))
    finally:
        plain.stop()

    check("bufcache-fault is built (%s)" % FAULT_BIN, os.access(FAULT_BIN, os.X_OK))
    bctest.BIN = FAULT_BIN
    srv = Server("--workers", "2", "--memory-limit", "1GiB", "--max-value-size", "16MiB",
                 "--access-log=false")
    try:
        for k, v in SENTINELS.items():
            st, _ = put_big(srv.port, k, v)
            check("sentinel %s stored" % k, st == 201, str(st))
        state = fault(srv, "", method="GET")
        check("GET /debug/fault shows nothing armed",
              state["heap_fail_armed"] == 0 and state["malloc_fail_next"] == 0, str(state))
        st, body = raw(srv.admin_port, b"POST /debug/fault?heap=x HTTP/1.1\r\nHost: t\r\n"
                                       b"Connection: close\r\n\r\n")
        check("a bad argument is a 400", st == 400 and is_json_error(body, {"bad_request"}), str(st))

        # 2. the heap cannot grow
        fault(srv, "?heap=1000000")
        big = os.urandom(8 * MiB)
        codes = []
        for i in range(12):
            st, body = put_big(srv.port, "fault/big%d" % i, big)
            codes.append(st)
            if st is not None and st >= 500:
                if not (st in (503, 507) and is_json_error(body, {"out_of_memory", "memory_limit"})):
                    fail("heap fault: PUT answered %d %r" % (st, body[:100]))
            if i % 4 == 3:
                sentinels_ok(srv, "heap faults on, after %d uploads" % (i + 1))
        check("heap faults: uploads that need new pages get 503 JSON (%s)" % codes,
              codes.count(503) >= 1 and all(c in (201, 204, 503, 507) for c in codes), str(codes))
        check("the server is up under heap faults", srv.proc.poll() is None)
        missing = [i for i, c in enumerate(codes) if c in (503, 507)]
        if missing:
            st, _ = raw(srv.port, get_req("fault/big%d" % missing[0]))
            check("a refused upload stored nothing", st == 404, str(st))

        # 3. recovery
        fault(srv, "?off")
        codes = [put_big(srv.port, "fault/big%d" % i, big)[0] for i in range(4)]
        check("faults off: uploads succeed again (%s)" % codes,
              all(c in (201, 204) for c in codes), str(codes))
        st, body = raw(srv.port, get_req("fault/big0"))
        check("... and read back", st == 200 and body == big, str(st))
        sentinels_ok(srv, "after heap faults")

        # 4. libc allocations fail, one at each step of a request sequence
        state = fault(srv, "", method="GET")
        if not state.get("malloc_supported"):
            ok("libc faults skipped: sanitizer build (%s)" % state)
        else:
            seq = [("PUT new", lambda k: put_req("fault/m%d" % k, b"m" * (k * 37 % 5000)), {201, 204}),
                   ("GET hit", lambda k: get_req("fault/small"), {200}),
                   ("GET miss", lambda k: get_req("fault/none%d" % k), {404}),
                   ("bad key", lambda k: get_req("%zz"), {400}),
                   ("PUT 1 MiB", lambda k: put_req("fault/mb%d" % k, b"x" * MiB), {201, 204})]
            outcome = {"right": 0, "5xx JSON": 0, "closed": 0, "wrong": 0}
            for k in range(60):
                fault(srv, "?malloc=1&after=%d" % k)
                for name, make, want in seq:
                    st, body = raw(srv.port, make(k))
                    if st in want:
                        outcome["right"] += 1
                    elif st in (503, 507) and is_json_error(body, {"out_of_memory", "memory_limit"}):
                        outcome["5xx JSON"] += 1
                    elif st is None:
                        outcome["closed"] += 1
                    else:
                        outcome["wrong"] += 1
                        fail("malloc fault after %d: %s answered %s %r" % (k, name, st, body[:80]))
                    if srv.proc.poll() is not None:
                        break
                if srv.proc.poll() is not None:
                    fail("the server died with malloc faults after %d allocations (exit %s): %s"
                         % (k, srv.proc.returncode, srv.stderr_text()[-1500:]))
                    break
                fault(srv, "?off")
                if k % 10 == 9:
                    sentinels_ok(srv, "libc faults, after round %d" % k)
            # a storm: the next 200 allocations fail, whoever makes them
            fault(srv, "?malloc=200&after=0")
            for k in range(60):
                name, make, want = seq[k % len(seq)]
                st, body = raw(srv.port, make(2000 + k), limit=5.0)
                if st in want:
                    outcome["right"] += 1
                elif st in (503, 507) and is_json_error(body, {"out_of_memory", "memory_limit"}):
                    outcome["5xx JSON"] += 1
                elif st is None:
                    outcome["closed"] += 1
                else:
                    outcome["wrong"] += 1
                    fail("malloc storm: %s answered %s %r" % (name, st, body[:80]))
            check("the server survives a storm of 200 failed allocations", srv.proc.poll() is None,
                  srv.stderr_text()[-1500:])
            fault(srv, "?off")
            state = fault(srv, "", method="GET")
            check("libc faults: %d allocations failed; answers %s" % (state["malloc_failed"], outcome),
                  outcome["wrong"] == 0 and state["malloc_failed"] > 0, str(outcome))
            # recovery: everything right again
            bad = []
            for k in range(5):
                for name, make, want in seq:
                    st, _ = raw(srv.port, make(1000 + k))
                    if st not in want:
                        bad.append("%s %s" % (name, st))
            check("libc faults off: every request answered right again", not bad, "; ".join(bad))
            st, body = raw(srv.port, get_req("fault/m7"))
            check("a value stored under faults reads back whole (or was never stored)",
                  (st == 200 and body == b"m" * (7 * 37 % 5000)) or st == 404, str(st))
        sentinels_ok(srv, "at the end")
        check("server alive at the end", srv.proc.poll() is None)
    finally:
        srv.stop()
    finish()


main()
