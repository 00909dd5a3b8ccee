#!/usr/bin/env bash
# coexist-map alone (README: "./scripts/demo.sh"): installs what is missing, builds, and shows
# coexist-map on a sample map of the guides' users: import, route, a live migration, rollback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh >/dev/null

work=$(mktemp -d /tmp/coexist-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
map="$work/map"
sed "s#^path = .*#path = $map#" contrib/coexist.ini.sample > "$work/coexist.ini"
cm() { echo "\$ coexist-map $*"; build/maps/coexist-map -c "$work/coexist.ini" "$@"; echo; }

cm init
cm import contrib/lab/sample-users.csv --batch wave1
cm list
cm route GApps1@contoso.com GApps2@contoso.com 'gapps1+news@contoso.com' sales@contoso.com \
         dual1@contoso.com nobody@contoso.com someone@example.org
echo "# GApps2 is migrated live: the next decision changes, no reload"
cm set GApps2@contoso.com migrated --batch wave2
cm route GApps2@contoso.com
echo "# ... and rolled back"
cm set GApps2@contoso.com source
cm route GApps2@contoso.com
cm history GApps2@contoso.com
cm stats
