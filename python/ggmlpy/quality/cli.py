"""`ggmlpy perplexity -m MODEL -f TEXT -c 512`: llama-perplexity's method and output lines
("[1]12.3456,[2]..." then "Final estimate: PPL = X +/- Y"), a progress bar on stderr.
`--kl-divergence-base FILE` also saves the scored log-probs; with `--kl-divergence` the model is
compared against FILE instead (its chunks; no -f needed), as llama-perplexity's flags."""
from __future__ import annotations

import sys
import time


def add_subparser(sub) -> None:
    from ..cli import _add_model_flags
    s = sub.add_parser("perplexity", help="perplexity over a text file (llama-perplexity's method)",
                       description="Perplexity over a text: chunks of -c tokens, the second half of each "
                                   "scored, as llama.cpp's llama-perplexity.")
    _add_model_flags(s)
    s.add_argument("-f", "--file", help="text file ('-': stdin)")
    s.add_argument("--chunks", type=int, default=None, help="at most this many chunks (default: all)")
    s.add_argument("--kl-divergence-base", metavar="FILE", default=None,
                   help="save the scored log-probs to FILE (the base, e.g. the F16 model); with "
                        "--kl-divergence: compare against FILE")
    s.add_argument("--kl-divergence", action="store_true",
                   help="KL divergence, top-token agreement and PPL ratio against --kl-divergence-base FILE")
    s.set_defaults(func=cmd_perplexity)  # -c 0 (the default): 512, as llama-perplexity


def cmd_perplexity(a) -> int:
    from ..cli import CliError, _check, _check_model_flags, _resolve_model, read_text_arg
    from ..model import Model
    from .perplexity import perplexity
    _check_model_flags(a)
    n_ctx = a.ctx_size or 512
    _check(n_ctx >= 4 and n_ctx % 2 == 0, "-c/--ctx-size", n_ctx, "an even int >= 4")
    if a.chunks is not None:
        _check(a.chunks >= 1, "--chunks", a.chunks, "an int >= 1")
    if a.kl_divergence and not a.kl_divergence_base:
        raise CliError("--kl-divergence needs --kl-divergence-base FILE (written by a run without --kl-divergence)")
    if not a.kl_divergence and not a.file:
        raise CliError("-f/--file is required (the text to score)")
    text = None
    if not a.kl_divergence:  # undecodable bytes become U+FFFD: a corpus is scored as it is
        text = read_text_arg(a.file, "text file", errors="replace")
    from .kl_divergence import kl_divergence, read_base_header, save_base
    if a.kl_divergence:
        n_ctx = read_base_header(a.kl_divergence_base)[0]      # the base's chunks decide
    path = _resolve_model(a.model)
    from tqdm import tqdm
    with Model(path, n_ctx=n_ctx, n_batch=max(a.batch_size, n_ctx), n_threads=a.threads, use_mmap=not a.no_mmap,
               use_mlock=a.mlock, mem_budget=a.mem_budget, lora=a.lora, kv_type=a.kv_type) as m:
        t0 = time.perf_counter()
        bar = tqdm(total=None, unit="chunk", file=sys.stderr, desc="perplexity", leave=False)
        line = []

        def progress(i, n, ppl):
            bar.total = n
            bar.update(1)
            line.append(f"[{i}]{ppl:.4f}")

        if a.kl_divergence:
            kl = kl_divergence(m, a.kl_divergence_base, progress=progress)
        elif a.kl_divergence_base:
            r = save_base(m, text, a.kl_divergence_base, n_ctx=n_ctx, max_chunks=a.chunks, progress=progress)
        else:
            r = perplexity(m, text, n_ctx=n_ctx, max_chunks=a.chunks, progress=progress)
        bar.close()
        dt = time.perf_counter() - t0
    print(",".join(line))
    if a.kl_divergence:
        print(kl.report())
        print(f"ggmlpy perplexity: {kl.n_chunks} chunks, {kl.n_scored} tokens scored against "
              f"{a.kl_divergence_base} in {dt:.2f} s", file=sys.stderr)
        return 0
    print(f"Final estimate: PPL = {r.ppl:.4f} +/- {r.ppl_err:.5f}")
    print(f"ggmlpy perplexity: {r.n_chunks} chunks of {n_ctx} tokens ({r.n_scored} scored of {r.n_tokens}) "
          f"in {dt:.2f} s" + (f", log-probs saved to {a.kl_divergence_base}" if a.kl_divergence_base else ""),
          file=sys.stderr)
    return 0
