#!/usr/bin/env bash
# docs/API.md is api/openapi.yaml rendered by tools/openapi_md.py: it must be
# exactly what the script prints now (after editing the YAML, run
#   python3 tools/openapi_md.py > docs/API.md), and it names every path.
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:?}"
if python3 "$SRC/tools/openapi_md.py" "$SRC/api/openapi.yaml" > "$TMP/API.md"; then
  ok "tools/openapi_md.py renders api/openapi.yaml"
else
  fail "tools/openapi_md.py failed"
fi
if diff -u "$SRC/docs/API.md" "$TMP/API.md" > "$TMP/diff"; then
  ok "docs/API.md is up to date with api/openapi.yaml"
else
  fail "docs/API.md is stale: run python3 tools/openapi_md.py > docs/API.md"
  head -n 40 "$TMP/diff"
fi
python3 - "$SRC/api/openapi.yaml" "$SRC/docs/API.md" > "$TMP/paths" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1])); md = open(sys.argv[2]).read()
for path, item in spec["paths"].items():
    for m in ("get", "head", "put", "post", "delete"):
        if m in item:
            print("%s %s %s" % ("ok" if "### %s `%s`" % (m.upper(), path) in md else "missing", m.upper(), path))
PY
n="$(grep -c '^ok ' "$TMP/paths")"
if grep -q '^missing' "$TMP/paths"; then
  fail "operations missing from docs/API.md: $(grep '^missing' "$TMP/paths" | tr '\n' ';')"
else
  ok "docs/API.md has a section for each of the $n operations"
fi
finish
