"""Matrix-vector and matrix-matrix products through the real graph + thread pool path
(ggmlpy._core.ops), reporting GFLOP/s and GB/s (weight bytes read per product) at 1 and 2 threads.

    GGMLPY_BUILD_DIR=build/core PYTHONPATH=python python benchmarks/bench_matmul.py [--types f32,f16,q8_0] [--K 2048 --M 2048 --N 1,128]

Weight types other than f32/f16/bf16 are quantized with ggmlpy's quantizer. Not a test.
"""
import argparse
import time

import numpy as np

from ggmlpy import _core


def make_weights(g, w, wtype):
    if wtype == "f32":
        return g.input(w), w.nbytes
    if wtype == "f16":
        w16 = w.astype(np.float16)
        return g.input(w16), w16.nbytes
    if wtype == "bf16":
        bits = (w.view(np.uint32) >> 16).astype(np.uint16)
        return g.input(bits, type="bf16", ne=[w.shape[1], w.shape[0]]), bits.nbytes
    raw = np.asarray(_core.quantize(w, wtype))   # our C++ quantizer: every block type, fast
    return g.input(raw, type=wtype.lower(), ne=[w.shape[1], w.shape[0]]), raw.nbytes


def bench(wtype, K, M, N, nth, min_time=1.0):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((M, K)).astype(np.float32)
    x = rng.standard_normal((N, K)).astype(np.float32)
    g = _core.ops.Graph()
    W, wbytes = make_weights(g, w, wtype)
    y = g.mul_mat(W, g.input(x))
    g.compute([y], n_threads=nth)  # warm up (buffer, pages)
    reps, t0 = 0, time.perf_counter()
    while True:
        g.compute([y], n_threads=nth)
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time and reps >= 3:
            break
    per = dt / reps
    return 2.0 * K * M * N / per / 1e9, wbytes / per / 1e9, per * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="f32,f16")
    ap.add_argument("--K", type=int, default=2048)
    ap.add_argument("--M", type=int, default=2048)
    ap.add_argument("--N", default="1,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--min-time", type=float, default=1.0)
    a = ap.parse_args()
    kname = _core.kernel_name() if hasattr(_core, "kernel_name") else "?"
    print(f"kernel table: {kname}, default threads: {_core.ops.default_threads()}")
    print(f"{'type':6} {'K':>6} {'M':>6} {'N':>5} {'thr':>3} {'ms':>9} {'GFLOP/s':>9} {'GB/s':>7}")
    for wtype in a.types.split(","):
        for N in [int(n) for n in a.N.split(",")]:
            for nth in [int(t) for t in a.threads.split(",")]:
                gf, gb, ms = bench(wtype, a.K, a.M, N, nth, a.min_time)
                print(f"{wtype:6} {a.K:6d} {a.M:6d} {N:5d} {nth:3d} {ms:9.3f} {gf:9.2f} {gb:7.2f}", flush=True)


if __name__ == "__main__":
    main()
