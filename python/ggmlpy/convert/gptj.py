"""GPTJForCausalLM HF config + checkpoint -> GGUF arch "gptj". GPT-J's rotary already rotates
interleaved pairs (HF rotate_every_two) on the first rotary_dim dims of each head, which is the
"normal" GGUF rope mode, so no row permutation is needed. A tied model still gets output.weight
(read from the embedding), so GPT-J readers always find it; output.bias is always present.
"""
from __future__ import annotations

import re
from typing import List

import gguf

from .mapping import plan_from_checkpoint
from .writer import TensorPlan

ARCHITECTURES = ("GPTJForCausalLM",)
SKIP = re.compile(r"attn\.(masked_)?bias$|rotary_emb|embed_positions")
ROPE_BASE = 10000.0  # fixed in GPT-J (HF create_sinusoidal_positions, ggml's gpt-j example)


class GPTJParams:
    def __init__(self, cfg: dict, where: str):
        from .hf import require_int

        def need(key):
            return require_int(cfg, key, where)
        self.n_embd = need("n_embd")
        self.n_layer = need("n_layer")
        self.n_head = need("n_head")
        self.n_vocab = need("vocab_size")
        self.n_ctx = int(cfg.get("n_positions") or 2048)
        self.n_ff = int(cfg.get("n_inner") or 4 * self.n_embd)
        self.eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        if self.n_embd % self.n_head:
            raise ValueError(f"{where}: n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(cfg.get("rotary_dim") or self.head_dim)
        if self.n_rot % 2 or self.n_rot > self.head_dim:
            raise ValueError(f"{where}: rotary_dim {self.n_rot} must be even and <= head_dim "
                             f"{self.head_dim}")
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        act = cfg.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            raise ValueError(f"{where}: activation_function {act!r} is not supported (GPT-J uses "
                             "the tanh-approximated GELU, gelu_new)")

    def expected(self) -> dict:
        e, f = self.n_embd, self.n_ff
        out = {"token_embd.weight": (self.n_vocab, e)}
        for i in range(self.n_layer):
            b = f"blk.{i}."
            out[b + "attn_norm.weight"] = (e,)
            out[b + "attn_norm.bias"] = (e,)
            for k in ("attn_q", "attn_k", "attn_v", "attn_output"):
                out[b + k + ".weight"] = (e, e)
            out[b + "ffn_up.weight"] = (f, e)
            out[b + "ffn_up.bias"] = (f,)
            out[b + "ffn_down.weight"] = (e, f)
            out[b + "ffn_down.bias"] = (e,)
        out["output_norm.weight"] = (e,)
        out["output_norm.bias"] = (e,)
        out["output.weight"] = (self.n_vocab, e)
        out["output.bias"] = (self.n_vocab,)
        return out

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        w.add_context_length(self.n_ctx)
        w.add_embedding_length(self.n_embd)
        w.add_block_count(self.n_layer)
        w.add_feed_forward_length(self.n_ff)
        w.add_rope_dimension_count(self.n_rot)
        w.add_head_count(self.n_head)
        w.add_layer_norm_eps(self.eps)
        w.add_rope_freq_base(ROPE_BASE)
        w.add_vocab_size(self.n_vocab)


def plan(cfg: dict, ckpt, outtype: str, where: str) -> List[TensorPlan]:
    p = GPTJParams(cfg, where)
    aliases = {"output.weight": "transformer.wte.weight"} if p.tied else {}
    plans = plan_from_checkpoint(ckpt, gguf.MODEL_ARCH.GPTJ, p.n_layer, p.expected(), outtype,
                                 skip=SKIP, aliases=aliases)
    return p, plans
