"""Reader for ggml's legacy GPT-J .bin (examples/gpt-j; layout in feature-anchors.md 2.1) and its
conversion plan to GGUF arch "gptj". Tensor data sits at arbitrary (unaligned) offsets, so each
tensor is copied with a positioned read into a fresh, aligned array; quantized blocks are copied
byte for byte (their layout equals GGUF's for ggml quantization version 2, checked here).
"""
from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

from . import tokenizer_meta as tm
from .gptj import GPTJParams
from .mapping import plan_from_checkpoint
from .writer import OUTTYPES, Source, TensorPlan

log = logging.getLogger("ggmlpy.convert")

GGML_MAGIC = 0x67676D6C
QNT_VERSION_FACTOR = 1000
QNT_VERSION = 2  # block layouts of today's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 (f16 scales, no bit shuffle)
# tensor type ids of legacy files = ggml_type = GGUF type ids
TENSOR_TYPES = {0: QT.F32, 1: QT.F16, 2: QT.Q4_0, 3: QT.Q4_1, 6: QT.Q5_0, 7: QT.Q5_1, 8: QT.Q8_0,
                10: QT.Q2_K, 11: QT.Q3_K, 12: QT.Q4_K, 13: QT.Q5_K, 14: QT.Q6_K}
# header ftype (enum ggml_ftype) -> general.file_type (llama ftype numbering)
FILE_TYPES = {0: 0, 1: 1, 2: 2, 3: 3, 7: 7, 8: 8, 9: 9, 10: 10, 11: 11, 12: 14, 13: 16, 14: 18}
FTYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
               10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k"}


@dataclass
class LegacyTensor:
    name: str
    ne: List[int]        # ggml order: ne[0] innermost
    qtype: QT
    offset: int
    nbytes: int

    @property
    def shape(self) -> tuple:
        return tuple(reversed(self.ne))


