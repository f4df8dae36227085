"""Llama-family (LlamaForCausalLM, MistralForCausalLM) HF config + checkpoint -> GGUF arch "llama".
HF stores Q/K rows per head as [first halves | second halves] for its rotate_half (NeoX-style)
rope; GGUF llama uses interleaved pairs (Meta's layout, llama.cpp's "normal" rope), so the rows of
each head are re-ordered: HF row (h, s, i) -> GGUF row (h, i, s) for s in {0,1}, i < head_dim/2.
"""
from __future__ import annotations

import math
import re
from typing import Callable, List

import numpy as np
import gguf

from .mapping import plan_from_checkpoint
from .writer import OUTTYPES, Source, TensorPlan

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
SKIP = re.compile(r"rotary_emb\.inv_freq$")


def hf_to_interleaved(w: np.ndarray, n_head: int) -> np.ndarray:
    """[n_head*head_dim, ...] rows in HF half-split order -> interleaved-pair order."""
    shape = w.shape
    return np.ascontiguousarray(
        w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape))


def interleaved_to_hf(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of hf_to_interleaved (used to compare with HF and to write llama2.c files)."""
    shape = w.shape
    return np.ascontiguousarray(
        w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape))


class LlamaParams:
    def __init__(self, cfg: dict, where: str):
        from .hf import get_rope_scaling, get_rope_theta, require_int

        def need(key):
            return require_int(cfg, key, where)
        self.n_embd = need("hidden_size")
        self.n_ff = need("intermediate_size")
        self.n_layer = need("num_hidden_layers")
        self.n_head = need("num_attention_heads")
        self.n_head_kv = int(cfg.get("num_key_value_heads") or self.n_head)
        self.n_vocab = need("vocab_size")
        self.head_dim = int(cfg.get("head_dim") or self.n_embd // self.n_head)
        self.n_ctx = int(cfg.get("max_position_embeddings") or 2048)
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.theta = get_rope_theta(cfg, 10000.0)
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        self.attn_bias = bool(cfg.get("attention_bias", False))
        self.mlp_bias = bool(cfg.get("mlp_bias", False))
        self.rope_scaling = get_rope_scaling(cfg)
        if self.n_head % self.n_head_kv:
            raise ValueError(f"{where}: num_attention_heads {self.n_head} is not a multiple of "
                             f"num_key_value_heads {self.n_head_kv}")
        if self.head_dim % 2:
            raise ValueError(f"{where}: head_dim {self.head_dim} is odd")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"{where}: hidden_act {act!r} is not supported (llama uses silu)")
        if self.rope_scaling and self.rope_scaling["rope_type"] not in ("linear", "llama3"):
            raise ValueError(f"{where}: rope_scaling type {self.rope_scaling['rope_type']!r} is "
                             "not supported (linear, llama3)")

    def expected(self) -> dict:
        e, hd = self.n_embd, self.head_dim
        out = {"token_embd.weight": (self.n_vocab, e)}
        for i in range(self.n_layer):
            b = f"blk.{i}."
            out[b + "attn_norm.weight"] = (e,)
            out[b + "attn_q.weight"] = (self.n_head * hd, e)
            out[b + "attn_k.weight"] = (self.n_head_kv * hd, e)
            out[b + "attn_v.weight"] = (self.n_head_kv * hd, e)
            out[b + "attn_output.weight"] = (e, self.n_head * hd)
            if self.attn_bias:
                out[b + "attn_q.bias"] = (self.n_head * hd,)
                out[b + "attn_k.bias"] = (self.n_head_kv * hd,)
                out[b + "attn_v.bias"] = (self.n_head_kv * hd,)
                out[b + "attn_output.bias"] = (e,)
            out[b + "ffn_norm.weight"] = (e,)
            out[b + "ffn_gate.weight"] = (self.n_ff, e)
            out[b + "ffn_up.weight"] = (self.n_ff, e)
            out[b + "ffn_down.weight"] = (e, self.n_ff)
            if self.mlp_bias:
                out[b + "ffn_gate.bias"] = (self.n_ff,)
                out[b + "ffn_up.bias"] = (self.n_ff,)
                out[b + "ffn_down.bias"] = (e,)
        out["output_norm.weight"] = (e,)
        out["output.weight"] = (self.n_vocab, e)
        return out

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        w.add_context_length(self.n_ctx)
        w.add_embedding_length(self.n_embd)
        w.add_block_count(self.n_layer)
        w.add_feed_forward_length(self.n_ff)
        w.add_rope_dimension_count(self.head_dim)
        w.add_head_count(self.n_head)
        w.add_head_count_kv(self.n_head_kv)
        w.add_layer_norm_rms_eps(self.eps)
        w.add_rope_freq_base(self.theta)
        w.add_vocab_size(self.n_vocab)
        if self.head_dim != self.n_embd // self.n_head:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        rs = self.rope_scaling
        if rs and rs["rope_type"] == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(rs["factor"]))

    def rope_freqs(self) -> np.ndarray:
        """Llama-3.1 frequency factors [head_dim/2] (GGUF rope_freqs.weight): 1 for short
        wavelengths, `factor` for long ones, smoothly blended in between."""
        rs = self.rope_scaling
        factor = float(rs["factor"])
        lo, hi = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
        old_ctx = float(rs.get("original_max_position_embeddings", 8192))
        freqs = 1.0 / (self.theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        out = []
        for f in freqs:
            wavelen = 2 * math.pi / f
            if wavelen < old_ctx / hi:
                out.append(1.0)
            elif wavelen > old_ctx / lo:
                out.append(factor)
            else:
                smooth = (old_ctx / wavelen - lo) / (hi - lo)
                out.append(1.0 / ((1 - smooth) / factor + smooth))
        return np.asarray(out, dtype=np.float32)


def _permuter(n_head: int) -> Callable[[Source], Source]:
    def fn(src: Source) -> Source:
        return Source(hf_to_interleaved(src.array, n_head), bf16=src.bf16)
    return fn


def plan(cfg: dict, ckpt, outtype: str, where: str) -> List[TensorPlan]:
    p = LlamaParams(cfg, where)
    expected = p.expected()
    transforms = {}
    for i in range(p.n_layer):
        for kind, nh in (("attn_q", p.n_head), ("attn_k", p.n_head_kv)):
            transforms[f"blk.{i}.{kind}.weight"] = _permuter(nh)
            transforms[f"blk.{i}.{kind}.bias"] = _permuter(nh)
    optional = ("output.weight",) if p.tied else ()
    plans = plan_from_checkpoint(ckpt, gguf.MODEL_ARCH.LLAMA, p.n_layer, expected, outtype,
                                 skip=SKIP, transforms=transforms, optional=optional)
    if p.tied:  # llama.cpp convention: a tied model has no output.weight; readers use token_embd
        plans = [t for t in plans if t.name != "output.weight"]
    if p.rope_scaling and p.rope_scaling["rope_type"] == "llama3":
        rf = p.rope_freqs()
        plans.insert(0, TensorPlan("rope_freqs.weight", rf.shape, gguf.GGMLQuantizationType.F32,
                                   lambda rf=rf: Source(rf), "rope_scaling llama3"))
    return p, plans


def file_type(outtype: str) -> int:
    return int(OUTTYPES[outtype][1])
