#!/usr/bin/env python3
"""Per-token cost of grammar-constrained sampling (python/ggmlpy/grammar.py, src/grammar/).

Two measures, on one model and thread count:
1. End to end: ms per generated token of JSON-schema-constrained chat completions (temperature 1)
   against unconstrained generation of the same prompts and token counts, alternating.
2. The constraint alone: the token sequences from (1) replayed through a matcher, timing
   apply_mask(logits) + accept_token per token, on a fresh automaton (cold: every state's mask is
   computed by walking the vocabulary trie) and again on the same one (warm: cached masks).

    python benchmarks/bench_grammar.py -m SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -r 10
"""
import argparse
import statistics
import time

import numpy as np

from ggmlpy import Model, _core
from ggmlpy.json_schema import JSON_OBJECT_GRAMMAR, schema_to_gbnf

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "age": {"type": "integer"},
    "student": {"type": "boolean"},
    "city": {"enum": ["Paris", "Berlin", "Tokyo", "Lima"]},
    "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}},
    "required": ["name", "age", "student", "city", "hobbies"]}
MESSAGES = [{"role": "user", "content": "Describe a fictional person as JSON."}]


def replay(model, grammar_text, runs, vocab):
    """ms per token of mask + accept over the recorded token sequences: (cold, warm)."""
    auto = _core.GrammarAutomaton(_core.Grammar(grammar_text), vocab)
    logits = np.zeros(model.n_vocab, np.float32)
    out = []
    for _ in range(2):
        n, t, worst = 0, 0.0, 0.0
        for ids in runs:
            mt = _core.GrammarMatcher(auto)
            for tid in ids:
                logits[:] = 0
                t0 = time.perf_counter()
                mt.apply_mask(logits)
                ok = mt.accept_token(tid)
                dt = time.perf_counter() - t0
                t += dt
                worst = max(worst, dt)
                assert ok
                n += 1
        out.append((1000 * t / max(n, 1), 1000 * worst))
    return out, auto.n_states


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--runs", type=int, default=10)
    a = ap.parse_args(argv)
    m = Model(a.model, n_ctx=512, n_threads=a.threads)
    t0 = time.perf_counter()
    vocab = _core.GrammarVocab(m._m.tokenizer)
    print(f"vocabulary trie: {m.n_vocab} tokens, {vocab.n_trie_nodes} nodes, "
          f"{1000 * (time.perf_counter() - t0):.1f} ms")
    ids = m.tokenize(m.apply_chat_template(MESSAGES), special=True)
    for label, kw, text in (("json_schema", {"json_schema": SCHEMA}, schema_to_gbnf(SCHEMA)),
                            ("json_object", {"grammar": JSON_OBJECT_GRAMMAR}, JSON_OBJECT_GRAMMAR)):
        con, free, runs = [], [], []
        for r in range(a.runs):
            m.generate(ids, max_new_tokens=120, temperature=1.0, seed=r, **kw)
            s = m.last_stats
            runs.append(list(s.token_ids))
            con.append(1000 * s.generation_time / max(s.generated_tokens, 1))
            m.generate(ids, max_new_tokens=s.generated_tokens, temperature=1.0, seed=r, ignore_eos=True)
            f = m.last_stats
            free.append(1000 * f.generation_time / max(f.generated_tokens, 1))
        (cold, warm), n_states = replay(m, text, runs, vocab)
        n_tok = sum(len(x) for x in runs)
        print(f"{label}: {a.runs} runs, {n_tok} tokens, {a.threads} threads")
        print(f"  end to end ms/token: constrained {statistics.median(con):.2f}, "
              f"unconstrained {statistics.median(free):.2f} (medians of runs)")
        print(f"  constraint alone ms/token (mask + accept): cold {cold[0]:.3f} (worst token {cold[1]:.2f}), "
              f"warm {warm[0]:.3f} (worst {warm[1]:.2f}); {n_states} automaton states")


if __name__ == "__main__":
    main()