class LegacyGPTJ:
    """Parses the whole header, vocabulary and tensor directory (not the data)."""

    def __init__(self, path):
        self.path = Path(path)
        size = self.path.stat().st_size
        self.file_size = size
        with open(self.path, "rb") as f:
            def read(n, what):
                b = f.read(n)
                if len(b) != n:
                    raise ValueError(f"{self.path}: truncated while reading {what} at byte "
                                     f"{f.tell() - len(b)} (file has {size} bytes)")
                return b
            magic, = struct.unpack("<I", read(4, "magic"))
            if magic != GGML_MAGIC:
                raise ValueError(f"{self.path}: bad magic 0x{magic:08x}, expected 0x{GGML_MAGIC:08x} "
                                 "(ggml GPT-J .bin)")
            (self.n_vocab, self.n_ctx, self.n_embd, self.n_head, self.n_layer, self.n_rot,
             ftype) = struct.unpack("<7i", read(28, "hyperparameters"))
            for k in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer", "n_rot"):
                if getattr(self, k) <= 0 or getattr(self, k) > 1 << 24:
                    raise ValueError(f"{self.path}: hyperparameter {k} = {getattr(self, k)} is "
                                     "out of range")
            if self.n_embd % self.n_head or self.n_rot > self.n_embd // self.n_head:
                raise ValueError(f"{self.path}: n_embd {self.n_embd}, n_head {self.n_head}, n_rot "
                                 f"{self.n_rot} are inconsistent")
            self.qnt_version = ftype // QNT_VERSION_FACTOR
            self.ftype = ftype % QNT_VERSION_FACTOR
            if self.ftype not in FILE_TYPES:
                raise ValueError(f"{self.path}: unknown file type {self.ftype}")
            n_vocab2, = struct.unpack("<i", read(4, "vocabulary size"))
            if n_vocab2 != self.n_vocab:
                raise ValueError(f"{self.path}: vocabulary size {n_vocab2} differs from n_vocab "
                                 f"{self.n_vocab} (not a GPT-J ggml file? legacy llama ggml files "
                                 "are not supported)")
            self.vocab: List[bytes] = []
            for i in range(self.n_vocab):
                n, = struct.unpack("<I", read(4, f"token {i}"))
                if n > 4096:
                    raise ValueError(f"{self.path}: token {i} has length {n}")
                self.vocab.append(read(n, f"token {i}"))
            self.tensors: Dict[str, LegacyTensor] = {}
            while True:
                head = f.read(12)
                if not head:
                    break
                if len(head) != 12:
                    raise ValueError(f"{self.path}: truncated tensor header at byte "
                                     f"{f.tell() - len(head)}")
                n_dims, name_len, ttype = struct.unpack("<3i", head)
                if not 1 <= n_dims <= 4 or not 0 < name_len <= 512:
                    raise ValueError(f"{self.path}: bad tensor header at byte {f.tell() - 12} "
                                     f"(n_dims {n_dims}, name length {name_len})")
                ne = list(struct.unpack(f"<{n_dims}i", read(4 * n_dims, "tensor dims")))
                name = read(name_len, "tensor name").decode("utf-8", errors="replace")
                if ttype not in TENSOR_TYPES:
                    raise ValueError(f"{self.path}: tensor {name} has unsupported type {ttype}")
                qt = TENSOR_TYPES[ttype]
                if qt not in (QT.F32, QT.F16) and self.qnt_version != QNT_VERSION:
                    raise ValueError(
                        f"{self.path}: tensor {name} is {qt.name} from ggml quantization version "
                        f"{self.qnt_version}; only version {QNT_VERSION} has today's block layout "
                        "(older files used other scales/bit orders). Re-quantize it from an f16 file.")
                if any(d <= 0 for d in ne):
                    raise ValueError(f"{self.path}: tensor {name} has dims {ne}")
                block, tsize = gguf.GGML_QUANT_SIZES[qt]
                if ne[0] % block:
                    raise ValueError(f"{self.path}: tensor {name} row of {ne[0]} is not a multiple "
                                     f"of the {qt.name} block ({block})")
                nbytes = math.prod(ne) // block * tsize  # exact: np.prod wraps at 2**63 (to 0 or < 0)
                off = f.tell()
                if off + nbytes > size:
                    raise ValueError(f"{self.path}: tensor {name} needs {nbytes} bytes at offset "
                                     f"{off} but the file ends at {size} (truncated)")
                if name in self.tensors:
                    raise ValueError(f"{self.path}: tensor {name} appears twice")
                self.tensors[name] = LegacyTensor(name, ne, qt, off, nbytes)
                f.seek(nbytes, 1)
        if not self.tensors:
            raise ValueError(f"{self.path}: no tensors after the vocabulary (truncated)")

    # checkpoint-like interface for mapping.plan_from_checkpoint
    @property
    def folder(self):
        return self.path

    def names(self):
        return list(self.tensors)

    def __contains__(self, name):
        return name in self.tensors

    def shape(self, name):
        return self.tensors[name].shape

    def describe(self, name):
        return f"{self.path.name}:{name}"

    def read_raw(self, name) -> np.ndarray:
        t = self.tensors[name]
        arr = np.fromfile(self.path, dtype=np.uint8, count=t.nbytes, offset=t.offset)
        if arr.size != t.nbytes:
            raise ValueError(f"{self.path}: tensor {name} is truncated")
        return arr

    def load(self, name) -> Source:
        """Float32 values (dequantized if needed), numpy shape."""
        t = self.tensors[name]
        raw = self.read_raw(name)
        if t.qtype == QT.F32:
            return Source(raw.view(np.float32).reshape(t.shape))
        if t.qtype == QT.F16:
            return Source(raw.view(np.float16).reshape(t.shape))
        return Source(gguf.quants.dequantize(raw.reshape(t.shape[:-1] + (-1,)), t.qtype)
                      .reshape(t.shape))

    def params(self) -> GPTJParams:
        fc_in = self.tensors.get("transformer.h.0.mlp.fc_in.weight")
        n_ff = fc_in.ne[1] if fc_in is not None and len(fc_in.ne) == 2 else 4 * self.n_embd
        cfg = {"n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head,
               "vocab_size": self.n_vocab, "n_positions": self.n_ctx, "rotary_dim": self.n_rot,
               "n_inner": n_ff, "layer_norm_epsilon": 1e-5}
        return GPTJParams(cfg, str(self.path))


