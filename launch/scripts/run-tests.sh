#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs the whole
# test suite: unit tests, end-to-end tests (real processes, real data), and the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer and under
# ThreadSanitizer. Every ctest call fails when it finds no tests, and
# check-tests.sh fails when ctest lists another number of tests than the
# sources define. A test that cannot run on this machine is reported by ctest
# as skipped (not passed); under CI=true it fails instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
source launch/scripts/build-args.sh
launch/scripts/setup.sh

echo "== check: a build folder that run-main.sh configured first still gets every test"
check=build-order-check
rm -rf "$check"
PSTRAIN_CONFIGURE_ONLY=1 launch/scripts/build.sh "$check" "${MAIN_BUILD_ARGS[@]}"
PSTRAIN_CONFIGURE_ONLY=1 launch/scripts/build.sh "$check" "${TEST_BUILD_ARGS[@]}"
if ! grep -qx 'PSTRAIN_BUILD_TESTS:BOOL=ON' "$check/CMakeCache.txt" ||
   [ ! -f "$check/tests/CTestTestfile.cmake" ]; then
  echo "run-tests: after run-main.sh's configuration the test configuration has no tests" >&2
  exit 1
fi
rm -rf "$check"
echo "ok"

run_ctest() {  # run_ctest BUILD_DIR LABEL
  ctest --test-dir "$1" -L "^$2\$" --no-tests=error --output-on-failure -j2
}

echo "== build (Release, -Werror)"
launch/scripts/build.sh build "${TEST_BUILD_ARGS[@]}"
launch/scripts/check-tests.sh build unit e2e
echo "== unit tests"
run_ctest build unit
echo "== end-to-end tests"
run_ctest build e2e

echo "== build (AddressSanitizer + UBSan)"
PSTRAIN_BUILD_TARGETS=pstrain_tests launch/scripts/build.sh build-asan -DPSTRAIN_WERROR=ON \
  -DPSTRAIN_BUILD_TESTS=ON -DPSTRAIN_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo
launch/scripts/check-tests.sh build-asan unit
echo "== unit tests under AddressSanitizer + UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan unit

echo "== fuzzing every decoder (libFuzzer, ASan + UBSan)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} launch/scripts/run-fuzz.sh

echo "== build (ThreadSanitizer)"
PSTRAIN_BUILD_TARGETS=pstrain_tests launch/scripts/build.sh build-tsan -DPSTRAIN_WERROR=ON \
  -DPSTRAIN_BUILD_TESTS=ON -DPSTRAIN_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
launch/scripts/check-tests.sh build-tsan unit
echo "== unit tests under ThreadSanitizer"
# OpenBLAS is not built with TSan: its threads hand a product's blocks back
# through spin flags TSan cannot see (and often cannot even unwind), so any
# Gemm large enough to be split looks like a race. One BLAS thread keeps the
# check on our own threads.
OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" \
  run_ctest build-tsan unit
