"""PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors or .bin) -> GGUF LoRA
adapter (llama.cpp's layout, see src/adapters/lora.h), for a base model given as a GGUF file or
a Hugging Face folder (config.json).

Per target module M: PEFT's lora_A.weight [r, n_in] becomes `<gguf name of M>.lora_a` and lora_B
[n_out, r] `.lora_b`, the same numpy shapes (ggml ne [n_in, r] and [r, n_out]). Llama's Q/K rows
are permuted to GGUF's interleaved rope order like the base weights are, which for W + s B A means
permuting B's rows only. The file has one alpha and readers scale each pair by alpha / r; modules
whose PEFT scale differs from that (rank_pattern / alpha_pattern, rsLoRA's alpha / sqrt(r)) get
the ratio folded into their B, which is exact.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import gguf

from ..convert.hf import _SafetensorsFile, _TorchFile, read_config
from ..convert.llama import hf_to_interleaved
from ..convert.writer import Source, TensorPlan, write_gguf

ADAPTER_OUTTYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16}
_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
_ARCH_ENUM = {"llama": gguf.MODEL_ARCH.LLAMA, "gptj": gguf.MODEL_ARCH.GPTJ}


class _Base:
    """What the conversion needs from the base model: architecture, heads and the shapes of its
    tensors (numpy order), from a GGUF file or an HF folder."""

    def __init__(self, base: str):
        p = Path(base)
        self.where = str(p)
        if p.is_file():
            from ..quantize import _open
            r = _open(p)
            f = r.fields.get("general.architecture")
            if f is None:
                raise ValueError(f"{p}: metadata key general.architecture is missing")
            self.arch = str(f.contents())
            if self.arch not in _ARCH_ENUM:
                raise ValueError(f"{p}: architecture {self.arch!r} has no LoRA support "
                                 f"(supported: {', '.join(_ARCH_ENUM)})")

            def key(k, default=None):
                fld = r.fields.get(f"{self.arch}.{k}")
                if fld is None:
                    if default is None:
                        raise ValueError(f"{p}: metadata key {self.arch}.{k} is missing")
                    return default
                return int(fld.contents())
            self.n_layer = key("block_count")
            self.n_head = key("attention.head_count")
            self.n_head_kv = key("attention.head_count_kv", self.n_head)
            self.shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in r.tensors}
        elif p.is_dir():
            from ..convert import gptj, llama
            from ..convert.hf_convert import detect_arch
            cfg = read_config(p)
            self.arch, _ = detect_arch(cfg, self.where)
            params = (llama.LlamaParams if self.arch == "llama" else gptj.GPTJParams)(cfg, self.where)
            self.n_layer, self.n_head = params.n_layer, params.n_head
            self.n_head_kv = getattr(params, "n_head_kv", params.n_head)
            self.shapes = params.expected()
        else:
            raise FileNotFoundError(2, "base model not found (a GGUF file or a Hugging Face folder)", str(p))


def _read_config(folder: Path) -> dict:
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(2, "not a PEFT adapter folder (adapter_config.json missing)", str(folder))
    try:
        cfg = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    where = str(path)
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise ValueError(f"{where}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key, bad, why in (("use_dora", True, "DoRA adds a magnitude vector"),
                          ("fan_in_fan_out", True, "Conv1D-style (transposed) weights"),
                          ("modules_to_save", "nonempty", "fully trained modules (not low-rank)")):
        v = cfg.get(key)
        if (bad == "nonempty" and v) or (bad is True and v is True):
            raise ValueError(f"{where}: {key} = {v!r} is not supported ({why} cannot be stored in a "
                             f"GGUF LoRA adapter)")
    if cfg.get("bias", "none") not in ("none", None):
        raise ValueError(f"{where}: bias = {cfg['bias']!r} is not supported (only bias='none')")
    return cfg


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches a module name that equals it or
    ends with '.' + key (keys are regular expressions)."""
    for k, v in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{k}", module):
            return v
    return default


def _weights(folder: Path):
    st, pt = folder / "adapter_model.safetensors", folder / "adapter_model.bin"
    if st.is_file():
        return _SafetensorsFile(st)
    if pt.is_file():
        return _TorchFile(pt)
    raise FileNotFoundError(2, "PEFT adapter weights missing (adapter_model.safetensors or "
                               "adapter_model.bin)", str(folder))


