#!/usr/bin/env bash
# Heap allocations per transaction of pgwarden with every feature on (bench/full_policy.json: the
# usual deny list, a masking profile with detectors and column rules; batch recording), counted by
# an LD_PRELOAD shim (bench/alloc/alloc_count.c) around the allocator pgwarden uses (mimalloc):
# each workload runs pgbench twice on one connection set (-t WARM, then -t WARM+N), and the
# difference of the counts over the N extra transactions is what one transaction allocates once
# sessions, caches and buffers are warm.
# Usage: bench/alloc_count.sh [--tx N] [--check MAX_PER_STATEMENT]
#   --check: exit 1 when any workload allocates more than MAX per statement (tests use 0.05:
#   nothing per statement but the odd buffer growth).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
tx=2000
check=
while (($#)); do
  case $1 in
    --tx) tx=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${BIN:-$PGW_ROOT/build/core/pgwarden}
[ -x "$BIN" ] || pgw_build "$PGW_ROOT/build" Release >/dev/null
pgw_work_dir alloc
cc -O2 -shared -fPIC -Wall -Wextra -Werror -o "$work/alloc_count.so" "$here/alloc/alloc_count.c" -ldl
pg_port=$(pgw_free_port)
pgw_pg_start "$work/pg" "$pg_port"
export PGPASSWORD=$PGW_PG_PASSWORD
"$PG_BIN/pgbench" -i -s 1 -q -h 127.0.0.1 -p "$pg_port" -U "$PGW_PG_USER" postgres >/dev/null 2>&1
cp "$PGW_ROOT/bench/full_policy.json" "$work/policy.json"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/seal.key"
chmod 600 "$work/seal.key"
export ALLOC_COUNT_FILE="$work/counts"
LD_PRELOAD="$work/alloc_count.so" pgw_gateway_start "$work/gw.log" "$BIN" \
  --upstream "127.0.0.1:$pg_port" --threads 1 --policy "$work/policy.json" \
  --record-dir "$work/rec" --record-key-file "$work/seal.key" --record-durability batch
gw_pid=$PGW_GW_PID
counts() {
  rm -f "$ALLOC_COUNT_FILE"
  kill -USR2 "$gw_pid"
  for _ in $(seq 50); do [ -s "$ALLOC_COUNT_FILE" ] && break; sleep 0.02; done
  awk '/^allocations/ { print $2 }' "$ALLOC_COUNT_FILE"
}
rc=0
warm=300
printf '%-22s %12s %12s %14s\n' workload tx allocations per_statement
for w in select-only:simple select-only:prepared tpcb-like:simple tpcb-like:prepared; do
  script=${w%%:*} mode=${w##*:}
  per_tx=1
  [ "$script" = tpcb-like ] && per_tx=7  # BEGIN, 3 UPDATE, SELECT, INSERT, END
  # One client, so one session: the first run warms it; a second session does the counted run
  # after its own warm-up, as pgbench runs -t transactions on one connection each.
  run() {
    "$PG_BIN/pgbench" -n -c 1 -j 1 -b "$script" -M "$mode" -t "$1" -h 127.0.0.1 -p "$PGW_GW_PORT" \
      -U "$PGW_PG_USER" postgres >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
  }
  run "$warm"
  a=$(counts)
  run "$warm"
  b=$(counts)
  run $((warm + tx))
  c=$(counts)
  # (c - b) - (b - a): what tx extra transactions cost beyond a session's start, warm-up and end.
  extra=$(((c - b) - (b - a)))
  per=$(awk -v e="$extra" -v t="$tx" -v s="$per_tx" 'BEGIN { printf "%.4f", e / (t * s) }')
  printf '%-22s %12d %12d %14s\n' "$w" "$tx" "$extra" "$per"
  if [ -n "$check" ] && awk -v p="$per" -v m="$check" 'BEGIN { exit !(p > m) }'; then
    echo "alloc_count: $w allocates $per times per statement (at most $check allowed)" >&2
    rc=1
  fi
done
kill -TERM "$gw_pid"
wait "$gw_pid" || rc=1
gw_pid=
"$BIN" verify --record-dir "$work/rec" --key-file "$work/seal.key" >/dev/null || { echo "recording does not verify" >&2; rc=1; }
exit "$rc"
