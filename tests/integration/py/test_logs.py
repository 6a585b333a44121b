"""Structured logs, the access log and request IDs (issue 11)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bctest import Server, check, finish  # noqa: E402


def lines(srv):
    srv.out.flush()
    srv.out.seek(0)
    return srv.out.read().splitlines()


def json_lines(srv):
    out = []
    for ln in lines(srv):
        try:
            out.append(json.loads(ln))
        except ValueError:
            out.append({"_bad": ln})
    return out


def wait_for(pred, secs=5):
    t = time.time() + secs
    while time.time() < t:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_json():
    srv = Server("--log-level", "debug", "--max-value-size", "1MiB", "--request-id-header", "always")
    try:
        st, _, h = srv.request("PUT", "/v1/buffers/ns/a%2Fb", body=b"secret-value-bytes",
                               headers={"X-Request-Id": "trace-123", "Content-Type": "text/plain"})
        check("PUT echoes a valid X-Request-Id", st == 201 and h.get("X-Request-Id") == "trace-123", str(h))
        st, _, h = srv.request("GET", "/v1/buffers/ns/a%2Fb")
        gen = h.get("X-Request-Id", "")
        check("a GET without X-Request-Id gets a generated one", st == 200 and len(gen) >= 8, str(h))
        st, _, h2 = srv.request("GET", "/v1/buffers/ns/a%2Fb")
        check("generated request IDs are unique", h2.get("X-Request-Id") not in ("", gen), str(h2))
        st, body, h = srv.request("GET", "/v1/buffers/missing", headers={"X-Request-Id": "bad id with spaces"})
        err = json.loads(body)
        check("an invalid X-Request-Id is replaced, and error bodies carry the ID",
              st == 404 and err["error"]["request_id"] == h.get("X-Request-Id") != "bad id with spaces",
              "%r %r" % (body, h))
        long_id = "x" * 129
        st, _, h = srv.request("GET", "/healthz", headers={"X-Request-Id": long_id})
        check("an over-long X-Request-Id is replaced", h.get("X-Request-Id") != long_id, str(h))
        st, _, h = srv.request("GET", "/healthz", headers={"X-Request-Id": "x" * 128})
        check("a 128-byte X-Request-Id is kept", h.get("X-Request-Id") == "x" * 128, str(h))
        srv.gc()
        check("the access log is written", wait_for(
            lambda: any(j.get("msg") == "request" and j.get("status") == 404 for j in json_lines(srv))))
        js = json_lines(srv)
        bad = [j for j in js if "_bad" in j]
        check("every stdout line is one JSON object", not bad, str(bad[:2]))
        for j in js:
            if not (isinstance(j.get("time"), str) and j["time"].endswith("Z") and len(j["time"]) == 27
                    and j.get("level") in ("debug", "info", "warn", "error") and "msg" in j):
                check("log line has time (RFC 3339, µs), level, msg", False, str(j))
                break
        else:
            check("every line has an RFC 3339 µs time, a level and a message", True)
        start = [j for j in js if j.get("msg") == "configuration"]
        check("start-up logs the configuration with sources",
              start and start[0]["config"]["max-value-size"] == {"value": "1MiB", "source": "flag"}
              and start[0]["config"]["request-timeout"]["source"] == "default", str(start[:1]))
        ver = [j for j in js if j.get("msg") == "starting bufcache"]
        check("start-up logs the version and build ID",
              ver and ver[0].get("version") and len(ver[0].get("build_id", "")) >= 16, str(ver))
        put = [j for j in js if j.get("msg") == "request" and j.get("method") == "PUT"]
        check("access log line for the PUT", len(put) == 1, str(put))
        if put:
            p = put[0]
            check("access line fields", p["path"] == "/v1/buffers/ns/a%2Fb" and p["status"] == 201
                  and p["bytes_in"] == 18 and p["request_id"] == "trace-123"
                  and isinstance(p["duration_us"], int) and isinstance(p["worker"], int), str(p))
        get = [j for j in js if j.get("msg") == "request" and j.get("method") == "GET" and j.get("status") == 200
               and j["path"].startswith("/v1/")]
        check("GET lines carry bytes out and the generated ID",
              get and get[0]["bytes_out"] == 18 and get[0]["request_id"] == gen, str(get[:1]))
        check("values are never logged", not any("secret-value-bytes" in ln for ln in lines(srv)))
        check("GC cycles are logged at debug level",
              any(j.get("msg") == "gc cycle" and j.get("level") == "debug" for j in js))
        check("listeners are logged", sum(1 for j in js if j.get("listener")) == 2)
    finally:
        srv.stop()


def test_text_and_levels():
    srv = Server("--log-format", "text", "--log-level", "warn")
    try:
        srv.request("GET", "/healthz")
        srv.gc()
        time.sleep(0.2)
        ls = lines(srv)
        check("text format: the listening lines still name the URL",
              any("listening on http://127.0.0.1:%d" % srv.port in ln for ln in ls), str(ls[:3]))
        check("--log-level warn hides info event lines (configuration)",
              not any("configuration" in ln for ln in ls), str(ls[:3]))
        acc = [ln for ln in ls if " request " in ln and "path=/healthz" in ln]
        check("text access log line", acc and "status=200" in acc[0] and "request_id=" in acc[0], str(ls))
    finally:
        srv.stop()


def test_access_log_off_and_sampling():
    srv = Server("--access-log=false")
    try:
        for _ in range(5):
            srv.request("GET", "/healthz")
        time.sleep(0.2)
        check("--access-log false writes no request lines",
              not any(j.get("msg") == "request" for j in json_lines(srv)))
    finally:
        srv.stop()
    srv = Server("--access-log-sample", "0.1")
    try:
        for _ in range(200):
            srv.request("GET", "/healthz")
        for _ in range(3):
            srv.request("GET", "/v1/buffers/x", headers={"X-Request-Timeout": "zzz"})
        time.sleep(0.3)
        js = json_lines(srv)
        ok200 = sum(1 for j in js if j.get("msg") == "request" and j.get("status") == 200)
        bad = sum(1 for j in js if j.get("msg") == "request" and j.get("status") == 400)
        check("sampling 0.1 logs about a tenth of 200 requests (%d)" % ok200, 10 <= ok200 <= 30)
        check("4xx are sampled too, 5xx and cancellations always logged: 400s sampled (%d of 3)" % bad, bad <= 3)
    finally:
        srv.stop()
    srv = Server()  # the default is --request-id-header incoming
    try:
        st, _, h = srv.request("GET", "/healthz")
        check("by default (--request-id-header incoming) no generated header", "X-Request-Id" not in h, str(h))
        st, _, h = srv.request("GET", "/healthz", headers={"X-Request-Id": "abc"})
        check("by default a sent ID is echoed", h.get("X-Request-Id") == "abc", str(h))
        st, body, h = srv.request("GET", "/v1/buffers/none")
        check("by default error bodies still carry the generated ID",
              b'"request_id":"' in body and "X-Request-Id" not in h, "%r %r" % (body, h))
        srv.request("PUT", "/v1/buffers/k", body=b"v")
        st, _, h = srv.request("GET", "/v1/buffers/k", headers={"X-Request-Id": "abc2"})
        check("... also on a GET hit", h.get("X-Request-Id") == "abc2", str(h))
    finally:
        srv.stop()


test_json()
test_text_and_levels()
test_access_log_off_and_sampling()
finish()