def plan(model: LegacyGPTJ, outtype: Optional[str]) -> List[TensorPlan]:
    """outtype None keeps each tensor's stored type (quantized blocks copied as they are);
    1-D tensors are always written as F32."""
    p = model.params()
    plans = plan_from_checkpoint(model, gguf.MODEL_ARCH.GPTJ, p.n_layer, p.expected(),
                                 outtype or "f32", skip=re.compile(r"attn\.(masked_)?bias$"))
    if outtype is None:
        for t in plans:
            hf = t.source[len(model.path.name) + 1:]
            stored = model.tensors[hf].qtype
            if len(t.shape) >= 2:
                t.qtype = stored
                t.load = (lambda hf=hf: Source(model.read_raw(hf), raw=True))
    return p, plans


def file_type(model: LegacyGPTJ, outtype: Optional[str]) -> int:
    return FILE_TYPES[model.ftype] if outtype is None else int(OUTTYPES[outtype][1])


def _find_tokenizer_source(path: Path, tokenizer: Optional[str]):
    cands = []
    if tokenizer:
        t = Path(tokenizer)
        if not t.exists():
            raise FileNotFoundError(f"tokenizer {tokenizer}: no such file or folder")
        cands = [t] if t.is_file() else [t / "tokenizer.json", t / "merges.txt"]
    else:
        cands = [path.parent / "tokenizer.json", path.parent / "merges.txt"]
    for c in cands:
        if c.is_file():
            return c
    if tokenizer:
        raise FileNotFoundError(f"tokenizer {tokenizer}: no tokenizer.json or merges.txt")
    return None


def tokenizer(model: LegacyGPTJ, tokenizer_path: Optional[str] = None) -> tm.TokenizerMeta:
    """GPT-2 BPE metadata. The file's vocabulary has no merges: with a tokenizer.json or merges.txt
    (given, or found beside the file) it is exact; otherwise marked approximate."""
    b2u = tm.bytes_to_unicode()
    tokens = ["".join(b2u[b] for b in t) for t in model.vocab]
    types = [tm.CONTROL if re.fullmatch(r"<\|.*\|>", t) else tm.NORMAL for t in tokens]
    meta = tm.TokenizerMeta(model="gpt2", pre="gpt2", tokens=tokens, token_types=types,
                            add_bos=False)
    src = _find_tokenizer_source(model.path, tokenizer_path)
    if src is None:
        log.warning("%s has no BPE merges and no tokenizer.json/merges.txt was given or found beside "
                    "it: tokenization will be approximate (pass --tokenizer PATH for exact ids)",
                    model.path)
        meta.approximate = True
    elif src.name.endswith(".json"):
        ref = tm.bpe_from_tokenizer_json(src)
        for i, (a, b) in enumerate(zip(ref.tokens, tokens)):
            if a != b and ref.token_types[i] != tm.UNUSED:
                raise ValueError(f"{src} does not match the vocabulary of {model.path}: token {i} "
                                 f"is {a!r} there and {b!r} in the .bin")
        meta.merges = ref.merges
        meta.pre = ref.pre
        for i in range(len(tokens)):  # ids the tokenizer cannot produce are unused
            meta.token_types[i] = ref.token_types[i] if i < len(ref.tokens) else tm.UNUSED
    else:
        merges = tm.read_merges_txt(src)
        known = set(tokens)
        for m in merges[:100000]:
            a, b = m.split(" ")
            if a not in known or b not in known or a + b not in known:
                raise ValueError(f"{src} does not match the vocabulary of {model.path}: merge "
                                 f"{m!r} uses tokens missing from it")
        meta.merges = merges
    eot = tokens.index("<|endoftext|>") if "<|endoftext|>" in tokens else None
    meta.bos = meta.eos = meta.unk = eot
    return meta
