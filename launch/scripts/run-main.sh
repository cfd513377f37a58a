#!/usr/bin/env bash
# Installs what is missing, builds, and trains the seed's MLP on Fashion-MNIST
# with 2 parameter servers and 2 workers on this machine.
# Extra arguments go to `pstrain train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
source launch/scripts/build-args.sh
launch/scripts/setup.sh
launch/scripts/build.sh build "${MAIN_BUILD_ARGS[@]}"
exec build/launch/pstrain train examples/fashion_mlp.toml --servers 2 --workers 2 \
  --metrics build/fashion_mlp.metrics.jsonl "$@"
