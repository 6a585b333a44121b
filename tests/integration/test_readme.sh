#!/usr/bin/env bash
# Runs the README's curl tour against a live server (ports swapped in).
source "$(dirname "$0")/lib.sh"
start_server
cd "$TMP"
readme="${BUFCACHE_SRC:?}/README.md"
# the block after "## Try it with curl"
awk '/^## Try it with curl/{f=1} f&&/^```sh/{b=1;next} b&&/^```/{exit} b' "$readme" > tour.sh
[[ -s tour.sh ]] || { fail "README has a curl tour"; finish; }
dhp="${DATA#http://}"; ahp="${ADMIN#http://}"
sed -i "s#localhost:8080#$dhp#g; s#localhost:6060#$ahp#g; s#^curl #curl -sS -f #" tour.sh
# DELETE of the photo happens before the HEAD/GET of other keys; every command must succeed
n=0
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  n=$((n+1))
  if bash -c "$line" > "out.$n" 2>&1; then ok "README: ${line:0:70}"; else fail "README: $line ($(cat out.$n))"; fi
done < tour.sh
[[ $n -ge 8 ]] && ok "README tour has $n commands" || fail "README tour too short ($n)"
# the GET in the tour returned the exact bytes PUT before
grep -q "ETag" out.3 && ok "GET -i shows an ETag" || fail "GET -i shows an ETag"
finish
