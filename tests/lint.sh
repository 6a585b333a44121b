#!/usr/bin/env bash
# tests/lint.sh - static analysis of the modules' sources (base gc cache
# server api) with Debian's clang-tidy and cppcheck; fails on any finding.
#   clang-tidy: the checks in .clang-tidy (each one left out says why there)
#   cppcheck:   warning, performance and portability checks; deliberate
#               exceptions in .cppcheck-suppressions, each with its reason
# Both read the compile commands of a configure-only build in build-lint
# (the sources are analysed as the build compiles them; api/fault.c as the
# bufcache-fault variant compiles it). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINT="${BUFCACHE_LINT_BUILD:-build-lint}"
J="$(nproc)"
for tool in clang-tidy cppcheck; do
  command -v "$tool" >/dev/null || { echo "lint: $tool is needed (scripts/setup.sh)"; exit 1; }
done

cmake -S . -B "$LINT" -DCMAKE_BUILD_TYPE=Release -DBUFCACHE_TESTS=OFF \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
# the modules' own sources only: no generated files, no test-only ones
python3 - "$LINT" <<'PY'
import json, os, sys
d, root = sys.argv[1], os.getcwd()
db = json.load(open(os.path.join(d, "compile_commands.json")))
mods = ("base", "gc", "cache", "server", "api")
keep, seen = [], set()
# api/ is compiled twice (bufcache-fault's copy has the fault route): one
# entry per file, the plain one first; fault.c only exists in the other
for e in sorted(db, key=lambda e: "BUFCACHE_FAULT_INJECTION" in e.get("command", "")):
    rel = os.path.relpath(e["file"], root)
    if (rel.split(os.sep)[0] in mods and rel not in seen
            and not os.path.basename(rel).startswith("fuzz_")):
        seen.add(rel)
        keep.append(e)
os.makedirs(os.path.join(d, "lint"), exist_ok=True)
with open(os.path.join(d, "lint", "compile_commands.json"), "w") as f:
    json.dump(keep, f, indent=1)
with open(os.path.join(d, "lint", "files"), "w") as f:
    f.write("\n".join(sorted({e["file"] for e in keep})) + "\n")
PY
DB="$LINT/lint"
nfiles="$(wc -l <"$DB/files")"
fail=0

t0=$SECONDS
xargs -P "$J" -n 1 clang-tidy -p "$DB" --quiet <"$DB/files" >"$DB/clang-tidy.out" 2>"$DB/clang-tidy.err" || true
if grep -qE '(warning|error):' "$DB/clang-tidy.out" "$DB/clang-tidy.err"; then
  echo "lint: clang-tidy findings:"
  grep -hE -A3 '(warning|error):' "$DB/clang-tidy.out" "$DB/clang-tidy.err" | head -100
  fail=1
else
  echo "lint: clang-tidy: $nfiles files, no finding ($((SECONDS - t0)) s)"
fi

t0=$SECONDS
if ! cppcheck --project="$DB/compile_commands.json" --std=c11 -q -j "$J" \
    --enable=warning,performance,portability --inline-suppr \
    --suppressions-list=.cppcheck-suppressions --error-exitcode=1 \
    --template='{file}:{line}: {severity}: {message} [{id}]' 2>"$DB/cppcheck.out"; then
  echo "lint: cppcheck findings:"
  head -100 "$DB/cppcheck.out"
  fail=1
elif [[ -s "$DB/cppcheck.out" ]]; then
  echo "lint: cppcheck said:"; head -50 "$DB/cppcheck.out"; fail=1
else
  echo "lint: cppcheck: $nfiles files, no finding ($((SECONDS - t0)) s)"
fi
exit "$fail"
