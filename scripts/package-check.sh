#!/usr/bin/env bash
# Builds the Debian package and installs it the way an admin would, on a fresh Debian 12:
#   a root made by debootstrap (cached as a tarball, unpacked anew for every run), then, chrooted,
#   "apt-get install ./coexist_*.deb" from Debian's mirror, "coexist-map --version",
#   "man coexist-milter", the postinst's user/map work, the daemons as user coexist under the
#   units' file system restrictions, remove and purge.
#   With --boot, also boots that root with systemd as PID 1 (systemd-nspawn, private network),
#   starts the units as shipped, and sends mail through Debian's chrooted Postfix to them.
#
#   sudo ./scripts/package-check.sh [--boot] [--keep]     --keep: leave the root to look around
#
# Needs root, debootstrap, the Debian mirror of apt's sources (or DEBIAN_MIRROR=URL), and for
# --boot systemd-container. About 30 s with the cached base (the first run bootstraps it: about a
# minute more), --boot about 30 s more. It downloads from the mirror, so it is not part of ctest;
# tests/package.cmake checks the package itself offline.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=no boot=no
for arg in "$@"; do
  case $arg in
    --keep) keep=yes ;;
    --boot) boot=yes ;;
    *) echo "usage: $0 [--boot] [--keep]" >&2; exit 1 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "package-check: run as root (debootstrap, chroot)" >&2; exit 1; }
if [ "$boot" = yes ] && ! command -v systemd-nspawn > /dev/null; then
  echo "package-check: --boot needs systemd-nspawn (apt-get install systemd-container)" >&2; exit 1
fi

build_dir=${BUILD_DIR:-build-pkg}
work=${COEXIST_PKGCHECK_DIR:-/var/tmp/coexist-pkgcheck}
suite=bookworm
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }

# The mirror apt already uses here (deb822 .sources or one-line sources.list).
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\/\{0,1\}\)$/\1/p' \
             /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
fi
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' \
             /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

step "build and package ($build_dir)"
./scripts/install-deps.sh
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j2 >/dev/null
mkdir -p "$work"
deb_dir=$(mktemp -d "$work/deb.XXXXXX")
(cd "$build_dir" && cpack -G DEB -B "$deb_dir" >/dev/null)
deb=$(ls "$deb_dir"/coexist_*.deb)
echo "package: $(basename "$deb")"

base="$work/$suite-minbase.tar"
if [ ! -s "$base" ]; then
  step "debootstrap $suite from $mirror (once; cached as $base)"
  tmp_root=$(mktemp -d "$work/bootstrap.XXXXXX")
  chmod 755 "$tmp_root"  # it becomes "/": mktemp's 0700 would lock out every user but root
  mkdir -p "$work/cache"
  if ! debootstrap --variant=minbase --cache-dir="$work/cache" "$suite" "$tmp_root" "$mirror" \
         > "$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    echo "package-check: debootstrap from $mirror failed (log: $work/debootstrap.log)" >&2
    rm -rf "$tmp_root"
    exit 1
  fi
  tar -C "$tmp_root" -cf "$base.part" . && mv "$base.part" "$base"
  rm -rf "$tmp_root"
fi

