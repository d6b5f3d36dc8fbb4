#!/usr/bin/env bash
# Installs the Debian package with dpkg into a throwaway root and runs it there as the service
# would: the maintainer scripts create the user, /etc/pgwarden's group, the recording directory
# and the seal key; the gateway, started as user pgwarden with the shipped pgwarden.env and the
# example policy in front of a throwaway PostgreSQL, judges, masks and records statements,
# answers /healthz, reloads on SIGHUP, stops on SIGTERM and leaves a recording that verifies;
# removal and purge keep the recordings and the key. No systemd: the unit is checked by
# check_ops.sh. The root is the host's /usr, /etc and dpkg database under overlays (changes go
# to a temporary directory) in a private mount namespace with a /dev of its own, so the host is
# not touched.
# Usage: tests/ops/chroot_install.sh DEB   (as root; re-executes itself under unshare -m)
set -euo pipefail
deb=$(realpath "${1:?usage: chroot_install.sh DEB}")
if [ "${PGW_IN_NS:-}" != 1 ]; then
  work=$(mktemp -d)
  chmod 755 "$work" # the throwaway PostgreSQL's owner reaches its directory inside
  rc=0
  env PGW_IN_NS=1 PGW_WORK="$work" unshare --mount --propagation private "$0" "$deb" || rc=$?
  # The overlays lived in the namespace, gone with it. Never delete through a mount anyway:
  # --one-file-system leaves anything mounted alone.
  if grep -qF " $work" /proc/self/mountinfo; then
    echo "FAIL: $work is still mounted here; left in place"
    exit 1
  fi
  rm -rf --one-file-system "$work"
  exit "$rc"
fi

