#!/usr/bin/env bash
# What one pgbench transaction costs the whole host, counted (not timed): context switches,
# syscalls, io_uring submissions and softirqs of every process (perf tracepoints, system-wide),
# per transaction, for direct, bare pgwarden, pgwarden with everything on and PgBouncer, on one
# throwaway PostgreSQL. On a host whose CPUs the database, the clients and the proxy share, TPS
# follows what the whole host does per transaction, not the proxy's share alone.
#
#   bench/host_counts.sh [--clients C] [--tx N] [--rounds R]
#
# Each count is a median over R rounds (default 3) of a fixed-transaction run (-t N per client,
# default 2000, -c C, default 8), after a 4-second run that warms the caches. Counts are
# tracepoint hits, which the machine's noise does not move much; the TPS printed beside them is
# taken under tracing and is not a benchmark.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"

clients=8 tx=2000 rounds=3
while [ $# -gt 0 ]; do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --tx) tx=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${BIN:-$PGW_ROOT/build/core/pgwarden}
if [ ! -x "$BIN" ]; then pgw_build "$PGW_ROOT/build" Release >/dev/null; fi
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed: run scripts/setup.sh" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed: apt-get install linux-perf" >&2; exit 1; }

work=$(mktemp -d /tmp/pgwarden-hostcounts.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || :; done
  pkill -9 -f "pgbouncer -q $work/bouncer" 2>/dev/null || :
  pgw_pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

pg_port=$(pgw_free_port)
pgw_pg_start "$work/pg" "$pg_port"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
pgbench -p "$pg_port" -i -s 10 -q >/dev/null 2>&1
openssl rand -hex 32 > "$work/seal.key"
chmod 600 "$work/seal.key"

declare -A port
port[direct]=$pg_port
for g in bare full; do
  port[$g]=$(pgw_free_port)
  flags=()
  [ "$g" = full ] && flags=(--policy "$PGW_ROOT/bench/full_policy.json" --record-dir "$work/rec"
    --record-key-file "$work/seal.key" --record-durability batch)
  "$BIN" --listen "127.0.0.1:${port[$g]}" --upstream "127.0.0.1:$pg_port" "${flags[@]}" \
    --log-level warn 2>"$work/$g.log" &
  pids+=($!)
done
port[pgbouncer]=$(pgw_free_port)
pgw_bouncer_start "$work/bouncer" "$pg_port" "${port[pgbouncer]}"
pids+=("$PGW_BOUNCER_PID")
for t in bare full pgbouncer; do pgw_wait_port "${port[$t]}"; done

events=sched:sched_switch,raw_syscalls:sys_enter,io_uring:io_uring_submit_req,irq:softirq_entry
results=$work/results.tsv
echo "pgbench -c $clients -j 2 -t $tx, $rounds rounds, $(nproc) cores; system-wide counts per transaction (medians)"
for ((r = 1; r <= rounds; r++)); do
  for w in "select-only simple:-S -M simple" "select-only prepared:-S -M prepared" \
    "tpcb-like simple:-M simple" "tpcb-like prepared:-M prepared"; do
    name=${w%%:*}
    # shellcheck disable=SC2206
    args=(${w#*:})
    for t in $(shuf -e direct bare full pgbouncer); do
      pgbench -p "${port[$t]}" -n -c "$clients" -j 2 -T 4 "${args[@]}" >/dev/null 2>&1
      perf stat -a -x, -e "$events" -o "$work/perf.txt" -- \
        pgbench -p "${port[$t]}" -n -c "$clients" -j 2 -t "$tx" "${args[@]}" > "$work/pgbench.txt" 2>&1
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.txt")
      [ -n "$tps" ] || { echo "pgbench failed against $t:"; cat "$work/pgbench.txt"; exit 1; }
      awk -F, -v n=$((clients * tx)) -v r="$r" -v w="$name" -v t="$t" -v tps="$tps" '
        /^[0-9]/ { c[$3] = $1 / n }
        END { printf "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\n", r, w, t, tps, c["sched:sched_switch"],
          c["raw_syscalls:sys_enter"], c["io_uring:io_uring_submit_req"], c["irq:softirq_entry"] }' \
        "$work/perf.txt" >> "$results"
    done
  done
done

printf "%-22s %-10s %8s %9s %9s %9s %9s  %s\n" workload target tps ctxsw syscalls uring softirq \
  "ctxsw, syscalls vs PgBouncer"
awk -F'\t' '!seen[$2]++ { print $2 }' "$results" | while read -r name; do
  declare -A med=()
  for t in direct bare full pgbouncer; do
    line=""
    for col in 4 5 6 7 8; do
      v=$(awk -F'\t' -v n="$name" -v t="$t" -v c="$col" '$2 == n && $3 == t { print $c }' "$results" |
        sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
      line+="$v "
    done
    med[$t]=$line
  done
  read -r _ bc bs _ _ <<< "${med[pgbouncer]}"
  for t in direct bare full pgbouncer; do
    read -r tps c s u q <<< "${med[$t]}"
    awk -v n="$name" -v t="$t" -v tps="$tps" -v c="$c" -v s="$s" -v u="$u" -v q="$q" -v bc="$bc" -v bs="$bs" \
      'BEGIN { printf "%-22s %-10s %8.0f %9.2f %9.2f %9.2f %9.2f  %.2fx, %.2fx\n", n, t, tps, c, s, u, q, c / bc, s / bs }'
  done
done
