#!/usr/bin/env bash
# The Debian package, without installing it: cpack into a temporary directory, then the control
# data (Depends from dpkg-shlibdeps, conffiles, maintainer scripts), the exact file list, the
# programs run from an extracted root, the man pages rendered without a warning, and
# systemd-analyze verify on the units. Installing it on a fresh Debian is
# scripts/package-check.sh (needs root and a mirror).
#
#   check_deb.sh BUILD_DIR SOURCE_DIR VERSION HAVE_MILTER(0|1) HAVE_POLICYD(0|1)
set -uo pipefail
build=$1 src=$2 version=$3 have_milter=$4 have_policyd=$5

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# --- build the package ------------------------------------------------------------------------
if ! (cd "$build" && cpack -G DEB -B "$tmp/out" --config "$build/CPackConfig.cmake") > "$tmp/cpack.log" 2>&1; then
  cat "$tmp/cpack.log"; echo "FAIL: cpack -G DEB"; exit 1
fi
debs=("$tmp"/out/coexist_*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || { ls -l "$tmp/out"; echo "FAIL: expected one coexist_*.deb"; exit 1; }
deb=${debs[0]}
arch=$(dpkg --print-architecture)
[ "$(basename "$deb")" = "coexist_${version}-1_${arch}.deb" ] && ok "file name $(basename "$deb")" ||
  fail "file name $(basename "$deb"), expected coexist_${version}-1_${arch}.deb"

# --- control ----------------------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = coexist ] || fail "Package: $(field Package)"
[ "$(field Version)" = "${version}-1" ] || fail "Version: $(field Version)"
[ "$(field Section)" = mail ] || fail "Section: $(field Section)"
depends=$(field Depends)
echo "Depends: $depends"
want_deps=(adduser postfix libc6 libstdc++6 liblmdb0 libinih1 libfmt9)
[ "$have_milter" = 1 ] && want_deps+=(libmilter1.0.1)
[ "$have_policyd" = 1 ] && want_deps+=(liburing2)
for dep in "${want_deps[@]}"; do
  # A package name in the comma-separated list, with or without a version.
  tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/ .*//' | grep -qxF "$dep" || fail "Depends lacks $dep (dpkg-shlibdeps?)"
done
grep -q "libmilter" <<<"$depends" && [ "$have_milter" = 0 ] && fail "Depends has libmilter without the milter"

dpkg-deb -e "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles")" = /etc/coexist/coexist.ini ] && ok "conffiles" ||
  fail "conffiles: $(cat "$tmp/control/conffiles" 2>&1)"
for script in postinst prerm postrm; do
  f=$tmp/control/$script
  if [ -x "$f" ] && sh -n "$f" && grep -q '^set -e' "$f"; then ok "$script"; else fail "$script missing, not executable, or bad"; fi
done
grep -q 'install -d -o root -g coexist -m 2750 /var/lib/coexist' "$tmp/control/postinst" ||
  fail "postinst does not create /var/lib/coexist root:coexist 2750 (setgid, as coexist-map init)"
# tmpfiles runs at every boot: a mode without the setgid bit would clear init's.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/tmpfiles.d/coexist.conf | grep -qx 'd /var/lib/coexist 2750 - coexist -' ||
  fail "tmpfiles.d/coexist.conf does not keep /var/lib/coexist 2750"
# An upgrade whose restart fails must say so (the units do not retry exit 2).
grep -q 'try-restart.*|| true' "$tmp/control/postinst" && fail "postinst hides a failed restart"
grep -q 'did not restart' "$tmp/control/postinst" || fail "postinst does not report a failed restart"
# (continuation lines joined first)
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$tmp/control/postinst" |
  grep -q 'adduser --system --ingroup coexist .*coexist-sync' ||
  fail "postinst does not create the follower's user coexist-sync in group coexist"

