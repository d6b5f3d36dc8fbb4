#!/usr/bin/env bash
# Two pgwarden instances behind HAProxy, on loopback: the shape of a highly available deployment.
#
#   clients --> HAProxy :HA_PORT (leastconn, health-checked on each instance's GET /readyz)
#                 |--> pgwarden instance 1 (--peer-id 1) --+
#                 '--> pgwarden instance 2 (--peer-id 2) --+--> PostgreSQL 15
#
# Each instance records in strict mode into its own directory with its own seal key, and serves
# its own admin API; they are peers, so a CancelRequest that HAProxy hands to the "wrong" instance
# is forwarded to the one that issued its key. README "Several instances behind a load balancer"
# explains each setting and how the same maps to a cloud load balancer or a Kubernetes Service.
#
# Usage: scripts/ha.sh [BUILD_DIR]    (default: build/, built when missing)
# Prints how to connect and runs until Ctrl-C. With PGW_HA_ENV=FILE it also writes the ports,
# process ids and directories there as shell assignments (tests/integration/ha_test.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

build=${1:-$PGW_ROOT/build}
if [ ! -x "$build/core/pgwarden" ]; then
  [ "${PGW_HA_NO_SETUP:-}" = 1 ] || bash "$here/setup.sh"
  pgw_build "$build" Release
fi
BIN=$(cd "$build" && pwd)/core/pgwarden
command -v haproxy >/dev/null || { echo "ha.sh: haproxy is not installed (scripts/setup.sh)" >&2; exit 2; }

pgw_work_dir ha "${PGW_HA_KEEP:-}"
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || :; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || :; done
  _pgw_work_cleanup
}
trap stop_all EXIT
trap 'exit 0' INT TERM

PG_PORT=$(pgw_free_port)
pgw_pg_start "$work/pg" "$PG_PORT" "max_connections = 300"

# The same --peer list for both: an instance ignores its own entry.
PORT1=$(pgw_free_port)
PORT2=$(pgw_free_port)
while [ "$PORT2" = "$PORT1" ]; do PORT2=$(pgw_free_port); done
ADMIN1=$(pgw_free_port)
ADMIN2=$(pgw_free_port)
HA_PORT=$(pgw_free_port)
peers=(--peer "1=127.0.0.1:$PORT1" --peer "2=127.0.0.1:$PORT2")
metrics_flag=$(pgw_metrics_token)
for i in 1 2; do
  port_var=PORT$i
  admin_var=ADMIN$i
  # A seal key per instance: one leaked key cannot forge the other's recording.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/seal$i.key"
  chmod 600 "$work/seal$i.key"
  # Each instance's command line in a script of its own: run it again to restart the instance
  # (a restart seals the segment a killed instance left open).
  cat >"$work/gw$i.sh" <<EOF
exec "$BIN" --listen "127.0.0.1:${!port_var}" --upstream "127.0.0.1:$PG_PORT" --threads 1 --no-pin \\
  --peer-id $i ${peers[*]} --admin-listen "127.0.0.1:${!admin_var}" $metrics_flag \\
  --record-dir "$work/rec$i" --record-key-file "$work/seal$i.key" --record-durability strict \\
  2>>"$work/gw$i.log"
EOF
  bash "$work/gw$i.sh" &
  pids+=($!)
  eval "GW${i}_PID=$!"
done
pgw_wait_port "$PORT1"
pgw_wait_port "$PORT2"

# TCP mode: HAProxy passes bytes, TLS and cancel requests included. leastconn suits long-lived
# database sessions; a server is taken out when /readyz fails (upstream unreachable, recording
# failing, or draining after SIGTERM), and a connect that fails is retried on the other one.
cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 8000  # 2 fds each: within a 20,000 open-file limit
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout check 1s
  retries 3
  option redispatch
  option tcpka
listen pgwarden
  bind 127.0.0.1:$HA_PORT
  balance leastconn
  server gw1 127.0.0.1:$PORT1 track ready1/gw1
  server gw2 127.0.0.1:$PORT2 track ready2/gw2
# Each instance's readiness, from its admin API. The Host header must name the admin listener
# (pgwarden refuses other names: DNS rebinding), hence a checking backend per instance.
backend ready1
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1:$ADMIN1
  http-check expect status 200
  server gw1 127.0.0.1:$ADMIN1 check inter 500ms fall 2 rise 2
backend ready2
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1:$ADMIN2
  http-check expect status 200
  server gw2 127.0.0.1:$ADMIN2 check inter 500ms fall 2 rise 2
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
HA_PID=$!
pids+=("$HA_PID")
pgw_wait_port "$HA_PORT"

if [ -n "${PGW_HA_ENV:-}" ]; then
  cat >"$PGW_HA_ENV.tmp" <<EOF
HA_PORT=$HA_PORT
PG_PORT=$PG_PORT
PORT1=$PORT1
PORT2=$PORT2
ADMIN1=$ADMIN1
ADMIN2=$ADMIN2
GW1_PID=$GW1_PID
GW2_PID=$GW2_PID
HA_PID=$HA_PID
HA_WORK=$work
EOF
  mv "$PGW_HA_ENV.tmp" "$PGW_HA_ENV"
fi
cat <<EOF
ha.sh: two pgwarden instances behind HAProxy are up (work directory $work)
  connect:     PGPASSWORD=$PGW_PG_PASSWORD psql -h 127.0.0.1 -p $HA_PORT -U $PGW_PG_USER postgres
  pgbench:     PGPASSWORD=$PGW_PG_PASSWORD pgbench -h 127.0.0.1 -p $HA_PORT -U $PGW_PG_USER -c 8 -T 30 postgres
  instances:   1 on 127.0.0.1:$PORT1 (admin $ADMIN1), 2 on 127.0.0.1:$PORT2 (admin $ADMIN2)
  recordings:  $BIN sessions --record-dir $work/rec1 --record-dir $work/rec2
  metrics:     curl -H "Authorization: Bearer \$(cat $work/metrics.token)" http://127.0.0.1:$ADMIN1/metrics
  try:         kill -9 $GW1_PID   (clients reconnect through HAProxy to instance 2)
               bash $work/gw1.sh &   (instance 1 back: it seals what it left open, HAProxy sees it ready)
Ctrl-C stops everything.
EOF
wait "$HA_PID"
