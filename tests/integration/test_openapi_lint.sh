#!/usr/bin/env bash
# api/openapi.yaml passes Redocly CLI's lint (tools/redocly/lint.sh: the
# pinned @redocly/cli, installed with npm ci on first use) with no error and
# no warning; a broken copy fails it (the lint really lints); and the YAML
# the binary serves at /debug/openapi.yaml is the file, byte for byte.
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:?}"
LINT="$SRC/tools/redocly/lint.sh"

out="$TMP/lint.out"
if bash "$LINT" >"$out" 2>&1; then
  ok "redocly lint api/openapi.yaml: no error"
else
  fail "redocly lint api/openapi.yaml"; tail -n 60 "$out"
fi
if grep -qiE "you have [0-9]+ warning" "$out"; then
  fail "redocly lint: warnings"; grep -iE "warning" "$out" | head -20
else
  ok "redocly lint: no warning"
fi
grep -q "valid" "$out" && ok "redocly says the description is valid" || { fail "no verdict"; cat "$out"; }

# a description with a dangling $ref must fail
python3 - "$SRC/api/openapi.yaml" "$TMP/broken.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["paths"]["/healthz"]["get"]["responses"]["200"] = {"$ref": "#/components/responses/Nope"}
yaml.safe_dump(d, open(sys.argv[2], "w"), sort_keys=False)
PY
if bash "$LINT" "$TMP/broken.yaml" >"$TMP/broken.out" 2>&1; then
  fail "redocly lint passes a description with a dangling \$ref"
else
  ok "redocly lint fails a broken description"
fi

# the served copy is the file
start_server
curl -sS -D "$TMP/h" -o "$TMP/served.yaml" "$ADMIN/debug/openapi.yaml"
if cmp -s "$TMP/served.yaml" "$SRC/api/openapi.yaml"; then
  ok "GET /debug/openapi.yaml serves api/openapi.yaml byte for byte"
else
  fail "GET /debug/openapi.yaml differs from api/openapi.yaml (stale build?)"
fi
grep -qi "^content-type: application/yaml" "$TMP/h" && ok "Content-Type application/yaml" \
  || fail "Content-Type: $(grep -i content-type "$TMP/h")"
check "HEAD /debug/openapi.yaml" 200 "$(curl -s -o /dev/null -w '%{http_code}' -I "$ADMIN/debug/openapi.yaml")"
check "not on the data listener" 404 "$(status GET "$DATA/debug/openapi.yaml")"
stop_server
# behind the admin guard like every admin route
echo "s3cret-token" > "$TMP/token"
start_server --admin-token-file "$TMP/token"
check "401 without the token" 401 "$(status GET "$ADMIN/debug/openapi.yaml")"
check "200 with the token" 200 "$(status GET "$ADMIN/debug/openapi.yaml" -H 'Authorization: Bearer s3cret-token')"
finish
