#!/usr/bin/env bash
# Cross-compiles the SIMD kernels and their tests for 64-bit ARM (Highway's NEON target) and runs
# them under qemu-user, so the ARM code paths are tested on an x86 machine. Installs what it needs
# (Debian multiarch: the arm64 cross compiler, qemu-user, Highway and GoogleTest for arm64);
# idempotent. Usage: scripts/test-arm.sh [BUILD_DIR] (default build-arm).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-arm}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
PACKAGES=(qemu-user g++-aarch64-linux-gnu libc6:arm64 libhwy-dev:arm64 libgtest-dev:arm64)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "test-arm: installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi

test -f "$BUILD/CMakeCache.txt" || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DSPECULA_KERNELS_ONLY=ON
cmake --build "$BUILD" -j "$(nproc)"
cd "$BUILD" && ctest --output-on-failure -j "$(nproc)"
