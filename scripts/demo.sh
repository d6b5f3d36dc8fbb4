#!/usr/bin/env bash
# One-command demo of pgwarden run the way README tells teams to run it: gateway authentication
# with a local identity provider (a generated JWKS and tokens for an analyst, an on-call DBA who
# approves, and an AI agent), TLS, the example policy, masking, recording and the admin API, in
# front of a throwaway PostgreSQL 15. Nobody connects as the database superuser: pgwarden holds
# the only credentials. Runs until Ctrl-C (then stops both servers).
#   scripts/demo.sh            PGW_DEMO_PORT (6432) and PGW_DEMO_ADMIN_PORT (9187)
#   scripts/demo.sh --check    walks through the demo itself and exits (scripts/test.sh runs it)
# Data, keys and tokens live under .demo/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
check=
[ "${1:-}" = --check ] && check=1

[ -n "${PGW_DEMO_NO_SETUP:-}" ] || bash scripts/setup.sh
source scripts/lib.sh
echo "demo: building pgwarden (Release)"
pgw_build "$root/build" Release >/dev/null
[ -d tests/integration/node/node_modules ] ||
  (cd tests/integration/node && npm ci --no-audit --no-fund --loglevel=error)
bin="$root/build/core/pgwarden"

if [ -n "$check" ]; then
  port=$(pgw_free_port)
  admin_port=$(pgw_free_port)
else
  port=${PGW_DEMO_PORT:-6432}
  admin_port=${PGW_DEMO_ADMIN_PORT:-9187}
fi
for p in "$port" "$admin_port"; do
  if ss -Hltn "sport = :$p" | grep -q .; then
    echo "demo: port $p is busy; set PGW_DEMO_PORT / PGW_DEMO_ADMIN_PORT" >&2
    exit 1
  fi
done

# Data under .demo/ in the checkout, unless the server's OS user cannot reach it (e.g. a checkout
# under /root when run as root): then under /tmp.
demo="$root/.demo"
[ -n "$check" ] && demo="$root/.demo-check"
mkdir -p "$demo"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$demo"; then
  demo=$(mktemp -d /tmp/pgwarden-demo.XXXXXX)
  chmod 755 "$demo"
  echo "demo: $root is not readable by the 'postgres' OS user; using $demo"
fi
rm -rf "$demo/pg" "$demo/rec" "$demo/idp" "$demo/tokens" "$demo/tls"
mkdir -p "$demo/idp" "$demo/tokens" "$demo/tls"
chmod 700 "$demo/tokens"
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
# The roles pgwarden maps groups to (policy.example.json), with passwords only pgwarden knows.
: >"$demo/secrets"
chmod 600 "$demo/secrets"
for role in app_owner app_writer app_reader replicator; do
  echo "$role $(openssl rand -hex 16)" >>"$demo/secrets"
done
pw() { awk -v r="$1" '$1 == r { print $2 }' "$demo/secrets"; }
export PGPASSWORD=$PGW_PG_PASSWORD
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" -d postgres <<SQL
CREATE ROLE app_owner LOGIN PASSWORD '$(pw app_owner)';
CREATE ROLE app_writer LOGIN PASSWORD '$(pw app_writer)';
CREATE ROLE app_reader LOGIN PASSWORD '$(pw app_reader)';
CREATE ROLE replicator LOGIN REPLICATION PASSWORD '$(pw replicator)';
CREATE DATABASE app OWNER app_owner;
SQL
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" -d app <<'SQL'
SET ROLE app_owner;
CREATE TABLE orders(id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), created_at timestamptz DEFAULT now());
INSERT INTO orders(customer, amount) SELECT 'customer ' || g, (g * 7 % 500) + 0.99 FROM generate_series(1, 1000) g;
CREATE TABLE customers(id int PRIMARY KEY, name text, email text, ssn text, card text, note text);
INSERT INTO customers VALUES
  (1, 'Bob Example', 'bob@example.com', '219-09-9999', '4111 1111 1111 1111', 'call +1 415 555 2671'),
  (2, 'Ann Example', 'ann@example.org', '078-05-1120', '5555-5555-5555-4444', 'IBAN DE89370400440532013000');
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app_writer;
GRANT CREATE ON SCHEMA public TO app_writer;
SQL
unset PGPASSWORD

