#!/usr/bin/env bash
# Configures and builds pstrain.
#   build.sh [BUILD_DIR] [extra cmake arguments...]
# BUILD_DIR defaults to build/. Example: build.sh build-asan -DPSTRAIN_SANITIZE=address,undefined
# PSTRAIN_BUILD_TARGETS: the ninja targets (default: all);
# PSTRAIN_CONFIGURE_ONLY=1: configure, build nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
[ "${PSTRAIN_CONFIGURE_ONLY:-0}" = 1 ] && exit 0
# shellcheck disable=SC2086
ninja -C "$dir" ${PSTRAIN_BUILD_TARGETS:-}
