"""test_cache_ttl.py - issue #4, TTL with short durations against the real
binary: max-age and Expires count down, an expired entry is a 404 at once,
a cycle reaps expired entries without any GET (Cache.Expired grows, the heap
shrinks), listing shows expires_at, and --default-ttl applies to a PUT
without ?ttl= (?ttl=0 opts out)."""
import email.utils
import time

from cachelib import Client, Server, check, finish

B = "/v1/buffers/"
srv = Server("--access-log=false")
c = Client(srv)
try:
    st, _, _ = c.request("PUT", B + "t/one?ttl=1s", b"x" * 100)
    check("PUT ?ttl=1s -> 201", st == 201, str(st))
    st, _, h = c.request("GET", B + "t/one")
    cc, exp, date = h.get("cache-control"), h.get("expires"), h.get("date")
    check("fresh: 200, Cache-Control max-age=0 or 1 (%s)" % cc,
          st == 200 and cc in ("max-age=0", "max-age=1"), str(h))
    d = (email.utils.parsedate_to_datetime(exp) -
         email.utils.parsedate_to_datetime(date)).total_seconds()
    check("Expires is Date + 0..1 s (%s, %s)" % (exp, date), 0 <= d <= 1, str(d))
    st, _, _ = c.request("PUT", B + "t/three?ttl=3", b"y")  # bare seconds
    st, _, h = c.request("GET", B + "t/three")
    check("?ttl=3 (bare seconds): max-age 2..3 (%s)" % h.get("cache-control"),
          h.get("cache-control") in ("max-age=2", "max-age=3"), str(h))
    st, _, h = c.request("PUT", B + "t/ms?ttl=1500ms", b"z")
    check("?ttl=1500ms accepted", st == 201, str(st))
    st, body, _ = c.request("PUT", B + "t/bad?ttl=soon", b"z")
    check("?ttl=soon -> 400 bad_ttl", st == 400 and b"bad_ttl" in body, str(st))
    c.close()
    time.sleep(1.2)
    st, _, _ = c.request("GET", B + "t/one")
    check("expired after 1.2 s -> 404", st == 404, str(st))
    st, _, _ = c.request("HEAD", B + "t/ms")
    check("1500ms entry still there at 1.2 s", st == 200, str(st))
    time.sleep(0.5)
    st, _, _ = c.request("GET", B + "t/ms")
    check("1500ms entry gone at 1.7 s", st == 404, str(st))
    st, _, _ = c.request("DELETE", B + "t/one")
    check("DELETE of an expired key -> 404", st == 404, str(st))

    # ---- reaped by a cycle, with no GET: 200 x 64 KiB (large objects: their
    # pages go back when they die)
    srv.gc()
    m0 = srv.memstats()
    val = b"r" * 65536
    for i in range(200):
        st, _, _ = c.request("PUT", B + "reap/%03d?ttl=1s" % i, val)
        if st != 201:
            check("PUT reap/%d" % i, False, str(st))
            break
    m1 = srv.memstats()
    check("200 TTL entries stored (HeapInuse %d -> %d)" % (m0["HeapInuse"], m1["HeapInuse"]),
          m1["HeapInuse"] - m0["HeapInuse"] >= 200 * 65536, "")
    st, body, _ = c.request("GET", "/v1/buffers?prefix=reap/&limit=1")
    check("listing shows expires_at", b'"expires_at":"20' in body, body[:200])
    time.sleep(1.3)
    srv.gc()
    m2 = srv.memstats()
    exp_delta = m2["Cache"]["Expired"] - m1["Cache"]["Expired"]
    check("a cycle reaped them: Cache.Expired +%d (want >= 200)" % exp_delta,
          exp_delta >= 200, str(m2["Cache"]))
    check("Evictions.ttl counts them too (%d)" % m2["Cache"]["Evictions"]["ttl"],
          m2["Cache"]["Evictions"]["ttl"] == m2["Cache"]["Expired"], str(m2["Cache"]))
    check("HeapInuse dropped after the cycle: %d -> %d" % (m1["HeapInuse"], m2["HeapInuse"]),
          m1["HeapInuse"] - m2["HeapInuse"] >= 200 * 65536 * 9 // 10, "")
    check("no GET was involved (Hits+Misses unchanged by the reap)",
          m2["Cache"]["Misses"] == m1["Cache"]["Misses"], str(m2["Cache"]))
    st, body, _ = c.request("GET", "/v1/buffers?prefix=reap/")
    check("listing after the reap is empty", b'"items":[]' in body, body[:200])
finally:
    c.close()
    srv.stop()

# ---- --default-ttl
srv = Server("--access-log=false", "--default-ttl", "2s")
c = Client(srv)
try:
    c.request("PUT", B + "d/a", b"a")
    st, _, h = c.request("GET", B + "d/a")
    check("--default-ttl 2s: a PUT without ?ttl= gets max-age 1..2 (%s)" % h.get("cache-control"),
          h.get("cache-control") in ("max-age=1", "max-age=2") and "expires" in h, str(h))
    c.request("PUT", B + "d/b?ttl=0", b"b")
    st, _, h = c.request("GET", B + "d/b")
    check("?ttl=0 opts out of the default", "cache-control" not in h, str(h))
    c.request("PUT", B + "d/c?ttl=1h", b"c")
    st, _, h = c.request("GET", B + "d/c")
    check("?ttl=1h wins over the default", h.get("cache-control") in ("max-age=3599", "max-age=3600"), str(h))
    c.close()
    time.sleep(2.2)
    st, _, _ = c.request("GET", B + "d/a")
    check("default TTL expired -> 404", st == 404, str(st))
    st, _, _ = c.request("GET", B + "d/b")
    check("?ttl=0 entry still there", st == 200, str(st))
finally:
    c.close()
    srv.stop()
import subprocess, bctest  # noqa: E401,E402
r = subprocess.run([bctest.BIN, "--default-ttl", "soon"], capture_output=True, text=True)
check("--default-ttl soon -> exit 2 naming the flag", r.returncode == 2 and "default-ttl" in r.stderr,
      r.stderr)
finish()
