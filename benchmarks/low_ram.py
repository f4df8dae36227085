#!/usr/bin/env python3
"""Run a model larger than the memory left on an emulated smaller machine: a separate process
takes (and touches) all but --leave GiB of MemAvailable, so with no swap that memory is gone,
as on a machine with --leave GiB free. Prints the weight memory plan, the per-token time, the
bytes read from the disk per token (/proc/self/io) and the disk bound (streamed bytes per token
over the disk read bandwidth, measured in the same run before and after the tokens).

    python benchmarks/low_ram.py gptj6b-f16.gguf --leave 8 -n 6 -t 2
    python benchmarks/low_ram.py gptj6b-f16.gguf --leave 8 --pp 512 -n 0     # prompt processing
    python benchmarks/low_ram.py gptj6b-f16.gguf --leave 0 --pp 512 -n 0     # compute only (fits)

Never run in tests or CI: it takes most of the machine's memory for the duration.
"""
import argparse
import mmap
import os
import subprocess
import sys
import time

import numpy as np

from ggmlpy import _core
from ggmlpy.memory import human, plan_lines

LOCKER = r"""
import sys, numpy as np
def avail():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))
leave, hold = int(sys.argv[1]), []
for _ in range(8):   # MemAvailable moves as the page cache shrinks: top up until it is close
    more = avail() - leave
    if more < 64 << 20:
        break
    hold.append(np.ones(more, dtype=np.uint8))   # written, so every page is resident (no swap)
print("ready", sum(h.nbytes for h in hold), flush=True)
sys.stdin.read()                                  # until the parent closes the pipe
"""


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def read_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def disk_bandwidth(path: str, nbytes: int = 2 << 30, chunk: int = 8 << 20) -> float:
    """Bytes/s of a cold sequential read of the file's last nbytes, the way the stream reads
    (readahead one chunk ahead, then wait for the chunk), then evicted again."""
    size = os.path.getsize(path)
    start = max(0, size - nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    evict(path)
    buf = bytearray(chunk)
    fd = os.open(path, os.O_RDONLY)
    try:
        t = time.perf_counter()
        total = 0
        for off in range(start, size, chunk):
            n = min(chunk, size - off)
            if off + n < size:
                os.posix_fadvise(fd, off + n, min(chunk, size - off - n), os.POSIX_FADV_WILLNEED)
            total += os.preadv(fd, [memoryview(buf)[:n]], off)
        dt = time.perf_counter() - t
    finally:
        os.close(fd)
    evict(path)
    return total / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--leave", type=float, default=8.0, help="GiB of MemAvailable to leave (0: take nothing)")
    ap.add_argument("-n", type=int, default=6, help="tokens to generate (one at a time)")
    ap.add_argument("--pp", type=int, default=0, help="also time one prompt of this many tokens")
    ap.add_argument("-r", "--repeat", type=int, default=1, help="times to run the prompt (each after a reset)")
    ap.add_argument("-t", type=int, default=2, help="threads")
    ap.add_argument("-b", type=int, default=512, help="n_batch")
    ap.add_argument("--mem-budget", type=float, default=0, help="GiB for the weights (0: the automatic plan)")
    a = ap.parse_args()

    locker = None
    if a.leave > 0:
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(int(a.leave * 2**30))], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        ready = locker.stdout.readline().split()
        if not ready or ready[0] != "ready":
            sys.exit("the memory-taking process failed")
        print(f"taken by a separate process: {human(int(ready[1]))}; MemAvailable now {human(mem_available())}")
    try:
        run(a)
    finally:
        if locker:
            locker.stdin.close()
            locker.wait()


def run(a):
    size = os.path.getsize(a.model)
    bw0 = disk_bandwidth(a.model)
    evict(a.model)
    print(f"MemAvailable at load: {human(mem_available())}")
    t0 = time.perf_counter()
    kw = {"mem_budget": int(a.mem_budget * 2**30)} if a.mem_budget else {}
    m = _core.Model(a.model, n_ctx=max(256, a.pp + a.n + 8), n_threads=a.t, n_batch=a.b, **kw)
    load = time.perf_counter() - t0
    mem = m.memory
    print(f"model {os.path.basename(a.model)}: {size / 1e9:.2f} GB, {a.t} threads, load {load:.1f} s")
    for line in plan_lines(mem):
        print(line)
    streamed = mem.get("streamed_bytes", 0)  # (a build without the plan: 0, everything "resident")

    ids = np.random.default_rng(0).integers(100, m.n_vocab, a.pp)
    for r in range(a.repeat if a.pp else 0):
        m.reset()
        r0, t = read_bytes(), time.perf_counter()
        m.eval(ids, False)
        dt = time.perf_counter() - t
        print(f"pp{a.pp} run {r}: {dt:.2f} s ({a.pp / dt:.2f} tokens/s), read {human(read_bytes() - r0)} "
              f"from the disk", flush=True)
    m.reset()
    times, reads = [], []
    tok = 1
    for i in range(a.n):
        s0 = m.memory
        r0, t = read_bytes(), time.perf_counter()
        logits = m.eval([tok], False)
        times.append(time.perf_counter() - t)
        reads.append(read_bytes() - r0)
        tok = int(np.argmax(logits))
        s1 = m.memory
        fetch, drop, got = (s1.get(k, 0) - s0.get(k, 0) for k in ("stream_fetch_s", "stream_drop_s", "stream_prefetched"))
        print(f"  token {i}: {times[-1]:.3f} s, read {human(reads[-1])}; I/O thread: reading {fetch:.2f} s "
              f"({got / max(fetch, 1e-9) / 1e9:.2f} GB/s), dropping {drop:.2f} s", flush=True)
    m.close()
    bw1 = disk_bandwidth(a.model)
    bw = (bw0 + bw1) / 2
    print(f"disk read bandwidth: {bw0 / 1e9:.2f} GB/s before, {bw1 / 1e9:.2f} GB/s after (mean {bw / 1e9:.2f})")
    if times:
        steady = times[1:] if len(times) > 2 else times  # the first token also reads the resident part
        t_tok = float(np.median(steady))
        print(f"per token: {t_tok:.3f} s (median of {len(steady)}; first {times[0]:.3f} s), "
              f"disk read {human(float(np.median(reads[1:] if len(reads) > 2 else reads)))} per token")
        per_token = streamed or size  # without a plan, every token may re-read the whole file
        bound = per_token / bw
        print(f"disk bound: {human(per_token)} {'streamed' if streamed else 'file'} / {bw / 1e9:.2f} GB/s = "
              f"{bound:.3f} s per token; ratio {t_tok / bound:.2f}")


if __name__ == "__main__":
    main()
