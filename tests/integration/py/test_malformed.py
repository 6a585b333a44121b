"""Malformed and hostile HTTP against the real binary (issue 9).

Sentinel values are stored first. Then a corpus of >= 100 malformed or
hostile requests (generated below, by category) goes out, eight at a time,
each on its own raw connection: framing conflicts with a request smuggled
behind them, bad and huge lengths, bad chunk sizes, header and request-line
limits, NUL and control bytes, absolute-, authority- and asterisk-form
targets, `..` and percent-encoded slashes in keys, HTTP/0.9 and HTTP/2
prefaces, garbage pipelined after a valid request, and more.

Each case must end in a 4xx (or the specific status it names: 431, 414) or
a closed connection within a bounded time - never a 2xx/5xx for the bad
part (505 only where the version itself is the fault), never a hang - and
create no key (its probe keys and any smuggled key read 404). Right after
each case the server answers a good request (a sentinel, byte for byte).
At the end every sentinel is unchanged, the index holds exactly the
sentinels, and the server exits 0 on SIGTERM (LeakSanitizer in ASan runs).
"""
import hashlib
import os
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from bctest import Server, check, fail, finish, ok  # noqa: E402

SANITIZED = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ
BOUND = 20.0 if SANITIZED else 10.0  # seconds a case may take at most
QUIET = 0.5                           # no more bytes for this long: done
HEADER_LIMIT = 32 * 1024              # --max-header-size default
rng = random.Random(9)

SENTINELS = {
    "sentinel-empty": b"",
    "sentinel-1": b"\x00",
    "sentinel-text": b"the quick brown fox\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "sentinel-64k": bytes(rng.getrandbits(8) for _ in range(65536)),
    "sentinel-1m": os.urandom(1 << 20),
    "sentinel-%2F": b"a key with an escaped slash",   # stored as "sentinel-/"
}


# ---- building requests ---------------------------------------------------

def line(method, target, version=b"HTTP/1.1"):
    return method + b" " + target + b" " + version + b"\r\n"


def head(method, target, headers=(), version=b"HTTP/1.1", host=True):
    h = line(method, target, version)
    if host:
        h += b"Host: t\r\n"
    for k, v in headers:
        h += k + b": " + v + b"\r\n"
    return h + b"\r\n"


def smuggled(i):
    return (b"PUT /v1/buffers/smuggled-%d HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: 5\r\n\r\nEVIL!" % i)


def good_get(key=b"sentinel-text"):
    return head(b"GET", b"/v1/buffers/" + key)


CASES = []  # (category, name, bytes, options)


def case(cat, name, data, **opt):
    CASES.append((cat, name, data, opt))


