"""Aggregate generation speed of `ggmlpy serve`: one streaming client alone, then C concurrent
streaming clients, each asking for N tokens (greedy, ignore the end of text so every reply has N
tokens). Prints tokens/s for each and the ratio; checks that every concurrent reply equals the
single-client reply to the same prompt.

    python benchmarks/bench_serve.py -m model.gguf --parallel 8 --clients 8 -n 64 -t 2 -r 3

The server is started here (127.0.0.1, a free port) with --parallel (continuous batching) and
stopped at the end. Needs the server extra and httpx."""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def complete(base: str, prompt: str, n: int) -> tuple:
    """(text, tokens, seconds) of one streaming completion of n tokens."""
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    text, tokens, t0 = [], 0, time.perf_counter()
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk.get("choices", ()):
                text.append(c.get("text") or "")
    return "".join(text), tokens, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("-n", type=int, default=64, help="tokens per reply")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    a = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "ggmlpy", "serve", "-m", a.model, "--port", str(port),
                             "--parallel", str(a.parallel), "-t", str(a.threads), "-c", "1024",
                             "--log-level", "warning"], env=dict(os.environ))
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        prompts = [f"Story number {i}: once upon a time" for i in range(a.clients)]
        alone = [complete(base, p, a.n) for p in prompts]          # warm-up and reference texts
        single, many = [], []
        for _ in range(a.repetitions):
            _, tok, dt = complete(base, prompts[0], a.n)
            single.append(tok / dt)
            results = [None] * a.clients

            def client(i):
                results[i] = complete(base, prompts[i], a.n)
            threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            many.append(sum(r[1] for r in results) / wall)
            if [r[0] for r in results] != [x[0] for x in alone]:
                print("MISMATCH: a concurrent reply differs from the single-client reply", file=sys.stderr)
                return 1
        s1, sc = statistics.median(single), statistics.median(many)
        print(f"model {os.path.basename(a.model)}, --parallel {a.parallel}, {a.threads} threads, {a.n} tokens/reply")
        print(f"1 client:  {s1:.1f} tokens/s (median of {a.repetitions}: {', '.join(f'{x:.1f}' for x in single)})")
        print(f"{a.clients} clients: {sc:.1f} tokens/s aggregate ({', '.join(f'{x:.1f}' for x in many)}); "
              f"{sc / s1:.2f}x; every reply equal to its single-client text")
        return 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
