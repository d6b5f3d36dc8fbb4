#!/usr/bin/env bash
# The differential protocol fuzzer (tests/integration/node/differential_fuzz.mjs) for as long as
# asked: a throwaway PostgreSQL 15, pgwarden in front of it with a policy, a masking profile and
# recording on, and random frontend sequences sent to both. Ends with the fuzzer's summary and
# fails on the first broken guarantee (printing the seed that replays it), on any model
# divergence, and if the recording does not verify.
# Usage: scripts/fuzz.sh SECONDS [BUILD_DIR] [SEED]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [BUILD_DIR] [SEED]}
build=$(cd "${2:-$PGW_ROOT/build}" && pwd)
seed=${3:-$(date +%s)}
BIN="$build/core/pgwarden"
[ -x "$BIN" ] || { echo "no pgwarden binary at $BIN" >&2; exit 2; }
node_dir="$PGW_ROOT/tests/integration/node"
[ -d "$node_dir/node_modules" ] || (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)

pgw_work_dir fuzz "${PGW_FUZZ_KEEP:-}"

PG_PORT=$(pgw_free_port)
pgw_pg_start "$work/pg" "$PG_PORT"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
psql -X -q -p "$PG_PORT" <<'SQL' >/dev/null
CREATE ROLE fuzz LOGIN;
CREATE TABLE fz_people (id int, name text, ssn text, email text, card text);
INSERT INTO fz_people VALUES (1, 'Carol', '219-09-9999', 'carol.raw@example.net', '4111 1111 1111 1111'),
  (2, 'Dave', '078-05-1120', 'dave.raw@example.org', 'none');
CREATE TABLE fz_canary (id int);
INSERT INTO fz_canary SELECT generate_series(1, 10);
GRANT SELECT ON fz_people, fz_canary TO fuzz;
GRANT ALL ON fz_canary TO fuzz;  -- only the policy stands between the fuzzer and the canary
GRANT CREATE ON SCHEMA public TO fuzz;
SQL
hba="$work/pg/data/pg_hba.conf"
{ echo "host all fuzz 127.0.0.1/32 trust"; cat "$hba"; } >"$work/hba" && cat "$work/hba" >"$hba"
pgw_as_owner "$PG_BIN/pg_ctl" -D "$work/pg/data" reload >/dev/null

cat >"$work/policy.json" <<'JSON'
{"rules": [{"name": "fuzz", "users": ["fuzz"],
            "deny": ["drop", "truncate", "delete_without_where", "update_without_where", "tautological_where"]}],
 "masking": [{"name": "everyone",
              "columns": [{"column": "ssn", "table": "public.fz_people", "action": "redact"}],
              "detectors": {"email": "redact", "ssn": "redact", "card_number": "redact"}}]}
JSON
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/seal.key"
chmod 600 "$work/seal.key"
pgw_gateway_start "$work/gw.log" "$BIN" --upstream "127.0.0.1:$PG_PORT" --threads 2 --no-pin \
  --policy "$work/policy.json" --record-dir "$work/rec" --record-key-file "$work/seal.key" \
  --admin-listen 127.0.0.1:0 $(pgw_metrics_token) --log-level "${PGW_FUZZ_LOG:-info}"
gw_pid=$PGW_GW_PID
GW_PORT=$PGW_GW_PORT
ADMIN_PORT=$PGW_ADMIN_PORT

rc=0
PGW_PORT=$GW_PORT PG_PORT=$PG_PORT PGW_BIN=$BIN PGW_REC_DIR="$work/rec" \
  node "$node_dir/differential_fuzz.mjs" --seconds "$seconds" --seed "$seed" || rc=$?
pgw_gateway_finish fuzz "$ADMIN_PORT" || rc=1
exit "$rc"
