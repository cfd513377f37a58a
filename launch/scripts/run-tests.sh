#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs the whole
# test suite: unit tests, end-to-end tests (real processes, real data), and the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer and under
# ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/../.."
launch/scripts/setup.sh

echo "== build (Release, -Werror)"
launch/scripts/build.sh build -DPSTRAIN_WERROR=ON
echo "== unit tests"
ctest --test-dir build -L unit --output-on-failure -j2
echo "== end-to-end tests"
ctest --test-dir build -L e2e --output-on-failure -j2

echo "== build (AddressSanitizer + UBSan)"
PSTRAIN_BUILD_TARGETS=pstrain_tests launch/scripts/build.sh build-asan -DPSTRAIN_WERROR=ON \
  -DPSTRAIN_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== unit tests under AddressSanitizer + UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -L unit --output-on-failure -j2

echo "== fuzzing every decoder (libFuzzer, ASan + UBSan)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} launch/scripts/run-fuzz.sh

echo "== build (ThreadSanitizer)"
PSTRAIN_BUILD_TARGETS=pstrain_tests launch/scripts/build.sh build-tsan -DPSTRAIN_WERROR=ON \
  -DPSTRAIN_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== unit tests under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" \
  ctest --test-dir build-tsan -L unit --output-on-failure -j2
