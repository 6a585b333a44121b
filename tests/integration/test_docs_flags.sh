#!/usr/bin/env bash
# docs/operations.md's table of flags (between <!-- flags:begin --> and
# <!-- flags:end -->) is `bufcache --help` rendered by tools/help_md.py:
# every flag, its BUFCACHE_* variable and its default, nothing more.
# After changing a flag: build/bufcache --help | python3 tools/help_md.py
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:?}"
doc="$SRC/docs/operations.md"
"$BIN" --help > "$TMP/help" 2>&1 || { fail "bufcache --help exits non-zero"; finish; }
python3 "$SRC/tools/help_md.py" < "$TMP/help" > "$TMP/want" || { fail "tools/help_md.py"; finish; }
awk '/<!-- flags:end -->/{f=0} f; /<!-- flags:begin -->/{f=1}' "$doc" > "$TMP/have"
[[ -s "$TMP/have" ]] && ok "docs/operations.md has the flags table" || fail "no <!-- flags:begin/end --> table in docs/operations.md"
if diff -u "$TMP/have" "$TMP/want" > "$TMP/diff"; then
  ok "the table is bufcache --help ($(grep -c '^| `--' "$TMP/want") flags)"
else
  fail "docs/operations.md's flags table differs from --help: regenerate it with build/bufcache --help | python3 tools/help_md.py"
  cat "$TMP/diff"
fi
# each flag of --help is in the table with its variable (a check that does not
# depend on help_md.py's formatting)
while read -r flag; do
  env="BUFCACHE_$(echo "${flag#--}" | tr 'a-z-' 'A-Z_')"
  [[ "$flag" == --admin-token-file ]] && env=BUFCACHE_ADMIN_TOKEN
  grep -qF "| \`$flag\` | \`$env\` |" "$TMP/have" || fail "$flag ($env) is not in the table"
done < <(grep -oE '^  --[a-z][a-z0-9-]*' "$TMP/help" | tr -d ' ' | grep -v '^--help$')
ok "every flag of --help is in the table with its variable"
finish
