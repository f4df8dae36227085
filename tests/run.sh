#!/usr/bin/env bash
# The whole test suite: C++ tests (ctest), NEON kernel tests under qemu, Python tests (pytest).
# Fetches the default model first (the tests themselves never use the network).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="$(nproc 2>/dev/null || echo 2)"

# the path of the cached default model; C++ and Python tests read GGMLPY_TEST_MODEL
GGMLPY_TEST_MODEL="$(ggmlpy download --default | tail -n 1)"
export GGMLPY_TEST_MODEL
cmake -S . -B build/tests -DGGMLPY_BUILD_PYTHON=OFF -DGGMLPY_BUILD_TESTS=ON
cmake --build build/tests -j"$JOBS"
ctest --test-dir build/tests --output-on-failure
bash tests/run_neon.sh
python -m pytest -q tests/python
