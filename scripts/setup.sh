#!/usr/bin/env bash
# Installs everything pgwarden needs to build, test, benchmark and demo on Debian 12.
# Idempotent and non-interactive; run as root (or through sudo).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive
pkgs=(
  build-essential g++ cmake ninja-build pkg-config git clang-format clang-14 libclang-rt-14-dev
  liburing-dev libssl-dev libsimdjson-dev libhyperscan-dev libmimalloc-dev libpg-query-dev
  libphonenumber-dev libcpp-httplib-dev libcurl4-openssl-dev libpq-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  postgresql-15 postgresql-client-15 postgresql-server-dev-15 pgbouncer
  procps iproute2 util-linux ca-certificates curl
  # Several instances behind a load balancer (scripts/ha.sh, tests/integration/ha_test.sh).
  haproxy
  # Packaging and operations checks (tests/ops/check_ops.sh): cpack's dpkg-shlibdeps and file,
  # systemd-analyze, systemd-nspawn (the unit run under systemd in a container), and promtool
  # from Debian's prometheus package.
  dpkg-dev file systemd systemd-container prometheus
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

# scripts/pg_regress.sh fetches PostgreSQL's regression suite with `apt-get source`: it needs
# deb-src entries for the Debian archives this machine already uses.
src_list=/etc/apt/sources.list.d/pgwarden-src.sources
if [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed -E 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
elif [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list ]; then
  grep -E '^deb ' /etc/apt/sources.list | grep -v '^deb-src' | sed 's/^deb /deb-src /' > "${src_list%.sources}.list" || :
  touch "$src_list"
fi

# Always refresh the package lists first, as CI machines may hold stale ones.
apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Debian postgresql package starts a cluster on 5432; our scripts start their own
# throwaway servers and do not need it.
echo "setup: dependencies present"
