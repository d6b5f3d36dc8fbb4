#!/usr/bin/env bash
# Resident memory per idle client connection: pgwarden against PgBouncer, same machine, same run.
# For each count N, a fresh PgBouncer (transaction mode, pool of 20) takes N idle clients directly,
# then a fresh pgwarden (relaying, in front of a second PgBouncer so that PostgreSQL is not asked
# for N backends) takes N idle clients; each process's VmRSS before and after, divided by N. Both
# are warmed up with a short pgbench first.
#
#   bench/idle_memory.sh [--counts "1000 9000"]
#
# Every pgwarden session holds two descriptors (client and upstream): N is bounded by the hard
# RLIMIT_NOFILE (`ulimit -Hn`), which the script raises as far as it may.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"

counts="1000 9000"
while [ $# -gt 0 ]; do
  case $1 in
    --counts) counts=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${BIN:-$PGW_ROOT/build/core/pgwarden}
[ -x "$BIN" ] || pgw_build "$PGW_ROOT/build" Release >/dev/null
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed: run scripts/setup.sh" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
hard=$(ulimit -Hn)

work=$(mktemp -d /tmp/pgwarden-idle.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || :; done
  pkill -9 -f "pgbouncer -q $work/" 2>/dev/null || :
  pgw_pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

pg_port=$(pgw_free_port)
pgw_pg_start "$work/pg" "$pg_port" >/dev/null
PGPASSWORD=$PGW_PG_PASSWORD pgbench -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" -i -s 1 -q postgres \
  >/dev/null 2>&1

# start_bouncer NAME: a PgBouncer in transaction mode with a pool of 20; prints "PORT PID".
start_bouncer() {
  local d=$work/$1 port real attempt
  mkdir -p "$d"
  # A port picked in advance may be taken meanwhile (thousands of sockets come and go): retried.
  for attempt in 1 2 3 4 5; do
    port=$(pgw_free_port)
    write_bouncer_ini "$d" "$port"
    # runuser's PAM session resets the soft descriptor limit: raised again inside.
    pgw_as_owner bash -c "ulimit -n $hard && exec pgbouncer -q $d/pgbouncer.ini" &
    pids+=($!)
    pgw_wait_port "$port" >/dev/null 2>&1 && break
    [ "$attempt" = 5 ] && { cat "$d/pgbouncer.log" >&2; exit 1; }
  done
  real=$(pgrep -f "pgbouncer -q $d/pgbouncer.ini" | while read -r p; do
    [ "$(cat "/proc/$p/comm")" = pgbouncer ] && echo "$p"; done | head -1)
  echo "$port $real"
}
write_bouncer_ini() {  # write_bouncer_ini DIR PORT
  local d=$1 port=$2
  cat > "$d/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $d/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 30000
logfile = $d/pgbouncer.log
INI
  echo "\"$PGW_PG_USER\" \"$PGW_PG_PASSWORD\"" > "$d/users.txt"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$d"; fi
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# measure PID PORT N: RSS of PID before and with N idle clients on PORT; prints KiB per client.
measure() {
  local pid=$1 port=$2 n=$3 before after fifo=$work/hold.$RANDOM
  # Warm up first: memory a process keeps per core, not per connection (pgwarden's receive
  # buffer ring, resident once traffic has cycled through it) is not counted per client.
  pgbench -h 127.0.0.1 -p "$port" -U "$PGW_PG_USER" -n -S -c 4 -T 2 postgres >/dev/null 2>&1 ||
    { echo "warm-up pgbench failed on port $port" >&2; exit 1; }
  sleep 0.5
  before=$(rss_kib "$pid")
  mkfifo "$fifo"
  node "$here/idle_conns.mjs" 127.0.0.1 "$port" "$n" "$PGW_PG_USER" postgres < "$fifo" > "$work/clients.out" &
  local client=$!
  exec {hold}> "$fifo"
  for _ in $(seq 600); do grep -q '^ready' "$work/clients.out" 2>/dev/null && break; sleep 0.2; done
  grep -q "^ready $n" "$work/clients.out" || { echo "clients did not connect" >&2; tail -5 "$work"/*/pgbouncer.log >&2; exit 1; }
  sleep 1
  after=$(rss_kib "$pid")
  exec {hold}>&-
  wait "$client"
  rm -f "$fifo"
  awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f %d %d\n", (a - b) / n, b, a }'
}

echo "idle connections: RSS per client (KiB); $(nproc) cores, RLIMIT_NOFILE $hard"
printf "%-8s %-10s %12s %12s %12s\n" clients target "KiB/client" "rss_before" "rss_after"
for n in $counts; do
  if [ $((2 * n + 100)) -gt "$hard" ]; then
    echo "skipping $n clients: pgwarden needs two descriptors per session, the hard limit is $hard"
    continue
  fi
  read -r bport bpid < <(start_bouncer "direct-$n")
  read -r per b a < <(measure "$bpid" "$bport" "$n")
  printf "%-8s %-10s %12s %12s %12s\n" "$n" pgbouncer "$per" "$b" "$a"
  kill "$bpid"
  read -r uport _ < <(start_bouncer "behind-$n")
  # Port 0: with thousands of sockets just closed, a port picked in advance may be taken.
  "$BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$uport" --upstream-tls disable \
    2>"$work/gw-$n.log" &
  gw=$!
  pids+=("$gw")
  gw_port=
  for _ in $(seq 100); do
    gw_port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/gw-$n.log" | cut -d: -f2) && break
    sleep 0.1
  done
  [ -n "$gw_port" ] || { cat "$work/gw-$n.log" >&2; exit 1; }
  read -r per b a < <(measure "$gw" "$gw_port" "$n")
  printf "%-8s %-10s %12s %12s %12s\n" "$n" pgwarden "$per" "$b" "$a"
  kill "$gw"
  wait "$gw" 2>/dev/null || :
done
