#!/usr/bin/env bash
# pgbench against one throwaway PostgreSQL: direct, through pgwarden, and through PgBouncer
# (session mode), interleaved in rounds (each in a new random order, after a `sync`) so machine
# noise hits all three alike. Prints TPS, mean latency, ratios to direct, and each proxy's CPU
# seconds (user+sys from /proc) per 10k transactions, and the share of the host's CPU time left
# idle meanwhile (/proc/stat); medians over the rounds.
#
#   bench/pgbench_compare.sh [--rounds N] [--seconds S] [--clients C] [--scale S] [--tls]
#                            [--tls-both] [--full] [--recording] [--policy] [--masking]
#                            [--results FILE] [--gw NAME=FLAGS ...] [--workloads select|tpcb]
#                            [--warmup W]
#
# --warmup W (default 4): each pgbench runs W + S seconds, and only the last S count (TPS from
# its per-second progress lines, CPU sampled at the W-second line and at the end). Every new
# client connection is a new PostgreSQL backend through pgwarden and directly, but PgBouncer
# keeps its server connections from one run to the next: a fresh backend runs at about half
# speed for its first seconds (page faults into shared memory, empty catalog caches), so
# a short run without warm-up measures that, not the proxy. --warmup 0: the whole run counts.
#
# --gw NAME=FLAGS (repeatable): instead, run one pgwarden per --gw, named NAME, with FLAGS added
# (e.g. --gw pinned= --gw unpinned=--no-pin): A/B tests of a flag in the same run.
# --workloads select|tpcb: only the select-only or only the tpcb-like workloads.
#
# --results FILE keeps the per-round results (bench/compare_summary.sh prints the summary again
# from it); by default they go to a temporary directory that is removed at the end.
#
# --tls: every client connection uses TLS (PGSSLMODE=require): PostgreSQL itself with ssl=on for
# the direct runs, pgwarden with --tls-cert/--tls-key, PgBouncer with client_tls_sslmode=require.
#
# --tls-both: TLS on both legs: as --tls, and pgwarden (--upstream-tls require) and PgBouncer
# (server_tls_sslmode = require) also reach PostgreSQL over TLS.
#
# pgwarden runs twice: with its default --threads (half the usable cores) and with --threads 1
# (PgBouncer is one thread).
#
# --full: instead, pgwarden runs once, with default flags and every guarantee on:
# bench/full_policy.json (the usual deny list judged for every statement, a masking profile with
# every content detector and column rules) and --record-durability batch.
# --recording: instead, pgwarden (default threads) runs with recording off and with
# --record-durability none, batch and strict, on the select-only workloads.
# --policy: instead, pgwarden (default threads) runs without and with --policy
# policy/policy.example.json (its "default" rule judges every statement), on tpcb-like.
# --masking: instead, pgwarden (default threads) runs without and with --policy
# bench/masking_policy.json (every content detector and two column rules), on select-only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"

rounds=3 seconds=5 clients=16 scale=10 tls= tls_both= full= recording= policy= masking= keep=
only= custom=() warmup=4
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    --tls-both) tls=1; tls_both=1; shift ;;
    --full) full=1; shift ;;
    --recording) recording=1; shift ;;
    --policy) policy=1; shift ;;
    --masking) masking=1; shift ;;
    --results) keep=$2; shift 2 ;;
    --gw) custom+=("$2"); shift 2 ;;
    --workloads) only=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