def plan_adapter(folder, base: str, outtype: str = "f32") -> Tuple[_Base, float, List[TensorPlan], dict]:
    """Checks everything and returns (base info, file alpha, tensor plans, adapter config)."""
    folder = Path(folder)
    if outtype not in ADAPTER_OUTTYPES:
        raise ValueError(f"outtype {outtype!r}: adapters are written as {' or '.join(ADAPTER_OUTTYPES)}")
    cfg = _read_config(folder)
    b = _Base(base)
    wf = _weights(folder)
    tmap = gguf.get_tensor_name_map(_ARCH_ENUM[b.arch], b.n_layer)
    r_cfg = int(cfg.get("r", 8))
    alpha_cfg = float(cfg.get("lora_alpha", r_cfg))
    rslora = bool(cfg.get("use_rslora", False))

    pairs: Dict[str, Dict[str, str]] = {}
    for name in wf.entries:
        m = _KEY.match(name)
        if not m or "lora_embedding" in name:
            raise ValueError(f"{wf.path}: tensor {name} is not a LoRA A/B weight of a linear layer "
                             f"(embedding adapters and other PEFT tensors are not supported)")
        pairs.setdefault(m.group("module"), {})[m.group("ab")] = name
    if not pairs:
        raise ValueError(f"{wf.path}: no lora_A / lora_B tensors")

    items = []
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            have = next(iter(ab.values()))
            raise ValueError(f"{wf.path}: tensor {have} has no matching lora_{'B' if 'A' in ab else 'A'}")
        hf = module[len(_PREFIX):] if module.startswith(_PREFIX) else module
        g = tmap.get_name(hf + ".weight", try_suffixes=(".weight",))
        if g is None or g not in b.shapes:
            raise ValueError(f"{wf.path}: module {hf} ({ab['A']}) is not a weight of the "
                             f"{b.arch} base {b.where}")
        n_out, n_in = b.shapes[g]
        sa, sb = tuple(wf.shape(ab["A"])), tuple(wf.shape(ab["B"]))
        r = sa[0] if len(sa) == 2 else -1
        if len(sa) != 2 or len(sb) != 2 or sa[1] != n_in or sb != (n_out, r):
            raise ValueError(f"{wf.path}: {ab['A']} {list(sa)} and {ab['B']} {list(sb)} do not fit "
                             f"{g} [{n_out}, {n_in}] of {b.where} (expected [r, {n_in}] and [{n_out}, r])")
        r_mod = int(_pattern_value(cfg.get("rank_pattern"), hf, r_cfg))
        if r_mod != r:
            raise ValueError(f"{wf.path}: {ab['A']} has rank {r}, adapter_config.json says {r_mod}")
        a_mod = float(_pattern_value(cfg.get("alpha_pattern"), hf, alpha_cfg))
        scale = a_mod / (math.sqrt(r) if rslora else r)
        items.append((g, ab, r, scale))

    # the file's alpha: the first module's scale * its rank, so the common case needs no folding
    alpha = items[0][3] * items[0][2]
    qt = ADAPTER_OUTTYPES[outtype]
    plans = []
    for g, ab, r, scale in sorted(items, key=lambda it: _tensor_order(it[0])):
        fold = scale * r / alpha  # 1.0 unless the module's scale differs from alpha / r
        perm = b.n_head if g.endswith(".attn_q.weight") else \
            b.n_head_kv if g.endswith(".attn_k.weight") else 0
        if b.arch != "llama":
            perm = 0

        def load_a(name=ab["A"]):
            return Source(_f32(wf.load(name)))

        def load_b(name=ab["B"], fold=fold, perm=perm):
            w = _f32(wf.load(name))
            if perm:
                w = hf_to_interleaved(w, perm)
            if fold != 1.0:
                w = (w.astype(np.float64) * fold).astype(np.float32)
            return Source(w)
        n_out, n_in = b.shapes[g]
        plans.append(TensorPlan(g + ".lora_a", (r, n_in), qt, load_a, f"{wf.path}:{ab['A']}"))
        plans.append(TensorPlan(g + ".lora_b", (n_out, r), qt, load_b, f"{wf.path}:{ab['B']}"))
    return b, alpha, plans, cfg


def _f32(src: Source) -> np.ndarray:
    a = src.array
    if src.bf16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(a, dtype=np.float32)


def _tensor_order(name: str):
    m = re.match(r"blk\.(\d+)\.(.*)", name)
    return (int(m.group(1)), m.group(2)) if m else (1 << 30, name)


def convert_peft(folder, out, base, outtype: str = "f32", progress: bool = False) -> str:
    """Writes `out` (atomically) from the PEFT adapter in `folder` for `base` (GGUF file or HF
    folder). Returns the output path. Errors name the file and tensor; nothing is written then."""
    b, alpha, plans, cfg = plan_adapter(folder, base, outtype)

    def add_metadata(w: gguf.GGUFWriter) -> None:
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        w.add_name(Path(folder).name)
        src = cfg.get("base_model_name_or_path")
        if src:
            w.add_string("general.base_model.0.name", str(src))
    return write_gguf(out, b.arch, add_metadata, plans, progress=progress, desc=Path(out).name)
