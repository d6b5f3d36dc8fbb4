#!/usr/bin/env bash
# Pooling behind pgwarden: clients -> pgwarden (gateway authentication) -> PgBouncer in transaction
# mode (pool of 20) -> PostgreSQL 15. pgwarden logs in to PgBouncer with the mapped role's
# credential from --upstream-secrets; PgBouncer logs in to PostgreSQL with the SCRAM verifier in
# its userlist. Prints ok / FAIL / SKIP-KNOWN-GAP per check and ends with
# "pooling: N passed, N failed". Usage: tests/integration/pooling.sh BUILD_DIR [--keep]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib.sh"
build=$(cd "$1" && pwd)
BIN="$build/core/pgwarden"
[ -x "$BIN" ] || { echo "no pgwarden binary at $BIN" >&2; exit 2; }
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed: run scripts/setup.sh" >&2; exit 2; }
[ -d "$here/node/node_modules/pg" ] || { echo "run npm ci in $here/node first" >&2; exit 2; }

CLIENTS=${PGW_POOLING_CLIENTS:-2000}
POOL=20
# Each pgwarden session holds two descriptors, each held client one in node and one in PgBouncer.
ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
[ "$nofile" -ge $((3 * CLIENTS + 200)) ] ||
  { echo "RLIMIT_NOFILE $nofile is too low for $CLIENTS clients" >&2; exit 2; }

pgw_work_dir pooling "${2:-}"
bouncer_pid=
bouncer_job=
holder_pid=
sampler_pid=
cleanup() {
  local p
  for p in "$holder_pid" "$sampler_pid"; do
    if [ -n "$p" ]; then kill -9 "$p" 2>/dev/null || :; fi
  done
  # SIGTERM: PgBouncer's immediate shutdown.
  if [ -n "$bouncer_pid" ]; then kill -TERM "$bouncer_pid" 2>/dev/null || :; fi
  if [ -n "$bouncer_job" ]; then wait "$bouncer_job" 2>/dev/null || :; fi
  _pgw_work_cleanup
}
trap cleanup EXIT

# ---- PostgreSQL: the application role and database, pgbench's tables ---------------------------
PG_PORT=$(pgw_free_port)
pgw_pg_start "$work/pg" "$PG_PORT" "max_connections = 100"
APP_PW=$(openssl rand -hex 16)     # app_rw's password: only pgwarden (and PgBouncer's hash) know it
ALICE_PW=$(openssl rand -hex 12)   # the gateway user's own password
export PGHOST=127.0.0.1
PGPASSWORD=$PGW_PG_PASSWORD psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -U "$PGW_PG_USER" -d postgres <<SQL
CREATE ROLE app_rw LOGIN PASSWORD '$APP_PW';
CREATE ROLE verifier_source PASSWORD '$ALICE_PW';
CREATE DATABASE app OWNER app_rw;
SQL
pg_q() {  # pg_q SQL: one value, straight from PostgreSQL as the superuser
  PGPASSWORD=$PGW_PG_PASSWORD psql -X -tA -v ON_ERROR_STOP=1 -p "$PG_PORT" -U "$PGW_PG_USER" -d postgres -c "$1"
}
app_verifier=$(pg_q "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_rw'")
alice_verifier=$(pg_q "SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_source'")
pg_q "DROP ROLE verifier_source" >/dev/null
PGPASSWORD=$APP_PW pgbench -i -s 1 -q -p "$PG_PORT" -U app_rw app >"$work/pgbench-init.log" 2>&1 ||
  { cat "$work/pgbench-init.log"; exit 1; }

