#!/usr/bin/env bash
# Two pgwarden instances behind HAProxy (scripts/ha.sh), in strict recording mode (issue 18):
# cancel requests sent through HAProxy reach the instance that owns the key; pgbench clients run
# through HAProxy while one instance is killed with SIGKILL: the other's clients keep working, the
# dead one's reconnect through HAProxy, and the two recordings together hold every statement that
# committed (so every one a client saw succeed). Usage: tests/integration/ha_test.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/lib.sh"
build=$(cd "$1" && pwd)
BIN="$build/core/pgwarden"
[ -x "$BIN" ] || { echo "no pgwarden binary at $BIN" >&2; exit 2; }

pgw_work_dir ha-test
ha_pid=
stop_ha() {
  if [ -n "$ha_pid" ]; then
    kill -TERM "$ha_pid" 2>/dev/null || :
    wait "$ha_pid" 2>/dev/null || :
  fi
  _pgw_work_cleanup
}
trap stop_ha EXIT

PGW_HA_NO_SETUP=1 PGW_HA_ENV="$work/ha.env" bash "$root/scripts/ha.sh" "$build" >"$work/ha.out" 2>&1 &
ha_pid=$!
for _ in $(seq 120); do [ -f "$work/ha.env" ] && break; sleep 0.5; done
[ -f "$work/ha.env" ] || { cat "$work/ha.out"; exit 1; }
source "$work/ha.env"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
# Both instances are ready in HAProxy's eyes before clients come.
for _ in $(seq 40); do
  [ "$(grep -c 'is UP' "$HA_WORK/haproxy.log" || :)" -ge 0 ] &&
    psql -X -tA -p "$HA_PORT" -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.25
done
echo "ha: HAProxy on $HA_PORT, instances on $PORT1 (pid $GW1_PID) and $PORT2 (pid $GW2_PID)"

passed=0
failed=0
check() {  # check NAME FUNCTION: runs one test, output to a log shown on failure
  local name=$1
  shift
  local started=$SECONDS rc=0
  # Not `if (...)`: bash ignores `set -e` inside a condition, and every step must count.
  set +e
  (
    set -e
    "$@"
  ) >"$work/$name.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "  ok    $name ($((SECONDS - started))s)"
  else
    failed=$((failed + 1))
    echo "  FAIL  $name"
    sed 's/^/        /' "$work/$name.log" | tail -40
  fi
}

# A counter summed over an instance's cores.
metric() {  # metric ADMIN_PORT NAME
  curl -sf -H "Authorization: Bearer $(cat "$HA_WORK/metrics.token")" "http://127.0.0.1:$1/metrics" |
    awk -v n="$2" '$1 ~ "^"n"({|$)" { s += $NF } END { print s + 0 }'
}

# psql sends its CancelRequest to the address it connected to: HAProxy, which picks an instance
# by its own rule (leastconn: mostly the one without the sleeping session, so the peer must
# forward it). Four rounds, another session open in two of them; each statement ends with 57014
# in well under its 60 s. (node/instances.test.mjs sends cancels to each instance in turn.)
cancel_through_haproxy() {
  local round out started idle_pid=
  for round in 1 2 3 4; do
    if [ $((round % 2)) -eq 0 ]; then
      psql -X -p "$HA_PORT" -c 'SELECT pg_sleep(8)' >/dev/null 2>&1 &
      idle_pid=$!
      sleep 0.3
    fi
    started=$SECONDS
    out=$(timeout -s INT 1.5 psql -X -p "$HA_PORT" -v VERBOSITY=verbose -c "SELECT pg_sleep(60)" 2>&1) ||
      echo "round $round: psql exited with $? (expected: it was interrupted)"
    echo "$out"
    echo "$out" | grep -q "57014" || { echo "round $round: not canceled"; return 1; }
    [ $((SECONDS - started)) -lt 10 ]
    if [ -n "$idle_pid" ]; then
      kill "$idle_pid" 2>/dev/null || :
      wait "$idle_pid" 2>/dev/null || :
      idle_pid=
    fi
  done
  local p1 p2
  p1=$(metric "$ADMIN1" pgwarden_cancels_to_peers_total)
  p2=$(metric "$ADMIN2" pgwarden_cancels_to_peers_total)
  echo "cancels forwarded to the peer: instance 1 $p1, instance 2 $p2"
  [ $((p1 + p2)) -ge 1 ]
}

