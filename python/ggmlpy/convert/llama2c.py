"""Reader for llama2.c checkpoints (version 0 .bin, fp32) and tokenizer.bin (feature-anchors.md
2.3-2.4), and their conversion plan to GGUF arch "llama". llama2.c stores wq/wk in Meta's layout and
rotates consecutive pairs (i, i+1) of each head, which is exactly the GGUF llama convention
(llama.cpp "normal" rope), so the weights are copied without any row permutation.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import List, Optional

import numpy as np
import gguf

from . import tokenizer_meta as tm
from .writer import OUTTYPES, Source, TensorPlan, choose_type

HEADER = struct.Struct("<7i")
RMS_EPS = 1e-5        # hard-coded in run.c
ROPE_BASE = 10000.0   # hard-coded in run.c


class NotLlama2c(ValueError):
    """The header is not a llama2.c header at all (as opposed to a llama2.c file that is broken)."""


class Llama2c:
    def __init__(self, path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(HEADER.size)
        if len(head) != HEADER.size:
            raise NotLlama2c(f"{self.path}: {size} bytes, too short for a llama2.c header (28)")
        (self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads, vocab,
         self.seq_len) = HEADER.unpack(head)
        self.shared = vocab > 0
        self.vocab_size = abs(vocab)
        for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"):
            v = getattr(self, k)
            if not 0 < v <= 1 << 24:
                raise NotLlama2c(f"{self.path}: header {k} = {v} is out of range (not a llama2.c "
                                 "version 0 checkpoint?)")
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads or (self.dim // self.n_heads) % 2:
            raise NotLlama2c(f"{self.path}: dim {self.dim}, n_heads {self.n_heads}, n_kv_heads "
                             f"{self.n_kv_heads} are inconsistent")
        self.head_size = self.dim // self.n_heads
        self.kv_dim = self.dim * self.n_kv_heads // self.n_heads
        d, h, L, kv, V = self.dim, self.hidden_dim, self.n_layers, self.kv_dim, self.vocab_size
        # (name, per-layer shape or None for a single tensor, numpy shape), in file order
        layout = [("tok", None, (V, d)), ("rms_att", L, (d,)), ("wq", L, (d, d)), ("wk", L, (kv, d)),
                  ("wv", L, (kv, d)), ("wo", L, (d, d)), ("rms_ffn", L, (d,)), ("w1", L, (h, d)),
                  ("w2", L, (d, h)), ("w3", L, (h, d)), ("rms_final", None, (d,)),
                  ("freq_real", None, (self.seq_len, self.head_size // 2)),
                  ("freq_imag", None, (self.seq_len, self.head_size // 2))]
        if not self.shared:
            layout.append(("wcls", None, (V, d)))
        self.arrays = {}
        off = HEADER.size
        for name, layers, shape in layout:
            n = int(np.prod(shape))
            self.arrays[name] = (off, layers, shape)
            off += 4 * n * (layers or 1)
        if size != off:
            raise ValueError(
                f"{self.path}: {size} bytes, but the header (dim {d}, hidden_dim {h}, n_layers {L}, "
                f"n_heads {self.n_heads}, n_kv_heads {self.n_kv_heads}, vocab_size {vocab}, seq_len "
                f"{self.seq_len}) implies {off} bytes" + (" (truncated)" if size < off else ""))

    def read(self, name: str, layer: Optional[int] = None) -> np.ndarray:
        off, layers, shape = self.arrays[name]
        n = int(np.prod(shape))
        if layers:
            off += 4 * n * layer
        arr = np.fromfile(self.path, dtype="<f4", count=n, offset=off)
        if arr.size != n:
            raise ValueError(f"{self.path}: {name} is truncated")
        return arr.reshape(shape)

    def plan(self, outtype: str) -> List[TensorPlan]:
        plans = []

        def add(gname, arr_name, layer=None):
            shape = self.arrays[arr_name][2]
            plans.append(TensorPlan(gname, shape, choose_type(shape, outtype),
                                    lambda a=arr_name, i=layer: Source(self.read(a, i)),
                                    f"{self.path.name}:{arr_name}" + ("" if layer is None else f"[{layer}]")))
        add("token_embd.weight", "tok")
        for i in range(self.n_layers):
            b = f"blk.{i}."
            for g, a in (("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"),
                         ("attn_v", "wv"), ("attn_output", "wo"), ("ffn_norm", "rms_ffn"),
                         ("ffn_gate", "w1"), ("ffn_down", "w2"), ("ffn_up", "w3")):
                add(b + g + ".weight", a, i)
        add("output_norm.weight", "rms_final")
        if not self.shared:
            add("output.weight", "wcls")
        return plans

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        w.add_context_length(self.seq_len)
        w.add_embedding_length(self.dim)
        w.add_block_count(self.n_layers)
        w.add_feed_forward_length(self.hidden_dim)
        w.add_rope_dimension_count(self.head_size)
        w.add_head_count(self.n_heads)
        w.add_head_count_kv(self.n_kv_heads)
        w.add_layer_norm_rms_eps(RMS_EPS)
        w.add_rope_freq_base(ROPE_BASE)
        w.add_vocab_size(self.vocab_size)

    @property
    def n_vocab(self):
        return self.vocab_size


def read_tokenizer_bin(path, vocab_size: int) -> tm.TokenizerMeta:
    """llama2.c tokenizer.bin -> SentencePiece-style metadata ("llama"): spaces back to U+2581,
    BOS/EOS ("\\n<s>\\n", "\\n</s>\\n") back to <s>/</s>, <0xNN> pieces typed BYTE."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for a llama2.c tokenizer.bin")
    pos = 4
    tokens, scores, types = [], [], []
    for i in range(vocab_size):
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated at token {i} of {vocab_size} (the checkpoint's "
                             "vocab_size)")
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        if n < 0 or pos + n > len(data):
            raise ValueError(f"{path}: token {i} has length {n} past the end of the file")
        raw = data[pos:pos + n]
        pos += n
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: token {i} is not valid UTF-8 ({raw!r})") from None
        if i == 1 and text.strip("\n") == "<s>":
            text, ttype = "<s>", tm.CONTROL
        elif i == 2 and text.strip("\n") == "</s>":
            text, ttype = "</s>", tm.CONTROL
        elif i == 0 and text == "<unk>":
            ttype = tm.UNKNOWN
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", text):
            ttype = tm.BYTE
        else:
            text, ttype = text.replace(" ", "\u2581"), tm.NORMAL
        tokens.append(text)
        scores.append(float(score))
        types.append(ttype)
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} bytes left after {vocab_size} tokens (vocab "
                         "size does not match the checkpoint)")
    return tm.TokenizerMeta(model="llama", pre="default", tokens=tokens, token_types=types,
                            scores=scores, bos=1, eos=2, unk=0, add_bos=True, add_eos=False,
                            add_space_prefix=True)


def file_type(outtype: str) -> int:
    return int(OUTTYPES[outtype][1])

