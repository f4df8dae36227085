#!/usr/bin/env bash
# NEON kernel tests under emulation: cross-builds the C++ kernel tests for arm64 with
# aarch64-linux-gnu-g++ (cmake/aarch64-toolchain.cmake; no Python module) and runs them under
# qemu-aarch64 twice: on a CPU model with dotprod (sdot kernels) and on a Cortex-A53 (armv8.0,
# no dotprod: the widening-multiply fallback). Each run compares every table available there
# (scalar, neon) with the scalar reference for every type, and runs test_attention (flash_attn
# against float64) on the best table there.
# Needs: cmake, g++-aarch64-linux-gnu, qemu-user (Debian/Ubuntu package names).
# Usage: tests/run_neon.sh [build dir, default build/arm64]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/arm64}"
jobs="${GGMLPY_JOBS:-2}"

for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" >/dev/null || { echo "run_neon.sh: '$tool' not found (apt-get install g++-aarch64-linux-gnu qemu-user cmake)" >&2; exit 1; }
done

cmake -S "$root" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-toolchain.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DGGMLPY_BUILD_PYTHON=OFF -DGGMLPY_BUILD_TESTS=ON >/dev/null

# the kernel tests (tests/cpp/test_kernels*.cpp) and the fused attention op on the NEON table
mapfile -t targets < <(cd "$root/tests/cpp" && ls test_kernels*.cpp test_attention.cpp | sed 's/\.cpp$//')
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

status=0
for cpu in max cortex-a53; do
  for t in "${targets[@]}"; do
    echo "== $t under qemu-aarch64 -cpu $cpu"
    if ! QEMU_CPU="$cpu" qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/$t"; then status=1; fi
  done
done
exit $status
