#!/usr/bin/env bash
# Checks what operators install and load: the Debian package (contents, conffiles, maintainer
# scripts, dependencies, the extracted binary runs), its systemd unit (`systemd-analyze verify`
# and an offline security review), the Prometheus alert rules (`promtool check rules`, and
# `promtool test rules` showing each alert fire) and the Grafana dashboard; tests/ops/
# chroot_install.sh installs the package with dpkg into a throwaway root and runs it there, and
# tests/ops/systemd_boot.sh runs it as a service under systemd booted in a container.
# Tools missing is a failure, not a skip: scripts/setup.sh installs them.
# Usage: tests/ops/check_ops.sh [BUILD_DIR]   (a Release build; default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
cd "$root"

missing=()
for tool in promtool systemd-analyze systemd-nspawn nsenter dpkg-deb dpkg-shlibdeps cpack python3 file curl unshare; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "FAIL: missing ${missing[*]} (scripts/setup.sh installs them: prometheus, systemd, systemd-container, dpkg-dev, file, curl)"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf --one-file-system "$work"' EXIT
failures=0
ok() { echo "ok: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

echo "-- Debian package"
bash scripts/package.sh "$build" >"$work/package.log" 2>&1 || {
  cat "$work/package.log"
  echo "FAIL: scripts/package.sh"
  exit 1
}
deb=$(tail -1 "$work/package.log")
ok "built $deb"
dpkg-deb -c "$deb" >"$work/contents"
for f in ./usr/bin/pgwarden ./lib/systemd/system/pgwarden.service ./etc/pgwarden/pgwarden.env \
  ./etc/pgwarden/policy.example.json ./usr/share/doc/pgwarden/copyright \
  ./usr/share/doc/pgwarden/README.md ./usr/share/doc/pgwarden/changelog.Debian.gz \
  ./usr/share/pgwarden/monitoring/pgwarden-alerts.yml ./usr/share/pgwarden/monitoring/pgwarden-dashboard.json; do
  grep -q " $f\$" "$work/contents" && ok "contains $f" || fail "$f is not in the package"
done
if awk '{print $2}' "$work/contents" | grep -qv '^root/root$'; then
  fail "files not owned by root/root: $(awk '$2 != "root/root"' "$work/contents" | head -3)"
else
  ok "every file owned by root/root"
fi
grep -q '^-rwxr-xr-x .* ./usr/bin/pgwarden$' "$work/contents" && ok "binary mode 0755" ||
  fail "binary mode: $(grep ' ./usr/bin/pgwarden$' "$work/contents")"

mkdir "$work/ctrl"
dpkg-deb -e "$deb" "$work/ctrl"
for s in postinst prerm postrm; do
  [ -x "$work/ctrl/$s" ] && sh -n "$work/ctrl/$s" && ok "$s present, executable, parses" ||
    fail "$s missing, not executable or not valid sh"
done
# Every file under /etc is a conffile and every conffile is in the package: dpkg keeps the
# operator's edits on upgrade.
grep ' \./etc/.*[^/]$' "$work/contents" | sed 's/.* \.//' | sort >"$work/etc-files"
sort "$work/ctrl/conffiles" >"$work/conffiles"
if diff -u "$work/etc-files" "$work/conffiles" >"$work/conffiles.diff"; then
  ok "conffiles: $(tr '\n' ' ' <"$work/conffiles")"
else
  fail "conffiles differ from the files under /etc: $(cat "$work/conffiles.diff")"
fi
depends=$(dpkg-deb -f "$deb" Depends)
for lib in liburing libhyperscan libssl libcurl libpq libphonenumber libsimdjson libmimalloc passwd; do
  case "$depends" in *"$lib"*) ok "Depends names $lib" ;; *) fail "Depends lacks $lib: $depends" ;; esac
done
# The maintainer scripts never start a service on a fresh install, only restart one on upgrade.
grep -q 'deb-systemd-invoke try-restart pgwarden.service' "$work/ctrl/postinst" &&
  ! grep -v '^ *echo' "$work/ctrl/postinst" | grep -Eq ' (start|enable|restart) |invoke-rc.d' &&
  ok "postinst does not start or enable the service" || fail "postinst starts or enables the service"

echo "-- the extracted binary"
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
bin="$work/root/usr/bin/pgwarden"
if ldd "$bin" | grep -q 'not found'; then fail "unresolved libraries: $(ldd "$bin" | grep 'not found')"; else ok "every shared library resolves"; fi
"$bin" --version >"$work/version" 2>&1 && ok "pgwarden --version: $(head -1 "$work/version")" || fail "pgwarden --version: $(cat "$work/version")"
"$bin" --help >"$work/help" 2>&1 && grep -q -- '--upstream' "$work/help" && ok "pgwarden --help lists --upstream" || fail "pgwarden --help"
# Every flag the shipped env file passes is one pgwarden knows.
args=$(sed -n 's/^PGWARDEN_ARGS="\(.*\)"$/\1/p' "$work/root/etc/pgwarden/pgwarden.env")
[ -n "$args" ] || fail "pgwarden.env sets no PGWARDEN_ARGS"
for flag in $(tr ' ' '\n' <<<"$args" | grep '^--'); do
  grep -q -- "$flag" "$work/help" || fail "pgwarden.env passes $flag, which --help does not list"
