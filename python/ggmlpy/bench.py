"""`ggmlpy bench`: prompt-processing (ppN: N tokens in one eval from an empty context) and text
generation (tgN: N single-token evals from an empty context) speed in tokens/s, mean ± sd over
repetitions after one warm-up, printed as a markdown table with llama-bench's columns so the
numbers compare one to one. Token ids are random (fixed seed), as in llama-bench.

With parallel sequences (`-np 1,2,4,8`, like llama-batched-bench), each B gives two rows:
`ppP@npB` (B prompts of P tokens evaluated in shared passes: B*P / time) and `tgN@npB` (N steps
that each evaluate one token of every sequence after those prompts: aggregate B*N / time).
`--kv-type f16,q8_0` repeats the tests for each KV cache type (a `kv` column, as llama-bench's
type_k / type_v columns)."""
from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass
from typing import List, Sequence


@dataclass
class BenchResult:
    model: str
    size_bytes: int
    n_params: int
    threads: int
    test: str
    samples: List[float]   # tokens/s of each repetition
    kv_type: str = "f16"   # KV cache type (llama-bench's type_k / type_v)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.samples) if len(self.samples) > 1 else 0.0


def _gguf_summary(path: str):
    """(n_params, tensor bytes, file type name) read with the gguf package (mmap, no weights read)."""
    import gguf
    r = gguf.GGUFReader(path)
    n_params = sum(int(t.n_elements) for t in r.tensors)
    size = sum(int(t.n_bytes) for t in r.tensors)
    ftype = None
    field = r.fields.get("general.file_type")
    if field is not None:
        try:
            ftype = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.replace("MOSTLY_", "")
        except (ValueError, IndexError):
            ftype = None
    if ftype is None:  # the most common tensor type
        counts = {}
        for t in r.tensors:
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_bytes)
        ftype = max(counts, key=counts.get) if counts else "?"
    return n_params, size, ftype


def _params_label(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{round(n / 1e6)}M"


def _parallel(core, rng, n_vocab, B, P, N, repetitions):
    """(prompt t/s samples, generation t/s samples) of B sequences: P prompt tokens each in shared
    passes, then N steps of one token per sequence."""
    pp, tg = [], []
    for rep in range(repetitions + 1):   # rep 0 is the warm-up
        for s in range(B):
            core.truncate_seq(s, 0)
        seqs = list(range(B))
        t0 = time.perf_counter()
        if P > 0:
            core.eval_batch(seqs, [[rng.randrange(n_vocab) for _ in range(P)] for _ in seqs])
        t1 = time.perf_counter()
        for _ in range(N):
            core.eval_batch(seqs, [[rng.randrange(n_vocab)] for _ in seqs])
        t2 = time.perf_counter()
        if rep > 0:
            if P > 0:
                pp.append(B * P / (t1 - t0))
            if N > 0:
                tg.append(B * N / (t2 - t1))
    return pp, tg


def run_bench(model_path: str, n_prompt: Sequence[int], n_gen: Sequence[int], threads: Sequence[int],
              repetitions: int = 5, n_batch: int = 512, use_mmap: bool = True, progress=None,
              parallel: Sequence[int] = (), depths: Sequence[int] = (0,),
              kv_types: Sequence[str] = ("f16",)) -> List[BenchResult]:
    """llama-bench's tests: ppN (N prompt tokens in one eval), tgN (N single-token evals), each
    after `depth` tokens already in the cache ("pp512 @ d4096"; the depth is filled untimed), or
    with `parallel` the batched tests of _parallel; for each KV cache type in kv_types."""
    spec = _Spec(os.fspath(model_path), list(n_prompt), list(n_gen), list(threads), repetitions, n_batch, use_mmap,
                 progress, list(parallel), list(depths) or [0])
    results: List[BenchResult] = []
    for kv_type in kv_types:
        results += _run_one(spec, kv_type)
    return results


@dataclass
class _Spec:
    """run_bench's arguments, as each KV cache type's run uses them."""
    path: str
    n_prompt: List[int]
    n_gen: List[int]
    threads: List[int]
    repetitions: int
    n_batch: int
    use_mmap: bool
    progress: object
    parallel: List[int]
    depths: List[int]


def _run_one(spec: _Spec, kv_type: str) -> List[BenchResult]:
    from . import _core
    path, n_prompt, n_gen, threads, parallel, depths = (spec.path, spec.n_prompt, spec.n_gen, spec.threads,
                                                        spec.parallel, spec.depths)
    repetitions, progress = spec.repetitions, spec.progress
    n_params, size, ftype = _gguf_summary(path)
    need = max(n_prompt + n_gen + [1]) + max(depths)
    if parallel:
        need = max(n_prompt) + max(n_gen) + 1
    core = _core.Model(path, n_ctx=max(need, 16), n_batch=spec.n_batch, n_threads=threads[0] if threads else 0,
                       use_mmap=spec.use_mmap, n_seq_max=max(parallel + [1]), kv_type=kv_type)
    try:
        name = f"{core.arch} {_params_label(n_params)} {ftype}"
        rng = random.Random(1234)
        n_vocab = core.n_vocab
        results: List[BenchResult] = []
        for t in threads:
            core.n_threads = t
            if parallel:
                for B in parallel:
                    for P in n_prompt:
                        for N in n_gen:
                            pp, tg = _parallel(core, rng, n_vocab, B, P, N, repetitions)
                            for test, samples in ((f"pp{P}@np{B}", pp), (f"tg{N}@np{B}", tg)):
                                if samples:
                                    res = BenchResult(name, size, n_params, t, test, samples, kv_type)
                                    results.append(res)
                                    if progress:
                                        progress(res)
                continue
            for depth, kind, n in [(d, k, n) for d in depths for k, sizes in (("pp", n_prompt), ("tg", n_gen))
                                   for n in sizes if n > 0]:
                samples = []
                for rep in range(repetitions + 1):   # rep 0 is the warm-up
                    ids = [rng.randrange(n_vocab) for _ in range(n)]
                    core.reset()
                    if depth:
                        core.eval([rng.randrange(n_vocab) for _ in range(depth)], False)
                    if kind == "pp":
                        t0 = time.perf_counter()
                        core.eval(ids, False)
                        dt = time.perf_counter() - t0
                    else:
                        t0 = time.perf_counter()
                        for i in ids:
                            core.eval([i], False)
                        dt = time.perf_counter() - t0
                    if rep > 0:
                        samples.append(n / dt)
                res = BenchResult(name, size, n_params, t, f"{kind}{n}" + (f" @ d{depth}" if depth else ""), samples,
                                  kv_type)
                results.append(res)
                if progress:
                    progress(res)
        return results
    finally:
        core.close()


def markdown_table(results: List[BenchResult]) -> str:
    kv_col = any(r.kv_type != "f16" for r in results)  # like llama-bench: shown when not the default
    head = ["model", "size", "params", "backend", "threads"] + (["kv"] if kv_col else []) + ["test", "t/s"]
    rows = [[r.model, f"{r.size_bytes / 2**20:.2f} MiB", f"{r.n_params / 1e6:.2f} M", "CPU", str(r.threads)] +
            ([r.kv_type] if kv_col else []) + [r.test, f"{r.mean:.2f} ± {r.sd:.2f}"] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    right = {1, 2, 4} | {len(head) - 2, len(head) - 1}

    def fmt(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([fmt(head), sep] + [fmt(r) for r in rows])
