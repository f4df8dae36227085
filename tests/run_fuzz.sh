#!/usr/bin/env bash
# Fuzzing for a bounded time (CI): builds the libFuzzer targets tests/fuzz/fuzz_*.cpp with clang,
# ASan and UBSan (-DGGMLPY_BUILD_FUZZ=ON), runs each for GGMLPY_FUZZ_SECONDS (default 60) from the
# seed corpus in tests/data/fuzz/corpus/<target>, then the atheris target tests/fuzz/fuzz_legacy.py
# (Python readers of legacy .bin files) the same way. Fails if any target crashes, hangs (-timeout)
# or runs out of memory (-rss_limit_mb); the input is left in build/fuzz/artifacts/<target>/
# (save it under tests/data/fuzz/regressions/<target>/ once fixed: docs/testing.md).
# Prints one summary line per target: executions and executions per second.
# Needs: cmake, clang-14 + libclang-rt-14-dev (apt), atheris (pip), an importable ggmlpy (installed,
# or GGMLPY_BUILD_DIR=<build with _core> to use python/ from this tree).
# Usage: tests/run_fuzz.sh [build dir, default build/fuzz]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/fuzz}"
secs="${GGMLPY_FUZZ_SECONDS:-60}"
jobs="${GGMLPY_JOBS:-2}"
cxx="${GGMLPY_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}"

[ -n "$cxx" ] || { echo "run_fuzz.sh: clang++ not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
python -c "import atheris" 2>/dev/null || { echo "run_fuzz.sh: atheris not found (pip install atheris)" >&2; exit 1; }
if [ -n "${GGMLPY_BUILD_DIR:-}" ]; then export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"; fi

cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release \
  -DGGMLPY_BUILD_PYTHON=OFF -DGGMLPY_BUILD_TESTS=OFF -DGGMLPY_BUILD_FUZZ=ON \
  -DGGMLPY_SANITIZE=address,undefined >/dev/null
mapfile -t targets < <(cd "$root/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//')
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

# -timeout: one input taking longer is a hang; -rss_limit_mb: more memory is an OOM finding.
# The first folder collects new inputs (scratch, under build/); the seed corpus is only read.
flags=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
status=0
summary=()
run() {  # name, command...
  local name="$1"; shift
  local work="$build/work/$name" art="$build/artifacts/$name" log="$build/$name.log"
  mkdir -p "$work" "$art"
  echo "== $name: ${secs}s"
  local rc=0 t0=$SECONDS
  "$@" "${flags[@]}" -artifact_prefix="$art/" "$work" "$root/tests/data/fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
  local runs rate elapsed=$(( SECONDS - t0 > 0 ? SECONDS - t0 : 1 ))
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate=$(( ${runs:-0} / elapsed ))  # wall time: libFuzzer's average_exec_per_sec can read 0
  summary+=("$(printf '%-10s %10s executions  %7s exec/s  %s' "$name" "${runs:-?}" "$rate" \
    "$([ $rc = 0 ] && echo ok || echo "FAILED (rc $rc, log $log)")")")
  if [ $rc != 0 ]; then
    status=1
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written|Traceback|Error' "$log" | head -n 20 || true
  fi
}
for t in "${targets[@]}"; do run "${t#fuzz_}" "$build/$t"; done
run legacy python "$root/tests/fuzz/fuzz_legacy.py"

echo "== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
