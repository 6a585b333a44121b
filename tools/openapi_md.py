#!/usr/bin/env python3
"""openapi_md.py - renders api/openapi.yaml as docs/API.md (the API
reference), so the two cannot disagree:

    python3 tools/openapi_md.py > docs/API.md

tests/integration/test_docs_api.sh fails when docs/API.md is not what this
prints. Needs PyYAML (python3-yaml) only."""
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
METHODS = ("get", "head", "put", "post", "delete")


def load(path):
    return yaml.safe_load(open(path, encoding="utf-8"))


SPEC = load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "api/openapi.yaml"))


def deref(node):
    """Follows $ref chains inside the document."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        cur = SPEC
        for part in ref[2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
        seen += 1
        if seen > 20:
            raise SystemExit("openapi_md: $ref loop at " + ref)
    return node


def ref_name(node):
    if isinstance(node, dict) and "$ref" in node:
        return node["$ref"].rsplit("/", 1)[1]
    return None


def cell(text):
    """Markdown table cell: one line, pipes escaped."""
    text = " ".join(str(text or "").split())
    return text.replace("|", "\\|")


def para(text):
    return (text or "").strip()


def schema_type(s):
    name = ref_name(s)
    if name:
        return "[%s](#schema-%s)" % (name, name.lower())
    s = s or {}
    t = s.get("type")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array":
        return "array of " + schema_type(s.get("items", {}))
    out = t or "any"
    if s.get("format"):
        out += " (%s)" % s["format"]
    if "enum" in s:
        out += ": " + ", ".join("`%s`" % v for v in s["enum"])
    if "const" in s:
        out += ": `%s`" % s["const"]
    return out


def listeners(item):
    return [s["x-listener"] for s in item.get("servers", SPEC["servers"])]


def server_of(name):
    for s in SPEC["servers"]:
        if s["x-listener"] == name:
            return s


def anchor(method, path):
    return re.sub(r"[^a-z0-9]+", "-", ("%s %s" % (method, path)).lower()).strip("-")


def security_text(op):
    sec = op.get("security", SPEC.get("security", []))
    names = [list(r)[0] for r in sec if r]
    if not names:
        return "none"
    words = {"adminToken": "`Authorization: Bearer <token>`",
             "dashboardToken": "`?token=<token>`"}
    alts = " or ".join(words.get(n, n) for n in names)
    if any(not r for r in sec):
        return alts + " when an admin token is configured (on the admin listener)"
    return alts


def params_of(item, op):
    seen, out = set(), []
    for p in list(op.get("parameters", [])) + list(item.get("parameters", [])):
        rp = deref(p)
        if (rp["name"], rp["in"]) not in seen:
            seen.add((rp["name"], rp["in"]))
            out.append(rp)
    order = {"path": 0, "query": 1, "header": 2}
    return sorted(out, key=lambda p: order.get(p["in"], 3))


def response_cells(r):
    """(meaning, body) of a response; a shared one (components/responses)
    links to its entry under "Shared responses"."""
    rr = deref(r)
    content = rr.get("content", {})
    body = "; ".join("`%s` %s" % (t, schema_type(c.get("schema")))
                     for t, c in content.items()) or "none"
    name = ref_name(r)
    if name:
        first = re.split(r"\. |: ", cell(rr.get("description")))[0].rstrip(".")
        return "%s. [%s](#response-%s)" % (first, name, name.lower()), cell(body)
    hdrs = [h for h in rr.get("headers", {}) if h != "X-Request-Id"]
    meaning = cell(rr.get("description"))
    if hdrs:
        meaning += " Headers: %s." % ", ".join("`%s`" % h for h in hdrs)
    return meaning, cell(body)


def rows(w, props, req, prefix):
    """A schema's fields, inline nested objects' fields as a.b."""
    for pn, ps in props.items():
        ps = ps or {}
        w("| `%s%s` | %s | %s | %s |" % (prefix, pn, cell(schema_type(ps)),
                                        "yes" if pn in req else "",
                                        cell(ps.get("description"))))
        if "$ref" not in ps and ps.get("properties"):
            rows(w, ps["properties"], set(ps.get("required", [])), prefix + pn + ".")


def main():
    info = SPEC["info"]
    o = []
    w = o.append
    w("<!-- Generated from api/openapi.yaml by tools/openapi_md.py: do not edit.")
    w("     Edit the YAML, then: python3 tools/openapi_md.py > docs/API.md -->")
    w("# bufcache API reference (%s)" % info["version"])
    w("")
    w(para(info.get("summary")))
    w("")
    w("The machine-readable description is [api/openapi.yaml](../api/openapi.yaml) "
      "(OpenAPI %s); a running server serves the copy it was built with at "
      "`GET /debug/openapi.yaml` on the admin listener." % SPEC["openapi"])
    w("")
    w(para(info.get("description")))
    w("")

    w("## Listeners")
    w("")
    w("| listener | default address | paths |")
    w("| --- | --- | --- |")
    for s in SPEC["servers"]:
        ps = [p for p, it in SPEC["paths"].items() if s["x-listener"] in listeners(it)]
        w("| %s | `%s` | %s |" % (cell(s["description"]), s["url"],
                                  ", ".join("`%s`" % p for p in ps)))
    w("")

    w("## Authentication")
    w("")
    for name, sch in SPEC["components"]["securitySchemes"].items():
        kind = ("HTTP %s" % sch["scheme"]) if sch["type"] == "http" else \
            "%s in %s `%s`" % (sch["type"], sch["in"], sch["name"])
        w("- **%s** (%s): %s" % (name, kind, cell(sch.get("description"))))
    w("")

    w("## Endpoints")
    w("")
    w("| method | path | listener | summary |")
    w("| --- | --- | --- | --- |")
    for path, item in SPEC["paths"].items():
        for m in METHODS:
            if m in item:
                w("| %s | [`%s`](#%s) | %s | %s |" % (
                    m.upper(), path, anchor(m, path), ", ".join(listeners(item)),
                    cell(item[m].get("summary"))))
    w("")

    w("## Errors")
    w("")
    codes = deref({"$ref": "#/components/schemas/ErrorCode"})
    w("Every error body is an [Error](#schema-error): "
      "`{\"error\":{\"code\":\"...\",\"message\":\"...\",\"request_id\":\"...\"}}`.")
    w("")
    w("| code | status |")
    w("| --- | --- |")
    for c in codes["enum"]:
        w("| `%s` | %s |" % (c, codes["x-status"][c]))
    w("")

    tags = SPEC.get("tags", [])
    for tag in tags:
        ops = [(p, m, it) for p, it in SPEC["paths"].items() for m in METHODS
               if m in it and tag["name"] in it[m].get("tags", [])]
        if not ops:
            continue
        w("## %s" % tag["name"].capitalize())
        w("")
        w(para(tag.get("description")))
        w("")
        for path, m, item in ops:
            op = item[m]
            w('<a id="%s"></a>' % anchor(m, path))
            w("")
            w("### %s `%s`" % (m.upper(), path))
            w("")
            w("**%s.** Listener: %s. Credentials: %s. Operation id: `%s`." % (
                para(op.get("summary")), " and ".join(listeners(item)),
                security_text(op), op.get("operationId")))
            w("")
            if op.get("description"):
                w(para(op["description"]))
                w("")
            ps = params_of(item, op)
            if ps:
                w("| parameter | in | type | description |")
                w("| --- | --- | --- | --- |")
                for p in ps:
                    desc = cell(p.get("description"))
                    if "example" in p:
                        desc += " Example: `%s`." % cell(p["example"])
                    w("| `%s`%s | %s | %s | %s |" % (
                        p["name"], " (required)" if p.get("required") else "", p["in"],
                        schema_type(p.get("schema")), desc))
                w("")
            rb = deref(op.get("requestBody")) if op.get("requestBody") else None
            if rb:
                types = ", ".join("`%s`" % t for t in rb.get("content", {}))
                w("Request body (%s%s): %s" % (types, ", required" if rb.get("required") else "",
                                              cell(rb.get("description") or "")))
                w("")
            w("| status | meaning | body |")
            w("| --- | --- | --- |")
            for st, r in op.get("responses", {}).items():
                w("| %s | %s | %s |" % ((st,) + response_cells(r)))
            w("")

    w("## Shared responses")
    w("")
    w("Responses many operations share (`components/responses`).")
    w("")
    for name, r in SPEC["components"]["responses"].items():
        w('<a id="response-%s"></a>' % name.lower())
        w("")
        w("### %s" % name)
        w("")
        w(para(r.get("description")))
        w("")
        hdrs = [h for h in r.get("headers", {}) if h != "X-Request-Id"]
        if hdrs:
            w("Headers: " + "; ".join("`%s`: %s" % (h, cell(deref(r["headers"][h]).get("description")))
                                      for h in hdrs) + ".")
            w("")
        content = r.get("content", {})
        if content:
            w("Body: " + "; ".join("`%s` %s" % (t, schema_type(c.get("schema")))
                                   for t, c in content.items()) + ".")
            w("")

    w("## Schemas")
    w("")
    for name, s in SPEC["components"]["schemas"].items():
        w('<a id="schema-%s"></a>' % name.lower())
        w("")
        w("### %s" % name)
        w("")
        if s.get("description"):
            w(para(s["description"]))
            w("")
        if s.get("enum"):
            w("One of: " + ", ".join("`%s`" % v for v in s["enum"]) + ".")
            w("")
        props = s.get("properties")
        if props:
            req = set(s.get("required", []))
            w("| field | type | required | description |")
            w("| --- | --- | --- | --- |")
            rows(w, props, req, "")
            w("")
    sys.stdout.write("\n".join(o).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
