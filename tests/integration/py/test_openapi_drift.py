"""test_openapi_drift.py - api/openapi.yaml against the running server, both
ways, so neither can drift from the other.

The router's side comes from api/api_internal.h: API_ROUTES is the table
every route must be in (its path is the route's metrics label, and the
router's R_* values index it), API_ERRORS the table of every error code
and its status. For each route the test asks the live server which methods
it allows, on which listener: an unknown method (PATCH, never allowed) gets
405 with `Allow` where the route exists and 404 `no_route` where it does
not. So, with a server started with an admin token:

  1. routes -> description: every API_ROUTES path is a documented path, on
     exactly the listeners that serve it (per-path `servers`, `x-listener`),
     with exactly the methods of its `Allow`; every documented path is in
     API_ROUTES;
  2. description -> server: every documented operation, on each of its
     listeners, sent a reasonable request (path parameters, query
     parameters and bodies from the description's examples; the admin
     token as documented) answers one of its documented statuses, with a
     documented Content-Type, a 2xx JSON body valid against its schema, an
     error body valid against Error with the code's documented status;
     then again with every documented header example (conditional and
     range headers) and, on the admin listener, without the token (which
     must be a documented 401);
  3. errors: ErrorCode's enum and x-status are API_ERRORS (plus
     deadline_exceeded, which server/worker.c writes itself).
"""
import http.client
import json
import os
import re
import sys

import yaml

from bctest import Server, check, fail, finish, ok

SRC = os.environ.get("BUFCACHE_SRC") or os.path.join(os.path.dirname(__file__), "../../..")
SPEC = yaml.safe_load(open(os.path.join(SRC, "api/openapi.yaml")))
HDR = open(os.path.join(SRC, "api/api_internal.h")).read()
TOKEN = "drift-test-token-0123"
METHODS = ("get", "head", "put", "delete", "post", "patch", "options")


def macro_block(name):
    """The lines of #define NAME(X) ... up to the first line without a
    trailing backslash."""
    m = re.search(r"#define %s\(X\)(.*?)(?<!\\)\n" % name, HDR, re.S)
    if not m:
        raise SystemExit("no %s in api/api_internal.h" % name)
    return m.group(1)


ROUTES = [(r, p) for r, p in re.findall(r'X\((R_\w+),\s*"([^"]+)"\)', macro_block("API_ROUTES"))
          if r != "R_NOTFOUND"]
ERRORS = {c: int(s) for _, s, c in
          re.findall(r'X\((API_ERR_\w+),\s*(\d+),\s*"([^"]+)"\)', macro_block("API_ERRORS"))}
check("API_ROUTES has routes (%d)" % len(ROUTES), len(ROUTES) >= 10)
check("API_ERRORS has codes (%d)" % len(ERRORS), len(ERRORS) >= 10)


# ---- the description's side ------------------------------------------------

def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = SPEC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def listeners_of(path_item):
    servers = path_item.get("servers", SPEC["servers"])
    return sorted(s["x-listener"] for s in servers)


def media(ct):
    return (ct or "").split(";")[0].strip().lower()


def validate(schema, v, where="$"):
    """A small JSON Schema checker for the keywords the description uses.
    Returns a list of problems."""
    s = resolve(schema)
    errs = []
    for sub in s.get("allOf", []):
        errs += validate(sub, v, where)
    t = s.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        okt = any({"object": isinstance(v, dict), "array": isinstance(v, list),
                   "string": isinstance(v, str), "boolean": isinstance(v, bool),
                   "null": v is None,
                   "integer": isinstance(v, int) and not isinstance(v, bool),
                   "number": isinstance(v, (int, float)) and not isinstance(v, bool)}[x]
                  for x in types)
        if not okt:
            return ["%s: %r is not %s" % (where, v, t)]
    if "enum" in s and v not in s["enum"]:
        errs.append("%s: %r not in %s" % (where, v, s["enum"]))
    if "const" in s and v != s["const"]:
        errs.append("%s: %r is not %r" % (where, v, s["const"]))
    if isinstance(v, dict):
        for k in s.get("required", []):
            if k not in v:
                errs.append("%s: %s missing" % (where, k))
        props = s.get("properties", {})
        for k, sub in props.items():
            if k in v:
                errs += validate(sub, v[k], where + "." + k)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for k in v:
                if k not in props:
                    errs += validate(extra, v[k], where + "." + k)
    if isinstance(v, list):
        if "minItems" in s and len(v) < s["minItems"]:
            errs.append("%s: fewer than %d items" % (where, s["minItems"]))
        if "maxItems" in s and len(v) > s["maxItems"]:
            errs.append("%s: more than %d items" % (where, s["maxItems"]))
        if "items" in s:
            for i, x in enumerate(v):
                errs += validate(s["items"], x, "%s[%d]" % (where, i))
    return errs