# Four client loops through HAProxy, each a one-client pgbench inserting a random value per
# transaction; when its instance dies pgbench stops, and the loop starts it again (a new
# connection through HAProxy). Instance 1 gets SIGKILL four seconds in.
KILL_AT=4
RUN_FOR=14
kill_mid_run() {
  cat >"$work/ins.sql" <<'SQL'
\set v random(1, 1000000000000)
INSERT INTO ha_log (v) VALUES (:v);
SQL
  psql -X -q -p "$PG_PORT" -c 'CREATE TABLE ha_log (v bigint)'
  mkdir -p "$work/pgb"
  local start end i
  start=$(date +%s)
  end=$((start + RUN_FOR))
  for i in 1 2 3 4; do
    (
      n=0
      cd "$work/pgb"
      while [ "$(date +%s)" -lt "$end" ]; do
        n=$((n + 1))
        left=$((end - $(date +%s)))
        [ "$left" -ge 1 ] || break
        rc=0
        pgbench -n -M simple -c 1 -T "$left" -f "$work/ins.sql" -p "$HA_PORT" -l \
          --log-prefix "$work/pgb/loop$i.run$n" >"$work/pgb/loop$i.run$n.out" 2>&1 || rc=$?
        echo "loop $i run $n: exit $rc" >>"$work/pgb/runs.txt"
        [ "$rc" -eq 0 ] || sleep 0.2
      done
    ) &
  done
  sleep "$KILL_AT"
  kill -9 "$GW1_PID"
  local killed_at
  killed_at=$(date +%s)
  echo "instance 1 killed at +$((killed_at - start)) s"
  wait_loops
  cat "$work/pgb/runs.txt"
  # Every loop completed transactions well after the kill: the surviving instance's clients kept
  # working and the dead one's reconnected through HAProxy.
  for i in 1 2 3 4; do
    local late
    late=$(cat "$work/pgb/loop$i".run*.* 2>/dev/null | grep -v '\.out$' |
      awk -v t=$((killed_at + 3)) '$5 >= t { n++ } END { print n + 0 }')
    echo "loop $i: $late transactions from 3 s after the kill on"
    [ "$late" -gt 0 ] || return 1
  done
  # Some client was on the killed instance and had to reconnect.
  grep -q "exit [^0]" "$work/pgb/runs.txt" || { echo "no client lost its connection"; return 1; }
  local acked committed
  acked=$(cat "$work/pgb/loop"*.run*.[0-9]* 2>/dev/null | wc -l)
  committed=$(psql -X -tA -p "$PG_PORT" -c 'SELECT count(*) FROM ha_log')
  echo "transactions acknowledged to clients: $acked, rows committed: $committed"
  [ "$acked" -gt 100 ] && [ "$committed" -ge "$acked" ]
  # Strict recording: a statement goes upstream only once its record is synced, so every
  # committed row is in one of the two recordings, the killed instance's included.
  psql -X -tA -p "$PG_PORT" -c 'SELECT v FROM ha_log' | sort -u >"$work/committed.txt"
  "$BIN" export --record-dir "$HA_WORK/rec1" --record-dir "$HA_WORK/rec2" --format jsonl >"$work/export.jsonl"
  grep -o 'INSERT INTO ha_log (v) VALUES ([0-9]*)' "$work/export.jsonl" |
    grep -o '[0-9]*)$' | tr -d ')' | sort -u >"$work/recorded.txt"
  local missing
  missing=$(comm -23 "$work/committed.txt" "$work/recorded.txt" | wc -l)
  echo "committed values missing from the recordings: $missing of $(wc -l <"$work/committed.txt")"
  [ "$missing" -eq 0 ]
  # Both instances recorded some of them.
  local d n
  for d in rec1 rec2; do
    n=$("$BIN" export --record-dir "$HA_WORK/$d" --format jsonl | grep -c 'INSERT INTO ha_log')
    echo "$d: $n inserts recorded"
    [ "$n" -gt 0 ]
  done
  # The survivor's chain verifies. The killed one's open segment is cut short until the
  # instance restarts, which seals it; then it verifies too, and HAProxy sends clients to it
  # again once its /readyz answers.
  "$BIN" verify --record-dir "$HA_WORK/rec2" --key-file "$HA_WORK/seal2.key"
  bash "$HA_WORK/gw1.sh" &
  restarted=$!
  pgw_wait_port "$PORT1"
  "$BIN" verify --record-dir "$HA_WORK/rec1" --key-file "$HA_WORK/seal1.key"
  local s1=0 s
  for s in $(seq 40); do
    psql -X -q -p "$HA_PORT" -c 'SELECT pg_sleep(0.3)' >/dev/null &
    other=$!
    psql -X -q -p "$HA_PORT" -c 'SELECT pg_sleep(0.3)' >/dev/null
    wait "$other"
    s1=$(metric "$ADMIN1" pgwarden_sessions_accepted_total)
    [ "$s1" -gt 0 ] && break
  done
  echo "restarted instance 1 accepted $s1 connections through HAProxy"
  [ "$s1" -gt 0 ]
  kill -TERM "$restarted"
  wait "$restarted"
}
wait_loops() {
  local j
  for j in $(jobs -p); do wait "$j" || :; done
}

check cancel_through_haproxy_reaches_the_owner cancel_through_haproxy
grep "cancels forwarded" "$work/cancel_through_haproxy_reaches_the_owner.log" | sed 's/^/        /'
check sigkill_one_instance_clients_go_on_and_recordings_hold_every_commit kill_mid_run
grep -E "killed at|after the kill|acknowledged|missing|inserts recorded|restarted" \
  "$work/sigkill_one_instance_clients_go_on_and_recordings_hold_every_commit.log" | sed 's/^/        /'

echo "ha: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
