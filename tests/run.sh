#!/usr/bin/env bash
# The whole test suite: C++ tests (ctest), NEON kernel tests under qemu, Python tests (pytest).
# Run it after `pip install torch==2.13.0 ".[test]"` (the README's test command does both).
# The system tools it needs (a cross compiler and qemu for the NEON step) are installed here when
# run as root with apt-get; otherwise it stops at once with the command to run. It fetches the
# default model first (the tests themselves never use the network).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="$(nproc 2>/dev/null || echo 2)"

# ---- system tools: command -> Debian package ----
declare -A PKG=([aarch64-linux-gnu-g++]=g++-aarch64-linux-gnu [qemu-aarch64]=qemu-user [cmake]=cmake)
missing=()
for tool in "${!PKG[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${PKG[$tool]}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]}; install them first:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
python -c "import ggmlpy, pytest, torch, transformers" 2>/dev/null || {
  echo 'tests/run.sh: the Python test dependencies are missing; run: pip install torch==2.13.0 ".[test]"' >&2
  exit 1
}

# the path of the cached default model; C++ and Python tests read GGMLPY_TEST_MODEL
GGMLPY_TEST_MODEL="$(python -m ggmlpy download --default --quiet | tail -n 1)"
export GGMLPY_TEST_MODEL

echo "== C++ tests (ctest)"
cmake -S . -B build/tests -DGGMLPY_BUILD_PYTHON=OFF -DGGMLPY_BUILD_TESTS=ON >/dev/null
cmake --build build/tests -j"$JOBS"
ctest --test-dir build/tests --output-on-failure

echo "== NEON kernel tests under qemu-aarch64"
GGMLPY_JOBS="$JOBS" bash tests/run_neon.sh

echo "== Python tests (pytest)"
python -m pytest -q tests/python
