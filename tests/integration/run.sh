#!/usr/bin/env bash
# Integration tests: a real PostgreSQL 15 on a random loopback port, pgwarden in front of it, and
# real clients (psql, pgbench, node pg / postgres.js). Usage: tests/integration/run.sh BUILD_DIR
# [--quick]  (--quick: only the node suites, e.g. against the sanitizer build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib.sh"
build=$(cd "$1" && pwd)
quick=${2:-}
BIN="$build/core/pgwarden"
[ -x "$BIN" ] || { echo "no pgwarden binary at $BIN" >&2; exit 2; }

pgw_work_dir it

PG_PORT=$(pgw_free_port)
pgw_pg_start "$work/pg" "$PG_PORT" "max_connections = 620"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
export PG_LOG="$work/pg/postgres.log"
# 'trusted' logs in without a password, for the raw-protocol tests.
psql -X -q -p "$PG_PORT" -c "CREATE ROLE trusted LOGIN" >/dev/null
hba="$work/pg/data/pg_hba.conf"
# md5user and plainuser exercise pgwarden's md5 and cleartext upstream logins.
{
  echo "host all trusted 127.0.0.1/32 trust"
  echo "host all md5user 127.0.0.1/32 md5"
  echo "host all plainuser 127.0.0.1/32 password"
  cat "$hba"
} > "$work/hba" && cat "$work/hba" > "$hba"
pgw_as_owner "$PG_BIN/pg_ctl" -D "$work/pg/data" reload >/dev/null

"$BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$PG_PORT" --max-message-size 1M 2>"$work/gw.log" &
gw_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/gw.log" && break; sleep 0.1; done
GW_PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/gw.log" | cut -d: -f2)
[ -n "$GW_PORT" ] || { cat "$work/gw.log"; exit 1; }
echo "integration: PostgreSQL on $PG_PORT, pgwarden ($BIN) on $GW_PORT"

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

psql_identical() {
  psql -X -p "$PG_PORT" -f "$here/psql_script.sql" >"$work/direct.out" 2>&1
  psql -X -p "$GW_PORT" -f "$here/psql_script.sql" >"$work/gateway.out" 2>&1
  grep -q "status" "$work/direct.out"
  grep -q "57014\|22012" "$work/direct.out"  # the script really ran, errors included
  cmp "$work/direct.out" "$work/gateway.out"
}

copy_100k() {
  seq 1 100000 | awk '{ printf "%d\tname %d\t%.2f\t{%d,%d}\n", $1, $1, $1 * 3.5, $1, $1 + 1 }' > "$work/rows.tsv"
  psql -X -q -p "$PG_PORT" -c "DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t(id int, name text, v numeric, a int[])"
  psql -X -q -p "$GW_PORT" -c "\\copy copy_t FROM '$work/rows.tsv'"
  psql -X -q -p "$GW_PORT" -c "\\copy (SELECT * FROM copy_t ORDER BY id) TO '$work/via_gateway.tsv'"
  psql -X -q -p "$PG_PORT" -c "\\copy (SELECT * FROM copy_t ORDER BY id) TO '$work/direct.tsv'"
  [ "$(wc -l < "$work/via_gateway.tsv")" -eq 100000 ]
  cmp "$work/rows.tsv" "$work/via_gateway.tsv"
  cmp "$work/direct.tsv" "$work/via_gateway.tsv"
}

pgbench_init() {
  pgbench -p "$GW_PORT" -i -s 4 -q 2>&1 | tail -3
  [ "$(psql -X -tA -p "$PG_PORT" -c 'SELECT count(*) FROM pgbench_accounts')" -eq 400000 ]
}

pgbench_run() {  # pgbench_run ARGS...: 10 s through the gateway, 0 failed transactions
  local out
  out=$(pgbench -p "$GW_PORT" -c 8 -j 2 -T 10 -n "$@" 2>&1)
  echo "$out"
  echo "$out" | grep -q "number of failed transactions: 0 "
  local done
  done=$(echo "$out" | sed -n 's/number of transactions actually processed: \([0-9]*\).*/\1/p')
  [ "${done:-0}" -gt 100 ]
}

pipeline_script() {
  cat > "$work/pipeline.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\endpipeline
SQL
  pgbench_run -M extended -f "$work/pipeline.sql"
}