# ---- PgBouncer 1.18: transaction pooling, SCRAM both ways, admin console ------------------------
ADMIN_PW=$(openssl rand -hex 12)
mkdir -p "$work/bouncer"
write_bouncer_ini() {  # write_bouncer_ini PORT
  cat >"$work/bouncer/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/bouncer/userlist.txt
admin_users = pgb_admin
pool_mode = transaction
default_pool_size = $POOL
max_db_connections = $POOL
max_client_conn = $((CLIENTS + 500))
; a client stalled inside a transaction (e.g. pgbench aborting a client mid-transaction) frees its
; server instead of starving every client queued behind the pool
idle_transaction_timeout = 3
query_wait_timeout = 30
; pgwarden sends --identity-guc at startup; PgBouncer 1.18 refuses unknown startup parameters
ignore_startup_parameters = pgwarden.identity
; DISCARD ALL whenever a transaction releases a server: no client's session settings (a
; search_path into a schema another client's rules forbid) reach the next one (README)
server_reset_query_always = ${PGW_POOL_RESET_ALWAYS:-1}
logfile = $work/bouncer/pgbouncer.log
pidfile = $work/bouncer/pgbouncer.pid
INI
}
{
  echo "\"app_rw\" \"$app_verifier\""
  echo "\"pgb_admin\" \"$ADMIN_PW\""
} >"$work/bouncer/userlist.txt"
chmod 600 "$work/bouncer/userlist.txt"
# A port picked in advance may be taken meanwhile: retried with another.
for attempt in 1 2 3 4 5; do
  BOUNCER_PORT=$(pgw_free_port)
  write_bouncer_ini "$BOUNCER_PORT"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$work/bouncer"
  # PgBouncer refuses to run as root; runuser's PAM session resets the soft descriptor limit.
  rm -f "$work/bouncer/pgbouncer.pid"
  pgw_as_owner bash -c "ulimit -n $nofile && exec pgbouncer -q $work/bouncer/pgbouncer.ini" &
  bouncer_job=$!
  listening=
  for _ in $(seq 100); do  # until it listens, or exits (its port was taken)
    if ss -Hltn "sport = :$BOUNCER_PORT" | grep -q .; then listening=1 && break; fi
    kill -0 "$bouncer_job" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$listening" ] && break
  kill -TERM "$(cat "$work/bouncer/pgbouncer.pid" 2>/dev/null)" 2>/dev/null || :
  wait "$bouncer_job" || :
  bouncer_job=
  [ "$attempt" = 5 ] && { cat "$work/bouncer/pgbouncer.log"; exit 1; }
done
for _ in $(seq 50); do [ -s "$work/bouncer/pgbouncer.pid" ] && break; sleep 0.1; done
bouncer_pid=$(cat "$work/bouncer/pgbouncer.pid")
bouncer_admin() {  # bouncer_admin COMMAND: PgBouncer's admin console, unaligned, no header
  PGPASSWORD=$ADMIN_PW psql -X -tA -F ' ' -p "$BOUNCER_PORT" -U pgb_admin -d pgbouncer -c "$1"
}

# ---- pgwarden: gateway authentication, the mapped role's credential for PgBouncer --------------
cat >"$work/policy.json" <<'JSON'
{"role_mappings": [{"group": "app", "role": "app_rw", "database": "app"}]}
JSON
(umask 077 && echo "app_rw $APP_PW" >"$work/secrets")
echo "alice $alice_verifier app" >"$work/users"
(umask 077 && openssl rand -hex 32 >"$work/seal.key")
# shellcheck disable=SC2046
pgw_gateway_start "$work/gw.log" "$BIN" --upstream "127.0.0.1:$BOUNCER_PORT" --upstream-tls disable \
  --policy "$work/policy.json" --upstream-secrets "$work/secrets" --users-file "$work/users" \
  --identity-guc pgwarden.identity --record-dir "$work/rec" --record-key-file "$work/seal.key" \
  --upstream-pooler transaction --admin-listen 127.0.0.1:0 $(pgw_metrics_token)
gw_pid=$PGW_GW_PID
GW_PORT=$PGW_GW_PORT
export PGPORT=$GW_PORT PGUSER=alice PGPASSWORD=$ALICE_PW PGDATABASE=app
echo "pooling: PostgreSQL on $PG_PORT, PgBouncer $(pgbouncer --version | head -1 | cut -d' ' -f2)" \
  "on $BOUNCER_PORT (transaction mode, pool $POOL), pgwarden on $GW_PORT"

passed=0
failed=0
check() {  # check NAME FUNCTION...: one check, its output in a log shown on failure
  local name=$1 started=$SECONDS rc=0
  shift
  ("$@") >"$work/$name.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "  ok    $name ($((SECONDS - started))s)"
    grep '^  ' "$work/$name.log" || :
  elif [ "$rc" -eq 99 ]; then
    # A known gap (documented in README): not counted as passed; its reason is printed.
    echo "  SKIP-KNOWN-GAP  $name: $(grep '^known gap: ' "$work/$name.log" | head -1 | cut -c12-)"
  else
    failed=$((failed + 1))
    echo "  FAIL  $name"
    sed 's/^/        /' "$work/$name.log" | tail -40
  fi
}

