"""`ggmlpy export-lora -m BASE --lora ADAPTER[:SCALE] ... -o OUT.gguf [--outtype TYPE]` and
export_lora(): a new model file with the adapters merged, W' = W + sum_k s_k B_k A_k.

One tensor at a time: a targeted weight is dequantized to f32 (in C++), gets each adapter's
low-rank product added, and is encoded in its output type: by default the type it had (a
quantized weight is quantized again, which adds that type's rounding to the merged weight), or
every weight in --outtype (quantize.py's type rules). Other tensors are copied byte for byte when
their type stays. Metadata is the base's. The file is written to a temp file and renamed.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

from .. import _core
from ..convert.writer import Source, TensorPlan, write_gguf
from ..quantize import FTYPES, CHUNK_ELEMS, _copy_metadata, _converter, _open, _plan
from .specs import lora_specs


@dataclass
class _Pair:
    a: np.ndarray      # f32 [r, n_in]
    b: np.ndarray      # f32 [n_out, r]
    scale: float       # user scale * alpha / r


def _f32(t) -> np.ndarray:
    """A GGUFReader tensor as f32 in numpy order (rows last)."""
    shape = tuple(int(x) for x in reversed(list(t.shape)))
    qt = QT(int(t.tensor_type))
    raw = np.asarray(t.data).reshape(-1).view(np.uint8)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    rs = _core.row_size(int(qt), shape[-1])
    return _core.dequantize(np.ascontiguousarray(raw.reshape(rows, rs)), int(qt), [rows, shape[-1]]).reshape(shape)


def _read_adapter(path: str, scale: float, arch: str, base_path: Path,
                  shapes: Dict[str, tuple]) -> Dict[str, _Pair]:
    r = _open(Path(path))

    def field(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()
    if field("general.type") != "adapter" or field("adapter.type") != "lora":
        raise ValueError(f"{path}: not a LoRA adapter (general.type {field('general.type')!r}, "
                         f"adapter.type {field('adapter.type')!r}; expected 'adapter' and 'lora')")
    if field("general.architecture") != arch:
        raise ValueError(f"{path}: adapter for architecture {field('general.architecture')!r}, but "
                         f"{base_path} is {arch!r}")
    alpha = float(field("adapter.lora.alpha") or 0.0)
    tensors = {t.name: t for t in r.tensors}
    out = {}
    for name, t in tensors.items():
        if name.endswith(".lora_b"):
            continue
        if not name.endswith(".lora_a"):
            raise ValueError(f"{path}: tensor {name} is neither <target>.lora_a nor <target>.lora_b")
        target = name[:-len(".lora_a")]
        tb = tensors.get(target + ".lora_b")
        if tb is None:
            raise ValueError(f"{path}: tensor {name} has no matching {target}.lora_b")
        if target not in shapes or len(shapes[target]) != 2:
            raise ValueError(f"{path}: tensor {name} targets {target}, which {base_path} does not have")
        a, b = _f32(t), _f32(tb)
        n_out, n_in = shapes[target]
        rank = a.shape[0]
        if a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise ValueError(f"{path}: {name} {list(a.shape)} and {target}.lora_b {list(b.shape)} do not fit "
                             f"{target} [{n_out}, {n_in}] of {base_path}")
        out[target] = _Pair(a, b, scale * alpha / rank if alpha else scale)
    for name in tensors:
        if name.endswith(".lora_b") and name[:-len(".lora_b")] not in out:
            raise ValueError(f"{path}: tensor {name} has no matching lora_a")
    return out


def _merged(it, pairs: List[_Pair]) -> Callable[[], Source]:
    """load() for the writer: the merged weight in its output type."""
    def load() -> Source:
        raw = np.asarray(it.data).reshape(-1).view(np.uint8)
        n_out, n_in = it.shape
        src_rs = _core.row_size(int(it.src_type), n_in)
        dst_rs = _core.row_size(int(it.dst_type), n_in)
        src = raw.reshape(n_out, src_rs)
        out = np.empty((n_out, dst_rs), dtype=np.uint8)
        step = max(1, CHUNK_ELEMS // n_in)
        for r0 in range(0, n_out, step):
            n = min(step, n_out - r0)
            w = _core.dequantize(np.ascontiguousarray(src[r0:r0 + n]), int(it.src_type), [n, n_in])
            for p in pairs:  # rows r0 .. r0+n of s B A, [n, r] @ [r, n_in]
                w += (p.scale * p.b[r0:r0 + n]) @ p.a
            if it.dst_type == QT.F32:
                out[r0:r0 + n] = np.ascontiguousarray(w, dtype=np.float32).view(np.uint8)
            else:
                out[r0:r0 + n] = _core.quantize(np.ascontiguousarray(w, dtype=np.float32), int(it.dst_type))
        return Source(out.reshape(-1), raw=True)
    return load


def export_lora(base, lora, output, outtype: Optional[str] = None, progress: bool = False,
                log: Optional[Callable[[str], None]] = None) -> str:
    """Writes `output`: `base` (GGUF) with the adapters of `lora` (a path, (path, scale) or a list,
    as Model's lora=) merged. outtype: None keeps each tensor's type, else one of quantize's
    TYPE_NAMES for every weight. Returns the output path; on any failure no output is left."""
    from ..model import _path
    base_p, out_p = Path(_path("base", base)), Path(_path("output", output))
    specs = lora_specs(lora)
    if not specs:
        raise ValueError("export_lora: no adapters given (lora is empty)")
    if outtype is not None:
        if not isinstance(outtype, str) or outtype.lower() not in FTYPES:
            raise ValueError(f"outtype {outtype!r}: expected one of {', '.join(FTYPES)} (or None: keep types)")
        outtype = outtype.lower()
    if out_p.exists() and base_p.exists() and os.path.samefile(base_p, out_p):
        raise ValueError(f"output {out_p} is the base model; write to another path")
    if log is None:
        def log(msg):
            print(f"ggmlpy export-lora: {msg}", file=sys.stderr)
    reader = _open(base_p)
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise _core.GGUFError(f"{base_p}: metadata key general.architecture is missing")
    arch = str(arch_field.contents())
    if reader.fields.get("general.type") is not None and reader.fields["general.type"].contents() == "adapter":
        raise ValueError(f"{base_p} is itself an adapter; -m/base must be a model")
    shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in reader.tensors}
    merge: Dict[str, List[_Pair]] = {}
    for path, scale in specs:
        for target, pair in _read_adapter(path, scale, arch, base_p, shapes).items():
            merge.setdefault(target, []).append(pair)

    # output types: quantize's rules for --outtype; otherwise each tensor keeps its own
    items = _plan(reader, base_p, outtype or "f32", True, lambda m: None)
    if outtype is None:
        for it in items:
            it.dst_type = it.src_type
    requant = sorted({it.dst_type.name.lower() for it in items
                      if it.name in merge and it.dst_type not in (QT.F32, QT.F16, QT.BF16)})
    if requant:
        log(f"merged weights are quantized again ({', '.join(requant)}): their rounding adds to the "
            f"merged weights (merge into an f16/f32 base, or pass --outtype f16, to avoid it)")
    plans = []
    for it in items:
        load = _merged(it, merge[it.name]) if it.name in merge else _converter(it)
        plans.append(TensorPlan(it.name, it.shape, it.dst_type, load, source=str(base_p)))
    log(f"merging {len(merge)} weight(s) from {len(specs)} adapter(s) into {out_p}")
    ftype = FTYPES[outtype][1] if outtype else None
    return write_gguf(out_p, arch, lambda w: _copy_metadata(reader, w, ftype, log), plans,
                      progress=progress, desc=f"export-lora {out_p.name}")
