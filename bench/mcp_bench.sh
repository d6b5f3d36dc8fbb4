#!/usr/bin/env bash
# MCP tool calls against the same SQL over the wire protocol, in one run (issue 16): a throwaway
# PostgreSQL 15, one pgwarden with gateway authentication, a policy rule, a masking profile and
# batch recording, then interleaved rounds of N sequential `query` calls through the MCP endpoint
# (the official SDK's Streamable HTTP client) and N sequential executions of the same statement
# through pgwarden's SQL listener (node `pg`, the same identity); also the bare HTTP call by two
# callers in turn (each call's pooled connection passes from the other caller: a handover per
# call) and against a second pgwarden with --mcp-pool 0 (a login and a connection per call).
# Reports calls per second, the median and p95 latency per call, the added latency, and
# pgwarden's CPU per call.
#   bench/mcp_bench.sh [--rounds R] [--calls N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
rounds=5
calls=300
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R] [--calls N]" >&2; exit 2 ;;
  esac
done
BIN="$PGW_ROOT/build/core/pgwarden"
[ -x "$BIN" ] || pgw_build "$PGW_ROOT/build" Release >/dev/null
[ -d "$PGW_ROOT/tests/integration/node/node_modules" ] ||
  (cd "$PGW_ROOT/tests/integration/node" && npm ci --no-audit --no-fund --loglevel=error)
pgw_work_dir mcp-bench
pg_port=$(pgw_free_port)
pgw_pg_start "$work/pg" "$pg_port"
PGPASSWORD=$PGW_PG_PASSWORD psql -X -q -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" -d postgres <<'SQL'
CREATE ROLE bench_reader LOGIN PASSWORD 'bench-Reader-Secret-1';
CREATE SCHEMA bench;
CREATE TABLE bench.people (id int PRIMARY KEY, email text NOT NULL, note text);
INSERT INTO bench.people SELECT g, 'person' || g || '@example.org', 'note ' || g FROM generate_series(1, 1000) g;
GRANT USAGE ON SCHEMA bench TO bench_reader;
GRANT SELECT ON bench.people TO bench_reader;
SQL
chmod 777 "$work"
PGW_BIN=$BIN PG_PORT=$pg_port BENCH_DIR=$work ROUNDS=$rounds CALLS=$calls \
  node "$here/mcp_bench.mjs"
