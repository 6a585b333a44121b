#!/usr/bin/env bash
# The default memory limit follows the container (issue #8): without
# --memory-limit / BUFCACHE_MEMORY_LIMIT the server takes 75% of its cgroup's
# memory limit (v2 memory.max, v1 memory.limit_in_bytes; the smallest on the
# path up to the mount), else 50% of physical memory, and logs the limit and
# where it came from before it listens. Fake cgroup trees under $TMP stand
# for / (--cgroup-root, BUFCACHE_CGROUP_ROOT).
source "$(dirname "$0")/lib.sh"
# a private copy of the binary under test: a rebuild of the shared build
# tree while this runs cannot swap it
cp "$BIN" "$TMP/bufcache" && BIN="$TMP/bufcache"
cd "$TMP"
MiB=1048576
PHYS=$(( $(getconf _PHYS_PAGES) * $(getconf PAGESIZE) ))
pct() { echo $(( $1 / 100 * $2 + $1 % 100 * $2 / 100 )); } # pct BYTES PERCENT

# fake ROOT PROC_SELF_CGROUP: a fresh tree ROOT/{proc/self/cgroup,sys/fs/cgroup}
fake() {
  rm -rf "$1"
  mkdir -p "$1/proc/self" "$1/sys/fs/cgroup"
  printf '%b' "$2" > "$1/proc/self/cgroup"
}
v2() { touch "$1/sys/fs/cgroup/cgroup.controllers"; }      # v2 ROOT: pure unified
put() { mkdir -p "$(dirname "$1")"; echo "$2" > "$1"; }     # put FILE VALUE

limit_of_server() { curl -sS "$ADMIN/debug/memstats" | grep -o '"MemoryLimit":[0-9]*' | head -1 | cut -d: -f2; }
logline() { grep -m1 'memory limit' "$TMP/server.out"; }
source_is() { logline | grep -qE "source\"?[:=]\"?$1([\",} ]|\$)"; }

# expect NAME BYTES SOURCE MSG-REGEX [server flags...]: starts a server with
# the flags, checks the limit it uses, the logged source and message.
expect() {
  local name="$1" bytes="$2" src="$3" re="$4"
  shift 4
  start_server "$@"
  check "$name: memory limit in /debug/memstats" "$bytes" "$(limit_of_server)"
  if source_is "$src"; then ok "$name: logged source $src"; else fail "$name: logged source $src: $(logline)"; fi
  if logline | grep -qE "$re"; then ok "$name: log says: $(logline | grep -oE 'memory limit [^"]*' | head -1)"
  else fail "$name: log line matches /$re/: $(logline)"; fi
  stop_server
  check "$name: server exits 0" 0 "$SERVER_RC"
}

# 1. cgroup v2, limit on the pod, "max" on the container: the pod's wins
R="$TMP/v2pod"
fake "$R" '0::/kubepods/pod1/ctr\n'; v2 "$R"
put "$R/sys/fs/cgroup/kubepods/pod1/ctr/memory.max" max
put "$R/sys/fs/cgroup/kubepods/pod1/memory.max" $((512 * MiB))
put "$R/sys/fs/cgroup/kubepods/memory.max" max
expect "v2 pod limit" $((384 * MiB)) cgroup \
  "memory limit 384MiB \(cgroup v2 $R/sys/fs/cgroup/kubepods/pod1/memory.max = 512MiB x 0.75\)" \
  --cgroup-root "$R"

# 2. the smallest limit on the path wins (container below its pod)
put "$R/sys/fs/cgroup/kubepods/pod1/ctr/memory.max" $((256 * MiB))
expect "v2 container limit below the pod's" $((192 * MiB)) cgroup \
  "memory limit 192MiB \(cgroup v2 $R/sys/fs/cgroup/kubepods/pod1/ctr/memory.max = 256MiB x 0.75\)" \
  --cgroup-root "$R"

# 3. cgroup namespace: the process is at "/" and the mount point is its cgroup
R="$TMP/v2ns"
fake "$R" '0::/\n'; v2 "$R"
put "$R/sys/fs/cgroup/memory.max" $((1024 * MiB))
expect "v2 in a cgroup namespace" $((768 * MiB)) cgroup \
  "memory limit 768MiB \(cgroup v2 $R/sys/fs/cgroup/memory.max = 1GiB x 0.75\)" \
  --cgroup-root "$R"

# 4. a host path the mount does not show: the mount point is the cgroup
R="$TMP/v2hidden"
fake "$R" '0::/system.slice/docker-0123abcd.scope\n'; v2 "$R"
put "$R/sys/fs/cgroup/memory.max" $((300 * MiB))
expect "v2 with the host's path hidden" $((225 * MiB)) cgroup \
  "cgroup v2 $R/sys/fs/cgroup/memory.max = 300MiB x 0.75" \
  --cgroup-root "$R"

# 5. "max" all the way up: 50% of physical memory
R="$TMP/v2max"
fake "$R" '0::/a/b\n'; v2 "$R"
put "$R/sys/fs/cgroup/a/b/memory.max" max
put "$R/sys/fs/cgroup/a/memory.max" max
expect "v2 max: physical memory" "$(pct $PHYS 50)" default \
  "physical memory [0-9.]+[KMGT]iB x 0\.50; no cgroup memory limit" \
  --cgroup-root "$R"