# pgbench_chain ARGS...: pgbench through pgwarden -> PgBouncer; 0 failed transactions, and the
# transactions pgbench counted are there. -M prepared works because pgwarden runs with
# --upstream-pooler transaction: no named prepared statement is left on a server.
pgbench_chain() {
  local out processed rc=0
  out=$(timeout 40 pgbench -n -c 32 -j 2 -T 4 "$@" 2>&1) || rc=$?
  echo "$out" | tail -25
  [ "$rc" -eq 0 ] || return 1
  echo "$out" | grep -q "^number of failed transactions: 0 " || return 1
  processed=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  [ "${processed:-0}" -gt 500 ] || return 1
  echo "  $processed transactions, $(echo "$out" | grep -o 'tps = [0-9.]*' | head -1)"
}

node_prepared() {
  local rc=0
  node "$here/node/pooling_clients.mjs" prepared 30 4 >"$work/node_prepared.out" 2>&1 || rc=$?
  cat "$work/node_prepared.out"
  [ "$rc" -eq 0 ] || return 1
  grep -q '"errors":0' "$work/node_prepared.out" || return 1
  echo "  $(grep -o '"ok":[0-9]*' "$work/node_prepared.out" | cut -d: -f2) named-statement queries, 0 errors"
}

# Through the chain, a client sees its identity in application_name (PgBouncer tracks it and
# sets it on whichever server runs the transaction); the identity GUC does not pass PgBouncer.
identity_through_pooler() {
  local got
  got=$(psql -X -tA -c "SELECT current_setting('application_name'), coalesce(current_setting('pgwarden.identity', true), '<unset>'), current_user")
  echo "$got"
  [ "$got" = "alice via pgwarden (psql)|<unset>|app_rw" ]
}

# COPY both ways through the chain.
copy_rows() {
  seq 1 20000 | awk '{ printf "%d\tname %d\n", $1, $1 }' >"$work/rows.tsv"
  psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE copy_t(id int, name text)" || return 1
  psql -X -q -v ON_ERROR_STOP=1 -c "\\copy copy_t FROM '$work/rows.tsv'" || return 1
  psql -X -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT * FROM copy_t ORDER BY id) TO '$work/out.tsv'" ||
    return 1
  cmp "$work/rows.tsv" "$work/out.tsv" || return 1
  echo "  20000 rows in and out by COPY"
}

# A cancel goes pgwarden -> PgBouncer -> the server running the client's query.
cancel() {
  local started=$SECONDS out
  # psql sends a CancelRequest on SIGINT and then exits non-zero, which is expected here.
  out=$(timeout -s INT 2 psql -X -v VERBOSITY=verbose -c "SELECT pg_sleep(60)" 2>&1) ||
    echo "psql exited with $?"
  echo "$out"
  echo "$out" | grep -q "57014" || return 1
  [ $((SECONDS - started)) -lt 10 ] || return 1
}

# Session state does not survive a transaction in transaction mode; inside one it does.
transaction_state() {
  local got
  got=$(psql -X -tA -c "BEGIN" -c "SET LOCAL statement_timeout = '1234ms'" -c "SHOW statement_timeout" -c "COMMIT")
  echo "$got"
  echo "$got" | grep -qx "1234ms" || return 1
}

# One client leaves a session-level search_path on its server connection; no later client (and
# PgBouncer hands the most recently used server out first) sees it.
session_settings_reset() {
  psql -X -q -c "SET search_path = leaked_schema, public" || return 1
  local i got
  for i in $(seq 30); do
    got=$(psql -X -tA -c "SHOW search_path") || return 1
    if [ "$got" = "leaked_schema, public" ]; then
      echo "client $i got a server connection with another client's search_path"
      return 1
    fi
  done
  echo "  30 clients after it saw their own search_path ($got)"
}

