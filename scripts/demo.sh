#!/usr/bin/env bash
# One-command demo: installs dependencies, builds Release, starts a throwaway PostgreSQL 15 and
# pgwarden in front of it, prints how to connect, and runs until Ctrl-C (then stops both).
# PGW_DEMO_PORT=6432 by default; the PostgreSQL data lives under .demo/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh
source scripts/lib.sh
echo "demo: building pgwarden (Release)"
pgw_build "$root/build" Release >/dev/null

port=${PGW_DEMO_PORT:-6432}
if ss -Hltn "sport = :$port" | grep -q .; then
  echo "demo: port $port is busy; set PGW_DEMO_PORT to another port" >&2
  exit 1
fi

# Data under .demo/ in the checkout, unless the server's OS user cannot reach it (e.g. a checkout
# under /root when run as root): then under /tmp.
demo="$root/.demo"
mkdir -p "$demo"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$demo"; then
  demo=$(mktemp -d /tmp/pgwarden-demo.XXXXXX)
  chmod 755 "$demo"
  echo "demo: $root is not readable by the 'postgres' OS user; using $demo"
fi
rm -rf "$demo/pg"
pg_port=$(pgw_free_port)
gw_pid=
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  if [ -n "$gw_pid" ]; then
    kill -TERM "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  fi
  pgw_pg_stop "$demo/pg"
}
trap stop INT TERM EXIT

echo "demo: starting PostgreSQL 15 on 127.0.0.1:$pg_port (data in $demo/pg)"
pgw_pg_start "$demo/pg" "$pg_port"
PGPASSWORD=$PGW_PG_PASSWORD psql -X -q -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" -d postgres <<'SQL'
CREATE TABLE orders(id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), created_at timestamptz DEFAULT now());
INSERT INTO orders(customer, amount) SELECT 'customer ' || g, (g * 7 % 500) + 0.99 FROM generate_series(1, 1000) g;
CREATE TABLE customers(id int PRIMARY KEY, name text, email text, ssn text, card text, note text);
INSERT INTO customers VALUES
  (1, 'Bob Example', 'bob@example.com', '219-09-9999', '4111 1111 1111 1111', 'call +1 415 555 2671'),
  (2, 'Ann Example', 'ann@example.org', '078-05-1120', '5555-5555-5555-4444', 'IBAN DE89370400440532013000');
SQL

# Every session is recorded under $demo/rec, sealed with a key made for this demo.
if [ ! -s "$demo/seal.key" ]; then
  (umask 077 && openssl rand -hex 32 > "$demo/seal.key")
fi
"$root/build/core/pgwarden" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$pg_port" \
  --policy "$root/policy/policy.example.json" \
  --record-dir "$demo/rec" --record-key-file "$demo/seal.key" &
gw_pid=$!
pgw_wait_port "$port"

cat <<MSG

pgwarden is running in front of a throwaway PostgreSQL 15.

  Connect through the gateway:
    PGPASSWORD=$PGW_PG_PASSWORD psql "host=127.0.0.1 port=$port user=$PGW_PG_USER dbname=postgres"

  Try:  SELECT count(*), sum(amount) FROM orders;
        DELETE FROM orders;                   -- refused by the policy (no WHERE)
        DELETE FROM orders WHERE id = 1;      -- runs
        SELECT * FROM customers;              -- PII masked (profile "everyone")
  The policy is $root/policy/policy.example.json (rule "default" applies here); edit it and
  send SIGHUP to pgwarden to reload it.

  Benchmark through it (pgbench -i drops tables, so initialise directly against PostgreSQL):
    PGPASSWORD=$PGW_PG_PASSWORD pgbench -h 127.0.0.1 -p $pg_port -U $PGW_PG_USER -i postgres
    PGPASSWORD=$PGW_PG_PASSWORD pgbench -h 127.0.0.1 -p $port -U $PGW_PG_USER -S -c 8 -T 10 postgres

  Every session is recorded (tamper-evident, sealed). Read the recording, even while it runs:
    $root/build/core/pgwarden sessions --record-dir $demo/rec
    $root/build/core/pgwarden replay --record-dir $demo/rec --session <SESSION from sessions>
    $root/build/core/pgwarden export --record-dir $demo/rec --format jsonl --follow
    $root/build/core/pgwarden verify --record-dir $demo/rec --key-file $demo/seal.key

  This demo relays authentication to PostgreSQL. For OIDC tokens, static SCRAM users, role
  mapping and TLS see "Gateway authentication" in README.md; masking arrives in a later
  release.  Press Ctrl-C to stop both servers.

MSG
wait "$gw_pid"
