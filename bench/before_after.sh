#!/usr/bin/env bash
# What a change costs, in counts the noise of a shared 2-core VM does not move: pgwarden built at
# REF (default 1a9fe2f, main before the session pipeline of issue 13) and the build in BUILD_DIR
# (default build/), each bare and with every guarantee on (bench/full_policy.json: a deny list
# judged for every statement, a masking profile with detectors and column rules; batch
# recording), all with --threads 1, measured in one interleaved run by the project's shared
# costmeter (syscalls, context switches and io_uring completions per transaction from perf
# tracepoints, CPU per 10k transactions, TPS; next to a direct connection and PgBouncer).
# Usage (as root): bench/before_after.sh [--ref REF] [--build BUILD_DIR] [costmeter options...]
#   e.g. bench/before_after.sh -r 3 -c 8
# COSTMETER=path to costmeter.sh (default: ../shared/bench/costmeter.sh next to this checkout).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ref=1a9fe2f
build="$root/build"
args=()
while (($#)); do
  case $1 in
    --ref) ref=$2; shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
costmeter=${COSTMETER:-$root/../shared/bench/costmeter.sh}
[ -x "$costmeter" ] || [ -f "$costmeter" ] || { echo "costmeter not found at $costmeter (set COSTMETER)" >&2; exit 2; }
[ -x "$build/core/pgwarden" ] || { echo "no pgwarden in $build" >&2; exit 2; }

before=/tmp/pgwarden-before-$ref
if [ ! -x "$before/build/core/pgwarden" ]; then
  echo "before_after: building pgwarden at $ref in $before"
  rm -rf "$before"
  mkdir -p "$before"
  git -C "$root" archive "$ref" | tar -x -C "$before"
  cmake -S "$before" -B "$before/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPGW_BUILD_TESTS=OFF -DPGW_BUILD_BENCH=OFF >/dev/null
  cmake --build "$before/build" -j "${PGW_JOBS:-2}" >/dev/null
fi
cp "$root/bench/full_policy.json" /tmp/pgwarden-full-policy.json
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/tmp/pgwarden-bench-seal.key
chmod 644 /tmp/pgwarden-full-policy.json
chmod 600 /tmp/pgwarden-bench-seal.key
full='--policy /tmp/pgwarden-full-policy.json --record-dir {SCRATCH}/rec --record-key-file /tmp/pgwarden-bench-seal.key --record-durability batch'
common='--listen {LISTEN} --upstream {UPSTREAM} --threads 1 --no-pin --log-level warn'
exec bash "$costmeter" "${args[@]}" \
  before-bare="$before/build/core/pgwarden $common" \
  after-bare="$build/core/pgwarden $common" \
  before-full="$before/build/core/pgwarden $common $full" \
  after-full="$build/core/pgwarden $common $full"