# 3. errors
codes = resolve({"$ref": "#/components/schemas/ErrorCode"})
want_codes = dict(ERRORS, deadline_exceeded=408)
check("ErrorCode enum is API_ERRORS' codes + deadline_exceeded",
      sorted(codes["enum"]) == sorted(want_codes),
      "spec %s, code %s" % (sorted(codes["enum"]), sorted(want_codes)))
check("ErrorCode x-status is API_ERRORS' statuses", codes.get("x-status") == want_codes,
      "spec %s, code %s" % (codes.get("x-status"), want_codes))
worker_c = open(os.path.join(SRC, "server/worker.c")).read()
check("server/worker.c still writes deadline_exceeded with 408",
      "deadline_exceeded" in worker_c and "408 Request Timeout" in worker_c)

# ---- the server ---------------------------------------------------------------

tokfile = os.path.join(os.environ.get("TMPDIR", "/tmp"), "bufcache-drift-token.%d" % os.getpid())
with open(tokfile, "w") as f:
    f.write(TOKEN + "\n")
srv = Server("--admin-token-file", tokfile, "--access-log=false")
os.unlink(tokfile)
PORT = {"data": srv.port, "admin": srv.admin_port}
AUTH = {"Authorization": "Bearer " + TOKEN}


def send(listener, method, target, headers=None, body=None, timeout=90):
    """(status, headers dict lower-case, body bytes). Reads the whole body,
    except of text/event-stream (headers only, then the connection is
    closed)."""
    c = http.client.HTTPConnection("127.0.0.1", PORT[listener], timeout=timeout)
    try:
        c.request(method, target, body=body, headers=headers or {})
        r = c.getresponse()
        h = {k.lower(): v for k, v in r.getheaders()}
        if media(h.get("content-type")) == "text/event-stream":
            data = b""
        else:
            data = r.read()
        return r.status, h, data
    finally:
        c.close()


def fill(path, op_params):
    """The path with its parameters filled from their examples, and the
    query string of the query parameters that have one."""
    query = []
    for p in op_params:
        p = resolve(p)
        ex = p.get("example", p.get("schema", {}).get("default"))
        if p["in"] == "path":
            path = path.replace("{%s}" % p["name"], str(ex))
        elif p["in"] == "query" and "example" in p:
            query.append("%s=%s" % (p["name"], p["example"]))
    return path + ("?" + "&".join(query) if query else "")


def params_of(path_item, op):
    seen, out = set(), []
    for p in list(op.get("parameters", [])) + list(path_item.get("parameters", [])):
        rp = resolve(p)
        if (rp["name"], rp["in"]) not in seen:
            seen.add((rp["name"], rp["in"]))
            out.append(p)
    return out


# ---- 1. routes -> description ---------------------------------------------------

paths = SPEC["paths"]
route_paths = {p for _, p in ROUTES}
for p in paths:
    check("documented path %s is a route in API_ROUTES" % p, p in route_paths)

for rname, rpath in ROUTES:
    target = rpath.replace("{key}", "openapi-drift/probe")
    served = {}
    for lis in ("data", "admin"):
        st, h, body = send(lis, "PATCH", target, AUTH if lis == "admin" else {})
        if st == 405:
            served[lis] = sorted(m.strip().lower() for m in h.get("allow", "").split(","))
        elif st == 404 and b'"no_route"' in body:
            pass
        else:
            fail("%s %s on %s: PATCH answered %d, not 405 or 404 no_route" % (rname, rpath, lis, st))
    if not served:
        fail("%s %s: no listener serves it" % (rname, rpath))
        continue
    item = paths.get(rpath)
    if item is None:
        fail("route %s %s (%s) is not in api/openapi.yaml" % (rname, rpath, ", ".join(sorted(served))))
        continue
    check("%s is documented on the listeners that serve it (%s)" % (rpath, ", ".join(sorted(served))),
          listeners_of(item) == sorted(served),
          "documented %s, served %s" % (listeners_of(item), sorted(served)))
    documented = sorted(m for m in METHODS if m in item)
    for lis, allowed in served.items():
        check("%s on %s: documented methods %s = Allow %s" % (rpath, lis, documented, allowed),
              documented == allowed)

# ---- 2. description -> server ------------------------------------------------------

ORDER = {"put": 0, "post": 1, "get": 2, "head": 3, "delete": 4}


def path_order(p):
    return (0 if p == "/v1/buffers/{key}" else 1 if p == "/v1/buffers" else 2, p)


