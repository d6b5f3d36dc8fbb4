#!/usr/bin/env bash
# Runs the Debian package under a real systemd: boots one in a container (systemd-nspawn,
# private network) on the host's /usr, /etc and dpkg database under overlays, installs the
# package there, and starts pgwarden.service with its hardening in force (user, no capabilities,
# no_new_privs, the seccomp filter, ProtectSystem=strict, StateDirectory) in front of a
# PostgreSQL reached through its socket directory: statements are judged, masked and recorded,
# `systemctl reload` reloads the policy, `systemctl stop` drains, the recording verifies; the
# seccomp filter is shown to be applied; an upgrade restarts the service and removal stops it.
# Nothing of it reaches the host: the container, its mounts and files go when it stops.
# Usage: tests/ops/systemd_boot.sh DEB   (as root; re-executes itself under unshare -m)
set -euo pipefail
deb=$(realpath "${1:?usage: systemd_boot.sh DEB}")
if [ "${PGW_IN_NS:-}" != 1 ]; then
  work=$(mktemp -d)
  rc=0
  env PGW_IN_NS=1 PGW_WORK="$work" unshare --mount --propagation private "$0" "$deb" || rc=$?
  if grep -qF " $work" /proc/self/mountinfo; then
    echo "FAIL: $work is still mounted here; left in place"
    exit 1
  fi
  rm -rf --one-file-system "$work"
  exit "$rc"
fi

work=$PGW_WORK
R=$work/root
ns_pid=
stop_container() {
  [ -n "$ns_pid" ] || return 0
  kill -TERM "$ns_pid" 2>/dev/null || :
  for _ in $(seq 60); do kill -0 "$ns_pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$ns_pid" 2>/dev/null || :
  wait "$ns_pid" 2>/dev/null || :
  ns_pid=
}
trap stop_container EXIT
failures=0
ok() { echo "ok: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

mkdir -p "$R"/{usr,etc,var/lib/dpkg,var/lib/postgresql,var/log/postgresql,root}
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
# nspawn keeps state under /run/systemd/nspawn and refuses to clean it off a disk: a tmpfs here.
mkdir -p /run/systemd/nspawn
mount -t tmpfs tmpfs /run/systemd/nspawn
rm -f "$R/etc/machine-id"
rm -rf "$R/etc/pgwarden" "$R/etc/postgresql"
# Only what the test needs starts at boot (PgBouncer would hold 6432).
find "$R/etc/systemd/system" -path '*.wants/*' \( -name 'pgbouncer*' -o -name 'postgresql*' \
  -o -name 'prometheus*' -o -name 'pg_receivewal*' -o -name 'pgwarden*' \) -delete
# No network to wait for on a private network: network-online.target (the unit wants it, to bind
# a configured address) is reached at once.
# PgBouncer (Debian's listens on 6432) and Prometheus stay off.
for u in systemd-networkd-wait-online.service ifupdown-wait-online.service \
  NetworkManager-wait-online.service networking.service pgbouncer.service pgbouncer.socket \
  prometheus.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
cp "$deb" "$R/root/pgwarden.deb"
chown postgres: "$R/var/lib/postgresql" "$R/var/log/postgresql"

systemd-nspawn --quiet --register=no --keep-unit --link-journal=no --private-network \
  -M pgwarden-check -D "$R" -b >"$work/boot.log" 2>&1 </dev/null &
ns_pid=$!
# The container's systemd: the process named systemd below nspawn.
init=
for _ in $(seq 120); do
  for p in $(pgrep -x systemd || :); do
    q=$p
    while [ "$q" -gt 1 ]; do
      [ "$q" = "$ns_pid" ] && { init=$p; break 3; }
      q=$(awk '/^PPid:/ {print $2}' "/proc/$q/status" 2>/dev/null || echo 1)
    done
  done
  sleep 0.5
done
if [ -z "$init" ]; then
  fail "no systemd booted in the container: $(tail -5 "$work/boot.log")"
  exit 1
fi
C() { nsenter -t "$init" -a -- "$@"; }
state=
for _ in $(seq 120); do
  state=$(C systemctl is-system-running 2>/dev/null || :)
  case "$state" in running | degraded) break ;; esac
  sleep 0.5
done
case "$state" in
  running | degraded) ok "systemd $(C systemctl --version | awk 'NR==1 {print $2}') booted in a container ($state)" ;;
  *)
    fail "the container's systemd did not finish booting ($state)"
    exit 1
    ;;
esac

# A PostgreSQL cluster the Debian way, trusting local connections, for the gateway's upstream.
C pg_createcluster 15 main >"$work/pg.log" 2>&1 &&
  C sed -i 's/^local\(.*\)peer$/local\1trust/' /etc/postgresql/15/main/pg_hba.conf &&
  C systemctl start postgresql@15-main >>"$work/pg.log" 2>&1 || {
  fail "PostgreSQL in the container: $(cat "$work/pg.log")"
  exit 1
}

C dpkg -i /root/pgwarden.deb >"$work/install.log" 2>&1 && ok "dpkg -i" || fail "dpkg -i: $(cat "$work/install.log")"
C systemctl is-enabled pgwarden >/dev/null 2>&1 && fail "installing enabled the service" || :
C systemctl is-active pgwarden >/dev/null 2>&1 && fail "installing started the service" ||
  ok "installed, not started (pgwarden.env needs an upstream first)"
C cp /etc/pgwarden/policy.example.json /etc/pgwarden/policy.json
C sed -i -e 's|--upstream 127.0.0.1:5432|--upstream /var/run/postgresql:5432|' \
  -e 's|^PGWARDEN_ARGS="\(.*\)"$|PGWARDEN_ARGS="\1 --policy /etc/pgwarden/policy.json"|' /etc/pgwarden/pgwarden.env
