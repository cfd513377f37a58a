#!/usr/bin/env bash
# Checks that a build runs every test the sources define, per CTest label:
#   check-tests.sh BUILD_DIR LABEL...      (labels: unit, e2e)
# unit: the TEST_CASEs of tests/**/*_test.cc outside tests/e2e; e2e: those of
# tests/e2e/*_test.cc. Fails when ctest lists fewer or more tests than the
# sources hold (a test file left out of the build, tests configured off, a
# name that ctest splits at a ';'), or none at all.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: check-tests.sh BUILD_DIR LABEL...}
shift
status=0
for label in "$@"; do
  case "$label" in
    unit) files=$(find tests -name '*_test.cc' -not -path 'tests/e2e/*' -not -path 'tests/fuzz/*') ;;
    e2e) files=$(find tests/e2e -name '*_test.cc') ;;
    *) echo "check-tests: unknown label $label" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086
  defined=$(cat $files | grep -c '^TEST_CASE(' || true)
  if cat $files | grep -A1 '^TEST_CASE(' | grep -q '^[^/]*"[^"]*;[^"]*"'; then
    echo "check-tests: a $label test name holds ';', which ctest splits into two tests" >&2
    status=1
  fi
  listed=$(ctest --test-dir "$dir" -N -L "^${label}\$" | sed -n 's/^Total Tests: //p')
  listed=${listed:-0}
  if [ "$listed" -eq 0 ] || [ "$listed" -ne "$defined" ]; then
    echo "check-tests: $dir lists $listed $label test(s), the sources define $defined" >&2
    status=1
  else
    echo "check-tests: $dir runs all $listed $label tests"
  fi
done
exit $status
