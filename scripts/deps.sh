#!/usr/bin/env bash
# Installs the Debian 12 packages stead needs to build, test and run.
# One list, one `apt-get update`, one `apt-get install -y`; nothing else.
# Not root: prints the exact command and exits 1.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  libcmocka-dev
  libsqlite3-dev sqlite3
  libpq-dev postgresql
  libnats-dev nats-server
  libsodium-dev
  libmicrohttpd-dev libwslay-dev libjansson-dev libcurl4-openssl-dev curl
  libcaf-dev wrk
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "stead: missing packages; run as root:" >&2
  echo "  $cmd" >&2
  exit 1
fi
echo "stead: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
