#!/usr/bin/env bash
# Imports N generated users (default 1,000,000; every tenth with an alias) into a fresh map and
# reports the wall time, peak memory, and the map's size. Usage: bench/import-1m.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
tool=${COEXIST_MAP:-build/maps/coexist-map}
work=$(mktemp -d /tmp/coexist-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

sed "s#^path = .*#path = $work/map#" contrib/coexist.ini.sample > "$work/coexist.ini"
awk -v n="$n" 'BEGIN {
  print "address,state,target,batch,aliases"
  for (i = 0; i < n; i++) {
    state = (i % 3 == 0) ? "source" : (i % 3 == 1) ? "migrated" : "dual"
    alias = (i % 10 == 0) ? "alias" i "@contoso.com" : ""
    printf "user%d@contoso.com,%s,,wave%d,%s\n", i, state, i % 20, alias
  }
}' > "$work/users.csv"

"$tool" -c "$work/coexist.ini" init >/dev/null
echo "users: $n ($(du -h "$work/users.csv" | cut -f1) of CSV)"
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, peak RSS %M KiB" \
  "$tool" -c "$work/coexist.ini" import "$work/users.csv" --batch bench
/usr/bin/time -f "export: %e s wall" "$tool" -c "$work/coexist.ini" export > "$work/export.csv"
"$tool" -c "$work/coexist.ini" stats | grep -E '^(users|aliases|map size)'
echo "data.mdb on disk: $(du -h "$work/map/data.mdb" | cut -f1)"
/usr/bin/time -f "re-import of the export (no changes): %e s wall" \
  "$tool" -c "$work/coexist.ini" import "$work/export.csv"
