#!/usr/bin/env bash
# The whole test suite: C++ tests (ctest), NEON kernel tests under qemu, Python tests (pytest),
# then the sanitizer build (ASan + UBSan: C++ tests, concurrency stress) and bounded fuzzing.
# Run it after `pip install torch==2.13.0 ".[test]"` (the README's test command does both).
# The system tools it needs (a cross compiler and qemu for the NEON step, clang for fuzzing) are
# installed here when run as root with apt-get; otherwise it stops at once with the command to
# run. It fetches the default model first (the tests themselves never use the network).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="$(nproc 2>/dev/null || echo 2)"

# ---- system tools: command -> Debian package (NEON step: cross compiler + qemu; fuzzing: clang
# with libFuzzer's runtime, which libclang-rt-14-dev holds; the web page test: headless Chromium
# and its driver) ----
declare -A PKG=([aarch64-linux-gnu-g++]=g++-aarch64-linux-gnu [qemu-aarch64]=qemu-user [cmake]=cmake
                [clang++-14]=clang-14 [chromium]=chromium [chromedriver]=chromium-driver)
missing=()
for tool in "${!PKG[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${PKG[$tool]}")
done
libfuzzer_ok() {   # clang can link a libFuzzer target
  local d; d="$(mktemp -d)"
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$d/f.cpp"
  clang++-14 -fsanitize=fuzzer "$d/f.cpp" -o "$d/f" >/dev/null 2>&1; local rc=$?
  rm -rf "$d"; return $rc
}
command -v clang++-14 >/dev/null && ! libfuzzer_ok && missing+=(libclang-rt-14-dev)
command -v clang++-14 >/dev/null || missing+=(libclang-rt-14-dev)
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
python -c "import ggmlpy, pytest, torch, transformers, atheris, pybind11, starlette, uvicorn, openai, selenium" 2>/dev/null || {
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

echo "== C++ tests and the concurrency stress tests under ASan + UBSan"
GGMLPY_JOBS="$JOBS" bash tests/run_sanitizers.sh

echo "== fuzzing (bounded time)"
GGMLPY_JOBS="$JOBS" bash tests/run_fuzz.sh