root=$(mktemp -d "$work/root.XXXXXX")
mounted=()
nspawn_pid=
cleanup() {
  if [ -n "$nspawn_pid" ]; then kill -TERM "$nspawn_pid" 2>/dev/null; wait "$nspawn_pid" 2>/dev/null; fi
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  if [ "$keep" = yes ]; then echo "root kept: $root"; else rm -rf "$root" "$deb_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "fresh root $root"
tar -C "$root" -xf "$base"
chmod 755 "$root"
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No daemon may start inside the chroot (Postfix, a Depends, would bind port 25 of this
# machine): the standard way is a policy-rc.d that says no.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
              LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

step "apt-get update; man-db (in Debian's standard task, so on a usual fresh server)"
in_root apt-get update -qq
printf '%s\n' "postfix postfix/main_mailer_type select Local only" \
  "postfix postfix/mailname string relay.example" | in_root debconf-set-selections
extra=()
[ "$boot" = yes ] && extra=(systemd dbus)
in_root apt-get install -y -qq man-db "${extra[@]}" >/dev/null

step "apt-get install ./$(basename "$deb")"
in_root sh -c "cd /tmp && apt-get install -y ./$(basename "$deb")" > "$work/apt-install.log" 2>&1 || {
  tail -n 30 "$work/apt-install.log" >&2; echo "package-check: apt-get install failed" >&2; exit 1; }
grep -E '^(Setting up|Unpacking) coexist' "$work/apt-install.log" || true

fail=0
check() {  # check DESCRIPTION COMMAND...: run in the root, report, remember a failure
  local what=$1; shift
  if out=$(in_root "$@" 2>&1); then
    echo "ok   $what"
  else
    echo "FAIL $what"; echo "$out" | sed 's/^/     /'; fail=1
  fi
}

step "after install"
check "coexist-map --version: $(in_root coexist-map --version 2>&1 || true)" coexist-map --version
check "coexist-policyd --version" coexist-policyd --version
if in_root test -x /usr/sbin/coexist-milter; then
  check "coexist-milter --version" coexist-milter --version
else
  echo "FAIL coexist-milter is not in the package (was the milter built?)"; fail=1
fi
for page in coexist-milter coexist-policyd coexist-map coexist.ini; do
  check "man $page" sh -c "man -w $page && MANWIDTH=80 man $page 2>&1 >/dev/null | grep . && exit 1 || MANWIDTH=80 man $page | grep -q '^NAME'"
done
check "user coexist, group coexist" sh -c 'getent passwd coexist && getent group coexist'
check "coexist is in group postfix (postinst; postfix is a Depends)" \
  sh -c 'id -Gn coexist | tr " " "\n" | grep -qx postfix'
check "/var/lib/coexist root:coexist 0750" sh -c '[ "$(stat -c %U:%G:%a /var/lib/coexist)" = root:coexist:750 ]'
check "map created: data.mdb 0640, lock.mdb 0660, group coexist" sh -c \
  '[ "$(stat -c %U:%G:%a /var/lib/coexist/data.mdb)" = root:coexist:640 ] &&
   [ "$(stat -c %U:%G:%a /var/lib/coexist/lock.mdb)" = root:coexist:660 ]'
check "conffile /etc/coexist/coexist.ini" sh -c 'dpkg-query -W -f="\${Conffiles}" coexist | grep -q /etc/coexist/coexist.ini'
check "units in /lib/systemd/system" test -f /lib/systemd/system/coexist-policyd.service
check "coexist-map set as root" coexist-map set ann@contoso.com migrated
check "coexist-map route as user coexist (read-only commands for the group)" \
  setpriv --reuid=coexist --regid=coexist --init-groups coexist-map route ann@contoso.com

# The daemons as the units run them: user coexist, the whole file system read-only except
# /var/lib/coexist (for lock.mdb) and /run/coexist (ProtectSystem=strict, ReadWritePaths=,
# RuntimeDirectory=), in a private mount namespace.
sandbox_run() {  # sandbox_run RW_MAP(yes|no) SHELL-COMMAND: run as coexist in that view
  local rw_map=$1 cmd=$2 ids
  ids=$(in_root sh -c 'echo "uid=$(id -u coexist),gid=$(id -g coexist)"')
  mkdir -p "$root/run/coexist"
  unshare -m --propagation private sh -c '
    root=$1; rw_map=$2; ids=$3; cmd=$4
    mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
    mount -t tmpfs -o "mode=755,$ids" tmpfs "$root/run/coexist"
    if [ "$rw_map" = yes ]; then
      mount --bind "$root/var/lib/coexist" "$root/var/lib/coexist"
      mount -o remount,bind,rw "$root/var/lib/coexist"
    fi
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin \
      setpriv --reuid=coexist --regid=coexist --init-groups sh -c "$cmd"' \
    sh "$root" "$rw_map" "$ids" "$cmd"
}
socketmap_query() {  # socketmap_query PORT "NAME KEY": the server's reply, from this host
  python3 -c '
import socket, sys
port, req = int(sys.argv[1]), sys.argv[2].encode()
with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
    s.sendall(b"%d:%s," % (len(req), req))
    reply = s.recv(4096).decode()
    print(reply[reply.index(":") + 1:].rstrip(","))' "$@"
}

step "coexist-policyd as user coexist on a read-only root (the units' file system view)"
printf '%s\n' '[map]' 'path = /var/lib/coexist' '[domain contoso.com]' \
  'routing_domain = o365.contoso.com' '[policyd]' 'policy_socket = unix:/run/coexist/policy.sock' \
  'socketmap_socket = inet:10932@127.0.0.1' 'socket_group = postfix' 'socket_mode = 0660' \
  > "$root/tmp/sandbox.ini"
chmod 644 "$root/tmp/sandbox.ini"
# The daemon lives 6 seconds; the checks below run from this host meanwhile.
sandbox_run yes '
  coexist-policyd --stderr -c /tmp/sandbox.ini & pid=$!
  sleep 1
  stat -c "socket %U:%G:%a" /run/coexist/policy.sock
  (exec 3>>/var/lib/coexist/data.mdb) 2>/dev/null && echo "data.mdb writable" || echo "data.mdb not writable"
  touch /var/lib/coexist/new 2>/dev/null && echo "map dir writable" || echo "map dir not writable"
  sleep 5; kill $pid; wait $pid' > "$work/policyd.log" 2>&1 &
pd=$!
reply=
for _ in $(seq 25); do
  reply=$(socketmap_query 10932 "virtual ann+news@contoso.com" 2>/dev/null) && break
  sleep 0.2
done
# The map changes while the daemon runs: root writes, the next lookup sees it.
in_root coexist-map set bob@contoso.com migrated >/dev/null
reply2=$(socketmap_query 10932 "virtual bob@contoso.com" 2>/dev/null || true)
wait "$pd" || true
sed 's/^/     log: /' "$work/policyd.log"
if [ "$reply" = "OK ann+news@o365.contoso.com" ] && [ "$reply2" = "OK bob@o365.contoso.com" ]; then
  echo "ok   socketmap answers as user coexist with / read-only, and sees root's later write"
else
  echo "FAIL socketmap replies: '$reply' / '$reply2'"; fail=1
fi
if grep -q "socket coexist:postfix:660" "$work/policyd.log"; then
  echo "ok   policy socket coexist:postfix 0660 (socket_group = postfix, not root)"
else
  echo "FAIL policy socket owner/mode"; fail=1
fi
if grep -q "data.mdb not writable" "$work/policyd.log" && grep -q "map dir not writable" "$work/policyd.log"; then
  echo "ok   data.mdb and the map directory are not writable by coexist, even with ReadWritePaths"
else
  echo "FAIL the map is writable by coexist"; fail=1
fi

step "why ReadWritePaths=/var/lib/coexist: the reader slot on a read-only mount"
# LMDB opens lock.mdb O_RDWR; on a read-only mount it gets EROFS and, for an MDB_RDONLY env,
# silently goes on without a lock file (no reader slot: a writer may recycle pages under it).
sandbox_run no 'exec 3<>/var/lib/coexist/lock.mdb' > "$work/rofs.log" 2>&1 || true
sed 's/^/     /' "$work/rofs.log"
if grep -q "Read-only file system" "$work/rofs.log"; then
  echo "ok   without ReadWritePaths lock.mdb can't be opened for writing (EROFS)"
else
  echo "FAIL expected EROFS on lock.mdb without ReadWritePaths"; fail=1
fi
# ...and yet a read-only LMDB open succeeds there: LMDB skipped its reader table without a word.
# That silence is why the units make the directory writable instead of trusting an error.
if sandbox_run no 'coexist-map route ann@contoso.com' > "$work/rofs-route.log" 2>&1 &&
   grep -q "rewrite" "$work/rofs-route.log"; then
  echo "ok   (and LMDB still opens the map read-only there, silently without its lock: $(cat "$work/rofs-route.log"))"
else
  echo "note LMDB refused the read-only map on a read-only mount: $(cat "$work/rofs-route.log")"
fi

[ "$boot" = yes ] && . ./scripts/package-check-boot.sh

step "dpkg --remove, then --purge"
check "remove" dpkg --remove coexist
check "map kept after remove" test -f /var/lib/coexist/data.mdb
check "purge" dpkg --purge coexist
check "map and /etc/coexist gone after purge" sh -c '! test -e /var/lib/coexist && ! test -e /etc/coexist'

step "done in $(( $(date +%s) - start ))s"
[ "$fail" -eq 0 ] && echo "package-check: PASS" || echo "package-check: FAIL"
exit "$fail"
