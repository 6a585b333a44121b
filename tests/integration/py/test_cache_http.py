"""test_cache_http.py - issue #4 against the real binary: conditional
requests (304, 412, If-None-Match: * create-only, If-Match compare-and-swap
also under racing writers), Range (206, 416, multiple ranges, If-Range,
Accept-Ranges), and the headers of TTL entries (Cache-Control, Expires)."""
import email.utils
import threading
import time

from cachelib import Client, Server, check, finish

srv = Server("--access-log=false")
c = Client(srv)
B = "/v1/buffers/"

try:
    value = b"0123456789abcdefghij"  # 20 bytes
    st, _, h = c.request("PUT", B + "h/1", value, {"Content-Type": "text/plain"})
    check("PUT 201", st == 201, str(st))
    etag = h.get("etag", "")
    check("PUT has ETag", len(etag) == 18 and etag.startswith('"'), etag)

    # ---- 200: Accept-Ranges on the cached response (GET twice: built, then shared)
    for i in (1, 2):
        st, body, h = c.request("GET", B + "h/1")
        check("GET %d 200 with Accept-Ranges" % i,
              st == 200 and body == value and h.get("accept-ranges") == "bytes",
              "%s %r" % (st, h))
    st, body, h = c.request("HEAD", B + "h/1")
    check("HEAD 200 with Accept-Ranges, no body",
          st == 200 and body == b"" and h.get("accept-ranges") == "bytes", str(h))

    # ---- If-None-Match: 304 (strong, weak, *, list), HEAD too
    for name, inm in (("strong", etag), ("weak", "W/" + etag), ("star", "*"),
                      ("list", '"nope", ' + etag)):
        st, body, h = c.request("GET", B + "h/1", headers={"If-None-Match": inm})
        check("If-None-Match %s -> 304 with ETag, no body" % name,
              st == 304 and body == b"" and h.get("etag") == etag, "%s %r" % (st, h))
    st, body, h = c.request("HEAD", B + "h/1", headers={"If-None-Match": etag})
    check("HEAD If-None-Match -> 304", st == 304, str(st))
    st, body, _ = c.request("GET", B + "h/1", headers={"If-None-Match": '"0000000000000000"'})
    check("If-None-Match other tag -> 200", st == 200 and body == value, str(st))
    st, _, _ = c.request("GET", B + "h/1", headers={"If-None-Match": "garbage"})
    check("malformed If-None-Match -> 400", st == 400, str(st))
    st, _, _ = c.request("GET", B + "nope", headers={"If-None-Match": "*"})
    check("If-None-Match on a missing key -> 404", st == 404, str(st))
    # the 304 did not break the connection: next request on it works
    st, body, _ = c.request("GET", B + "h/1")
    check("keep-alive after 304", st == 200 and body == value, str(st))

    # ---- If-Match on GET
    st, _, _ = c.request("GET", B + "h/1", headers={"If-Match": '"0000000000000000"'})
    check("GET If-Match stale -> 412", st == 412, str(st))
    st, body, _ = c.request("GET", B + "h/1", headers={"If-Match": etag})
    check("GET If-Match current -> 200", st == 200 and body == value, str(st))

    # ---- PUT If-None-Match: * (create only)
    st, _, h1 = c.request("PUT", B + "h/new", b"first", {"If-None-Match": "*"})
    check("PUT If-None-Match:* on absent -> 201", st == 201, str(st))
    st, body, _ = c.request("PUT", B + "h/new", b"second", {"If-None-Match": "*"})
    check("PUT If-None-Match:* on present -> 412", st == 412 and b"precondition_failed" in body, str(st))
    st, body, _ = c.request("GET", B + "h/new")
    check("412 left the value alone", body == b"first", repr(body))

    # ---- PUT If-Match: compare-and-swap
    st, _, h2 = c.request("PUT", B + "h/new", b"third", {"If-Match": h1["etag"]})
    check("PUT If-Match current -> 204", st == 204, str(st))
    st, _, _ = c.request("PUT", B + "h/new", b"fourth", {"If-Match": h1["etag"]})
    check("PUT If-Match stale -> 412", st == 412, str(st))
    st, _, _ = c.request("PUT", B + "h/new", b"fifth", {"If-Match": 'W/' + h2["etag"]})
    check("PUT If-Match weak tag -> 412 (strong comparison)", st == 412, str(st))
    st, _, _ = c.request("PUT", B + "h/new", b"sixth", {"If-Match": '"x", ' + h2["etag"]})
    check("PUT If-Match list with the current -> 204", st == 204, str(st))
    st, _, _ = c.request("PUT", B + "h/absent", b"x", {"If-Match": "*"})
    check("PUT If-Match:* on absent -> 412", st == 412, str(st))
    st, _, _ = c.request("PUT", B + "h/absent", b"x", {"If-Match": h2["etag"]})
    check("PUT If-Match on absent -> 412", st == 412, str(st))
    st, _, _ = c.request("GET", B + "h/absent")
    check("nothing was stored by the 412s", st == 404, str(st))
    st, _, _ = c.request("PUT", B + "h/new", b"x", {"If-Match": "\"unterminated"})
    check("malformed If-Match on PUT -> 400", st == 400, str(st))
    c.close()  # that answer closed the connection

    # ---- DELETE If-Match
    st, _, h = c.request("GET", B + "h/new")
    cur = h["etag"]
    st, _, _ = c.request("DELETE", B + "h/new", headers={"If-Match": h1["etag"]})
    check("DELETE If-Match stale -> 412", st == 412, str(st))
    st, _, _ = c.request("DELETE", B + "h/new", headers={"If-Match": cur})
    check("DELETE If-Match current -> 204", st == 204, str(st))
    st, _, _ = c.request("DELETE", B + "h/new", headers={"If-Match": cur})
    check("DELETE If-Match on absent -> 404", st == 404, str(st))

    # ---- compare-and-swap under racing writers: no lost update
    c.request("PUT", B + "h/ctr", b"0")
    wins = [0] * 4
    def writer(i):
        cl = Client(srv)
        for _ in range(150):
            st, body, h = cl.request("GET", B + "h/ctr")
            n = int(body)
            st, _, _ = cl.request("PUT", B + "h/ctr", str(n + 1).encode(),
                                  {"If-Match": h["etag"]})
            if st == 204:
                wins[i] += 1
            elif st != 412:
                raise RuntimeError("PUT answered %d" % st)
        cl.close()
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    st, body, _ = c.request("GET", B + "h/ctr")
    check("CAS race: counter %s == %d successful writes (%d tries)" % (body.decode(), sum(wins), 600),
          int(body) == sum(wins) and sum(wins) >= 150, repr(body))

    # ---- Range
    def rng(r, key="h/1", extra=None):
        hd = {"Range": r}
        hd.update(extra or {})
        return c.request("GET", B + key, headers=hd)
    for r, want, cr in (("bytes=0-4", b"01234", "bytes 0-4/20"),
                        ("bytes=15-", b"fghij", "bytes 15-19/20"),
                        ("bytes=-3", b"hij", "bytes 17-19/20"),
                        ("bytes=10-1000", b"abcdefghij", "bytes 10-19/20"),
                        ("bytes=0-0", b"0", "bytes 0-0/20")):
        st, body, h = rng(r)
        check("%s -> 206 %s" % (r, cr),
              st == 206 and body == want and h.get("content-range") == cr
              and h.get("content-length") == str(len(want))
              and h.get("etag") == etag and h.get("content-type") == "text/plain",
              "%s %r %r" % (st, body, h))
    for r in ("bytes=20-", "bytes=100-200", "bytes=-0", "bytes=30-40,50-"):
        st, body, h = rng(r)
        check("%s -> 416 with Content-Range: bytes */20" % r,
              st == 416 and h.get("content-range") == "bytes */20", "%s %r" % (st, h))
    for r in ("bytes=0-1,5-6", "bytes=5-1", "items=0-1", "bytes=abc"):
        st, body, h = rng(r)
        check("%s -> 200 whole value" % r, st == 200 and body == value, str(st))
    st, body, h = c.request("HEAD", B + "h/1", headers={"Range": "bytes=0-4"})
    check("HEAD ignores Range", st == 200 and h.get("content-length") == "20", str(st))
    st, body, _ = rng("bytes=0-4", extra={"If-Range": etag})
    check("If-Range current -> 206", st == 206 and body == b"01234", str(st))
    st, body, _ = rng("bytes=0-4", extra={"If-Range": '"0000000000000000"'})
    check("If-Range stale -> 200 whole", st == 200 and body == value, str(st))
    st, body, _ = rng("bytes=0-4", extra={"If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"})
    check("If-Range date -> 200 whole (no Last-Modified)", st == 200 and body == value, str(st))
    c.request("PUT", B + "h/empty", b"")
    st, _, h = rng("bytes=0-", key="h/empty")
    check("Range on an empty value -> 416 bytes */0",
          st == 416 and h.get("content-range") == "bytes */0", "%s %r" % (st, h))
    big = bytes(range(256)) * 4096  # 1 MiB
    c.request("PUT", B + "h/big", big)
    st, body, h = rng("bytes=1000000-1048575", key="h/big")
    check("Range deep in a 1 MiB value", st == 206 and body == big[1000000:], str(st))
    st, body, h = rng("bytes=0-4", extra={"If-None-Match": etag})
    check("If-None-Match wins over Range -> 304", st == 304, str(st))

    # ---- TTL headers: Cache-Control max-age and Expires, on 200, 206, 304
    st, _, h = c.request("PUT", B + "h/ttl?ttl=30s", b"short-lived")
    tetag = h["etag"]
    for name, hd, want in (("200", {}, 200), ("206", {"Range": "bytes=0-1"}, 206),
                           ("304", {"If-None-Match": tetag}, 304)):
        st, _, h = c.request("GET", B + "h/ttl", headers=hd)
        cc, exp, date = h.get("cache-control", ""), h.get("expires"), h.get("date")
        ok_ = st == want and cc.startswith("max-age=")
        if ok_ and exp and date:
            maxage = int(cc.split("=")[1])
            delta = (email.utils.parsedate_to_datetime(exp) -
                     email.utils.parsedate_to_datetime(date)).total_seconds()
            ok_ = 28 <= maxage <= 30 and abs(delta - maxage) <= 1
        else:
            ok_ = False
        check("TTL %s: Cache-Control %s, Expires %s (Date %s)" % (name, cc, exp, date), ok_, str(h))
    st, _, h = c.request("GET", B + "h/1")
    check("no TTL: no Cache-Control, no Expires",
          "cache-control" not in h and "expires" not in h, str(h))
finally:
    c.close()
    srv.stop()
finish()
