#!/usr/bin/env bash
# deploy/Dockerfile without a Docker engine (issue #8):
#   1. the build context is the tree filtered by /.dockerignore: copy what
#      it keeps, run the build stage's RUN lines in it as written (the
#      README's set-up, scripts/setup.sh), and the binary comes out working;
#      build trees and VCS data stay out of the context;
#   2. the runtime stage installs exactly the Debian packages of the
#      libraries `ldd` shows for that binary (the list between the
#      "runtime-packages" markers), each a real bookworm package;
#   3. every file the Dockerfile COPYs from the context is in it.
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
DF="$SRC/deploy/Dockerfile"
PY=/usr/bin/python3
[[ -f "$DF" && -f "$SRC/.dockerignore" ]] || { fail "deploy/Dockerfile and .dockerignore exist"; finish; }
cd "$TMP"

# ---- 1. the context .dockerignore leaves --------------------------------------
# Docker's rules (moby/patternmatcher): patterns relative to the context root,
# '*' and '?' within one path element, '**' across elements, '!' re-includes,
# the last matching pattern wins, and a path is excluded when it or one of
# its parent directories matches.
"$PY" - "$SRC" "$TMP/ctx" > ctx.txt <<'PYEOF'
import os, re, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
pats = []
for line in open(os.path.join(src, ".dockerignore")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    p = os.path.normpath(line[1:] if neg else line).lstrip("/")
    out, i = "^", 0
    while i < len(p):
        c = p[i]
        if p.startswith("**/", i):
            out += "(.*/)?"; i += 3; continue
        if p.startswith("**", i):
            out += ".*"; i += 2; continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and "]" in p[i:]:
            j = p.index("]", i); out += p[i:j + 1].replace("[!", "[^"); i = j
        else:
            out += re.escape(c)
        i += 1
    pats.append((re.compile(out + "$"), neg))
has_neg = any(n for _, n in pats)
def excluded(rel):
    parts = rel.split("/")
    pre = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    ex = False
    for rx, neg in pats:
        if any(rx.match(x) for x in pre):
            ex = not neg
    return ex
kept = dropped = 0
for root, dirs, files in os.walk(src):
    relroot = os.path.relpath(root, src)
    relroot = "" if relroot == "." else relroot + "/"
    if not has_neg:
        for d in list(dirs):
            if excluded(relroot + d):
                dirs.remove(d)
                print("DROPDIR\t" + relroot + d)
    for f in files:
        rel = relroot + f
        if excluded(rel):
            dropped += 1
            continue
        os.makedirs(os.path.join(dst, relroot), exist_ok=True)
        s = os.path.join(root, f)
        if os.path.islink(s):
            os.symlink(os.readlink(s), os.path.join(dst, rel))
        else:
            shutil.copy2(s, os.path.join(dst, rel))
        kept += 1
print(f"KEPT\t{kept}\nDROPPED\t{dropped}")
PYEOF
check "the context copy ran" 0 "$?"
echo "# context: $(grep KEPT ctx.txt | cut -f2) files kept; dropped dirs: $(grep DROPDIR ctx.txt | cut -f2 | tr '\n' ' ')"
for d in build .git; do
  if [[ -e "$SRC/$d" ]]; then
    [[ ! -e "ctx/$d" ]] && ok ".dockerignore leaves $d out" || fail ".dockerignore leaves $d out"
  fi
done
for f in CMakeLists.txt scripts/setup.sh deploy/entrypoint.sh server/main.c tests/CMakeLists.txt; do
  [[ -f "ctx/$f" ]] && ok "the context has $f" || fail "the context has $f"
done
[[ -x ctx/deploy/entrypoint.sh && -x ctx/scripts/setup.sh ]] && ok "scripts keep their exec bit" || fail "exec bits"

# every COPY source of the Dockerfile (not --from) exists in the context
while read -r s; do
  [[ -e "ctx/$s" ]] && ok "COPY source $s is in the context" || fail "COPY source $s is in the context"
done < <(grep -E '^COPY ' "$DF" | grep -v -- '--from=' | sed -E 's/^COPY( --[a-z]+=[^ ]+)* //' | awk '{for (i = 1; i < NF; i++) print $i}')

# the build stage's RUN lines, as written, from its WORKDIR (the context root)
awk '/^FROM /{n++} n==1' "$DF" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -E '^RUN ' | sed 's/^RUN //' > build-stage.sh
[[ -s build-stage.sh ]] && ok "the build stage has RUN steps: $(tr -s ' ' < build-stage.sh | head -c 120)" || fail "no RUN in the build stage"
t0=$(date +%s)
(cd ctx && bash -e ../build-stage.sh) > build.out 2>&1
rc=$?
check "the build stage's steps succeed on the .dockerignore'd context ($(( $(date +%s) - t0 ))s)" 0 "$rc"
((rc == 0)) || tail -30 build.out
IMG_BIN="$TMP/ctx/build/bufcache"
[[ -x "$IMG_BIN" ]] && "$IMG_BIN" --help > /dev/null 2>&1 && ok "the binary it builds runs (--help)" || fail "the built binary runs"
[[ -x "$IMG_BIN" ]] || finish

# ---- 2. the runtime stage's packages are ldd's ------------------------------------
# the Debian package owning a library path (usrmerge: /lib is /usr/lib)
pkg_of() {
  local p="$1" c out
  for c in "$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p" "$(readlink -f "$p" | sed 's#^/usr##')"; do
    out="$(dpkg -S "$c" 2>/dev/null | head -1)" && [[ -n "$out" ]] && { echo "${out%%:*}"; return 0; }
  done
  echo "UNKNOWN($p)"
}
ldd "$IMG_BIN" > ldd.txt
grep -oE '(=> )?/[^ ]+' ldd.txt | sed 's/^=> //' | sort -u > libs.txt
while read -r l; do pkg_of "$l"; done < libs.txt | sort -u > ldd-pkgs.txt
# the apt-get install between the markers
sed -n '/^# runtime-packages:begin/,/^# runtime-packages:end/p' "$DF" \
  | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' \
  | grep -oE 'apt-get install[^&]*' | head -1 \
  | tr -s ' \t' '\n' | grep -vE '^(apt-get|install|-.*|)$' | sort -u > df-pkgs.txt
[[ -s df-pkgs.txt ]] && ok "the Dockerfile's runtime stage installs $(wc -l < df-pkgs.txt) packages between the markers" \
  || fail "no apt-get install between '# runtime-packages:begin' and ':end'"
check "runtime packages == the packages of ldd's libraries" \
  "$(tr '\n' ' ' < ldd-pkgs.txt)" "$(tr '\n' ' ' < df-pkgs.txt)"
grep -q UNKNOWN ldd-pkgs.txt && fail "a library without a package: $(grep UNKNOWN ldd-pkgs.txt)"
for p in $(cat df-pkgs.txt); do
  ver="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  [[ -n "$ver" && "$ver" != "(none)" ]] && ok "runtime package $p is in the archive ($ver)" || fail "runtime package $p unknown to apt"
done
# the entrypoint's interpreter is in every Debian image (bash is Essential)
check "entrypoint runs on bash (Essential in debian:12-slim)" "#!/bin/bash" "$(head -1 "$SRC/deploy/entrypoint.sh")"
check "bash is Essential" "yes" "$(dpkg-query -W -f='${Essential}' bash)"
finish
