#!/usr/bin/env bash
# Configures and builds coexist into BUILD_DIR (default: build/). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOEXIST_WERROR=ON "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
