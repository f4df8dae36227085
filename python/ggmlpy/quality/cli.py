"""`ggmlpy perplexity -m MODEL -f TEXT -c 512`: llama-perplexity's method and output lines
("[1]12.3456,[2]..." then "Final estimate: PPL = X +/- Y"), a progress bar on stderr."""
from __future__ import annotations

import sys
import time


def add_subparser(sub) -> None:
    from ..cli import _add_model_flags
    s = sub.add_parser("perplexity", help="perplexity over a text file (llama-perplexity's method)",
                       description="Perplexity over a text: chunks of -c tokens, the second half of each "
                                   "scored, as llama.cpp's llama-perplexity.")
    _add_model_flags(s)
    s.add_argument("-f", "--file", required=True, help="text file ('-': stdin)")
    s.add_argument("--chunks", type=int, default=None, help="at most this many chunks (default: all)")
    s.set_defaults(func=cmd_perplexity)  # -c 0 (the default): 512, as llama-perplexity


def cmd_perplexity(a) -> int:
    from ..cli import CliError, _check, _check_model_flags, _resolve_model
    from ..model import Model
    from .perplexity import perplexity
    _check_model_flags(a)
    n_ctx = a.ctx_size or 512
    _check(n_ctx >= 4 and n_ctx % 2 == 0, "-c/--ctx-size", n_ctx, "an even int >= 4")
    if a.chunks is not None:
        _check(a.chunks >= 1, "--chunks", a.chunks, "an int >= 1")
    try:
        if a.file == "-":
            text = sys.stdin.read()
        else:
            with open(a.file, encoding="utf-8", errors="replace") as f:
                text = f.read()
    except OSError as e:
        raise CliError(f"cannot read {a.file}: {e.strerror or e}") from None
    path = _resolve_model(a.model)
    from tqdm import tqdm
    with Model(path, n_ctx=n_ctx, n_batch=max(a.batch_size, n_ctx), n_threads=a.threads, use_mmap=not a.no_mmap,
               use_mlock=a.mlock, kv_type=a.kv_type) as m:
        t0 = time.perf_counter()
        bar = tqdm(total=None, unit="chunk", file=sys.stderr, desc="perplexity", leave=False)
        line = []

        def progress(i, n, ppl):
            bar.total = n
            bar.update(1)
            line.append(f"[{i}]{ppl:.4f}")

        r = perplexity(m, text, n_ctx=n_ctx, max_chunks=a.chunks, progress=progress)
        bar.close()
        dt = time.perf_counter() - t0
    print(",".join(line))
    print(f"Final estimate: PPL = {r.ppl:.4f} +/- {r.ppl_err:.5f}")
    print(f"ggmlpy perplexity: {r.n_chunks} chunks of {n_ctx} tokens ({r.n_scored} scored of {r.n_tokens}) "
          f"in {dt:.2f} s", file=sys.stderr)
    return 0