BIN=${BIN:-$PGW_ROOT/build/core/pgwarden}
if [ ! -x "$BIN" ]; then pgw_build "$PGW_ROOT/build" Release >/dev/null; fi
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed: run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/pgwarden-bench.XXXXXX)
chmod 755 "$work"
bouncer_pid=
declare -A gw_pid gw_port
cleanup() {
  # Processes may already be gone: cleanup must still reach the server stop below.
  local p
  for p in "${gw_pid[@]}"; do
    { kill -9 "$p" && wait "$p"; } 2>/dev/null || :
  done
  if [ -n "$bouncer_pid" ]; then pkill -9 -f "pgbouncer -q $work/bouncer" 2>/dev/null || :; fi
  pgw_pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

pg_port=$(pgw_free_port)
tls_pg=() tls_gw=() tls_bouncer=""
if [ -n "$tls" ]; then
  mkdir -p "$work/tls"
  (cd "$work/tls" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
      -out server.pem -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
      2>/dev/null)
  chmod 600 "$work/tls/server.key"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$work/tls"
  tls_pg=("ssl = on" "ssl_cert_file = '$work/tls/server.pem'" "ssl_key_file = '$work/tls/server.key'")
  tls_gw=(--tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" --upstream-tls disable)
  # Only the client leg is encrypted, for every target: PgBouncer would otherwise also use TLS
  # to PostgreSQL (server_tls_sslmode defaults to prefer) while pgwarden does not.
  tls_bouncer="client_tls_sslmode = require
client_tls_cert_file = $work/tls/server.pem
client_tls_key_file = $work/tls/server.key
server_tls_sslmode = $([ -n "$tls_both" ] && echo require || echo disable)"
  [ -n "$tls_both" ] && tls_gw=(--tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" --upstream-tls require)
  export PGSSLMODE=require
fi
pgw_pg_start "$work/pg" "$pg_port" "${tls_pg[@]}"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGDATABASE=postgres PGHOST=127.0.0.1
pgbench -p "$pg_port" -i -s "$scale" -q >/dev/null 2>&1

# The pgwarden variants: name -> extra flags.
declare -A gw_flags
if [ ${#custom[@]} -gt 0 ]; then
  gw_names=()
  for c in "${custom[@]}"; do
    gw_names+=("${c%%=*}")
    gw_flags[${c%%=*}]=${c#*=}
  done
elif [ -n "$full" ]; then
  openssl rand -hex 32 > "$work/seal.key"
  chmod 600 "$work/seal.key"
  gw_names=(pgwarden-full)
  gw_flags[pgwarden-full]="--policy $PGW_ROOT/bench/full_policy.json --record-dir $work/rec --record-key-file $work/seal.key --record-durability batch"
elif [ -n "$recording" ]; then
  openssl rand -hex 32 > "$work/seal.key"
  chmod 600 "$work/seal.key"
  gw_names=(pgwarden rec-none rec-batch rec-strict)
  gw_flags[pgwarden]=""
  for mode in none batch strict; do
    gw_flags[rec-$mode]="--record-dir $work/rec-$mode --record-key-file $work/seal.key --record-durability $mode"
  done
elif [ -n "$masking" ]; then
  gw_names=(pgwarden masking)
  gw_flags[pgwarden]=""
  gw_flags[masking]="--policy $PGW_ROOT/bench/masking_policy.json"
elif [ -n "$policy" ]; then
  gw_names=(pgwarden policy)
  gw_flags[pgwarden]=""
  gw_flags[policy]="--policy $PGW_ROOT/policy/policy.example.json"
else
  gw_names=(pgwarden pgwarden-1t)
  gw_flags[pgwarden]=""
  gw_flags[pgwarden-1t]="--threads 1"
fi
for g in "${gw_names[@]}"; do
  gw_port[$g]=$(pgw_free_port)
  # shellcheck disable=SC2086
  "$BIN" --listen "127.0.0.1:${gw_port[$g]}" --upstream "127.0.0.1:$pg_port" ${gw_flags[$g]} \
    "${tls_gw[@]}" 2>"$work/$g.log" &
  gw_pid[$g]=$!
done

bouncer_port=$(pgw_free_port)
pgw_bouncer_start "$work/bouncer" "$pg_port" "$bouncer_port" "$tls_bouncer"
bouncer_pid=$PGW_BOUNCER_PID
for port in "${gw_port[@]}" "$bouncer_port"; do
  pgw_wait_port "$port" || { cat "$work"/pgwarden*.log "$work/bouncer/pgbouncer.log" >&2; exit 1; }
done
# pgbouncer runs under runuser when we are root: measure the pgbouncer process itself.
if [ "$(id -u)" -eq 0 ]; then
  for _ in $(seq 50); do
    real=$(pgrep -f "pgbouncer -q $work/bouncer/pgbouncer.ini" | while read -r p; do
      [ "$(cat /proc/$p/comm)" = pgbouncer ] && echo "$p"; done | head -1)
    [ -n "$real" ] && break
    sleep 0.1
  done
  bouncer_cpu_pid=$real
else
  bouncer_cpu_pid=$bouncer_pid
fi

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# host_ticks: the host's idle (idle + iowait) and total CPU ticks, from the first line of
# /proc/stat. A proxy that keeps a CPU idle while clients wait costs TPS without costing CPU.
host_ticks() {
  local _c u n s i w rest
  read -r _c u n s i w rest < /proc/stat
  local t=$((u + n + s + i + w)) x
  for x in $rest; do t=$((t + x)); done
  echo "$((i + w)) $t"
}

# run_pgbench PORT PID ARGS...: one pgbench run of $warmup + $seconds seconds; sets $out (its
# output) and $before / $after (PID's CPU ticks at the end of the warm-up and at the end). The
# progress lines are read as they come, by bash itself: sampling must not wake anything else.
run_pgbench() {
  local port=$1 pid=$2 line st
  shift 2
  before=0 after=0 out=
  [ -n "$pid" ] && [ "$warmup" -eq 0 ] && before=$(cpu_ticks "$pid")
  [ "$warmup" -eq 0 ] && host_before=$(host_ticks)
  while IFS= read -r line; do
    out+=$line$'\n'
    if [ -n "$pid" ] && [ "$warmup" -gt 0 ] && [[ $line == "progress: $warmup.0 s"* ]]; then
      read -r -a st < "/proc/$pid/stat"
      before=$((st[13] + st[14]))
    fi
    if [ "$warmup" -gt 0 ] && [[ $line == "progress: $warmup.0 s"* ]]; then host_before=$(host_ticks); fi
  done < <(pgbench -p "$port" -n -c "$clients" -j 2 -T $((warmup + seconds)) \
    $([ "$warmup" -gt 0 ] && echo "-P 1") "$@" 2>&1)
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  host_after=$(host_ticks)
  return 0
}

results=${keep:-$work/results.tsv}
: > "$results"
workloads=("select-only simple:-S -M simple" "select-only prepared:-S -M prepared")
if [ -n "$policy" ]; then
  workloads=("tpcb-like simple:-M simple" "tpcb-like prepared:-M prepared")
elif [ -z "$recording$masking" ]; then
  workloads+=("tpcb-like simple:-M simple" "tpcb-like prepared:-M prepared")
fi
case $only in
  select) workloads=("${workloads[@]:0:2}") ;;
  tpcb) workloads=("tpcb-like simple:-M simple" "tpcb-like prepared:-M prepared") ;;
esac
targets=(direct "${gw_names[@]}" pgbouncer)
port_of() {
  case $1 in
    direct) echo "$pg_port" ;; pgbouncer) echo "$bouncer_port" ;; *) echo "${gw_port[$1]}" ;;
  esac
}
pid_of() {
  case $1 in
    direct) echo "" ;; pgbouncer) echo "$bouncer_cpu_pid" ;; *) echo "${gw_pid[$1]}" ;;
  esac
}