# The local identity provider and the people of the demo.
node scripts/demo_idp.mjs init "$demo/idp"
mint() {  # mint NAME EMAIL GROUPS AUDIENCE
  node scripts/demo_idp.mjs mint "$demo/idp" "$2" "$3" "$4" >"$demo/tokens/$1.jwt"
  chmod 600 "$demo/tokens/$1.jwt"
}
mint ann ann@example.com analysts pgwarden-sql
mint agent agent-7@example.com agents pgwarden-sql
mint dana dana@example.com dba-oncall pgwarden-sql
mint dana-admin dana@example.com dba-oncall pgwarden-admin

# TLS: a throwaway CA and a certificate for localhost.
(
  cd "$demo/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 30 -subj "/CN=pgwarden demo CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
    -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 30 -extfile ext.cnf 2>/dev/null
  chmod 600 server.key ca.key
)
for k in seal mask; do
  [ -s "$demo/$k.key" ] || (umask 077 && openssl rand -hex 32 >"$demo/$k.key")
done

"$bin" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$pg_port" \
  --policy "$root/policy/policy.example.json" --upstream-secrets "$demo/secrets" \
  --jwks-file "$demo/idp/jwks.json" --oidc-issuer https://idp.pgwarden.demo \
  --oidc-audience pgwarden-sql --admin-audience pgwarden-admin \
  --tls-cert "$demo/tls/server.pem" --tls-key "$demo/tls/server.key" \
  --admin-listen "127.0.0.1:$admin_port" --approval-timeout 600 \
  --record-dir "$demo/rec" --record-key-file "$demo/seal.key" --mask-key-file "$demo/mask.key" \
  2>"$demo/gateway.log" &
gw_pid=$!
pgw_wait_port "$port"
pgw_wait_port "$admin_port"

conn() { echo "host=localhost port=$port dbname=app user=$1 sslmode=verify-full sslrootcert=$demo/tls/ca.pem"; }
as() {  # as NAME EMAIL SQL...: psql through pgwarden with NAME's token
  local name=$1 email=$2
  shift 2
  PGPASSWORD=$(cat "$demo/tokens/$name.jwt") psql -X -w "$(conn "$email")" "$@"
}
admin_env="PGWARDEN_ADMIN=http://127.0.0.1:$admin_port PGWARDEN_TOKEN=\$(cat $demo/tokens/dana-admin.jwt)"

if [ -z "$check" ]; then
  cat <<MSG

pgwarden is running in front of a throwaway PostgreSQL 15 (TLS, gateway authentication, the
example policy, masking, recording, admin API on 127.0.0.1:$admin_port). Its log: $demo/gateway.log

  Ann, an analyst (read-only, sees PII masked):
    PGPASSWORD=\$(cat $demo/tokens/ann.jwt) psql "$(conn ann@example.com)"
      SELECT * FROM customers;          -- card numbers, SSNs, e-mails masked
      DELETE FROM orders WHERE id = 1;  -- refused: analysts are read-only

  agent-7, an AI agent (no destruction; schema changes wait for a DBA):
    PGPASSWORD=\$(cat $demo/tokens/agent.jwt) psql "$(conn agent-7@example.com)"
      DROP TABLE orders;                       -- refused by rule "ai-agents"
      CREATE TABLE agent_notes (id int, note text); -- held: psql waits for an approver

  Dana, the on-call DBA, approves it (from another terminal; she cannot approve her own):
    $admin_env \\
      $bin approvals list
    $admin_env \\
      $bin approvals approve <ID>     (or: deny <ID> --reason "not now")
    ... and sees who is connected, ends a session, locks an identity:
      $bin sessions --live | kill <SESSION> | lock agent-7@example.com --for 1h
    Her own SQL session (role app_owner):
    PGPASSWORD=\$(cat $demo/tokens/dana.jwt) psql "$(conn dana@example.com)"

  Every session is recorded (tamper-evident, sealed), approvals and admin actions included:
    $bin sessions --record-dir $demo/rec
    $bin replay --record-dir $demo/rec --session <SESSION from sessions>
    $bin export --record-dir $demo/rec --format jsonl --follow
    $bin verify --record-dir $demo/rec --key-file $demo/seal.key

  Tokens are valid for 8 hours; mint more with scripts/demo_idp.mjs. The policy is
  $root/policy/policy.example.json (SIGHUP or POST /api/v1/reload reloads it).
  Press Ctrl-C to stop both servers.

