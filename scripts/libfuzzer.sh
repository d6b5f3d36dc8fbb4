#!/usr/bin/env bash
# Coverage-guided fuzzing of the pipeline model with clang's libFuzzer (ASan+UBSan): the target
# tests/fuzz/pipeline_fuzz.cc, seeded from tests/fuzz/corpus/pipeline (copied: new inputs stay in
# a temporary directory). A crash leaves its input there and fails; add it to the corpus as a
# regression seed. Usage: scripts/libfuzzer.sh SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/libfuzzer.sh SECONDS}
command -v clang++-14 >/dev/null || bash scripts/setup.sh >/dev/null
out=$(mktemp -d /tmp/pgwarden-libfuzzer.XXXXXX)
trap 'rm -rf "$out"' EXIT
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. \
  tests/fuzz/pipeline_fuzz.cc protocol/pipeline.cc protocol/frontend.cc protocol/message_types.cc \
  -o "$out/pipeline_libfuzzer"
cp -r tests/fuzz/corpus/pipeline "$out/corpus"
rc=0
(cd "$out" && ./pipeline_libfuzzer -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 \
  -artifact_prefix="$out/" corpus >"$out/fuzz.log" 2>&1) || rc=$?
grep -E "^stat::(number_of_executed_units|peak_rss_mb)|cov:" "$out/fuzz.log" | tail -3
if [ "$rc" -ne 0 ]; then
  tail -40 "$out/fuzz.log"
  for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-*; do
    [ -f "$f" ] && { echo "libfuzzer: failing input (base64): $(base64 -w0 "$f")"; }
  done
  echo "libfuzzer: FAILED"
  exit 1
fi
echo "libfuzzer: pipeline model, $seconds s, no failure"