work=$PGW_WORK
R=$work/root
gw_pid=
source "$(dirname "$0")/../../scripts/lib.sh"
trap '[ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null; pgw_pg_stop "$work/pg"; :' EXIT
failures=0
ok() { echo "ok: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

mkdir -p "$R"/{usr,etc,dev,proc,tmp,run,var/lib/dpkg,var/log,var/cache,root}
for d in bin sbin lib lib64; do [ -L "/$d" ] && ln -s "usr/$d" "$R/$d"; done
layer() { # layer SRC DEST: DEST shows SRC, writes go to the work directory
  local name
  name=$(tr / _ <<<"$1")
  mkdir -p "$work/up$name" "$work/wk$name"
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$work/up$name,workdir=$work/wk$name" "$2"
}
if ! layer /usr "$R/usr" || ! layer /etc "$R/etc" || ! layer /var/lib/dpkg "$R/var/lib/dpkg"; then
  echo "FAIL: cannot mount overlays (needs root with CAP_SYS_ADMIN)"
  exit 1
fi
# A /dev of its own (never the host's): the few nodes the scripts and the gateway open.
mount -t tmpfs -o mode=755 tmpfs "$R/dev"
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9"; do
  set -- $n
  mknod -m 666 "$R/dev/$1" c "$2" "$3"
done
ln -s /proc/self/fd "$R/dev/fd"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/tmp"
# A host install of pgwarden would show through the overlays: start from none.
rm -rf "$R/etc/pgwarden"
dpkg --root="$R" --purge pgwarden >/dev/null 2>&1 || :
in_root() { chroot "$R" "$@"; }

echo "-- dpkg -i into a fresh root"
if dpkg --root="$R" -i "$deb" >"$work/install.log" 2>&1; then
  ok "dpkg -i: $(grep -o 'Setting up.*' "$work/install.log")"
else
  fail "dpkg -i: $(cat "$work/install.log")"
  exit 1
fi
grep -q 'generated the recordings' "$work/install.log" && ok "postinst generated the seal key" || fail "no seal key message"
grep -q 'systemctl enable --now' "$work/install.log" && fail "postinst talked to systemd without one running" || :
in_root getent passwd pgwarden | grep -q ':/var/lib/pgwarden:/usr/sbin/nologin$' &&
  ok "system user: $(in_root getent passwd pgwarden)" || fail "user pgwarden: $(in_root getent passwd pgwarden || echo none)"
uid=$(in_root id -u pgwarden)
[ "$uid" -lt 1000 ] && ok "pgwarden is a system uid ($uid)" || fail "pgwarden uid $uid is not a system uid"
check_stat() { # PATH "MODE OWNER:GROUP"
  local got
  got=$(in_root stat -c '%a %U:%G' "$1")
  [ "$got" = "$2" ] && ok "$1: $got" || fail "$1: $got, want $2"
}
check_stat /etc/pgwarden "750 root:pgwarden"
check_stat /etc/pgwarden/pgwarden.env "644 root:root"
check_stat /etc/pgwarden/seal.key "600 pgwarden:pgwarden"
check_stat /var/lib/pgwarden "700 pgwarden:pgwarden"
check_stat /var/lib/pgwarden/recordings "700 pgwarden:pgwarden"
[ "$(wc -c <"$R/etc/pgwarden/seal.key")" -eq 64 ] && ok "seal key: 64 hex digits" || fail "seal key length $(wc -c <"$R/etc/pgwarden/seal.key")"
in_root dpkg-query -W -f='${Conffiles}\n' pgwarden | grep -q '/etc/pgwarden/pgwarden.env' &&
  ok "dpkg registered the conffiles" || fail "dpkg has no conffiles for pgwarden"

echo "-- the gateway as user pgwarden, with the shipped pgwarden.env and the example policy"
# PostgreSQL on a unix socket only (no TCP port to race others for), its socket directory shown
# to the gateway as /run/postgresql.
PG_PORT=5432
pgw_pg_start "$work/pg" "$PG_PORT" "listen_addresses = ''"
mkdir -p "$R/run/postgresql"
mount --bind "$work/pg" "$R/run/postgresql"
args=$(sed -n 's/^PGWARDEN_ARGS="\(.*\)"$/\1/p' "$R/etc/pgwarden/pgwarden.env")
# Ports of its own (6432 and 9187 may be taken on this machine) and the throwaway PostgreSQL;
# the rest as shipped, plus the example policy, set up as an operator would.
args=$(sed "s/127.0.0.1:6432/127.0.0.1:0/; s/127.0.0.1:9187/127.0.0.1:0/; s|--upstream 127.0.0.1:5432|--upstream /run/postgresql:$PG_PORT|" <<<"$args")
cp "$R/etc/pgwarden/policy.example.json" "$R/etc/pgwarden/policy.json"
args="$args --policy /etc/pgwarden/policy.json"
# As the unit runs it, short of systemd's namespaces and syscall filter: user pgwarden, no
# capabilities (bounding set too), no_new_privs, and MemoryDenyWriteExecute's rule (no memory
# both writable and executable, through prctl PR_SET_MDWE, Linux 6.3+) when the kernel has it.
mdwe='import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("no PR_SET_MDWE: errno", ctypes.get_errno(), file=sys.stderr)
else:
    print("MDWE on", file=sys.stderr)
os.execv(sys.argv[1], sys.argv[1:])'
# shellcheck disable=SC2086 # split like systemd splits $PGWARDEN_ARGS
chroot "$R" setpriv --reuid=pgwarden --regid=pgwarden --init-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all python3 -c "$mdwe" /usr/bin/pgwarden $args --threads 2 \
  >"$work/gw.log" 2>&1 &
gw_pid=$!
admin=
for _ in $(seq 100); do
  admin=$(sed -n 's/.*admin endpoint on \([0-9.:]*\).*/\1/p' "$work/gw.log")
  [ -n "$admin" ] && grep -q 'pgwarden listening on' "$work/gw.log" && break
  kill -0 "$gw_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -n "$admin" ] && curl -fsS "http://$admin/healthz" >/dev/null; then
  ok "started as pgwarden (no capabilities, no_new_privs, $(head -1 "$work/gw.log")); /healthz answers on $admin"
else
  fail "the gateway did not start: $(cat "$work/gw.log")"
  exit 1
fi
[ -d "$R/var/lib/pgwarden/recordings/core-00" ] && ok "records into /var/lib/pgwarden/recordings" || fail "no core-00 recording directory"
gw_port=$(sed -n 's/.*pgwarden listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/gw.log")
export PGPASSWORD=$PGW_PG_PASSWORD
conn="host=127.0.0.1 port=$gw_port user=$PGW_PG_USER dbname=postgres"
out=$(psql -X "$conn" -Atc "SELECT 'write to ann.lee@example.com or call +1 415 555 2671'" 2>&1) || :
if [ -n "$out" ] && ! grep -q 'ann.lee@example.com\|555 2671' <<<"$out"; then
  ok "a statement judged, its row masked: $out"
else
  fail "masking through the installed gateway: $out"
fi
out=$(psql -X "$conn" -c "DROP TABLE IF EXISTS pgw_nothing" 2>&1) && fail "DROP was allowed: $out" ||
  { grep -q 'policy' <<<"$out" && ok "DROP refused by the example policy" || fail "DROP: $out"; }
kill -HUP "$gw_pid"
for _ in $(seq 50); do grep -q 'SIGHUP: policy reloaded' "$work/gw.log" && break; sleep 0.1; done
grep -q 'SIGHUP: policy reloaded' "$work/gw.log" && kill -0 "$gw_pid" 2>/dev/null &&
  ok "SIGHUP (systemctl reload): policy reloaded, still running" || fail "SIGHUP: $(tail -3 "$work/gw.log")"
kill -TERM "$gw_pid"
rc=0
wait "$gw_pid" || rc=$?
gw_pid=
[ "$rc" -eq 0 ] && grep -q 'pgwarden stopped' "$work/gw.log" && ok "SIGTERM: drained and stopped (exit 0)" ||
  fail "SIGTERM: exit $rc: $(tail -3 "$work/gw.log")"
if chroot --userspec=pgwarden:pgwarden "$R" /usr/bin/pgwarden verify --record-dir /var/lib/pgwarden/recordings \
  --key-file /etc/pgwarden/seal.key >"$work/verify.log" 2>&1; then
  ok "pgwarden verify: $(tail -1 "$work/verify.log")"
else
  fail "pgwarden verify: $(cat "$work/verify.log")"
fi
chroot --userspec=pgwarden:pgwarden "$R" /usr/bin/pgwarden export --record-dir /var/lib/pgwarden/recordings \
  --format jsonl >"$work/export.jsonl" 2>&1 || :
grep -q 'DROP TABLE IF EXISTS pgw_nothing' "$work/export.jsonl" && ! grep -q 'ann.lee@example.com' "$work/export.jsonl" &&
  ok "the recording holds the refused DROP and no unmasked e-mail" || fail "export: $(head -c 600 "$work/export.jsonl")"

echo "-- reinstall (upgrade path), remove, purge"
echo "# an operator's edit" >>"$R/etc/pgwarden/pgwarden.env"
dpkg --root="$R" -i "$deb" >"$work/reinstall.log" 2>&1 && ok "dpkg -i again" || fail "reinstall: $(cat "$work/reinstall.log")"
grep -q "an operator's edit" "$R/etc/pgwarden/pgwarden.env" && ok "the edited conffile survives" || fail "the operator's edit was lost"
dpkg --root="$R" -r pgwarden >"$work/remove.log" 2>&1 && ok "dpkg -r" || fail "dpkg -r: $(cat "$work/remove.log")"
[ ! -e "$R/usr/bin/pgwarden" ] && [ -e "$R/etc/pgwarden/pgwarden.env" ] && ok "remove: binary gone, settings kept" ||
  fail "remove: binary or settings in the wrong state"
dpkg --root="$R" -P pgwarden >"$work/purge.log" 2>&1 && ok "dpkg -P" || fail "dpkg -P: $(cat "$work/purge.log")"
[ ! -e "$R/etc/pgwarden/pgwarden.env" ] && [ ! -e "$R/etc/pgwarden/policy.example.json" ] && ok "purge: conffiles gone" ||
  fail "purge left conffiles"
[ -e "$R/etc/pgwarden/seal.key" ] && [ -d "$R/var/lib/pgwarden/recordings/core-00" ] &&
  ok "purge kept the recordings and their seal key" || fail "purge removed recordings or the seal key"

[ "$failures" -eq 0 ] || {
  echo "chroot install: $failures failed"
  exit 1
}
echo "chroot install: all passed"