def build():
    n = 0

    def key():
        nonlocal n
        n += 1
        return b"mal-%d" % n

    # 1. framing conflicts, each with a request smuggled behind it
    conflicts = [
        ("CL then TE", [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")]),
        ("TE then CL", [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")]),
        ("TE mixed case", [(b"transfer-encoding", b"Chunked"), (b"content-length", b"5")]),
        ("CL and TE identity", [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"identity")]),
        ("CL and TE gzip,chunked", [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"gzip, chunked")]),
        ("TE with space before colon", [(b"Transfer-Encoding ", b"chunked"), (b"Content-Length", b"5")]),
        ("TE with tab before colon", [(b"Transfer-Encoding\t", b"chunked")]),
        ("CL with space before colon", [(b"Content-Length ", b"44")]),
        ("two TE", [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"identity")]),
        ("TE chunked,chunked", [(b"Transfer-Encoding", b"chunked, chunked")]),
        ("TE gzip", [(b"Transfer-Encoding", b"gzip")]),
        ("TE xchunked", [(b"Transfer-Encoding", b"xchunked")]),
        ("TE with bare CR", [(b"X-A", b"1\rTransfer-Encoding: chunked")]),
        ("CL with bare CR", [(b"X-A", b"1\rContent-Length: 44")]),
        ("duplicate CL same", [(b"Content-Length", b"5"), (b"Content-Length", b"5")]),
        ("duplicate CL different", [(b"Content-Length", b"5"), (b"Content-Length", b"50")]),
        ("CL list same", [(b"Content-Length", b"5, 5")]),
        ("CL list different", [(b"Content-Length", b"5,50")]),
    ]
    for i, (name, hdrs) in enumerate(conflicts):
        k = key()
        body = b"0\r\n\r\n" + smuggled(i)
        case("framing", name, head(b"PUT", b"/v1/buffers/" + k, hdrs) + body,
             probes=[k, b"smuggled-%d" % i])
    # 2. lengths
    lengths = [b"-1", b"-0", b"+5", b"0x5", b"5.0", b"5 5", b"", b"abc",
               b"18446744073709551616", b"99999999999999999999999999",
               b"18446744073709551615", b"9223372036854775808", b"3000000"]
    for v in lengths:
        k = key()
        case("length", b"Content-Length: " + v, head(b"PUT", b"/v1/buffers/" + k,
             [(b"Content-Length", v)]) + b"hello", probes=[k])
    k = key()
    case("length", "Expect 100-continue over the limit",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Content-Length", b"104857600"),
                                             (b"Expect", b"100-continue")]), probes=[k])
    k = key()
    case("length", "CL larger than the body, then EOF",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Content-Length", b"100")]) + b"short",
         probes=[k], eof=True)
    # 3. chunk sizes
    chunks = [b"FFFFFFFFFFFFFFED", b"FFFFFFFFFFFFFFFF", b"10000000000000000",
              b"-1", b"zz", b"0x5", b"", b" 5", b"5 ", b"5\x00", b"5;" + b"e" * 40000, b"G"]
    for v in chunks:
        k = key()
        case("chunked", b"chunk size " + v[:20], head(b"PUT", b"/v1/buffers/" + k,
             [(b"Transfer-Encoding", b"chunked")]) + v + b"\r\nhello\r\n0\r\n\r\n",
             probes=[k])
    k = key()
    case("chunked", "chunk longer than its size",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Transfer-Encoding", b"chunked")])
         + b"3\r\nhello\r\n0\r\n\r\n", probes=[k])
    k = key()
    case("chunked", "no CRLF after chunk data",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Transfer-Encoding", b"chunked")])
         + b"5\r\nhelloX0\r\n\r\n", probes=[k])
    k = key()
    case("chunked", "no last chunk, then EOF",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Transfer-Encoding", b"chunked")])
         + b"5\r\nhello\r\n", probes=[k], eof=True)
    k = key()
    big = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    case("chunked", "chunked body over --max-value-size",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Transfer-Encoding", b"chunked")])
         + big * 3 + b"0\r\n\r\n", probes=[k])
    # 4. header limits (431 or closed)
    case("limits", "one header over --max-header-size",
         head(b"GET", b"/healthz", [(b"X-Big", b"a" * (HEADER_LIMIT + 100))]), allow={431})
    case("limits", "one header of 1 MiB",
         head(b"GET", b"/healthz", [(b"X-Big", b"a" * (1 << 20))]), allow={431})
    case("limits", "3000 headers",
         head(b"GET", b"/healthz", [(b"X-%d" % i, b"v") for i in range(3000)]), allow={431})
    case("limits", "20000 tiny headers",
         head(b"GET", b"/healthz", [(b"X", b"") for _ in range(20000)]), allow={431})
    k = key()
    case("limits", "PUT with headers over the limit",
         head(b"PUT", b"/v1/buffers/" + k, [(b"Content-Length", b"5"),
                                             (b"X-Big", b"b" * (HEADER_LIMIT * 2))]) + b"hello",
         allow={431}, probes=[k])
    # 5. request line (414 or closed for the long ones)
    case("request line", "target of 40 KiB",
         line(b"GET", b"/v1/buffers/" + b"a" * 40000) + b"Host: t\r\n\r\n", allow={414})
    case("request line", "target of 1 MiB",
         line(b"GET", b"/v1/buffers/" + b"a" * (1 << 20)) + b"Host: t\r\n\r\n", allow={414})
    case("request line", "query of 64 KiB",
         line(b"GET", b"/healthz?x=" + b"q" * 65536) + b"Host: t\r\n\r\n", allow={414})
    case("request line", "method of 40 KiB",
         line(b"G" * 40000, b"/healthz") + b"Host: t\r\n\r\n", allow={414})
    for name, target in [("NUL in path", b"/v1/buffers/%s\x00evil"), ("NUL after key", b"/v1/buffers/%s\x00"),
                         ("NUL in query", b"/v1/buffers/%s?ttl=9\x000s"), ("SP in path", b"/v1/buffers/%s x"),
                         ("TAB in path", b"/v1/buffers/%s\tx"), ("CTL in path", b"/v1/buffers/%s\x01"),
                         ("DEL in path", b"/v1/buffers/%s\x7f"), ("CR in path", b"/v1/buffers/%s\rx"),
                         ("LF in path", b"/v1/buffers/%s\nx"), ("two spaces", b"/v1/buffers/%s ")]:
        k = key()
        case("request line", "PUT, " + name, line(b"PUT", target % k)
             + b"Host: t\r\nContent-Length: 5\r\n\r\nhello", probes=[k])
    case("request line", "NUL in method", b"PU\x00T /v1/buffers/mal-x HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: 5\r\n\r\nhello", probes=[b"mal-x"])
    case("request line", "NUL in version", b"GET /healthz HTTP/1.\x001\r\nHost: t\r\n\r\n", allow={505})
    case("request line", "NUL first", b"\x00GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    case("request line", "method only", b"GET\r\n\r\n")
    case("request line", "no target", b"GET  HTTP/1.1\r\nHost: t\r\n\r\n")
    case("request line", "no version, headers", b"GET /v1/buffers/sentinel-text\r\nHost: t\r\n\r\n")
    case("request line", "lowercase version", line(b"GET", b"/healthz", b"http/1.1") + b"Host: t\r\n\r\n")
    case("request line", "HTTP/1.10", line(b"GET", b"/healthz", b"HTTP/1.10") + b"Host: t\r\n\r\n")
    case("request line", "HTTP/9.9", line(b"GET", b"/healthz", b"HTTP/9.9") + b"Host: t\r\n\r\n", allow={505})
    case("request line", "HTTP/1", line(b"GET", b"/healthz", b"HTTP/1") + b"Host: t\r\n\r\n", allow={505})
    case("request line", "HTTP/1.1x", line(b"GET", b"/healthz", b"HTTP/1.1x") + b"Host: t\r\n\r\n", allow={505})
    case("request line", "garbage line", b"\xff\xfe\xfd\xfc GARBAGE\r\n\r\n")
    case("request line", "binary noise", bytes(rng.getrandbits(8) for _ in range(4096)))
    case("request line", "CR CR", b"GET /healthz HTTP/1.1\r\rHost: t\r\r\r\r")
    case("protocol", "HTTP/0.9 GET", b"GET /v1/buffers/sentinel-text\r\n")
    case("protocol", "HTTP/0.9 GET, then EOF", b"GET /v1/buffers/sentinel-text\r\n", eof=True)
    case("protocol", "HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", allow={505})
    case("protocol", "HTTP/2 preface and SETTINGS",
         b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", allow={505})
    case("protocol", "TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
    # 6. target forms
    case("target", "absolute-form GET of a sentinel",
         head(b"GET", b"http://127.0.0.1/v1/buffers/sentinel-text"))
    case("target", "absolute-form https", head(b"GET", b"https://t/v1/buffers/sentinel-1"))
    k = key()
    case("target", "absolute-form PUT", head(b"PUT", b"http://t/v1/buffers/" + k,
         [(b"Content-Length", b"5")]) + b"hello", probes=[k])
    case("target", "authority-form CONNECT", head(b"CONNECT", b"127.0.0.1:80"))
    case("target", "authority-form GET", head(b"GET", b"127.0.0.1:80"))
    case("target", "asterisk-form OPTIONS", head(b"OPTIONS", b"*"))
    case("target", "asterisk-form GET", head(b"GET", b"*"))
    case("target", "relative path", head(b"GET", b"v1/buffers/sentinel-text"))
    case("target", "TRACE", head(b"TRACE", b"/v1/buffers/sentinel-text"))
    case("target", "unknown method", head(b"BREW", b"/v1/buffers/sentinel-text"))
    case("target", "lowercase method", head(b"get", b"/v1/buffers/sentinel-text"))
    # 7. keys: dot segments and encoded slashes are literal bytes, never paths
    for t in [b"/v1/buffers/x/../sentinel-text", b"/v1/buffers/../buffers/sentinel-text",
              b"/v1/../v1/buffers/sentinel-text", b"/v1/buffers/./sentinel-text",
              b"/v1/buffers/%2e%2e/sentinel-text", b"/v1/buffers/x%2F..%2Fsentinel-text",
              b"/v1/buffers/x%2f%2e%2e%2fsentinel-text", b"/v1/buffers//sentinel-text",
              b"/v1//buffers/sentinel-text", b"/v1/buffers/sentinel-%252F",
              b"/v1/buffers/sentinel-text/", b"/v1/buffers/sentinel-text%00",
              b"/V1/BUFFERS/sentinel-text", b"/v1/buffers%2Fsentinel-text"]:
        case("keys", b"GET " + t, head(b"GET", t))
    for t in [b"/v1/buffers/../sentinel-text", b"/v1/buffers/x%2F..%2Fsentinel-text",
              b"/v1/buffers/%2e%2e%2fsentinel-1"]:
        case("keys", b"DELETE " + t, head(b"DELETE", t))
    for name, t in [("bad escape", b"%zz"), ("truncated escape", b"ab%4"), ("lone percent", b"%"),
                    ("%00", b"a%00b"), ("%0A", b"a%0Ab"), ("%7F", b"%7f"),
                    ("513 bytes", b"k" * 513), ("513 escaped", b"%41" * 513), ("empty", b"")]:
        case("keys", "PUT key " + name, head(b"PUT", b"/v1/buffers/" + t,
             [(b"Content-Length", b"5")]) + b"hello",
             probes=[] if name in ("empty", "%00", "%0A", "%7F", "513 bytes", "513 escaped") else [])
    # 8. pipelined garbage after a valid request
    tails = [("NUL bytes", b"\x00\x01\x02garbage\r\n\r\n"), ("word salad", b"GARBAGE GARBAGE\r\n\r\n"),
             ("binary", bytes(rng.getrandbits(8) for _ in range(2048))),
             ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
             ("half a request, EOF", b"GET /v1/buffers/sentinel-1 HT"),
             ("framing conflict with smuggle", head(b"PUT", b"/v1/buffers/mal-pipe",
              [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")]) + b"0\r\n\r\n" + smuggled(99)),
             ("header over the limit", head(b"GET", b"/healthz", [(b"X", b"y" * (HEADER_LIMIT + 10))]))]
    for name, tail in tails:
        case("pipelined", "valid GET, then " + name, good_get() + tail, good=1,
             probes=[b"mal-pipe", b"smuggled-99"], eof=name.endswith("EOF"),
             allow={431, 505})
    # 9. other hostile headers
    k = key()
    case("headers", "no colon", head(b"PUT", b"/v1/buffers/" + k, [(b"Content-Length", b"5")])[:-2]
         + b"NoColonHere\r\n\r\nhello", probes=[k])
    for name, hk, hv in [("space in name", b"X A", b"1"), ("NUL in name", b"X\x00A", b"1"),
                         ("non-token name", b"X(A)", b"1"), ("CTL in value", b"X-A", b"a\x01b"),
                         ("DEL in value", b"X-A", b"a\x7fb")]:
        k = key()
        case("headers", name, head(b"PUT", b"/v1/buffers/" + k, [(hk, hv), (b"Content-Length", b"5")])
             + b"hello", probes=[k])
    k = key()
    case("headers", "obs-fold before the first header", line(b"PUT", b"/v1/buffers/" + k)
         + b" Host: t\r\nContent-Length: 5\r\n\r\nhello", probes=[k])
    for name, hdrs in [("bad ttl", [(b"Content-Length", b"5")]), ]:
        pass
    for name, q in [("ttl garbage", b"?ttl=soon"), ("ttl negative", b"?ttl=-5s"),
                    ("ttl overflow", b"?ttl=99999999999999999999h"), ("ttl bad escape", b"?ttl=%zz")]:
        k = key()
        case("headers", name, head(b"PUT", b"/v1/buffers/" + k + q, [(b"Content-Length", b"5")])
             + b"hello", probes=[k])
    for name, hv in [("X-Request-Timeout garbage", b"soon"), ("X-Request-Timeout zero", b"0s"),
                     ("X-Request-Timeout negative", b"-1s")]:
        k = key()
        case("headers", name, head(b"PUT", b"/v1/buffers/" + k, [(b"X-Request-Timeout", hv),
             (b"Content-Length", b"5")]) + b"hello", probes=[k])
    k = key()
    case("headers", "Content-Type of 300 bytes", head(b"PUT", b"/v1/buffers/" + k,
         [(b"Content-Type", b"t" * 300), (b"Content-Length", b"5")]) + b"hello", probes=[k])
    k = key()
    case("headers", "If-Match garbage on PUT", head(b"PUT", b"/v1/buffers/" + k,
         [(b"If-Match", b"garbage"), (b"Content-Length", b"5")]) + b"hello", probes=[k])
    k = key()
    case("headers", "If-Match on a missing key", head(b"PUT", b"/v1/buffers/" + k,
         [(b"If-Match", b'"0123456789abcdef"'), (b"Content-Length", b"5")]) + b"hello", probes=[k])
    case("headers", "Range unsatisfiable", head(b"GET", b"/v1/buffers/sentinel-text",
         [(b"Range", b"bytes=100000-")]), allow={416})
    case("headers", "slow headers, never finished", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: ",
         eof=False)


# ---- running a case ------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def parse_responses(buf):
    """Complete responses at the front of buf (Content-Length framing, as
    bufcache and MHD send them); the rest is left."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0 or not buf.startswith(b"HTTP/1."):
            return out, buf
        lines = buf[:end].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ")[1])
        except (IndexError, ValueError):
            return out, buf
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get(b"content-length", b"0") or 0)
        if status in (204, 304) or 100 <= status < 200:
            n = 0
        if len(buf) < end + 4 + n:
            return out, buf
        out.append(Resp(status, hdrs, buf[end + 4:end + 4 + n]))
        buf = buf[end + 4 + n:]


def run_raw(port, data, eof, want):
    """Sends data (in slices, as a client would), half-closes if eof, reads
    until the server closes, or `want` responses came and the line went
    quiet, or BOUND passed. Returns (responses, closed, seconds, leftover)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(0.05)
    t0 = time.time()
    buf, sent, closed, last = b"", 0, False, time.time()
    while time.time() - t0 < BOUND:
        if sent < len(data):
            try:
                sent += s.send(data[sent:sent + 65536])
            except socket.timeout:
                pass
            except OSError:
                sent = len(data)  # the server stopped reading: fine
            if sent >= len(data) and eof:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        try:
            d = s.recv(1 << 20)
            if not d:
                closed = True
                break
            buf += d
            last = time.time()
        except socket.timeout:
            resps, _ = parse_responses(buf)
            if sent >= len(data) and len(resps) >= want and time.time() - last > QUIET:
                break
        except OSError:
            closed = True
            break
    s.close()
    resps, rest = parse_responses(buf)
    return resps, closed, time.time() - t0, rest


def get(srv, key):
    return srv.request("GET", "/v1/buffers/" + key, timeout=BOUND)


def judge(srv, cat, name, data, opt):
    """Returns a list of problems (empty: the case passed)."""
    good = opt.get("good", 0)
    allow = opt.get("allow", set())
    probs = []
    resps, closed, secs, rest = run_raw(srv.port, data, opt.get("eof", False), good + 1)
    if srv.proc.poll() is not None:
        return ["the server died (exit %s)" % srv.proc.returncode]
    statuses = [r.status for r in resps]
    for r in resps[:good]:
        if r.status != 200 or r.body != SENTINELS["sentinel-text"]:
            probs.append("the valid request before the garbage got %d" % r.status)
    bad = resps[good:]
    for r in bad:
        if not (400 <= r.status < 500 or r.status in allow):
            probs.append("answered %d" % r.status)
    if not bad and not closed:
        probs.append("no answer and not closed after %.1f s (a hang)" % secs)
    for k in opt.get("probes", []):
        st, _, _ = get(srv, k.decode("latin-1"))
        if st != 404:
            probs.append("key %r exists (GET -> %d)" % (k, st))
    st, body, _ = get(srv, "sentinel-text")
    if st != 200 or body != SENTINELS["sentinel-text"]:
        probs.append("the good request right after got %d" % st)
    opt["result"] = (statuses, closed, secs)
    return probs


def main():
    build()
    srv = Server("--workers", "2", "--idle-timeout", "2s", "--request-timeout", "3s",
                 "--max-value-size", "2MiB")
    try:
        for k, v in SENTINELS.items():
            st, _, _ = srv.request("PUT", "/v1/buffers/" + k, body=v)
            check("sentinel %s stored" % k, st == 201, str(st))
        check("the corpus has at least 100 malformed requests (%d)" % len(CASES), len(CASES) >= 100)
        results = {}
        lock = threading.Lock()

        def one(i):
            cat, name, data, opt = CASES[i]
            probs = judge(srv, cat, name, data, opt)
            with lock:
                results[i] = probs

        with ThreadPoolExecutor(max_workers=8) as ex:
            list(ex.map(one, range(len(CASES))))
        by_cat = {}
        for i, (cat, name, data, opt) in enumerate(CASES):
            nm = name if isinstance(name, str) else name.decode("latin-1")
            nm = nm.encode("unicode_escape").decode()[:70]
            statuses, closed, secs = opt.get("result", ([], False, 0))
            by_cat.setdefault(cat, [0, 0])
            by_cat[cat][0] += 1
            desc = "%s%s %.1fs" % (",".join(map(str, statuses)) or "-",
                                   " closed" if closed else "", secs)
            if results.get(i):
                fail("[%s] %s: %s (%s)" % (cat, nm, "; ".join(results[i]), desc))
            else:
                by_cat[cat][1] += 1
                ok("[%s] %s -> %s" % (cat, nm, desc))
        print("# per category (passed/total): " + ", ".join(
            "%s %d/%d" % (c, p, t) for c, (t, p) in sorted(by_cat.items())), flush=True)
        # literal keys: an encoded slash or dot segments store a new key,
        # never touch the sentinel they spell
        st, _, _ = srv.request("PUT", "/v1/buffers/x%2F..%2Fsentinel-text", body=b"other")
        check("PUT x%2F..%2Fsentinel-text stores a key of its own", st == 201, str(st))
        st, body, _ = get(srv, "x%2F..%2Fsentinel-text")
        check("... which reads back", st == 200 and body == b"other", str(st))
        st, _, _ = srv.request("DELETE", "/v1/buffers/x%2F..%2Fsentinel-text")
        check("... and deletes", st == 204, str(st))
        for k, v in SENTINELS.items():
            st, body, _ = get(srv, k)
            check("sentinel %s unchanged, byte for byte" % k,
                  st == 200 and body == v, "%d, %d bytes, sha1 %s" % (
                      st, len(body), hashlib.sha1(body).hexdigest()[:12]))
        ms = srv.memstats()
        check("the index holds exactly the %d sentinels (no key was created)" % len(SENTINELS),
              ms["Cache"]["Entries"] == len(SENTINELS), str(ms["Cache"]["Entries"]))
        check("server alive after the corpus", srv.proc.poll() is None)
    finally:
        srv.stop()
    finish()


main()
