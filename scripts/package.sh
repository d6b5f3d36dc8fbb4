#!/usr/bin/env bash
# Builds the Debian package (CPack's DEB generator, scripts/packaging/): the pgwarden binary, the
# hardened systemd unit, /etc/pgwarden's example settings and the monitoring files. Reuses a
# Release build directory if given (building only the binary in it), else builds into build/.
# Prints the .deb's path on its last line.
# Usage: scripts/package.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

for tool in cmake ninja cpack dpkg-shlibdeps dpkg-deb file; do
  command -v "$tool" >/dev/null || { echo "package: $tool is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done

if [ -f "$build/CMakeCache.txt" ]; then
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
  sanitize=$(sed -n 's/^PGW_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
  if [ "$type" != Release ] || [ "$sanitize" = ON ]; then
    echo "package: $build is a $type build${sanitize:+ (PGW_SANITIZE=$sanitize)}; package a Release build" >&2
    exit 2
  fi
  # Re-run configure: the packaging rules may be newer than the directory.
  cmake -S "$root" -B "$build" >/dev/null
else
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
ninja -C "$build" -j "${PGW_JOBS:-2}" core/pgwarden >/dev/null

out="$build/package"
rm -rf "$out"
mkdir -p "$out"
(cd "$build" && cpack --config CPackConfig.cmake -B "$out" >"$out/cpack.log" 2>&1) || {
  cat "$out/cpack.log" >&2
  exit 1
}
deb=$(ls "$out"/pgwarden_*.deb)
dpkg-deb -f "$deb" Package Version Architecture Depends
echo "$deb"
