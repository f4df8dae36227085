#!/usr/bin/env python3
"""Load a (large) GGUF model from mmap, generate N tokens, report load time, generation tokens/s,
peak RSS and RssAnon, beside the bandwidth bound (file bytes per token over --bw GB/s).

    python benchmarks/big_model.py /path/gptj6b-q4_0.gguf -n 16 -t 2
"""
import argparse
import os
import time

import numpy as np

from ggmlpy import _core


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024  # MiB
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-c", type=int, default=256)
    ap.add_argument("--bw", type=float, default=17.0, help="read bandwidth in GB/s for the bound")
    a = ap.parse_args()
    size = os.path.getsize(a.model)
    t0 = time.perf_counter()
    m = _core.Model(a.model, n_ctx=a.c, n_threads=a.t)
    load = time.perf_counter() - t0
    anon_peak = status()["RssAnon"]
    tok = 1
    times = []
    for _ in range(a.n):
        t = time.perf_counter()
        logits = m.eval([tok], False)
        times.append(time.perf_counter() - t)
        tok = int(np.argmax(logits))
        anon_peak = max(anon_peak, status()["RssAnon"])
    s = status()
    steady = times[2:] if len(times) > 4 else times  # first steps page the weights in
    print(f"model {os.path.basename(a.model)}  {size / 1e9:.2f} GB  threads {a.t}")
    print(f"load time          {load * 1e3:8.1f} ms")
    print(f"generation         {1 / np.median(steady):8.2f} tokens/s (median of {len(steady)} steps; "
          f"first step {times[0] * 1e3:.0f} ms)")
    print(f"bandwidth bound    {a.bw * 1e9 / size:8.2f} tokens/s (file bytes / {a.bw} GB/s)")
    print(f"peak RSS           {s['VmHWM']:8.1f} MiB   RssFile {s['RssFile']:.1f} MiB")
    print(f"peak RssAnon       {anon_peak:8.1f} MiB   (KV cache {m.memory['kv_bytes'] / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