echo "pgbench: -c $clients -j 2 -T $seconds after ${warmup}s of warm-up, scale $scale, $rounds rounds, $(nproc) cores, TLS: $([ -n "$tls_both" ] && echo both legs || { [ -n "$tls" ] && echo client leg || echo off; });" \
  "pgwarden = default threads$([ -n "$full" ] && echo ", pgwarden-full = default flags, everything on (bench/full_policy.json, batch recording)")$([ -n "$recording" ] && echo ", rec-MODE = recording with --record-durability MODE")$([ -n "$policy" ] && echo ", policy = with --policy policy/policy.example.json")$([ -n "$masking" ] && echo ", masking = with --policy bench/masking_policy.json")$([ -z "$recording$policy$masking" ] && echo ", pgwarden-1t = --threads 1")"
for ((r = 1; r <= rounds; r++)); do
  for w in "${workloads[@]}"; do
    name=${w%%:*}
    args=${w#*:}
    # A new random order each round: no target always follows the same one (a recording run
    # leaves dirty pages whose writeback would otherwise always land on the same successor), and
    # `sync` first so each run starts with none of the previous runs' writeback pending.
    mapfile -t order < <(shuf -e "${targets[@]}")
    for t in "${order[@]}"; do
      sync
      pid=$(pid_of "$t")
      # shellcheck disable=SC2086
      run_pgbench "$(port_of "$t")" "$pid" $args
      tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
      tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
      failed=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
      if [ -z "$tps" ] || [ "${failed:-1}" != 0 ]; then
        echo "pgbench failed against $t:"
        echo "$out"
        exit 1
      fi
      if [ "$warmup" -gt 0 ]; then
        # The measured window: every transaction (pgbench's own count) less those of the warm-up
        # (its progress lines, one per second); CPU is sampled at the same two points.
        read -r tx tps lat < <(echo "$out" | awk -v w="$warmup" -v s="$seconds" -v c="$clients" -v all="$tx" '
          /^progress: / { if ($2 + 0 <= w + 0.5) warm += $4 }
          END { n = all - int(warm + 0.5); r = n / s; printf "%d %.1f %.3f\n", n, r, (r > 0) ? c / r * 1000 : 0 }')
      fi
      cpu=$(awk -v a="$after" -v b="$before" -v t="$ticks" 'BEGIN { printf "%.3f", (a - b) / t }')
      per10k=$(awk -v c="$cpu" -v n="$tx" 'BEGIN { printf "%.4f", (n > 0) ? c / n * 10000 : 0 }')
      idle=$(awk -v a="$host_after" -v b="$host_before" 'BEGIN { split(a, x, " "); split(b, y, " ")
        t = x[2] - y[2]; printf "%.1f", (t > 0) ? (x[1] - y[1]) * 100 / t : 0 }')
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$name" "$t" "$tps" "$lat" "$cpu" "$per10k" "$idle" >> "$results"
      printf "  round %d  %-22s %-11s tps %9.1f  lat %6.3f ms  cpu %6.3f s  cpu/10k tx %7.4f s  host idle %5.1f%%\n" \
        "$r" "$name" "$t" "$tps" "$lat" "$cpu" "$per10k" "$idle"
    done
  done
done

mode=""
[ -n "$recording" ] && mode=--recording
[ -n "$policy" ] && mode=--policy
[ -n "$masking" ] && mode=--masking
[ -n "$full" ] && mode=--full
"$here/compare_summary.sh" "$results" $mode