psql_cancel() {
  local started=$SECONDS out
  # psql sends a CancelRequest on SIGINT; it then exits non-zero, which is expected here.
  out=$(timeout -s INT 2 psql -X -p "$GW_PORT" -v VERBOSITY=verbose -c "SELECT pg_sleep(60)" 2>&1) ||
    echo "psql exited with $?"
  echo "$out"
  echo "$out" | grep -q "57014"
  [ $((SECONDS - started)) -lt 10 ]
}

unix_socket_upstream() {
  local log="$work/gw_unix.log" pid port
  "$BIN" --listen 127.0.0.1:0 --upstream "$work/pg:$PG_PORT" --threads 1 2>"$log" &
  pid=$!
  for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2)
  local got
  got=$(psql -X -tA -p "$port" -c "SELECT 'via unix socket', inet_server_addr() IS NULL")
  kill -TERM "$pid"
  wait "$pid"
  [ "$got" = "via unix socket|t" ]
}

# Garbage from N clients, one after another (each waits for its close): N protocol-violation
# lines in the gateway's log.
flood_garbage() {  # flood_garbage PORT N
  python3 - "$1" "$2" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)  # a stalled gateway fails
    s.sendall(b'\x00\x00\x00\x02garbage')  # a startup packet length no client sends
    try:
        s.recv(64)
    except ConnectionResetError:
        pass
    s.close()
PY
}

json_logs() {  # --log-format json: every stderr line is one JSON object, in UTF-8
  local log="$work/gw_json.log" pid port rc=0
  "$BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$PG_PORT" --threads 2 --log-format json \
    --log-level debug 2>"$log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2)
  [ -n "$port" ] || { cat "$log"; kill "$pid"; return 1; }
  [ "$(psql -X -tA -p "$port" -c "SELECT 'through a gateway logging JSON'")" = \
    "through a gateway logging JSON" ] || rc=1
  psql -X -q -p "$port" -d no_such_database -c "SELECT 1" 2>/dev/null && rc=1
  flood_garbage "$port" 50 || rc=1
  kill -TERM "$pid"
  wait "$pid" || rc=1
  python3 - "$log" <<'PY' || rc=1
import json, sys
text = open(sys.argv[1], encoding='utf-8').read()  # strict: the log is valid UTF-8
assert text.endswith('\n'), 'the log ends with a whole line'
lines = [json.loads(l) for l in text[:-1].split('\n')]  # strict: no raw control characters
for o in lines:
    assert isinstance(o, dict) and {'time', 'level', 'msg'} <= o.keys(), o
    assert o['level'] in ('debug', 'info', 'warn', 'error'), o
msgs = [o['msg'] for o in lines]
assert any('listening on' in m for m in msgs), msgs
assert 'pgwarden stopped' in msgs, msgs[-5:]
# 50 violations from one call site: 20 a second are written, the rest counted in summaries.
flood = [o for o in lines if 'protocol violation from client' in o['msg']]
written = [o for o in flood if 'repeated' not in o]
assert 20 <= len(written) < 50, len(written)
assert len(written) + sum(o.get('repeated', 0) for o in flood) == 50, flood
assert any(o.get('core') == 1 for o in lines), 'worker lines name their core'
print(len(lines), 'JSON lines,', len(written), 'of 50 violations written')
PY
  [ "$rc" -eq 0 ] || { tail -20 "$log"; return 1; }
}

