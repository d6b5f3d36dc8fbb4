# Shared helpers for scripts/, tests/ and bench/: throwaway PostgreSQL servers on random loopback
# ports, run as a non-root OS user when invoked as root. Source it; do not run it.

PGW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGW_PG_USER=postgres             # database superuser name
PGW_PG_PASSWORD=pgwarden-test    # its password (SCRAM): a throwaway server's, nothing real

# A free TCP port on 127.0.0.1.
pgw_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
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