# CLIENTS connections through pgwarden at once, each running a query; PostgreSQL serves them all
# with at most POOL backends.
many_clients() {
  local fifo="$work/hold.fifo" out gw_clients bouncer_clients servers max_pg hold
  # This runs in check's subshell: its helpers end with it, however it ends.
  trap 'for p in "$holder_pid" "$sampler_pid"; do [ -z "$p" ] || kill -9 "$p" 2>/dev/null || :; done' EXIT
  # The largest number of client backends PostgreSQL has for database app, sampled throughout.
  (
    while :; do
      pg_q "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'"
      sleep 0.1
    done
  ) >"$work/pg_samples.txt" 2>/dev/null &
  sampler_pid=$!
  mkfifo "$fifo"
  node "$here/node/pooling_clients.mjs" hold "$CLIENTS" <"$fifo" >"$work/hold.out" 2>&1 &
  holder_pid=$!
  exec {hold}>"$fifo"
  for _ in $(seq 600); do
    grep -q '^ready' "$work/hold.out" && break
    kill -0 "$holder_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/hold.out"
  grep -q '^ready' "$work/hold.out" || return 1
  gw_clients=$(ss -Htn state established "( sport = :$GW_PORT )" | wc -l)
  bouncer_admin "SHOW POOLS" >"$work/pools.txt"
  bouncer_admin "SHOW SERVERS" >"$work/servers.txt"
  # SHOW POOLS: database user cl_active cl_waiting ... sv_active sv_idle sv_used ...
  bouncer_clients=$(awk '$1 == "app" { print $3 + $4 }' "$work/pools.txt")
  servers=$(awk '$1 != "" { n++ } END { print n + 0 }' "$work/servers.txt")
  exec {hold}>&-
  wait "$holder_pid"
  holder_pid=
  kill "$sampler_pid"
  wait "$sampler_pid" 2>/dev/null || :
  sampler_pid=
  max_pg=$(sort -n "$work/pg_samples.txt" | tail -1)
  echo "pgwarden client connections $gw_clients, PgBouncer clients $bouncer_clients," \
    "PgBouncer server connections $servers, PostgreSQL backends (max sampled) $max_pg"
  grep -q "\"queried\":$CLIENTS," "$work/hold.out" || return 1
  [ "$gw_clients" -ge "$CLIENTS" ] || return 1
  [ "$bouncer_clients" -ge "$CLIENTS" ] || return 1
  { [ "$servers" -ge 1 ] && [ "$servers" -le "$POOL" ]; } || return 1
  [ "$(wc -l <"$work/pg_samples.txt")" -ge 5 ] || return 1
  { [ "$max_pg" -ge 1 ] && [ "$max_pg" -le "$POOL" ]; } || return 1
  local pids
  pids=$(grep -o '"backend_pids":[0-9]*' "$work/hold.out" | cut -d: -f2)
  { [ -n "$pids" ] && [ "$pids" -le "$POOL" ]; } || return 1
  echo "  $CLIENTS clients held through pgwarden; PostgreSQL saw at most $max_pg backends" \
    "($pids distinct backends answered, PgBouncer had $servers server connections)"
}

check pgbench_simple_through_pgbouncer pgbench_chain -M simple
check pgbench_extended_through_pgbouncer pgbench_chain -M extended
# pgbench prepares each statement with a synchronous PQprepare the first time a client runs it,
# which blocks the client's whole thread: with more clients per thread than the pool has servers,
# a thread stuck waiting for a server for one client's first BEGIN holds its other clients idle in
# their transactions, which PgBouncer's idle_transaction_timeout then ends. One thread per client.
check pgbench_prepared_through_pgbouncer pgbench_chain -M prepared -j 32
check node_pg_named_prepared_statements node_prepared
check identity_in_application_name identity_through_pooler
check set_local_inside_a_transaction transaction_state
check session_settings_do_not_reach_the_next_client session_settings_reset
check copy_through_pgbouncer copy_rows
check cancel_through_pgbouncer cancel
check "clients_${CLIENTS}_on_a_pool_of_${POOL}" many_clients

# No model divergence, no sanitizer report, a clean exit, a recording that verifies.
if pgw_gateway_finish pooling "$PGW_ADMIN_PORT" >"$work/finish.log" 2>&1; then
  passed=$((passed + 1))
  echo "  ok    gateway_finishes_clean"
else
  failed=$((failed + 1))
  echo "  FAIL  gateway_finishes_clean"
  sed 's/^/        /' "$work/finish.log" | tail -40
fi

echo "pooling: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
