"""Speculative decoding speed: generation tokens/s of the same greedy generation with and without a
drafter (prompt lookup, or a draft model), alternating runs, medians; checks the texts are equal
and reports the acceptance rate and the cost of a verification pass.

    python benchmarks/bench_speculative.py -m target.gguf --draft prompt-lookup -n 128 -t 2 -r 3
    python benchmarks/bench_speculative.py -m target-q8_0.gguf --draft draft-q4_0.gguf -k 4 -n 64

The prompt asks the model to repeat a paragraph (text that copies its prompt: where prompt lookup
helps); --prompt free asks for a story instead."""
from __future__ import annotations

import argparse
import statistics
import time

from ggmlpy import Model
from ggmlpy.speculative import DraftModel, PromptLookup

PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after years of salt and wind. "
    "Every night the keeper climbed the spiral stairs, lit the great lamp, and watched the ships pass safely "
    "through the narrow channel below. In the morning he wrote the names of the ships in a leather book, "
    "the weather beside each name, and the hour the light went out. Nobody in the village remembered a time "
    "before the light, and nobody could imagine the cliff without it.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--draft", default="prompt-lookup", help="'prompt-lookup' or a draft model GGUF")
    ap.add_argument("-k", type=int, default=None, help="draft length (default 10 for prompt lookup, 4 for a model)")
    ap.add_argument("-n", type=int, default=128, help="tokens to generate")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--prompt", choices=["copy", "free"], default="copy")
    a = ap.parse_args()

    target = Model(a.model, n_ctx=1024, n_threads=a.threads)
    if a.draft == "prompt-lookup":
        drafter = PromptLookup(k=a.k or 10)
        label = f"prompt lookup (k={drafter.k})"
    else:
        drafter = DraftModel(Model(a.draft, n_ctx=1024, n_threads=a.threads), k=a.k or 4)
        label = f"draft {a.draft.split('/')[-1]} (k={drafter.k})"
    ask = ("Repeat the following paragraph exactly, word for word:\n\n" + PARAGRAPH if a.prompt == "copy"
           else "Write a long story about a lighthouse keeper.")
    prompt = target.apply_chat_template([{"role": "user", "content": ask}])
    kw = dict(max_new_tokens=a.n, temperature=0, ignore_eos=True)
    target.generate(prompt, max_new_tokens=4)                      # warm-up (page in the weights)
    plain_tps, spec_tps, accept, per_pass, texts = [], [], [], [], set()
    for _ in range(a.repetitions):
        target.reset()
        text = target.generate(prompt, draft_model=None, **kw)
        st = target.last_stats
        plain_tps.append(st.generated_tokens / st.generation_time)
        step = st.generation_time / st.generated_tokens
        texts.add(text)
        target.reset()
        t0 = time.perf_counter()
        text = target.generate(prompt, draft_model=drafter, **kw)
        st = target.last_stats
        spec_tps.append(st.generated_tokens / st.generation_time)
        accept.append(st.draft_accepted / max(1, st.draft_tokens))
        per_pass.append((st.generation_time / max(1, st.draft_passes)) / step)
        texts.add(text)
        n_tokens, passes, drafted, kept = st.generated_tokens, st.draft_passes, st.draft_tokens, st.draft_accepted
    same = "identical" if len(texts) == 1 else "DIFFERENT"
    p, s = statistics.median(plain_tps), statistics.median(spec_tps)
    print(f"model {a.model.split('/')[-1]}, {label}, {a.threads} threads, {a.n} greedy tokens, prompt '{a.prompt}'")
    print(f"plain {p:.1f} t/s, speculative {s:.1f} t/s: {s / p:.2f}x (medians of {a.repetitions}); texts {same}")
    print(f"last run: {n_tokens} tokens in {passes} passes, {kept}/{drafted} drafted tokens kept "
          f"(acceptance {statistics.median(accept):.0%} median); a pass costs {statistics.median(per_pass):.2f}x "
          f"a plain decode step")


if __name__ == "__main__":
    main()
