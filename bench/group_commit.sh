#!/usr/bin/env bash
# Strict recording against batch, and the group commit: pgwarden with every guarantee on
# (bench/full_policy.json) and --record-durability strict or batch, pgbench -S -M prepared at 1, 4,
# 16 and 64 clients, interleaved per round. Per run: TPS, the gateway's CPU per 10k transactions,
# and segment syncs per transaction (pgwarden_record_syncs_total from /metrics): in strict mode a
# statement waits for its record's sync, and the sessions waiting at once share one, so syncs per
# transaction fall as clients rise.
# Usage: bench/group_commit.sh [--rounds N] [--seconds S] [--clients "1 4 16 64"]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
rounds=3 seconds=4 clients="1 4 16 64"
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${BIN:-$PGW_ROOT/build/core/pgwarden}
[ -x "$BIN" ] || pgw_build "$PGW_ROOT/build" Release >/dev/null
pgw_work_dir group-commit
pg_port=$(pgw_free_port)
pgw_pg_start "$work/pg" "$pg_port" "max_connections = 300"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
"$PG_BIN/pgbench" -i -s 10 -q -p "$pg_port" >/dev/null 2>&1
openssl rand -hex 32 >"$work/seal.key"
chmod 600 "$work/seal.key"
token_flags=$(pgw_metrics_token)
declare -A port admin pid
trap 'kill -9 ${pid[batch]:-} ${pid[strict]:-} 2>/dev/null || :; _pgw_work_cleanup' EXIT
for mode in batch strict; do
  # shellcheck disable=SC2086
  pgw_gateway_start "$work/$mode.log" "$BIN" --upstream "127.0.0.1:$pg_port" \
    --admin-listen 127.0.0.1:0 $token_flags --policy "$PGW_ROOT/bench/full_policy.json" \
    --record-dir "$work/rec-$mode" --record-key-file "$work/seal.key" --record-durability "$mode"
  port[$mode]=$PGW_GW_PORT admin[$mode]=$PGW_ADMIN_PORT pid[$mode]=$PGW_GW_PID
done
syncs() {
  curl -sf -H "Authorization: Bearer $(cat "$work/metrics.token")" "http://127.0.0.1:${admin[$1]}/metrics" |
    awk '/^pgwarden_record_syncs_total/ { n += $NF } END { print n + 0 }'
}
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
: >"$work/results.tsv"
echo "pgbench -S -M prepared -T $seconds, $rounds rounds; everything on; batch vs strict"
for ((r = 1; r <= rounds; r++)); do
  for c in $clients; do
    for mode in $(shuf -e batch strict); do
      s0=$(syncs "$mode") c0=$(cpu_ticks "${pid[$mode]}")
      out=$("$PG_BIN/pgbench" -n -S -M prepared -c "$c" -j "$((c < 2 ? 1 : 2))" -T "$seconds" -p "${port[$mode]}" 2>&1)
      s1=$(syncs "$mode") c1=$(cpu_ticks "${pid[$mode]}")
      tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
      tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      [ -n "$tx" ] && [ "$tx" -gt 0 ] || { echo "$out"; exit 1; }
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$c" "$mode" "$tps" \
        "$(awk -v a="$c1" -v b="$c0" -v t="$ticks" -v n="$tx" 'BEGIN { printf "%.4f", (a - b) / t / n * 10000 }')" \
        "$(awk -v a="$s1" -v b="$s0" -v n="$tx" 'BEGIN { printf "%.4f", (a - b) / n }')" >>"$work/results.tsv"
      printf '  round %d  -c %-3s %-6s tps %9.1f\n' "$r" "$c" "$mode" "$tps"
    done
  done
done
echo
echo "Medians over $rounds rounds:"
printf '%-8s %-7s %10s %14s %12s\n' clients mode tps cpu_s/10k_tx syncs/tx
for c in $clients; do
  for mode in batch strict; do
    med() {
      awk -F'\t' -v c="$c" -v m="$mode" -v k="$1" '$2 == c && $3 == m { print $k }' "$work/results.tsv" |
        sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
    }
    printf '%-8s %-7s %10.1f %14.4f %12.4f\n' "$c" "$mode" "$(med 4)" "$(med 5)" "$(med 6)"
  done
done
for mode in batch strict; do kill -TERM "${pid[$mode]}"; done
for mode in batch strict; do wait "${pid[$mode]}" || :; done
pid=()
for mode in batch strict; do
  "$BIN" verify --record-dir "$work/rec-$mode" --key-file "$work/seal.key" >/dev/null ||
    { echo "the $mode recording does not verify" >&2; exit 1; }
done