if C systemctl enable --now pgwarden >/dev/null 2>&1 && sleep 1 && C systemctl is-active pgwarden >/dev/null; then
  ok "systemctl enable --now pgwarden: active"
else
  fail "pgwarden.service did not start: $(C journalctl -u pgwarden --no-pager -n 20)"
  exit 1
fi
main=$(C systemctl show -p MainPID --value pgwarden)
status=$(C cat "/proc/$main/status")
user=$(C ps -o user= -p "$main")
grep -q '^NoNewPrivs:.*1$' <<<"$status" && grep -q '^CapEff:.*0000000000000000$' <<<"$status" &&
  grep -q '^CapBnd:.*0000000000000000$' <<<"$status" && grep -q '^Seccomp:.*2$' <<<"$status" && [ "$user" = pgwarden ] &&
  ok "runs as $user, no capabilities, no_new_privs, seccomp filter on" || fail "sandbox: user $user, $(grep -E 'NoNewPrivs|CapEff|CapBnd|Seccomp:' <<<"$status" | tr '\n' ' ')"
ok "open files limit: $(C awk '/open files/ {print $5}' "/proc/$main/limits") (the unit asks 1048576; a container without CAP_SYS_RESOURCE keeps its own)"
C curl -fsS http://127.0.0.1:9187/healthz >/dev/null && ok "/healthz answers" || fail "/healthz"

conn="host=127.0.0.1 port=6432 user=postgres dbname=postgres"
out=$(C psql -X "$conn" -Atc "SELECT 'write to ann.lee@example.com'" 2>&1) || :
[ -n "$out" ] && ! grep -q 'ann.lee@example.com' <<<"$out" &&
  ok "through the socket directory under ProtectSystem=strict, a row masked: $out" || fail "a statement through the service: $out"
out=$(C psql -X "$conn" -c "DROP TABLE IF EXISTS pgw_nothing" 2>&1) && fail "DROP was allowed: $out" ||
  { grep -q 'denied by policy' <<<"$out" && ok "DROP refused by the example policy" || fail "DROP: $out"; }

C systemctl reload pgwarden && sleep 0.5
C journalctl -u pgwarden --no-pager | grep -q 'SIGHUP: policy reloaded' && [ "$(C systemctl show -p MainPID --value pgwarden)" = "$main" ] &&
  ok "systemctl reload: policy reloaded, same process" || fail "reload: $(C journalctl -u pgwarden --no-pager -n 5)"
C systemctl stop pgwarden
[ "$(C systemctl show -p Result --value pgwarden)" = success ] && C journalctl -u pgwarden --no-pager | grep -q 'pgwarden stopped' &&
  ok "systemctl stop: drained, exit 0" || fail "stop: $(C journalctl -u pgwarden --no-pager -n 5)"
C runuser -u pgwarden -- pgwarden verify --record-dir /var/lib/pgwarden/recordings --key-file /etc/pgwarden/seal.key >"$work/verify.log" 2>&1 &&
  ok "pgwarden verify: $(tail -1 "$work/verify.log")" || fail "verify: $(cat "$work/verify.log")"
C journalctl -u pgwarden --no-pager | grep -q 'SIGSYS\|Bad system call\|code=killed' &&
  fail "the syscall filter killed pgwarden: $(C journalctl -u pgwarden --no-pager | grep -m3 'SIGSYS\|killed')" || :
# The filter is in force: a drop-in taking io_uring_setup away makes systemd kill pgwarden.
C mkdir -p /etc/systemd/system/pgwarden.service.d
printf '[Service]\nSystemCallFilter=~io_uring_setup\nRestart=no\n' | C tee /etc/systemd/system/pgwarden.service.d/no-uring.conf >/dev/null
C systemctl daemon-reload
C systemctl start pgwarden >/dev/null 2>&1 || :
sleep 1
C systemctl is-active pgwarden >/dev/null 2>&1 && fail "pgwarden ran without io_uring_setup: is the filter applied?" ||
  ok "without io_uring_setup in the filter systemd stops it: $(C systemctl show -p ExecMainStatus -p Result --value pgwarden | tr '\n' ' ')"
C rm -r /etc/systemd/system/pgwarden.service.d
C systemctl daemon-reload

# Upgrading restarts a running gateway; removing the package stops it. (A policy-rc.d that
# forbids service actions, as in Docker images, would stop both: not in this container.)
C rm -f /usr/sbin/policy-rc.d
C systemctl reset-failed pgwarden >/dev/null 2>&1 || :
C systemctl start pgwarden && sleep 0.5
before=$(C systemctl show -p MainPID --value pgwarden)
C dpkg -i /root/pgwarden.deb >"$work/upgrade.log" 2>&1 || fail "dpkg -i over itself: $(cat "$work/upgrade.log")"
sleep 0.5
after=$(C systemctl show -p MainPID --value pgwarden)
C systemctl is-active pgwarden >/dev/null && [ "$after" != "$before" ] && [ "$after" != 0 ] &&
  ok "dpkg -i over a running gateway restarts it (pid $before, then $after)" || fail "upgrade: pid $before, then $after"
C dpkg -r pgwarden >"$work/remove.log" 2>&1 || fail "dpkg -r: $(cat "$work/remove.log")"
C systemctl is-active pgwarden >/dev/null 2>&1 && fail "dpkg -r left the gateway running" || ok "dpkg -r stops it"

stop_container
[ "$failures" -eq 0 ] || {
  echo "systemd boot: $failures failed"
  exit 1
}
echo "systemd boot: all passed"