# --- contents: exactly these files -------------------------------------------------------------
expected=(
  ./etc/coexist/coexist.ini
  ./usr/sbin/coexist-map
  ./usr/share/man/man8/coexist-map.8.gz
  ./usr/share/man/man5/coexist.ini.5.gz
  ./usr/lib/sysusers.d/coexist.conf
  ./usr/lib/tmpfiles.d/coexist.conf
  ./usr/share/doc/coexist/README.md
  ./usr/share/doc/coexist/NEWS
  ./usr/share/doc/coexist/copyright
  ./usr/share/doc/coexist/examples/coexist.ini
  ./usr/share/doc/coexist/examples/postfix/README.md
  ./usr/share/doc/coexist/examples/postfix/main.cf.milter
  ./usr/share/doc/coexist/examples/postfix/main.cf.policy
  ./usr/share/doc/coexist/examples/postfix/main.cf.socketmap
  ./usr/share/doc/coexist/examples/postfix/main.cf.transport
  ./usr/share/doc/coexist/examples/postfix/master.cf
  ./usr/share/doc/coexist/examples/directory/README.md
  ./usr/share/doc/coexist/examples/directory/openldap.ini
  ./usr/share/doc/coexist/examples/directory/active-directory.ini
  ./usr/share/doc/coexist/examples/directory/google-secure-ldap.ini
  ./lib/systemd/system/coexist-sync.service
)
daemons=()
[ "$have_milter" = 1 ] && daemons+=(milter)
[ "$have_policyd" = 1 ] && daemons+=(policyd)
for d in "${daemons[@]}"; do
  expected+=(./usr/sbin/coexist-$d ./usr/share/man/man8/coexist-$d.8.gz ./lib/systemd/system/coexist-$d.service)
done
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sort > "$tmp/files"
printf '%s\n' "${expected[@]}" | sort > "$tmp/expected"
if diff -u "$tmp/expected" "$tmp/files" > "$tmp/files.diff"; then
  ok "contents: ${#expected[@]} files, as expected"
else
  fail "contents differ from the expected list (+ = in the package only; add it here if intended):"
  sed 's/^/    /' "$tmp/files.diff"
fi
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | while read -r mode owner path; do
  [ "$owner" = root/root ] || echo "FAIL: $path owned by $owner"
  case $path in ./usr/sbin/?*) [ "$mode" = -rwxr-xr-x ] || echo "FAIL: $path mode $mode";; esac
done | tee "$tmp/owners"
[ -s "$tmp/owners" ] && failures=$((failures + 1))

# --- the programs from an extracted root --------------------------------------------------------
root=$tmp/root
dpkg-deb -x "$deb" "$root"
out=$("$root/usr/sbin/coexist-map" --version 2>&1)
[ "$out" = "coexist-map $version" ] && ok "coexist-map --version: $out" || fail "coexist-map --version: $out"
for d in "${daemons[@]}"; do
  out=$("$root/usr/sbin/coexist-$d" --version 2>&1)
  [ "$out" = "coexist-$d $version" ] && ok "coexist-$d --version: $out" || fail "coexist-$d --version: $out"
done
file "$root/usr/sbin/coexist-map" | grep -q "not stripped" && fail "coexist-map is not stripped"
# The shipped configuration is valid and works as is, apart from the map's place and the run-as
# user: -n checks that the user exists and can read the map, and the package's user (coexist)
# exists only where the package is installed, so the daemons run as nobody here.
chmod 0755 "$tmp"
sed -e "s|^path = .*|path = $tmp/map|" -e "s|^user = .*|user = nobody|" \
  "$root/etc/coexist/coexist.ini" > "$tmp/coexist.ini"
"$root/usr/sbin/coexist-map" -c "$tmp/coexist.ini" init > /dev/null &&
  "$root/usr/sbin/coexist-map" -c "$tmp/coexist.ini" set ann@contoso.com migrated > /dev/null &&
  out=$("$root/usr/sbin/coexist-map" -c "$tmp/coexist.ini" route ann@contoso.com) &&
  [ "$out" = "ann@contoso.com rewrite ann@o365.contoso.com" ] && ok "shipped coexist.ini: $out" ||
  fail "coexist-map with the shipped coexist.ini"
