#!/usr/bin/env bash
# Install the named Debian packages that are missing (apt-get update first, once).
# Virtual names are resolved: "postgresql-postgis" becomes postgresql-NN-postgis-3 for the
# PostgreSQL major version that is (or will be) installed.
set -euo pipefail
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

updated=0
apt_update() {
  if [ "$updated" = 0 ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

pg_major() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  if [ -z "$v" ]; then
    apt_update
    v=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -1)
  fi
  echo "$v"
}

missing=()
for pkg in "$@"; do
  if [ "$pkg" = "postgresql-postgis" ]; then
    pkg="postgresql-$(pg_major)-postgis-3"
  fi
  installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
