#!/usr/bin/env bash
# Runs one end-to-end test many times while other work loads the cores, to
# tell a flaky test from a sound one:
#   repeat-test.sh BUILD_DIR RUNS 'TEST NAME PATTERN' [BUSY_LOOPS]
# BUSY_LOOPS (default: the number of cores) processes spin beside it. Prints
# one line per failed run with the file holding its output (kept), then
# "passed P of RUNS"; exits 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: repeat-test.sh BUILD_DIR RUNS 'TEST NAME PATTERN' [BUSY_LOOPS]}
runs=${2:?runs}
pattern=${3:?test name pattern}
loops=${4:-$(nproc)}
out=$(mktemp -d /tmp/pstrain-repeat-XXXXXX)
busy=()
for ((i = 0; i < loops; ++i)); do
  sha256sum /dev/zero &
  busy+=($!)
done
trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
passed=0
for ((i = 1; i <= runs; ++i)); do
  if "$dir/tests/pstrain_e2e_tests" "$pattern" >"$out/run-$i.txt" 2>&1; then
    passed=$((passed + 1))
    rm "$out/run-$i.txt"
  else
    echo "run $i failed: $out/run-$i.txt"
  fi
done
echo "passed $passed of $runs (with $loops busy loops)"
[[ $passed -eq $runs ]]
