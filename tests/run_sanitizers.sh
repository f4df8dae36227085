#!/usr/bin/env bash
# Sanitizer run (CI): one build with ASan + UBSan (-DGGMLPY_SANITIZE=address,undefined; any UBSan
# report aborts) in build/asan, then
#   1. every C++ test (ctest: parser, tokenizer, ops, quant, core, kernels, sampler, and the
#      fuzz corpus / regression replays);
#   2. the Python module built the same way, under python with libasan preloaded, on the
#      concurrency stress tests (pytest -k stress; GGMLPY_SANITIZE_PYTEST overrides the selection).
#      Skipped with GGMLPY_SANITIZE_PYTHON=0.
# Needs: cmake, g++ (its libasan/libubsan), for stage 2 pybind11 (pip) and the test model
# (GGMLPY_TEST_MODEL, else fetched with `ggmlpy download --default` as tests/run.sh does).
# Usage: tests/run_sanitizers.sh [build dir, default build/asan]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/asan}"
jobs="${GGMLPY_JOBS:-2}"
python_stage="${GGMLPY_SANITIZE_PYTHON:-1}"

if [ -z "${GGMLPY_TEST_MODEL:-}" ] && command -v ggmlpy >/dev/null; then
  GGMLPY_TEST_MODEL="$(ggmlpy download --default | tail -n 1)"
  export GGMLPY_TEST_MODEL
fi
if [ "$python_stage" = 1 ] && ! python -m pybind11 --cmakedir >/dev/null 2>&1; then
  echo "run_sanitizers.sh: pybind11 not found for the ASan Python module (pip install pybind11," \
       "or GGMLPY_SANITIZE_PYTHON=0 to skip that stage)" >&2
  exit 1
fi

py=OFF; [ "$python_stage" = 1 ] && py=ON
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGMLPY_BUILD_TESTS=ON \
  -DGGMLPY_BUILD_PYTHON="$py" -DGGMLPY_SANITIZE=address,undefined >/dev/null
# the test executables (and _core), not the kernel benchmark
mapfile -t targets < <(cd "$root/tests" && ls cpp/test_*.cpp fuzz/fuzz_*.cpp | sed -E 's#.*/##; s/\.cpp$//; s/^fuzz_.*/&_replay/')
[ "$py" = ON ] && targets+=(_core)
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

# print_stacktrace: UBSan reports say where; halt_on_error is implied by -fno-sanitize-recover.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
echo "== stage 1: C++ tests under ASan + UBSan"
ctest --test-dir "$build" --output-on-failure

[ "$python_stage" = 1 ] || exit 0
echo "== stage 2: Python tests under ASan + UBSan (libasan preloaded)"
# The interpreter is not instrumented: libasan must be loaded first, and its own allocations
# never freed at exit are not our leaks.
# The real interpreter, not a wrapper script (pyenv's shim is bash: it would run under ASan too).
preload="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
pyexe="$(python -c 'import sys; print(sys.executable)')"
rc=0
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" LD_PRELOAD="$preload" GGMLPY_BUILD_DIR="$build" \
  PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" \
  "$pyexe" -m pytest -q -p no:cacheprovider "$root/tests/python" -k "${GGMLPY_SANITIZE_PYTEST:-stress}" || rc=$?
# pytest's exit code 5 (no test selected) fails too: the stress tests must exist and run
exit $rc