# 6. cgroup v1 (the memory controller's own mount), a combined controller line
R="$TMP/v1"
fake "$R" '12:pids:/docker/abc\n4:cpu,memory:/docker/abc\n1:name=systemd:/docker/abc\n'
put "$R/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" $((256 * MiB))
put "$R/sys/fs/cgroup/memory/docker/memory.limit_in_bytes" 9223372036854771712
put "$R/sys/fs/cgroup/memory/memory.limit_in_bytes" 9223372036854771712
expect "v1 limit" $((192 * MiB)) cgroup \
  "memory limit 192MiB \(cgroup v1 $R/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes = 256MiB x 0.75\)" \
  --cgroup-root "$R"

# 7. v1 "unlimited" (PAGE_COUNTER_MAX): physical memory
put "$R/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" 9223372036854771712
expect "v1 unlimited: physical memory" "$(pct $PHYS 50)" default \
  "no cgroup memory limit" --cgroup-root "$R"

# 8. hybrid: unified mounted at .../unified without the memory controller,
#    the limit on v1
R="$TMP/hybrid"
fake "$R" '4:memory:/job\n0::/job\n'
mkdir -p "$R/sys/fs/cgroup/unified/job"; touch "$R/sys/fs/cgroup/unified/cgroup.controllers"
put "$R/sys/fs/cgroup/memory/job/memory.limit_in_bytes" $((400 * MiB))
expect "hybrid: v1 memory controller" $((300 * MiB)) cgroup \
  "cgroup v1 $R/sys/fs/cgroup/memory/job/memory.limit_in_bytes = 400MiB x 0.75" \
  --cgroup-root "$R"

# 9. a cgroup limit at or above physical memory is no limit
R="$TMP/v2big"
fake "$R" '0::/\n'; v2 "$R"
put "$R/sys/fs/cgroup/memory.max" $((PHYS * 2))
expect "cgroup limit above RAM: physical memory" "$(pct $PHYS 50)" default \
  "x 0\.50; cgroup v2 $R/sys/fs/cgroup/memory.max = .* is not below it" \
  --cgroup-root "$R"

# 10. BUFCACHE_CGROUP_ROOT does what the flag does
R="$TMP/v2ns"
BUFCACHE_CGROUP_ROOT="$R" expect "BUFCACHE_CGROUP_ROOT" $((768 * MiB)) cgroup \
  "cgroup v2 $R/sys/fs/cgroup/memory.max = 1GiB x 0.75"

# 11. an explicit limit wins over the cgroup: flag, then env
expect "--memory-limit wins" $((100 * MiB)) flag \
  "memory limit 100MiB \(flag --memory-limit\)" --cgroup-root "$R" --memory-limit 100MiB
BUFCACHE_MEMORY_LIMIT=200MiB expect "BUFCACHE_MEMORY_LIMIT wins" $((200 * MiB)) env \
  "memory limit 200MiB \(env BUFCACHE_MEMORY_LIMIT\)" --cgroup-root "$R"

# 12. the line comes before the listeners; garbage in the files is no limit
R="$TMP/garbage"
fake "$R" '0::/x\n'; v2 "$R"
put "$R/sys/fs/cgroup/x/memory.max" "12abc"
put "$R/sys/fs/cgroup/memory.max" ""
start_server --cgroup-root "$R"
check "garbage in memory.max: physical memory" "$(pct $PHYS 50)" "$(limit_of_server)"
ml="$(grep -n 'memory limit' "$TMP/server.out" | head -1 | cut -d: -f1)"
ll="$(grep -n 'listening on' "$TMP/server.out" | head -1 | cut -d: -f1)"
if [[ -n "$ml" && -n "$ll" && "$ml" -lt "$ll" ]]; then ok "memory limit logged before 'listening on'"; else fail "memory limit line ($ml) before listening ($ll)"; fi
stop_server

# 13. this machine, unfaked: whatever it finds, the log and the server agree
start_server
lim="$(limit_of_server)"
if logline | grep -qE "\"memory_limit\":$lim|memory_limit=$lim"; then ok "real root: logged $(logline | grep -oE 'memory limit [^"]*' | head -1)"
else fail "real root: log and /debug/memstats agree ($lim): $(logline)"; fi
stop_server

# 14. an empty --cgroup-root is refused
"$BIN" --cgroup-root "" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >bad.out 2>&1
check "empty --cgroup-root: exit 2" 2 "$?"
grep -q -- "--help" <("$BIN" --help) && "$BIN" --help | grep -q "BUFCACHE_CGROUP_ROOT" \
  && ok "--help lists --cgroup-root (BUFCACHE_CGROUP_ROOT)" || fail "--help lists BUFCACHE_CGROUP_ROOT"
"$BIN" --help | grep -A1 -- "--memory-limit" | grep -q "75% of the cgroup" \
  && ok "--help documents the 75%/50% default" || fail "--help documents the default memory limit"
finish
