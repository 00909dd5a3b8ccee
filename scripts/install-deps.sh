#!/usr/bin/env bash
# Installs what coexist needs to build, test and run its lab on Debian 12, from Debian's packages.
# Idempotent: installs only what is missing, and runs apt-get update only when it must.
set -euo pipefail

packages=(
  build-essential clang libclang-rt-14-dev cmake pkg-config git ca-certificates
  liblmdb-dev lmdb-utils libinih-dev libicu-dev libcli11-dev libfmt-dev catch2 libmilter-dev
  prometheus-cpp-dev liburing-dev
  postfix postfix-lmdb python3 time
  slapd ldap-utils libldap-dev nettle-dev nlohmann-json3-dev
  dpkg-dev man-db groff-base file debootstrap systemd-container libsystemd-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# postfix asks how to configure the system instance; coexist's tests never use it, so say so.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Likewise slapd: the tests and the lab run private slapd instances on loopback, never the system one.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
