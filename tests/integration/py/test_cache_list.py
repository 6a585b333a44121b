"""test_cache_list.py - issue #4: listing (GET /v1/buffers?prefix=&limit=
&cursor=) and namespaces (DELETE /v1/buffers?prefix=) against the real
binary: fields, limits and their errors, keys that are not UTF-8,
pagination that returns every key exactly once while other clients insert,
prefix delete counts and the 400 without a prefix."""
import json
import threading

from cachelib import Client, Server, check, finish

B = "/v1/buffers/"
srv = Server("--access-log=false")
c = Client(srv)


def listing(path):
    st, body, h = c.request("GET", path)
    return st, (json.loads(body) if st == 200 else body), h


try:
    for i in range(300):
        c.request("PUT", B + "app1/user/%04d" % i, b"v" * (i % 7),
                  {"Content-Type": "text/plain"})
    for i in range(50):
        c.request("PUT", B + "app2/%04d?ttl=1h" % i, b"w")
    st, j, h = listing("/v1/buffers?prefix=app2/&limit=1")
    check("listing: 200 application/json", st == 200 and h.get("content-type") == "application/json", str(st))
    it = j["items"][0]
    check("an item has key, size, etag, content_type, expires_at",
          set(it) == {"key", "size", "etag", "content_type", "expires_at"}, str(it))
    check("default content type and an RFC 3339 expires_at",
          it["content_type"] == "application/octet-stream" and it["expires_at"].endswith("Z"), str(it))
    st, _, hh = c.request("GET", B + it["key"])
    check("etag in the listing is the ETag header", hh.get("etag") == it["etag"], "%r %r" % (hh, it))
    check("next_cursor after a full page", isinstance(j["next_cursor"], str), str(j))

    # full pagination, default limit (100)
    seen, cursor, pages = [], None, 0
    while True:
        q = "/v1/buffers?prefix=app1/" + ("&cursor=" + cursor if cursor else "")
        st, j, _ = listing(q)
        pages += 1
        seen += [x["key"] for x in j["items"]]
        cursor = j["next_cursor"]
        if cursor is None or pages > 100:
            break
    check("default limit 100: %d keys in %d pages, each once" % (len(seen), pages),
          sorted(seen) == sorted("app1/user/%04d" % i for i in range(300)) and pages >= 3, "")
    sizes = {x["key"]: x["size"] for x in listing("/v1/buffers?prefix=app1/user/000&limit=1000")[1]["items"]}
    check("prefix app1/user/000 -> 10 keys with their sizes",
          sizes == {"app1/user/%04d" % i: i % 7 for i in range(10)}, str(sizes))
    st, j, _ = listing("/v1/buffers?prefix=app1/&limit=5000")
    check("limit is capped at 1000 (got %d of 300)" % len(j["items"]), len(j["items"]) == 300, "")
    st, j, _ = listing("/v1/buffers?limit=1000")
    check("no prefix: every key (350)", len(j["items"]) == 350 and j["next_cursor"] is None, str(len(j["items"])))
    for q, what in (("limit=0", "limit 0"), ("limit=abc", "limit abc"), ("limit=-1", "limit -1"),
                    ("cursor=xyz", "bad cursor"), ("cursor=00112233445566778", "long cursor"),
                    ("prefix=%zz", "bad escape in prefix")):
        st, body, _ = listing("/v1/buffers?" + q)
        check("%s -> 400" % what, st == 400, str(st))
    st, j, _ = listing("/v1/buffers?prefix=nothing/")
    check("no match: empty items, next_cursor null", j == {"items": [], "next_cursor": None}, str(j))
    st, _, h = c.request("POST", "/v1/buffers")
    check("POST /v1/buffers -> 405 with Allow", st == 405 and "DELETE" in h.get("allow", ""), str(h))
    st, _, h = c.request("HEAD", "/v1/buffers?prefix=app2/")
    check("HEAD listing -> 200", st == 200, str(st))

    # keys that are not UTF-8, and UTF-8 ones
    c.request("PUT", B + "bin/%FF%FEx%20y", b"1")
    c.request("PUT", B + "bin/caf%C3%A9", b"2")
    st, j, _ = listing("/v1/buffers?prefix=bin/")
    byk = {x["key"]: x for x in j["items"]}
    check("UTF-8 key as it is", "bin/caf\u00e9" in byk and "key_encoding" not in byk.get("bin/caf\u00e9", {}), str(j))
    check("non-UTF-8 key percent-encoded with key_encoding",
          byk.get("bin/%FF%FEx%20y", {}).get("key_encoding") == "percent", str(j))
    st, body, _ = c.request("GET", B + "bin/%FF%FEx%20y")
    check("the encoded key works in a URL", st == 200 and body == b"1", str(st))

    # pagination under concurrent inserts: no duplicates, every old key seen
    stop = threading.Event()
    inserted = [0]

    def inserter(w):
        cl = Client(srv)
        i = 0
        while not stop.is_set() and i < 20000:
            cl.request("PUT", B + "app1/new/%d/%06d" % (w, i), b"n")
            i += 1
        inserted[0] += i
        cl.close()
    ts = [threading.Thread(target=inserter, args=(w,)) for w in range(2)]
    for t in ts:
        t.start()
    dup_rounds, missing_rounds = 0, 0
    for rnd in range(3):
        seen, cursor, pages = [], None, 0
        while True:
            q = "/v1/buffers?prefix=app1/&limit=37" + ("&cursor=" + cursor if cursor else "")
            st, j, _ = listing(q)
            seen += [x["key"] for x in j["items"]]
            cursor = j["next_cursor"]
            pages += 1
            if cursor is None or pages > 5000:
                break
        if len(seen) != len(set(seen)):
            dup_rounds += 1
        if not set("app1/user/%04d" % i for i in range(300)) <= set(seen):
            missing_rounds += 1
    stop.set()
    for t in ts:
        t.join()
    check("3 listings during %d concurrent inserts: no key twice" % inserted[0], dup_rounds == 0, str(dup_rounds))
    check("... and every key that existed throughout was listed", missing_rounds == 0, str(missing_rounds))

    # namespaces
    m0 = srv.memstats()["Cache"]
    st, body, _ = c.request("DELETE", "/v1/buffers?prefix=app1/user/")
    check("DELETE ?prefix=app1/user/ -> 200 {\"deleted\":300}",
          st == 200 and json.loads(body) == {"deleted": 300}, "%s %r" % (st, body))
    m1 = srv.memstats()["Cache"]
    check("Cache.Deletes +300", m1["Deletes"] - m0["Deletes"] == 300, "%r %r" % (m0, m1))
    st, _, _ = c.request("GET", B + "app1/user/0001")
    check("deleted key -> 404", st == 404, str(st))
    st, j, _ = listing("/v1/buffers?prefix=app2/&limit=1000")
    check("other namespace intact (50)", len(j["items"]) == 50, str(len(j["items"])))
    st, body, _ = c.request("DELETE", "/v1/buffers?prefix=app1/user/")
    check("again -> {\"deleted\":0}", st == 200 and json.loads(body) == {"deleted": 0}, str(body))
    for q in ("", "?prefix=", "?all=false", "?all=maybe"):
        st, _, _ = c.request("DELETE", "/v1/buffers" + q)
        check("DELETE /v1/buffers%s -> 400" % q, st == 400, str(st))
    srv.gc()
    st, body, _ = c.request("DELETE", "/v1/buffers?all=true")
    n = json.loads(body)["deleted"]
    check("DELETE ?all=true deletes everything (%d)" % n, st == 200 and n >= 50 + 2, str(body))
    st, j, _ = listing("/v1/buffers")
    check("empty after all=true", j["items"] == [], str(j)[:200])
    srv.gc()
    m = srv.memstats()
    check("after a cycle the heap holds no entries (HeapObjects %d, Entries %d)" %
          (m["HeapObjects"], m["Cache"]["Entries"]),
          m["Cache"]["Entries"] == 0 and m["Cache"]["HeapBytes"] == 0, str(m["Cache"]))
finally:
    c.close()
    srv.stop()
finish()
