#!/usr/bin/env bash
# Configures and builds pstrain.
#   build.sh [BUILD_DIR] [extra cmake arguments...]
# BUILD_DIR defaults to build/. Example: build.sh build-asan -DPSTRAIN_SANITIZE=address,undefined
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C "$dir" ${PSTRAIN_BUILD_TARGETS:-}
