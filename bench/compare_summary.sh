#!/usr/bin/env bash
# The summary of a bench/pgbench_compare.sh run, from its per-round results (TSV: round,
# workload, target, tps, latency ms, cpu s, cpu s per 10k tx, host idle %): medians per target, ratios to
# direct and PgBouncer, and with --recording, --policy or --masking each feature's paired cost.
# pgbench_compare.sh runs it at the end; it also runs alone on a file kept with --results:
#
#   bench/compare_summary.sh RESULTS.tsv [--recording | --policy | --masking | --full]
set -euo pipefail

results=$1
recording= policy= masking= full=
case ${2:-} in
  --recording) recording=1 ;; --policy) policy=1 ;; --masking) masking=1 ;; --full) full=1 ;; "") ;;
  *) echo "unknown argument $2" >&2; exit 2 ;;
esac
[ -s "$results" ] || { echo "no results in $results" >&2; exit 1; }
work=$(mktemp -d /tmp/pgwarden-summary.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Workloads in the order they first appear; targets: direct, pgwarden, its variants by name,
# pgbouncer.
mapfile -t workloads < <(awk -F'\t' '!seen[$2]++ { print $2 }' "$results")
mapfile -t targets < <(awk -F'\t' '!seen[$3]++ {
    print ($3 == "direct" ? 0 : $3 == "pgwarden" ? 1 : $3 == "pgbouncer" ? 3 : 2) "\t" $3 }' "$results" |
  sort -k1,1n -k2,2 | cut -f2)

# paired WORKLOAD VARIANT: per round, the variant's TPS over pgwarden's without it in the same
# round (runs seconds apart, so slow drift of the machine cancels). Prints the median ratio and a
# distribution-free 95% confidence interval for it: the k-th smallest and k-th largest ratio,
# with k the largest for which P(Binomial(n, 1/2) < k) <= 2.5%. Needs 6 rounds or more; with
# fewer it prints the range (min, max) and "range" instead of "ci95".
paired() {
  awk -F'\t' -v n="$1" -v g="$2" '$2 == n && $3 == "pgwarden" { off[$1] = $4 }
    $2 == n && $3 == g { on[$1] = $4 }
    END { for (r in on) if (off[r] > 0) print on[r] / off[r] }' "$results" |
    sort -g | awk '{ v[NR] = $1 } END {
      n = NR; med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      k = 0; cdf = 0; p = 0.5 ^ n   # p: P(Binomial(n, 1/2) = j), from j = 0 up
      for (j = 0; j < n; j++) {
        cdf += p
        if (cdf > 0.025) break
        k = j + 1
        p = p * (n - j) / (j + 1)
      }
      if (k >= 1) printf "%s %s %s ci95", med, v[k], v[n - k + 1]
      else printf "%s %s %s range", med, v[1], v[n] }'
}

# vs_off WORKLOAD VARIANT [TARGET%]: the variant's TPS cost against pgwarden without it (median
# of the per-round paired ratios, with its 95% confidence interval) and its median CPU per
# transaction. The verdict is the median's; "shown" when the whole interval is within the target.
vs_off() {
  local off_cpu g_cpu ratio lo hi kind
  read -r _ _ off_cpu < "$work/med.pgwarden"
  read -r _ _ g_cpu < "$work/med.$2"
  read -r ratio lo hi kind <<< "$(paired "$1" "$2")"
  awk -v n="$1" -v g="$2" -v t="${3:-}" -v r="$ratio" -v lo="$lo" -v hi="$hi" -v kind="$kind" \
    -v gc="$g_cpu" -v oc="$off_cpu" 'BEGIN {
    cost = (1 - r) * 100; worst = (1 - lo) * 100; best = (1 - hi) * 100
    verdict = ""
    if (t != "" && cost > t) verdict = "MISSED"
    else if (t != "" && kind == "ci95" && worst <= t) verdict = "ok, shown (whole interval within)"
    else if (t != "") verdict = "ok (median; interval reaches past it)"
    if (t != "") verdict = sprintf("; target <= %d%%: %s", t, verdict)
    printf "  -> %s, %s: tps %.3fx pgwarden without it, paired per round (%s %.3f-%.3f); cost %.1f%% (%s %.1f%% to %.1f%%)%s; cpu/10k tx %.2fx\n",
      n, g, r, kind, lo, hi, cost, kind, best, worst, verdict, gc / oc }'
}

