#!/usr/bin/env python3
"""Write a random-weight GGUF model in the shape of a real one, for speed and memory benchmarks.

The weights are random, so the text is nonsense; what it measures is how fast and in how much
memory an engine runs a model of that size. Needs the `gguf` and `numpy` packages.

    python benchmarks/make_random_gguf.py llama-1b q4_0 out.gguf --vocab-from SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/make_random_gguf.py gptj-6b q8_0 gptj6b.gguf

Presets follow the published configs of the models they are named after (vocab may be replaced by
the donor's vocab). Types: f32, f16, q8_0, q4_0. Tensors are written one at a time, so memory
stays small whatever the model size.
"""
import argparse
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

PRESETS = {
    # TinyLlama-1.1B
    "llama-1b": dict(arch="llama", n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632,
                     n_vocab=32000, n_ctx=2048, rope_theta=10000.0, eps=1e-5),
    # Llama-2-7B
    "llama-7b": dict(arch="llama", n_embd=4096, n_layer=32, n_head=32, n_head_kv=32, n_ff=11008,
                     n_vocab=32000, n_ctx=4096, rope_theta=10000.0, eps=1e-5),
    # Llama-3-8B
    "llama-8b": dict(arch="llama", n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336,
                     n_vocab=128256, n_ctx=8192, rope_theta=500000.0, eps=1e-5),
    # GPT-J-6B
    "gptj-6b": dict(arch="gptj", n_embd=4096, n_layer=28, n_head=16, n_rot=64, n_ff=16384,
                    n_vocab=50400, n_ctx=2048, eps=1e-5),
    # small shapes for quick runs
    "llama-tiny": dict(arch="llama", n_embd=256, n_layer=4, n_head=8, n_head_kv=2, n_ff=704,
                       n_vocab=4096, n_ctx=512, rope_theta=10000.0, eps=1e-5),
    "gptj-tiny": dict(arch="gptj", n_embd=256, n_layer=4, n_head=8, n_rot=16, n_ff=1024,
                      n_vocab=4096, n_ctx=512, eps=1e-5),
}

TYPES = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}
POOL = 1 << 24  # random values are drawn once and tiled: the numbers do not matter for speed


