# Shared helpers for scripts/, tests/ and bench/: throwaway PostgreSQL servers on random loopback
# ports, run as a non-root OS user when invoked as root. Source it; do not run it.

PGW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGW_PG_USER=postgres             # database superuser name
PGW_PG_PASSWORD=pgwarden-test    # its password (SCRAM): a throwaway server's, nothing real

# A free TCP port on 127.0.0.1: no socket in any state uses it (a port still held by a closed
# connection, e.g. after thousands of clients came and went, cannot always be bound).
pgw_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return
    fi
  done
}

# Runs a command as the OS user that owns throwaway servers ('postgres' when we are root).
pgw_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pgw_pg_start DIR PORT [postgresql.conf lines...]: initdb + start; password auth over TCP.
pgw_pg_start() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  local pw="$dir/.pw"
  echo "$PGW_PG_PASSWORD" > "$pw"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pw"
  pgw_as_owner "$PG_BIN/initdb" -D "$dir/data" -U "$PGW_PG_USER" --pwfile="$pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 200"
    echo "shared_buffers = 128MB"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    for line in "$@"; do echo "$line"; done
  } | pgw_as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
  pgw_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
    { cat "$dir/postgres.log" >&2; return 1; }
}

pgw_pg_stop() {
  local dir=$1
  [ -d "$dir/data" ] && pgw_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
  return 0
}

# pgw_work_dir NAME [KEEP]: a fresh temp directory in $work (readable by the PostgreSQL owner),
# cleaned up on exit: the gateway in $gw_pid killed, the PostgreSQL in $work/pg stopped (processes
# may already be gone), and the directory removed unless KEEP is non-empty.
pgw_work_dir() {
  work=$(mktemp -d "/tmp/pgwarden-$1.XXXXXX")
  chmod 755 "$work"
  gw_pid=
  _pgw_work_name=$1
  _pgw_work_keep=${2:-}
  trap _pgw_work_cleanup EXIT
}
_pgw_work_cleanup() {
  if [ -n "$gw_pid" ]; then kill -9 "$gw_pid" 2>/dev/null || :; fi
  pgw_pg_stop "$work/pg"
  if [ -n "$_pgw_work_keep" ]; then echo "$_pgw_work_name: kept $work"; else rm -rf "$work"; fi
}

# pgw_metrics_token: writes $work/metrics.token (mode 0600) and prints the flag that makes the
# gateway accept it on GET /metrics.
pgw_metrics_token() {
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/metrics.token"
  chmod 600 "$work/metrics.token"
  echo "--metrics-token-file $work/metrics.token"
}

# pgw_gateway_finish NAME ADMIN_PORT [errors]: how every run through the gateway ends. No model
# divergence counted on the admin endpoint, no sanitizer report in $work/gw.log (with `errors`: no
# ERROR line either), a clean exit on SIGTERM, and a recording in $work/rec that verifies with
# $work/seal.key. Prints what failed and returns 1 if anything did.
pgw_gateway_finish() {
  local name=$1 admin=$2 rc=0 divergences pattern="runtime error\|AddressSanitizer"
  [ "${3:-}" = errors ] && pattern="ERROR\|$pattern"
  # /metrics takes the scrape token the gateway was started with (pgw_metrics_token).
  if ! divergences=$(curl -sf -H "Authorization: Bearer $(cat "$work/metrics.token")" \
    "http://127.0.0.1:$admin/metrics" |
    awk '/^pgwarden_model_divergences_total/ { n += $NF; seen = 1 } END { print seen ? n : "none" }'); then
    divergences=none
  fi
  if [ "$divergences" = none ]; then
    echo "$name: could not read the model divergence counter from /metrics"
    rc=1
  elif [ "$divergences" != "0" ]; then
    echo "$name: the pipeline model lost track $divergences times:"
    grep "lost track" "$work/gw.log" | head -20
    rc=1
  fi
  if grep -q "$pattern" "$work/gw.log"; then
    echo "$name: the gateway logged errors:"
    grep "$pattern" -A5 "$work/gw.log" | head -40
    rc=1
  fi
  kill -TERM "$gw_pid"
  wait "$gw_pid" || rc=1
  gw_pid=
  if ! "$BIN" verify --record-dir "$work/rec" --key-file "$work/seal.key" >"$work/verify.log" 2>&1; then
    echo "$name: the recording does not verify:"
    cat "$work/verify.log"
    rc=1
  fi
  return "$rc"
}

# pgw_wait_port PORT [SECONDS]: until something listens on 127.0.0.1:PORT.
pgw_wait_port() {
  local port=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listening on port $port after ${secs}s" >&2
  return 1
}

# pgw_bouncer_start DIR PG_PORT PORT [EXTRA]: starts PgBouncer in the background on
# 127.0.0.1:PORT in front of the PostgreSQL on PG_PORT (session pooling, SCRAM as $PGW_PG_USER),
# its files in DIR; EXTRA (lines) goes into its [pgbouncer] section. Sets PGW_BOUNCER_PID (the
# process started: runuser's when run as root). The caller waits for the port.
pgw_bouncer_start() {
  local dir=$1 pg_port=$2 port=$3 extra=${4:-}
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 100
logfile = $dir/pgbouncer.log
$extra
INI
  echo "\"$PGW_PG_USER\" \"$PGW_PG_PASSWORD\"" >"$dir/users.txt"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi
  pgw_as_owner pgbouncer -q "$dir/pgbouncer.ini" &
  PGW_BOUNCER_PID=$!
}

# pgw_gateway_start LOG BIN ARGS...: starts pgwarden on a free loopback port in the background and
# waits until it listens. Sets PGW_GW_PID, PGW_GW_PORT and, with --admin-listen, PGW_ADMIN_PORT.
pgw_gateway_start() {
  local log=$1 bin=$2
  shift 2
  "$bin" --listen 127.0.0.1:0 "$@" 2>"$log" &
  PGW_GW_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  PGW_GW_PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2)
  PGW_ADMIN_PORT=$(grep -o 'admin endpoint on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2 || :)
  [ -n "$PGW_GW_PORT" ] || { cat "$log" >&2; kill "$PGW_GW_PID" 2>/dev/null; return 1; }
}

# Builds one CMake configuration: pgw_build DIR BUILD_TYPE [cmake args...].
pgw_build() {
  local dir=$1 type=$2
  shift 2
  cmake -S "$PGW_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "${PGW_JOBS:-2}"
}
