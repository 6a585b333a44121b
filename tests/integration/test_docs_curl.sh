#!/usr/bin/env bash
# Runs every curl example of README.md and docs/*.md that is marked runnable
# against a live server:
#   <!-- test -->        the next ```sh block runs against a server with no
#                        admin token;
#   <!-- test token -->  against one whose token is $BUFCACHE_ADMIN_TOKEN
#                        (the examples say -H "Authorization: Bearer
#                        $BUFCACHE_ADMIN_TOKEN").
# localhost:8080 and localhost:6060 become the test server's ports. Each
# command (a line; a trailing backslash joins lines) runs in its own bash
# with a 30 s bound, in a scratch directory, in the order of the files;
# every curl at the start of a command gets -sS -f, so an HTTP error fails
# it (a curl later in a pipeline should say -f itself). A command that shows an error on purpose says so with a trailing
# comment "# expect NNN": it must answer status NNN. A block with a curl
# command that cannot run here says why: <!-- no test: reason -->.
source "$(dirname "$0")/lib.sh"
SRC="${BUFCACHE_SRC:?}"
cd "$TMP"
export BUFCACHE_ADMIN_TOKEN_VALUE="docs-test-token-42"

# extract KIND: the marked blocks' commands, one per line, as
# "<file>:<line>\t<command>"
extract() {
  python3 - "$1" "$SRC" <<'PY'
import glob, os, re, sys
kind, src = sys.argv[1], sys.argv[2]
files = [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md")))
for f in files:
    lines = open(f, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^<!--\s*test(\s+token)?\s*-->\s*$", lines[i].strip())
        if not m or ("token" if m.group(1) else "plain") != kind:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not lines[j].startswith("```sh"):
            print("%s:%d\t#BAD marker not followed by a sh block" % (os.path.relpath(f, src), i + 1))
            i += 1
            continue
        j += 1
        cmd, start = "", None
        while j < len(lines) and not lines[j].startswith("```"):
            line = lines[j]
            if start is None:
                start = j + 1
            if line.endswith("\\"):
                cmd += line[:-1] + " "
            else:
                cmd += line
                if cmd.strip() and not cmd.strip().startswith("#"):
                    print("%s:%d\t%s" % (os.path.relpath(f, src), start, cmd.strip()))
                cmd, start = "", None
            j += 1
        i = j
PY
}

run_kind() {
  local kind="$1" n=0 where cmd want code
  extract "$kind" > "cmds.$kind"
  local dhp="${DATA#http://}" ahp="${ADMIN#http://}"
  while IFS=$'\t' read -r where cmd; do
    n=$((n+1))
    if [[ "$cmd" == "#BAD"* ]]; then fail "$where: ${cmd#\#BAD }"; continue; fi
    want=""
    if [[ "$cmd" =~ \#[[:space:]]*expect[[:space:]]+([0-9]{3})[[:space:]]*$ ]]; then
      want="${BASH_REMATCH[1]}"
      cmd="${cmd%%#*}"
    fi
    local run="${cmd//localhost:8080/$dhp}"
    run="${run//localhost:6060/$ahp}"
    if [[ -n "$want" ]]; then
      [[ "$run" == curl\ * ]] || { fail "$where: '# expect' on a command that is not a curl"; continue; }
      run="curl -sS -o /dev/null -w '%{http_code}' ${run#curl }"
      code="$(timeout 30 bash -c "$run" 2>"err.$kind.$n")"
      if [[ "$code" == "$want" ]]; then ok "$where: $cmd -> $want"
      else fail "$where: $cmd: expected $want, got [$code] $(cat "err.$kind.$n")"; fi
      continue
    fi
    [[ "$run" == curl\ * ]] && run="curl -sS -f ${run#curl }"
    # in a pipeline a failing curl fails the command too (pipefail), except
    # for the write error (23) or SIGPIPE (141) of a reader that stopped
    # early (head)
    timeout 30 bash -o pipefail -c "$run" >"out.$kind.$n" 2>&1
    code=$?
    if [[ $code -eq 0 || ( "$run" == *"|"* && ( $code -eq 23 || $code -eq 141 ) ) ]]; then
      ok "$where: ${cmd:0:80}"
    else
      fail "$where: $cmd (exit $code: $(head -c 300 "out.$kind.$n"))"
    fi
  done < "cmds.$kind"
  N=$n
}

# no curl example escapes: a block with a curl command is marked, or says
# why not with <!-- no test: reason -->
python3 - "$SRC" > unmarked <<'PY'
import glob, os, re, sys
src = sys.argv[1]
for f in [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md"))):
    lines = open(f, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marked = k >= 0 and re.match(r"<!--\s*(test|no test:)", lines[k].strip())
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if not marked and any(re.match(r"\s*curl\s", l) for l in lines[i + 1:j]):
            print("%s:%d" % (os.path.relpath(f, src), i + 1))
        i = j + 1
PY
if [[ -s unmarked ]]; then
  fail "curl examples not marked <!-- test --> (or <!-- no test: why -->): $(tr '\n' ' ' < unmarked)"
else
  ok "every curl example block in README.md and docs/*.md is marked"
fi

start_server
run_kind plain
nplain=$N
stop_server
export BUFCACHE_ADMIN_TOKEN="$BUFCACHE_ADMIN_TOKEN_VALUE"
start_server
run_kind token
ntoken=$N
stop_server
[[ $nplain -ge 30 ]] && ok "$nplain commands without a token" || fail "too few runnable commands ($nplain)"
[[ $ntoken -ge 3 ]] && ok "$ntoken commands with a token" || fail "too few runnable token commands ($ntoken)"
finish
