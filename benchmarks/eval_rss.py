"""Peak memory and speed of evaluating one long prompt from Python: ggmlpy's Model.eval with
logits="last" / "all", and llama-cpp-python's Llama.eval (logits_all=False) when it is installed.
Each run is a fresh process (peak RSS = ru_maxrss after the eval); medians of -r runs.

    python benchmarks/eval_rss.py -m model.gguf -p 512 -t 2 -r 3 [--llama-cpp-python PYTHON]

--llama-cpp-python names a Python interpreter that has llama_cpp (e.g. a separate venv)."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD_GGMLPY = r"""
import json, random, resource, sys, time
from ggmlpy import Model
path, n, t, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = Model(path, n_ctx=n + 16, n_threads=t)
ids = [random.Random(0).randrange(m.n_vocab) for _ in range(n)]
t0 = time.perf_counter()
m.eval(ids, logits=mode)
dt = time.perf_counter() - t0
print(json.dumps({"tps": n / dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_LLAMA_CPP = r"""
import json, random, resource, sys, time
from llama_cpp import Llama
path, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = Llama(path, n_ctx=n + 16, n_threads=t, n_batch=512, verbose=False)
ids = [random.Random(0).randrange(m.n_vocab()) for _ in range(n)]
t0 = time.perf_counter()
m.eval(ids)
dt = time.perf_counter() - t0
print(json.dumps({"tps": n / dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(python, code, args):
    out = subprocess.run([python, "-c", code] + [str(a) for a in args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", "--prompt", type=int, default=512)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--llama-cpp-python", default=None, help="a Python with llama_cpp installed")
    a = ap.parse_args()
    engines = [("ggmlpy eval(logits='last')", sys.executable, CHILD_GGMLPY, ["last"]),
               ("ggmlpy eval(logits='all')", sys.executable, CHILD_GGMLPY, ["all"])]
    if a.llama_cpp_python:
        engines.append(("llama-cpp-python Llama.eval", a.llama_cpp_python, CHILD_LLAMA_CPP, []))
    samples = {name: [] for name, *_ in engines}
    for _ in range(a.repetitions):          # alternating, so a noisy neighbour hits all alike
        for name, py, code, extra in engines:
            samples[name].append(run(py, code, [a.model, a.prompt, a.threads] + extra))
    print(f"| {a.prompt}-token prompt, {a.threads} threads | prompt t/s (median) | peak RSS MB (median) |")
    print("|---|---|---|")
    for name, s in samples.items():
        print(f"| {name} | {statistics.median(x['tps'] for x in s):.0f} | "
              f"{statistics.median(x['rss_mb'] for x in s):.0f} |")


if __name__ == "__main__":
    main()