class Source:
    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.normal = (rng.standard_normal(POOL, dtype=np.float32) * 0.02)
        self.bytes = rng.integers(0, 256, POOL, dtype=np.uint8)
        self.pos = 0

    def _take(self, pool, n):
        reps = -(-(n + self.pos) // len(pool))
        out = np.tile(pool, reps)[self.pos:self.pos + n] if reps > 1 else pool[self.pos:self.pos + n]
        self.pos = (self.pos + 7919) % len(pool)
        return out

    def tensor(self, shape, qtype, fill=None):
        """shape in numpy order (rows, cols); returns (array, raw_shape, raw_dtype)."""
        n = int(np.prod(shape))
        if fill is not None or qtype in (T.F32, T.F16):
            v = np.full(n, fill, np.float32) if fill is not None else self._take(self.normal, n)
            dt = np.float32 if qtype == T.F32 or fill is not None else np.float16
            return v.astype(dt).reshape(shape), None, None
        block, tsize = gguf.GGML_QUANT_SIZES[qtype]
        assert shape[-1] % block == 0, f"row length {shape[-1]} not a multiple of {block}"
        nblocks = n // block
        raw = self._take(self.bytes, nblocks * tsize).reshape(nblocks, tsize).copy()
        scale = np.float16(0.002 if qtype == T.Q4_0 else 0.0002)
        raw[:, 0:2] = np.frombuffer(scale.tobytes(), np.uint8)
        rows = int(np.prod(shape[:-1]))
        return raw.reshape(rows, (shape[-1] // block) * tsize), list(shape), qtype


def tensor_plan(p, wtype):
    """(name, numpy shape, type or None for f32, fill) in file order."""
    E, F, V, L = p["n_embd"], p["n_ff"], p["n_vocab"], p["n_layer"]
    plan = [("token_embd.weight", (V, E), wtype, None)]
    for i in range(L):
        b = f"blk.{i}."
        if p["arch"] == "llama":
            kv = E // p["n_head"] * p["n_head_kv"]
            plan += [(b + "attn_norm.weight", (E,), None, 1.0),
                     (b + "attn_q.weight", (E, E), wtype, None),
                     (b + "attn_k.weight", (kv, E), wtype, None),
                     (b + "attn_v.weight", (kv, E), wtype, None),
                     (b + "attn_output.weight", (E, E), wtype, None),
                     (b + "ffn_norm.weight", (E,), None, 1.0),
                     (b + "ffn_gate.weight", (F, E), wtype, None),
                     (b + "ffn_up.weight", (F, E), wtype, None),
                     (b + "ffn_down.weight", (E, F), wtype, None)]
        else:  # gptj: one layer norm, attention and MLP in parallel
            plan += [(b + "attn_norm.weight", (E,), None, 1.0),
                     (b + "attn_norm.bias", (E,), None, 0.0),
                     (b + "attn_q.weight", (E, E), wtype, None),
                     (b + "attn_k.weight", (E, E), wtype, None),
                     (b + "attn_v.weight", (E, E), wtype, None),
                     (b + "attn_output.weight", (E, E), wtype, None),
                     (b + "ffn_up.weight", (F, E), wtype, None),
                     (b + "ffn_up.bias", (F,), None, 0.0),
                     (b + "ffn_down.weight", (E, F), wtype, None),
                     (b + "ffn_down.bias", (E,), None, 0.0)]
    plan.append(("output_norm.weight", (E,), None, 1.0))
    if p["arch"] == "gptj":
        plan.append(("output_norm.bias", (E,), None, 0.0))
    plan.append(("output.weight", (V, E), wtype, None))
    if p["arch"] == "gptj":
        plan.append(("output.bias", (V,), None, 0.0))
    return plan


def byte_vocab(n_vocab):
    """A GPT-2 style byte-level vocabulary: the 256 byte symbols, then filler tokens."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    toks = [chr(c) for _, c in sorted(zip(bs, cs))]
    toks += ["\u0120\u0120"] + [f"<|extra_{i}|>" for i in range(n_vocab - 256 - 2)] + ["<|endoftext|>"]
    return toks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("type", choices=sorted(TYPES))
    ap.add_argument("out")
    ap.add_argument("--vocab-from", help="copy tokenizer.* metadata (and vocab size) from this GGUF")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    p = dict(PRESETS[a.preset])
    wtype = TYPES[a.type]

    w = gguf.GGUFWriter(a.out, p["arch"])
    w.add_name(f"random-{a.preset}-{a.type}")
    if a.vocab_from:
        donor = gguf.GGUFReader(a.vocab_from)
        for key, field in donor.fields.items():
            if key.startswith("tokenizer."):
                vt = field.types[0]
                if vt == gguf.GGUFValueType.ARRAY:
                    sub = field.types[1]
                    vals = [field.contents(i) for i in range(len(field.data))] if hasattr(field, "contents") else None
                    if vals is None:
                        vals = [bytes(field.parts[i]).decode() if sub == gguf.GGUFValueType.STRING else field.parts[i][0]
                                for i in field.data]
                    w.add_array(key, vals)
                elif vt == gguf.GGUFValueType.STRING:
                    w.add_string(key, bytes(field.parts[-1]).decode())
                else:
                    w.add_key_value(key, field.parts[-1][0], vt)
        p["n_vocab"] = len(donor.fields["tokenizer.ggml.tokens"].data)
    else:
        toks = byte_vocab(p["n_vocab"])
        w.add_tokenizer_model("gpt2")
        w.add_token_list(toks)
        w.add_token_merges(["\u0120 \u0120"])  # one merge: two spaces
        w.add_bos_token_id(len(toks) - 1)
        w.add_eos_token_id(len(toks) - 1)

    w.add_context_length(p["n_ctx"])
    w.add_embedding_length(p["n_embd"])
    w.add_block_count(p["n_layer"])
    w.add_feed_forward_length(p["n_ff"])
    w.add_head_count(p["n_head"])
    w.add_vocab_size(p["n_vocab"])
    if p["arch"] == "llama":
        w.add_head_count_kv(p["n_head_kv"])
        w.add_layer_norm_rms_eps(p["eps"])
        w.add_rope_freq_base(p["rope_theta"])
        w.add_rope_dimension_count(p["n_embd"] // p["n_head"])
    else:
        w.add_layer_norm_eps(p["eps"])
        w.add_rope_dimension_count(p["n_rot"])
    w.add_file_type({T.F32: 0, T.F16: 1, T.Q4_0: 2, T.Q8_0: 7}[wtype])

    src = Source(a.seed)
    plan = tensor_plan(p, wtype)
    for name, shape, qt, fill in plan:
        qt = qt if qt is not None else T.F32
        block, tsize = gguf.GGML_QUANT_SIZES[qt]
        nbytes = int(np.prod(shape)) // block * tsize
        w.add_tensor_info(name, shape, np.float32 if qt == T.F32 else np.float16, nbytes,
                          raw_dtype=None if qt in (T.F32, T.F16) else qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for i, (name, shape, qt, fill) in enumerate(plan):
        arr, _, _ = src.tensor(shape, qt if qt is not None else T.F32, fill)
        w.write_tensor_data(arr)
        total += arr.nbytes
        print(f"\r{i + 1}/{len(plan)} tensors, {total / 2**30:.2f} GiB", end="", file=sys.stderr)
    w.close()
    print(f"\nwrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