for d in "${daemons[@]}"; do
  "$root/usr/sbin/coexist-$d" -n -c "$tmp/coexist.ini" > "$tmp/check.log" 2>&1 &&
    ok "coexist-$d -n accepts the shipped coexist.ini" ||
    { fail "coexist-$d -n with the shipped coexist.ini:"; cat "$tmp/check.log"; }
done

# --- man pages ---------------------------------------------------------------------------------
for page in "$root"/usr/share/man/man*/*.gz; do
  name=$(basename "$page" .gz)
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$page" 2>/dev/null)
  missing=
  for section in NAME SYNOPSIS DESCRIPTION FILES "SEE ALSO"; do
    grep -q "^$section" <<<"$text" || missing+=" $section"
  done
  case $name in *.8) for section in OPTIONS "EXIT STATUS"; do
    grep -q "^$section" <<<"$text" || missing+=" $section"; done;; esac
  if [ -n "$warnings" ]; then fail "man $name warns: $warnings"
  elif [ -n "$missing" ]; then fail "man $name lacks:$missing"
  else ok "man $name"; fi
done

# --- systemd units -----------------------------------------------------------------------------
for d in "${daemons[@]}"; do
  unit=$root/lib/systemd/system/coexist-$d.service
  for line in "ExecStart=/usr/sbin/coexist-$d -c /etc/coexist/coexist.ini" User=coexist \
              ProtectSystem=strict ReadWritePaths=/var/lib/coexist RuntimeDirectory=coexist \
              RuntimeDirectoryPreserve=yes NoNewPrivileges=yes CapabilityBoundingSet= Type=notify; do
    grep -qxF "$line" "$unit" || fail "coexist-$d.service lacks '$line'"
  done
  grep -q '^ExecReload=' "$unit" && fail "coexist-$d.service has ExecReload (the daemons have no reload)"
  if command -v systemd-analyze > /dev/null; then
    # verify checks that ExecStart exists: point it at the extracted binary.
    sed "s|/usr/sbin/|$root/usr/sbin/|" "$unit" > "$tmp/coexist-$d.service"
    out=$(systemd-analyze verify --man=no "$tmp/coexist-$d.service" 2>&1)
    [ -z "$out" ] && ok "systemd-analyze verify coexist-$d.service" || fail "systemd-analyze verify coexist-$d.service: $out"
  else
    echo "skip: systemd-analyze not installed"
  fi
done

# The directory follower: always there (coexist-map is), runs as the map's owner, never root.
unit=$root/lib/systemd/system/coexist-sync.service
for line in "ExecStart=/usr/sbin/coexist-map -c /etc/coexist/coexist.ini sync --follow" Type=notify \
            User=coexist-sync Group=coexist Restart=on-failure ProtectSystem=strict \
            ReadWritePaths=/var/lib/coexist NoNewPrivileges=yes CapabilityBoundingSet=; do
  grep -qxF "$line" "$unit" || fail "coexist-sync.service lacks '$line'"
done
if command -v systemd-analyze > /dev/null; then
  sed "s|/usr/sbin/|$root/usr/sbin/|" "$unit" > "$tmp/coexist-sync.service"
  out=$(systemd-analyze verify --man=no "$tmp/coexist-sync.service" 2>&1)
  [ -z "$out" ] && ok "systemd-analyze verify coexist-sync.service" || fail "systemd-analyze verify coexist-sync.service: $out"
fi
# The directory samples parse: each [directory] section with a minimal [map] and [domain].
for sample in "$root"/usr/share/doc/coexist/examples/directory/*.ini; do
  { printf '[map]\npath = %s/sample-map\n[domain contoso.com]\nrouting_domain = o365.contoso.com\n' "$tmp"
    cat "$sample"; } > "$tmp/sample.ini"
  if out=$("$root/usr/sbin/coexist-map" -c "$tmp/sample.ini" init 2>&1); then ok "$(basename "$sample") parses"
  else fail "$(basename "$sample"): $out"; fi
  rm -rf "$tmp/sample-map"
done

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "package: all checks passed"
