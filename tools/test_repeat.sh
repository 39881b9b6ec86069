#!/usr/bin/env bash
# Runs the built test suite N times (default 20), each with fresh seeds (the tests draw their own unless
# EDITRT_TEST_SEED is set), validation layer on, and counts the runs and tests that failed.
# Usage: tools/test_repeat.sh [N]   (after `make test` or `make build fixtures`). Logs: .build/repeat/run-K.log
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "test_repeat: N must be a positive integer, got '$runs'" >&2; exit 2; }
[ -z "${EDITRT_TEST_SEED:-}" ] || { echo "test_repeat: EDITRT_TEST_SEED is set; unset it for fresh seeds" >&2; exit 2; }
mkdir -p .build/repeat
failed_runs=0; failed_tests=0; passed_tests=0
for k in $(seq 1 "$runs"); do
  log=.build/repeat/run-$k.log
  start=$(date +%s)
  EDITRT_VALIDATION=1 dotnet test EditRuntime.sln -c Release --no-build --nologo \
      --logger "console;verbosity=normal" >"$log" 2>&1
  rc=$?
  p=$(sed -nE 's/^ +Passed: *([0-9]+)$/\1/p' "$log" | tail -1); f=$(sed -nE 's/^ +Failed: *([0-9]+)$/\1/p' "$log" | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ] || [ "$p" -eq 0 ]; then
    failed_runs=$((failed_runs + 1)); grep -E "^\s+Failed " "$log" | head -5
  fi
  passed_tests=$((passed_tests + p)); failed_tests=$((failed_tests + f))
  echo "run $k/$runs: $p passed, $f failed, exit $rc, $(( $(date +%s) - start )) s"
done
echo "test_repeat: $runs runs, $failed_runs failed; tests $passed_tests passed, $failed_tests failed in all"
[ "$failed_runs" -eq 0 ]
