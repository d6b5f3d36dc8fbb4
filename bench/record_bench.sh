#!/usr/bin/env bash
# Recorder throughput per core (Google Benchmark: in-memory append, and append + flush to a file)
# next to the disk's own sequential write rate, measured with dd on the same filesystem in the
# same run.   bench/record_bench.sh [DIR]   (DIR: where to write; default /tmp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
dir=${1:-/tmp}
BIN="$PGW_ROOT/build/bench/recorder_bench"
[ -x "$BIN" ] || pgw_build "$PGW_ROOT/build" Release >/dev/null
echo "dd: 512 MiB of sequential 1 MiB writes to $dir, then fdatasync:"
dd if=/dev/zero of="$dir/pgw-dd-test" bs=1M count=512 conv=fdatasync 2>&1 | tail -1
rm -f "$dir/pgw-dd-test"
PGW_BENCH_DIR=$dir "$BIN" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