MSG
  wait "$gw_pid"
  exit 0
fi

# --check: the walkthrough above, run and checked.
set +e
failed=0
expect() {  # expect WHAT OK: counts a failure with WHAT when OK is not 0
  if [ "$2" -eq 0 ]; then echo "demo check: ok    $1"; else echo "demo check: FAIL  $1"; failed=1; fi
}
out=$(as ann ann@example.com -A -t -c "SELECT ssn, card, email FROM customers ORDER BY id" 2>&1) || :
! grep -q -e 219-09-9999 -e '4111 1111 1111 1111' -e bob@example.com <<<"$out" && grep -q . <<<"$out"
expect "ann's SELECT shows no raw PII: $(head -1 <<<"$out")" $?
out=$(as ann ann@example.com -c "DELETE FROM orders WHERE id = 1" 2>&1) || :
grep -q 'denied by policy rule "analysts"' <<<"$out"
expect "ann's DELETE is refused" $?
out=$(as agent agent-7@example.com -c "DROP TABLE orders" 2>&1) || :
grep -q 'denied by policy rule "ai-agents" (class drop)' <<<"$out"
expect "agent-7's DROP TABLE is refused" $?
as agent agent-7@example.com -c "CREATE TABLE agent_notes (id int, note text)" >"$demo/held.out" 2>&1 &
held_pid=$!
admin() { PGWARDEN_ADMIN=http://127.0.0.1:$admin_port PGWARDEN_TOKEN=$(cat "$demo/tokens/dana-admin.jwt") "$bin" "$@"; }
id=
for _ in $(seq 50); do
  id=$(admin approvals list 2>/dev/null | awk '/CREATE TABLE agent_notes/ { print $1 }')
  [ -n "$id" ] && break
  sleep 0.2
done
[ -n "$id" ]
expect "agent-7's CREATE TABLE is held and listed for dana" $?
admin approvals approve "$id" >/dev/null
expect "dana approves it with the CLI" $?
wait "$held_pid"
expect "agent-7's psql finishes once approved" $?
out=$(as agent agent-7@example.com -A -t -c "SELECT count(*) FROM agent_notes" 2>&1)
[ "$out" = 0 ]
expect "the table exists ($out)" $?
out=$(admin approvals approve "$id" 2>&1)
grep -q 404 <<<"$out"
expect "an approval is decided once" $?
sleep 0.5
out=$("$bin" export --record-dir "$demo/rec" --format jsonl)
grep -q '"type":"admin".*"identity":"dana@example.com".*"text":"approve".*"decision":"approved"' <<<"$out"
expect "dana's approval is an admin record" $?
grep -q '"type":"session_start".*"identity":"agent-7@example.com"' <<<"$out"
expect "agent-7's sessions are recorded under its identity" $?
"$bin" verify --record-dir "$demo/rec" --key-file "$demo/seal.key" >/dev/null
expect "the recording verifies" $?
! grep -q "$PGW_PG_USER\b.*authenticated" "$demo/gateway.log"
expect "nobody logged in as the superuser" $?
[ "$failed" -eq 0 ] && echo "demo check: passed" || echo "demo check: failed (log: $demo/gateway.log)"
exit "$failed"
