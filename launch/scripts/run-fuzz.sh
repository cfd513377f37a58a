#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UBSan) and runs each
# decoder's target: first over its committed corpus (tests/fuzz/corpus/NAME,
# seeds and regression cases), then fuzzing for FUZZ_SECONDS (default 30).
# An input that crashes a target is saved into its corpus folder, so it stays
# a regression case, and the script fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-30}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPSTRAIN_FUZZ=ON -DPSTRAIN_BUILD_TESTS=OFF >/dev/null
targets=(codec idx csv libsvm job checkpoint)
ninja -C build-fuzz "${targets[@]/#/pstrain_fuzz_}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  mkdir -p "$work/$t"
  if ! (cd "$work" && "$OLDPWD/build-fuzz/tests/fuzz/pstrain_fuzz_$t" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 "$work/$t" "$OLDPWD/$corpus" \
        >"$work/$t.log" 2>&1); then
    for crash in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$crash" ] || continue
      cp "$crash" "$corpus/"
      echo "fuzz $t: FAILED, input kept as $corpus/$(basename "$crash")"
      rm -f "$crash"
    done
    tail -n 40 "$work/$t.log"
    failed=1
  else
    echo "fuzz $t: $(grep -E '^Done' "$work/$t.log" | tail -n 1)"
  fi
done
exit $failed
