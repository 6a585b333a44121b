#!/usr/bin/env bash
# The binary is built hardened (issue 9): PIE (ELF type DYN, FLAGS_1 PIE),
# full RELRO (GNU_RELRO, BIND_NOW / FLAGS_1 NOW), a non-executable stack,
# the stack protector (__stack_chk_fail), FORTIFY_SOURCE (*_chk calls; level
# 3 in the build flags where the compiler has it).
source "$(dirname "$0")/lib.sh"
command -v readelf >/dev/null || { echo "readelf is needed (binutils)"; exit 1; }

hdr="$(readelf -hW "$BIN")"
dyn="$(readelf -dW "$BIN")"
seg="$(readelf -lW "$BIN")"
syms="$(readelf -sW --dyn-syms "$BIN")"

grep -q 'Type:.*DYN' <<<"$hdr" && ok "PIE: ELF type DYN" || fail "not PIE: $(grep Type: <<<"$hdr")"
grep -Eq 'FLAGS_1.*PIE' <<<"$dyn" && ok "FLAGS_1 has PIE" || fail "FLAGS_1 lacks PIE"
grep -q 'GNU_RELRO' <<<"$seg" && ok "RELRO: a GNU_RELRO segment" || fail "no GNU_RELRO segment"
grep -Eq '\(FLAGS\).*BIND_NOW' <<<"$dyn" && ok "full RELRO: FLAGS BIND_NOW" || fail "no BIND_NOW"
grep -Eq 'FLAGS_1.*NOW' <<<"$dyn" && ok "full RELRO: FLAGS_1 NOW" || fail "FLAGS_1 lacks NOW"
grep -Eq 'GNU_STACK.* RW ' <<<"$seg" && ok "non-executable stack (GNU_STACK RW)" ||
  fail "executable stack: $(grep GNU_STACK <<<"$seg")"
! grep -q 'TEXTREL' <<<"$dyn" && ok "no text relocations" || fail "TEXTREL present"
! grep -Eq '\((RPATH|RUNPATH)\)' <<<"$dyn" && ok "no RPATH/RUNPATH" || fail "RPATH/RUNPATH set"
grep -q ' __stack_chk_fail' <<<"$syms" && ok "stack protector: __stack_chk_fail" ||
  fail "no __stack_chk_fail: built without -fstack-protector?"
nchk="$(grep -oE ' __[a-z0-9_]+_chk(@|$)' <<<"$syms" | sort -u | wc -l)"
((nchk >= 3)) && ok "FORTIFY_SOURCE: $nchk distinct *_chk functions" ||
  fail "FORTIFY_SOURCE: only $nchk *_chk functions"
# the level is in the build's flags (the binary does not record it)
flags="${BUFCACHE_BUILD:-}/CMakeFiles/bufcache.dir/flags.make"
if [[ -f "$flags" ]]; then
  if grep -q 'CMAKE_BUILD_TYPE:STRING=\(Release\|RelWithDebInfo\)' "$BUFCACHE_BUILD/CMakeCache.txt"; then
    grep -q '_FORTIFY_SOURCE=3' "$flags" && ok "built with -D_FORTIFY_SOURCE=3" ||
      fail "not built with _FORTIFY_SOURCE=3: $(grep -o '_FORTIFY_SOURCE=[0-9]' "$flags")"
  fi
  grep -q 'fstack-protector-strong' "$flags" && ok "built with -fstack-protector-strong" ||
    fail "not built with -fstack-protector-strong"
fi
finish