rounds=$(cut -f1 "$results" | sort -u | wc -l)
echo
echo "Medians over $rounds rounds (ratios to direct and PgBouncer are of medians; \"->\" lines: paired per round):"
printf "%-22s %-11s %10s %9s %10s %13s %9s %6s\n" workload target tps lat_ms tps/direct cpu/10k_tx_s vs_bouncer idle%
# idle_median WORKLOAD TARGET: the median share of the host's CPU time left idle while the
# target ran (column 8; "-" in files from before it was recorded).
idle_median() {
  awk -F'\t' -v n="$1" -v t="$2" '$2 == n && $3 == t && NF >= 8 { print $8 }' "$results" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for name in "${workloads[@]}"; do
  for t in "${targets[@]}"; do
    # Median of each column (tps, latency, cpu/10k) over the rounds, taken separately.
    : > "$work/med.$t"
    for col in 4 5 7; do
      awk -F'\t' -v n="$name" -v t="$t" -v c="$col" '$2 == n && $3 == t { print $c }' "$results" |
        sort -g | awk '{ v[NR] = $1 } END { printf "%s ", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' \
        >> "$work/med.$t"
    done
    echo >> "$work/med.$t"
  done
  read -r d_tps d_lat _ < "$work/med.direct"
  read -r b_tps b_lat b_cpu < "$work/med.pgbouncer"
  for t in "${targets[@]}"; do
    read -r tps lat cpu < "$work/med.$t"
    awk -v n="$name" -v t="$t" -v tps="$tps" -v lat="$lat" -v cpu="$cpu" -v d="$d_tps" -v b="$b_cpu" \
      -v idle="$(idle_median "$name" "$t")" 'BEGIN {
      vs = (t == "direct") ? "-" : sprintf("%.2fx", (b > 0) ? cpu / b : 0)
      c = (t == "direct") ? "-" : sprintf("%.4f", cpu)
      printf "%-22s %-11s %10.1f %9.3f %10.3f %13s %9s %6s\n", n, t, tps, lat, tps / d, c, vs, idle }'
  done
  if [ -n "$masking" ]; then
    vs_off "$name" masking 5
    continue
  fi
  if [ -n "$policy" ]; then
    vs_off "$name" policy 3
    continue
  fi
  if [ -n "$full" ]; then
    # Everything on against PgBouncer: TPS at least its, CPU per transaction at most 0.8x; with
    # each target's spread over the rounds (min-max).
    read -r g_tps _ g_cpu < "$work/med.pgwarden-full"
    spread() {
      awk -F'\t' -v n="$name" -v t="$1" -v c="$2" '$2 == n && $3 == t { print $c }' "$results" |
        sort -g | awk '{ v[NR] = $1 } END { printf "%s-%s", v[1], v[NR] }'
    }
    awk -v n="$name" -v gt="$g_tps" -v bt="$b_tps" -v gc="$g_cpu" -v bc="$b_cpu" \
      -v st="$(spread pgwarden-full 4)" -v sc="$(spread pgwarden-full 7)" \
      -v bst="$(spread pgbouncer 4)" -v bsc="$(spread pgbouncer 7)" 'BEGIN {
      printf "  -> %s, everything on: tps %.2fx pgbouncer (target >= 1: %s), cpu/10k tx %.2fx pgbouncer (target <= 0.80: %s); spread tps %s vs %s, cpu/10k %s vs %s\n",
        n, gt / bt, (gt >= bt) ? "ok" : "BELOW", gc / bc, (gc <= 0.8 * bc) ? "ok" : "MISSED", st, bst, sc, bsc }'
    continue
  fi
  if [ -n "$recording" ]; then
    vs_off "$name" rec-none
    vs_off "$name" rec-batch 5
    vs_off "$name" rec-strict
    continue
  fi
  for g in "${targets[@]}"; do
    case $g in direct | pgbouncer) continue ;; esac
    read -r g_tps _ g_cpu < "$work/med.$g"
    awk -v n="$name" -v g="$g" -v gt="$g_tps" -v bt="$b_tps" -v gc="$g_cpu" -v bc="$b_cpu" 'BEGIN {
      ok1 = (gt >= bt); ok2 = (gc <= 0.7 * bc)
      printf "  -> %s, %s: tps %.2fx pgbouncer (%s), cpu/10k tx %.2fx pgbouncer (target <= 0.70: %s)\n",
        n, g, gt / bt, ok1 ? "ok" : "BELOW", gc / bc, ok2 ? "ok" : "MISSED" }'
  done
done
