#!/usr/bin/env bash
# Installs dependencies, builds (Release and ASan+UBSan), and runs every test: unit tests in both
# builds, integration tests against a real PostgreSQL with the Release build, and the node suites
# again against the sanitizer build. Ends with one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh
source scripts/lib.sh

echo "== build: Release"
pgw_build "$root/build" Release
echo "== build: ASan+UBSan"
pgw_build "$root/build-asan" RelWithDebInfo -DPGW_SANITIZE=ON -DPGW_BUILD_BENCH=OFF
echo "== node test dependencies"
(cd tests/integration/node && npm ci --no-audit --no-fund --loglevel=error)

total_passed=0
total_failed=0
# step LOG CMD...: runs a step with its output shown and kept; a non-zero exit with no failure
# counted in its summary still counts as one failure.
step_rc=0
step() {
  local log=$1
  shift
  step_rc=0
  "$@" > >(tee "$log") 2>&1 || step_rc=$?
  wait
}
add_ctest() {  # add_ctest LOGFILE: adds ctest's own summary line to the totals
  local line failed total
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$1" | tail -1)
  if [ -z "$line" ]; then
    total_failed=$((total_failed + 1))
    return
  fi
  if [ "$step_rc" -ne 0 ] && echo "$line" | grep -q " 0 tests failed"; then
    total_failed=$((total_failed + 1))
  fi
  failed=$(echo "$line" | sed -E 's/.*, ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
  total=$(echo "$line" | sed -E 's/.*failed out of ([0-9]+).*/\1/')
  total_passed=$((total_passed + total - failed))
  total_failed=$((total_failed + failed))
}
add_summary() {  # add_summary LOGFILE [NAME]: adds a "NAME: N passed, N failed" line to the totals
  local line
  line=$(grep -E "^${2:-integration}: [0-9]+ passed, [0-9]+ failed$" "$1" | tail -1)
  if [ -z "$line" ]; then
    total_failed=$((total_failed + 1))
    return
  fi
  total_passed=$((total_passed + $(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')))
  total_failed=$((total_failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')))
  if [ "$step_rc" -ne 0 ] && echo "$line" | grep -q " 0 failed"; then
    total_failed=$((total_failed + 1))
  fi
}

logs=$(mktemp -d)
echo "== unit tests (Release)"
step "$logs/unit.log" ctest --test-dir build --output-on-failure --progress
add_ctest "$logs/unit.log"
echo "== unit tests (ASan+UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp
step "$logs/asan.log" ctest --test-dir build-asan --output-on-failure --progress
add_ctest "$logs/asan.log"

echo "== JWT verification against tokens freshly minted by jose (ASan+UBSan build)"
node tests/integration/node/mint_jwt_cases.mjs "$logs/jwt_cases.json"
step "$logs/jwt.log" env PGW_JWT_CASES="$logs/jwt_cases.json" build-asan/tests/policy_test
jwt_tests=$(sed -n 's/^\[==========\] \([0-9]*\) tests from.*ran.*/\1/p' "$logs/jwt.log")
if [ "$step_rc" -eq 0 ] && [ -n "$jwt_tests" ]; then
  total_passed=$((total_passed + jwt_tests))
else
  total_failed=$((total_failed + 1))
fi

echo "== format"
if git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror >"$logs/format.log" 2>&1; then
  total_passed=$((total_passed + 1))
  echo "clang-format: clean"
else
  total_failed=$((total_failed + 1))
  head -20 "$logs/format.log"
fi

echo "== integration (Release)"
step "$logs/it.log" bash tests/integration/run.sh build
add_summary "$logs/it.log"
echo "== integration, node suites (ASan+UBSan gateway)"
# ASan keeps freed memory in quarantine (256 MiB by default) to catch late uses; the suites that
# bound the gateway's memory need it small, and 16 MiB still covers each test's recent frees.
step "$logs/it-asan.log" env ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=16" \
  bash tests/integration/run.sh build-asan --quick
add_summary "$logs/it-asan.log"
echo "== two instances behind HAProxy: cancels, SIGKILL mid-run, recordings (tests/integration/ha_test.sh)"
step "$logs/ha.log" bash tests/integration/ha_test.sh build
add_summary "$logs/ha.log" ha
echo "== pooling behind pgwarden: PgBouncer in transaction mode, 2,000 clients on a pool of 20"
step "$logs/pooling.log" bash tests/integration/pooling.sh build
add_summary "$logs/pooling.log" pooling
# one_check LOG CMD...: a step that counts as one test, passed when it exits 0.
one_check() {
  local log=$1
  shift
  step "$log" "$@"
  if [ "$step_rc" -eq 0 ]; then total_passed=$((total_passed + 1)); else total_failed=$((total_failed + 1)); fi
}
echo "== the demo, walked through (scripts/demo.sh --check)"
one_check "$logs/demo.log" env PGW_DEMO_NO_SETUP=1 bash scripts/demo.sh --check
echo "== differential protocol fuzzer (a minute), directly and through pgwarden"
one_check "$logs/fuzz.log" bash scripts/fuzz.sh "${PGW_FUZZ_SECONDS:-60}" build
echo "== libFuzzer on the pipeline model (30 s)"
one_check "$logs/libfuzzer.log" bash scripts/libfuzzer.sh "${PGW_LIBFUZZER_SECONDS:-30}"
echo "== no allocation per statement with every feature on (bench/alloc_count.sh --check)"
one_check "$logs/alloc.log" env BIN=build/core/pgwarden bash bench/alloc_count.sh --tx 1000 --check 0.05
echo "== packaging and monitoring (tests/ops/check_ops.sh): the .deb, its unit, dpkg -i into a throwaway root, alert rules, dashboard"
one_check "$logs/ops.log" bash tests/ops/check_ops.sh build
echo "== PostgreSQL's own regression suite, directly and through pgwarden"
step "$logs/regress.log" bash scripts/pg_regress.sh build
if [ "$step_rc" -eq 0 ] && grep -q "results identical through pgwarden: yes" "$logs/regress.log"; then
  total_passed=$((total_passed + 1))
else
  total_failed=$((total_failed + 1))
fi

rm -rf "$logs"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