def check_answer(label, op, method, st, h, body, sent_id=None):
    responses = op.get("responses", {})
    doc = responses.get(str(st), responses.get("default"))
    if doc is None:
        fail("%s: status %d is not documented (%s)" % (label, st, ", ".join(sorted(responses))))
        return
    ok("%s: %d is documented" % (label, st))
    doc = resolve(doc)
    if sent_id and "X-Request-Id" in doc.get("headers", {}):
        check("%s: X-Request-Id echoed" % label, h.get("x-request-id") == sent_id,
              str(h.get("x-request-id")))
    content = doc.get("content", {})
    ct = media(h.get("content-type"))
    if method != "HEAD" and content and body:
        types = [media(k) for k in content]
        if ct not in types and "*/*" not in types:
            fail("%s: Content-Type %s not among %s" % (label, ct, types))
            return
    if ct != "application/json" or not body or method == "HEAD":
        return
    try:
        j = json.loads(body)
    except ValueError as e:
        fail("%s: body is not JSON: %s" % (label, e))
        return
    schema = (content.get("application/json") or {}).get("schema")
    if schema is not None:
        errs = validate(schema, j)
        check("%s: body valid against its schema" % label, not errs, "; ".join(errs[:5]))
    if st >= 400:
        code = j.get("error", {}).get("code")
        check("%s: error code %s is sent with %d" % (label, code, st),
              codes.get("x-status", {}).get(code) == st)


def run(listener, path, method, op, item, variant, extra=None):
    """Sends the operation's request; variant "examples": path and query
    parameters, X-Request-Id and X-Request-Timeout from their examples;
    "header NAME": the same plus header NAME's example; "no token": the
    examples without the admin token. Returns the status (None: no answer)."""
    params = params_of(item, op)
    target = fill(path, params)
    headers = {}
    for p in params:
        rp = resolve(p)
        if rp["in"] != "header" or "example" not in rp:
            continue
        if rp["name"] in ("X-Request-Id", "X-Request-Timeout") or rp["name"] == extra:
            if rp["name"] == "X-Request-Timeout" and listener != "data":
                continue  # the admin listener does not read it
            headers[rp["name"]] = str(rp["example"])
    if extra == "If-Range":  # If-Range means something with Range only
        headers["Range"] = "bytes=0-3"
    body = None
    rb = resolve(op.get("requestBody", {}))
    if rb.get("content"):
        mt, m = next(iter(rb["content"].items()))
        body = str(m.get("example", "")).encode()
        headers["Content-Type"] = "text/plain" if mt == "*/*" else mt
    if listener == "admin" and variant != "no token":
        headers.update(AUTH)
    M = method.upper()
    label = "%s %s %s (%s; %s)" % (listener, M, target, variant, ",".join(sorted(headers)))
    try:
        st, h, data = send(listener, M, target, headers, body)
    except Exception as e:  # noqa: BLE001 - any failure is the test's
        fail("%s: %s" % (label, e))
        return None
    check_answer(label, op, M, st, h, data, headers.get("X-Request-Id"))
    return st


def operations():
    """(path, method, op, item, listener), PUT before GET/HEAD before DELETE
    on a path, the key's path first."""
    for path in sorted(paths, key=path_order):
        item = paths[path]
        for method in sorted((m for m in METHODS if m in item), key=lambda m: ORDER.get(m, 9)):
            for lis in listeners_of(item):
                yield path, method, item[method], item, lis


nreq = 0
# the examples: every operation must reach a success status with them
for path, method, op, item, lis in operations():
    st = run(lis, path, method, op, item, "examples")
    nreq += 1
    check("%s %s %s: the examples reach a success status (%s)" % (lis, method.upper(), path, st),
          st is not None and (200 <= st < 300 or st == 304))

# each documented request header's example on its own (conditional and range
# headers: 206, 304, 412), the value PUT afresh before each
for path, method, op, item, lis in operations():
    for p in params_of(item, op):
        rp = resolve(p)
        if rp["in"] != "header" or "example" not in rp or rp["name"].startswith("X-Request-"):
            continue
        if "put" in item and method != "put":
            run(lis, path, "put", item["put"], item, "set-up")
        run(lis, path, method, op, item, "header " + rp["name"], rp["name"])
        nreq += 1

# without the token: every admin operation is a documented 401
for path, method, op, item, lis in operations():
    if lis != "admin":
        continue
    st = run(lis, path, method, op, item, "no token")
    nreq += 1
    check("admin %s %s without the token is 401" % (method.upper(), path), st == 401, str(st))
check("requests sent: %d" % nreq, nreq >= 2 * 45)

srv.stop()
finish()