done
ok "pgwarden.env's flags are all in --help: $(tr ' ' '\n' <<<"$args" | grep -c '^--') flags"

echo "-- systemd unit"
unit="$work/root/lib/systemd/system/pgwarden.service"
# verify requires ExecStart's binary: point it at the package's own copy; all else as shipped.
sed "s|^ExecStart=/usr/bin/pgwarden |ExecStart=$bin |" "$unit" >"$work/pgwarden.service"
if systemd-analyze verify --man=no "$work/pgwarden.service" >"$work/verify" 2>&1 && ! grep -q . "$work/verify"; then
  ok "systemd-analyze verify: clean"
else
  fail "systemd-analyze verify: $(cat "$work/verify")"
fi
for want in 'User=pgwarden' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'StateDirectory=pgwarden pgwarden/recordings' \
  'LimitNOFILE=1048576' 'ExecReload=/bin/kill -HUP $MAINPID' 'EnvironmentFile=/etc/pgwarden/pgwarden.env' \
  'CapabilityBoundingSet=' 'MemoryDenyWriteExecute=yes' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'; do
  grep -qxF "$want" "$unit" && ok "unit: $want" || fail "unit lacks $want"
done
# io_uring must be allowed by the syscall filter, whatever this systemd's groups contain.
filter=$(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$unit")
expand() { # a syscall or @group: the calls it names, groups within groups expanded
  local item
  for item in "$@"; do
    case "$item" in
      @*) # shellcheck disable=SC2046 # one word per line
        expand $(systemd-analyze syscall-filter "$item" 2>/dev/null | sed '1d; /^ *#/d; s/^ *//') ;;
      *) echo "$item" ;;
    esac
  done
}
allowed=$(expand $filter)
# shellcheck disable=SC2046 # one group per word
denied=$(expand $(sed -n 's/^SystemCallFilter=~//p' "$unit"))
for call in io_uring_setup io_uring_enter io_uring_register sched_setaffinity setrlimit; do
  grep -qxF "$call" <<<"$allowed" && ! grep -qxF "$call" <<<"$denied" && ok "syscall filter allows $call" || fail "syscall filter blocks $call"
done
systemd-analyze security --offline=true --threshold=20 "$unit" >"$work/security" 2>&1 &&
  ok "$(grep 'Overall exposure' "$work/security" | sed 's/^→ //')" || fail "security review: $(tail -3 "$work/security")"

echo "-- installed with dpkg into a throwaway root (tests/ops/chroot_install.sh)"
if bash tests/ops/chroot_install.sh "$deb" >"$work/chroot.log" 2>&1; then
  grep '^ok' "$work/chroot.log"
  ok "installed, ran, reloaded, stopped, verified, removed and purged"
else
  cat "$work/chroot.log"
  fail "the install in a throwaway root"
fi

echo "-- under a real systemd in a container (tests/ops/systemd_boot.sh)"
if bash tests/ops/systemd_boot.sh "$deb" >"$work/boot.log" 2>&1; then
  grep '^ok' "$work/boot.log"
  ok "the service starts, serves, reloads and stops under its hardening"
else
  cat "$work/boot.log"
  fail "the service under systemd"
fi

echo "-- Prometheus alert rules"
promtool check rules scripts/monitoring/pgwarden-alerts.yml >"$work/rules" 2>&1 &&
  ok "promtool check rules: $(grep -o 'SUCCESS.*' "$work/rules")" || fail "promtool check rules: $(cat "$work/rules")"
promtool test rules tests/ops/alerts_test.yml >"$work/rules-test" 2>&1 &&
  ok "promtool test rules: every alert fires on its series and only there" || fail "promtool test rules: $(cat "$work/rules-test")"
# The tests must bite: an alert that waits longer than its test expects fails them.
mkdir -p "$work/mut/scripts/monitoring" "$work/mut/tests/ops"
sed 's/pgwarden_approval_oldest_wait_seconds) > 120/pgwarden_approval_oldest_wait_seconds) > 200/' \
  scripts/monitoring/pgwarden-alerts.yml >"$work/mut/scripts/monitoring/pgwarden-alerts.yml"
cp tests/ops/alerts_test.yml "$work/mut/tests/ops/"
if promtool test rules "$work/mut/tests/ops/alerts_test.yml" >/dev/null 2>&1; then
  fail "promtool test rules passes a changed approval threshold"
else
  ok "promtool test rules fails on a changed threshold"
fi

echo "-- Grafana dashboard"
python3 tests/ops/check_dashboard.py scripts/monitoring/pgwarden-dashboard.json "$root" \
  "$work/dashboard-rules.yml" scripts/monitoring/pgwarden-alerts.yml >"$work/dash" 2>&1 &&
  ok "$(tail -1 "$work/dash")" || fail "dashboard: $(cat "$work/dash")"
grep -h 'pending' "$work/dash" || :
promtool check rules "$work/dashboard-rules.yml" >"$work/dash-promql" 2>&1 &&
  ok "every dashboard query parses as PromQL" || fail "dashboard PromQL: $(cat "$work/dash-promql")"

if [ "$failures" -gt 0 ]; then
  echo "ops checks: $failures failed"
  exit 1
fi
echo "ops checks: all passed"