# A gateway whose stderr is a pipe nobody reads: once the pipe and the log queue are full, log
# lines are dropped and counted, while statements keep going through at full speed, and SIGTERM
# still ends it promptly.
stuck_stderr() {
  local fifo="$work/stuck.fifo" port admin pid out done dropped started flood rc=0
  mkfifo "$fifo"
  exec 7<>"$fifo"  # holds the read end open; nothing ever reads it
  port=$(pgw_free_port)
  admin=$(pgw_free_port)
  # shellcheck disable=SC2046
  "$BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" --threads 2 \
    --log-level debug --log-rate-limit 0 --admin-listen "127.0.0.1:$admin" $(pgw_metrics_token) \
    2>"$fifo" 7>&- &
  pid=$!
  pgw_wait_port "$port" && pgw_wait_port "$admin" || { kill "$pid"; return 1; }
  flood_garbage "$port" 20000 &
  flood=$!
  out=$(timeout 60 pgbench -p "$port" -c 4 -j 2 -T 5 -n -S 2>&1) || rc=1
  echo "$out" | grep -E "failed transactions|actually processed|latency average"
  echo "$out" | grep -q "number of failed transactions: 0 " || rc=1
  done=$(echo "$out" | sed -n 's/number of transactions actually processed: \([0-9]*\).*/\1/p')
  [ "${done:-0}" -gt 1000 ] || rc=1
  wait "$flood" || rc=1
  [ "$(timeout 5 psql -X -tA -p "$port" -c "SELECT 'still served'")" = "still served" ] || rc=1
  dropped=$(curl -sf -H "Authorization: Bearer $(cat "$work/metrics.token")" \
    "http://127.0.0.1:$admin/metrics" | awk '/^pgwarden_log_lines_dropped_total/ { print $2 }')
  echo "log lines dropped: ${dropped:-none}"
  [ "${dropped:-0}" -gt 0 ] || rc=1
  started=$SECONDS
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "still running 10 s after SIGTERM"
    kill -9 "$pid"
    rc=1
  fi
  wait "$pid" || rc=1
  echo "stopped in $((SECONDS - started)) s"
  exec 7>&-
  return "$rc"
}

# PGW_NODE_SUITES="gateway_auth tls" narrows the node suites (for local iteration).
suites=()
for s in ${PGW_NODE_SUITES:-hostile clients lifecycle gateway_auth tls upstream_tls recorder policy judgement replication masking masking_values masking_computed pipeline admin instances agents mcp mcp_pool}; do
  suites+=("$here/node/$s.test.mjs")
done
node_suites() {
  local p f rc=0
  PGW_PORT=$GW_PORT PG_PORT=$PG_PORT PGW_BIN=$BIN node --test --test-concurrency=1 --test-reporter=tap \
    "${suites[@]}" >"$work/node.tap" 2>&1 || rc=$?
  p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$work/node.tap")
  f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$work/node.tap")
  [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1  # the runner failed outside any test
  grep -E "^(not )?ok " "$work/node.tap" | sed 's/^/  node: /'
  if [ -z "$p" ] || [ "${f:-1}" -ne 0 ]; then
    # Each failing test with its YAML block (error, expected, actual, stack); when the runner
    # failed outside any test, the end of its output.
    awk '/^not ok /{p=1} p{print} p && /^  \.\.\.$/{p=0}' "$work/node.tap" >"$work/node.failures"
    if [ -s "$work/node.failures" ]; then head -200 "$work/node.failures"; else tail -80 "$work/node.tap"; fi
  fi
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-1}))
}

if [ "$quick" != "--quick" ]; then
  check psql_output_identical_to_direct psql_identical
  check copy_100k_rows_both_ways copy_100k
  check pgbench_init_through_gateway pgbench_init
  check pgbench_simple_10s pgbench_run -M simple
  check pgbench_extended_10s pgbench_run -M extended
  check pgbench_prepared_10s pgbench_run -M prepared
  check pgbench_pipeline_10s pipeline_script
  check psql_cancel_57014 psql_cancel
  check unix_socket_upstream unix_socket_upstream
  check json_logs json_logs
  check stuck_stderr_never_stalls_the_data_path stuck_stderr
fi
node_suites

# The shared gateway survived everything and shuts down cleanly on SIGTERM.
rc=0
if kill -0 "$gw_pid"; then
  kill -TERM "$gw_pid"
  wait "$gw_pid" || rc=$?
else
  rc=255
fi
gw_pid=
if [ "$rc" -eq 0 ]; then
  passed=$((passed + 1))
  echo "  ok    gateway_survived_and_exits_0"
else
  failed=$((failed + 1))
  echo "  FAIL  gateway_survived_and_exits_0 (exit code $rc)"
fi
if grep -q "ERROR\|runtime error\|AddressSanitizer" "$work/gw.log"; then
  echo "  FAIL  gateway log has errors:"; grep "ERROR\|runtime error\|AddressSanitizer" -A5 "$work/gw.log" | head -40
  failed=$((failed + 1))
fi

echo "integration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
