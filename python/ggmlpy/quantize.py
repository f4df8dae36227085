"""`ggmlpy quantize IN.gguf OUT.gguf TYPE [--allow-requantize]` and ggmlpy.quantize(): rewrite a GGUF
file with its 2-D weights in another tensor type. Metadata and tensor order are copied (general.file_type
is set to llama.cpp's llama_ftype for TYPE); quantization runs in C++ (_core.quantize / _core.dequantize).
Tensors are streamed one at a time through convert.writer.write_gguf (temp file + rename; on failure no
output is left). Already-quantized inputs are refused unless allow_requantize (the errors add up).
"""
from __future__ import annotations

import builtins
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT

from . import _core
from .convert.writer import Source, TensorPlan, write_gguf

# TYPE -> (base weight type, general.file_type). Pure K types map to llama.cpp's "_S" ftype (mostly that
# type); q4_k_m / q5_k_m are llama.cpp's mixtures (see _mixture_type).
FTYPES: Dict[str, tuple] = {
    "f32": (QT.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (QT.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (QT.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q4_0": (QT.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (QT.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
    "q5_0": (QT.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q5_1": (QT.Q5_1, gguf.LlamaFileType.MOSTLY_Q5_1),
    "q8_0": (QT.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q2_k": (QT.Q2_K, gguf.LlamaFileType.MOSTLY_Q2_K),
    "q3_k": (QT.Q3_K, gguf.LlamaFileType.MOSTLY_Q3_K_S),
    "q4_k": (QT.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_S),
    "q5_k": (QT.Q5_K, gguf.LlamaFileType.MOSTLY_Q5_K_S),
    "q6_k": (QT.Q6_K, gguf.LlamaFileType.MOSTLY_Q6_K),
    "q4_k_m": (QT.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_M),
    "q5_k_m": (QT.Q5_K, gguf.LlamaFileType.MOSTLY_Q5_K_M),
}
TYPE_NAMES = list(FTYPES)
_FLOAT_TYPES = (QT.F32, QT.F16, QT.BF16)
# A type whose block does not divide the row falls back to the nearest type with 32-wide blocks (as
# llama.cpp does; it uses IQ4_NL for q2_k/q3_k, which ggmlpy lacks, so q4_0), and then to f16.
_FALLBACK = {QT.Q2_K: QT.Q4_0, QT.Q3_K: QT.Q4_0, QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0}
CHUNK_ELEMS = 1 << 22  # rows are (de)quantized ~4M elements at a time


def _tname(qt: QT) -> str:
    return qt.name.lower()


def _block(qt: QT) -> int:
    return gguf.GGML_QUANT_SIZES[qt][0]


def _fit(qt: QT, ne0: int) -> QT:
    """qt if rows of ne0 elements are whole blocks of it, else the fallback chain down to F16."""
    while ne0 % _block(qt) != 0:
        qt = _FALLBACK.get(qt, QT.F16)
    return qt


def _use_more_bits(i_layer: int, n_layer: int) -> bool:
    """llama.cpp's Q4_K_M/Q5_K_M rule: the first and last eighth of the layers and every third layer
    in between get Q6_K for attn_v and ffn_down."""
    return (i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8
            or (i_layer - n_layer // 8) % 3 == 2)


_LAYER = re.compile(r"^blk\.(\d+)\.")


def _wanted_type(name: str, ndim: int, type_name: str, base: QT, has_output: bool,
                 n_attn_v: int, n_ffn_down: int) -> QT:
    """Type before the row-fit check. 1-D tensors and norms stay F32; other tensors get `base`,
    except for the output rule below (all quantized types) and the mixture rules."""
    if ndim < 2 or "norm" in name or not name.endswith(".weight"):
        return QT.F32
    if base in _FLOAT_TYPES:
        return base
    # Quantized types (as llama.cpp without --pure): the output projection, or the tied token
    # embedding that serves as output when output.weight is absent, gets Q6_K (Q8_0 stays Q8_0).
    if name == "output.weight" or (not has_output and name == "token_embd.weight"):
        return QT.Q8_0 if base == QT.Q8_0 else QT.Q6_K
    if type_name not in ("q4_k_m", "q5_k_m"):
        return base
    # Mixtures: attn_v / ffn_down get Q6_K on selected layers.
    m = _LAYER.match(name)
    if m:
        i = int(m.group(1))
        if name.endswith(".attn_v.weight") and _use_more_bits(i, n_attn_v):
            return QT.Q6_K
        if name.endswith(".ffn_down.weight") and _use_more_bits(i, n_ffn_down):
            return QT.Q6_K
    return base


@dataclass
class _Item:
    name: str
    shape: tuple        # numpy order (last axis = row)
    src_type: QT
    dst_type: QT
    data: np.ndarray    # the source bytes (a view of the memory-mapped input)


def _open(path: Path) -> gguf.GGUFReader:
    if not path.is_file():
        raise FileNotFoundError(2, "input file not found", str(path))
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:  # the gguf package raises ValueError/IndexError/... on bad or short files
        raise _core.GGUFError(f"{path}: not a readable GGUF file (truncated or corrupt?): {e}") from e
    for t in reader.tensors:
        nb = int(np.asarray(t.data).nbytes)
        if nb != int(t.n_bytes) or int(t.data_offset) + nb > os.path.getsize(path):
            raise _core.GGUFError(f"{path}: tensor {t.name} needs {int(t.n_bytes)} bytes at offset "
                                  f"{int(t.data_offset)}, the file is truncated")
    return reader


def _plan(reader: gguf.GGUFReader, path: Path, type_name: str, allow_requantize: bool,
          note: Callable[[str], None]) -> List[_Item]:
    base = FTYPES[type_name][0]
    names = [t.name for t in reader.tensors]
    has_output = "output.weight" in names
    n_attn_v = sum(n.endswith(".attn_v.weight") for n in names)
    n_ffn_down = sum(n.endswith(".ffn_down.weight") for n in names)
    items, fallbacks, requant = [], {}, []
    for t in reader.tensors:
        try:
            src_type = QT(int(t.tensor_type))
        except ValueError:
            raise _core.GGUFError(f"{path}: tensor {t.name} has unknown type id {int(t.tensor_type)}")
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        ndim = len(shape)
        want = _wanted_type(t.name, ndim, type_name, base, has_output, n_attn_v, n_ffn_down)
        dst = _fit(want, shape[-1])
        if dst != want:
            fallbacks.setdefault((_tname(want), _tname(dst), shape[-1]), []).append(t.name)
        if dst != src_type and src_type not in _FLOAT_TYPES:
            if not allow_requantize:
                raise ValueError(
                    f"{path}: tensor {t.name} is already quantized ({_tname(src_type)}); requantizing "
                    f"it to {_tname(dst)} loses quality, pass --allow-requantize "
                    f"(allow_requantize=True) to do it anyway, or quantize from an f32/f16/bf16 file")
            requant.append(t.name)
        items.append(_Item(t.name, shape, src_type, dst, t.data))
    for (want, got, ne0), tensors in fallbacks.items():
        note(f"{len(tensors)} tensor(s) with rows of {ne0} (not a multiple of the {want} block of "
             f"{_block(QT[want.upper()])}) use {got} instead, e.g. {tensors[0]}")
    if requant:
        names = set(requant)
        srcs = ", ".join(sorted({_tname(i.src_type) for i in items if i.name in names}))
        if base in _FLOAT_TYPES:
            note(f"warning: expanding {len(requant)} quantized tensor(s) ({srcs}) to {type_name}: the "
                 f"file gets bigger but keeps the quantization error of the input")
        else:
            note(f"warning: requantizing {len(requant)} tensor(s) from {srcs}: the new quantization "
                 f"error adds to the old one, so quality is lower than quantizing the original "
                 f"f16/f32 weights")
    return items


def _converter(it: _Item) -> Callable[[], Source]:
    """load() for the writer: the tensor's bytes in its output type (one tensor in memory)."""
    def load() -> Source:
        raw = np.asarray(it.data).reshape(-1).view(np.uint8)
        if it.dst_type == it.src_type:  # same type: copied byte for byte
            return Source(raw, raw=True)
        ne0 = it.shape[-1]
        rows = int(np.prod(it.shape[:-1], dtype=np.int64)) if len(it.shape) > 1 else 1
        src_rs = _core.row_size(int(it.src_type), ne0)
        dst_rs = _core.row_size(int(it.dst_type), ne0)
        src = raw.reshape(rows, src_rs)
        out = np.empty((rows, dst_rs), dtype=np.uint8)
        step = max(1, CHUNK_ELEMS // max(ne0, 1))
        for r in range(0, rows, step):
            n = min(step, rows - r)
            f32 = _core.dequantize(np.ascontiguousarray(src[r:r + n]), int(it.src_type), [n, ne0])
            out[r:r + n] = _core.quantize(f32, int(it.dst_type))
        return Source(out.reshape(-1), raw=True)
    return load


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, ftype: int,
                   note: Callable[[str], None]) -> None:
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # header fields; the writer adds the architecture itself
        if key == "general.file_type" and ftype is not None:
            continue
        vtype = VT(field.types[0])
        if vtype == VT.ARRAY:
            if len(field.types) > 2:
                note(f"metadata {key}: nested arrays are not copied")
                continue
            val = field.contents()
            if len(val) == 0:
                note(f"metadata {key}: empty array not copied (the gguf writer refuses them)")
                continue
            writer.add_key_value(key, val, vtype, sub_type=VT(field.types[1]))
        elif key == "general.alignment":
            writer.add_custom_alignment(int(field.contents()))
        else:
            writer.add_key_value(key, field.contents(), vtype)
    if ftype is not None:  # None: the input's own value (copied above) stays
        writer.add_key_value("general.file_type", int(ftype), VT.UINT32)


def quantize(input, output, type: str, allow_requantize: bool = False, progress: bool = False,
             log: Optional[Callable[[str], None]] = None) -> str:
    """Writes `output`: `input` with its weights in `type` (one of TYPE_NAMES). Returns the output
    path. Raises ValueError (bad type, quantized input without allow_requantize), ggmlpy.GGUFError
    (bad input file) or OSError; on any failure no output file is left. Bad arguments are a
    TypeError / ValueError naming the argument before anything is read."""
    from .model import _bool, _path
    input, output = _path("input", input), _path("output", output)
    if not isinstance(type, str):
        raise TypeError(f"type must be a str (one of {', '.join(TYPE_NAMES)}), got {builtins.type(type).__name__}")
    allow_requantize, progress = _bool("allow_requantize", allow_requantize), _bool("progress", progress)
    if log is not None and not callable(log):
        raise TypeError(f"log must be callable or None, got {builtins.type(log).__name__}")
    key = type.lower()
    if key not in FTYPES:
        raise ValueError(f"unknown quantization type {type!r}; valid types: {', '.join(TYPE_NAMES)}")
    inp, out = Path(input), Path(output)
    if out.exists() and inp.exists() and os.path.samefile(inp, out):
        raise ValueError(f"output {out} is the input file; write to another path")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise FileNotFoundError(2, "output folder does not exist", str(out.parent))
    if log is None:
        def log(msg):
            print(f"ggmlpy quantize: {msg}", file=sys.stderr)
    reader = _open(inp)
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise _core.GGUFError(f"{inp}: metadata key general.architecture is missing")
    arch = str(arch_field.contents())
    items = _plan(reader, inp, key, allow_requantize, log)
    plans = [TensorPlan(it.name, it.shape, it.dst_type, _converter(it), source=str(inp)) for it in items]
    ftype = FTYPES[key][1]
    return write_gguf(out, arch, lambda w: _copy_metadata(reader, w, ftype, log), plans,
                      progress=progress, desc=f"{key} {out.name}")


def run(args) -> int:
    # errors reach the main CLI, which prints `ggmlpy: error: ...`
    out = quantize(args.input, args.output, args.type, allow_requantize=args.allow_requantize,
                   progress=not args.no_progress)
    print(out)
    return 0


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="rewrite a GGUF model with its weights in another type",
                              description="Rewrite a GGUF model with its 2-D weights in TYPE; "
                              "metadata and tensor order are copied, norms and 1-D tensors stay f32.")
    p.add_argument("input", help="input .gguf")
    p.add_argument("output", help="output .gguf (written to a temp file, then renamed)")
    p.add_argument("type", metavar="TYPE", help="one of: " + ", ".join(TYPE_NAMES))
    p.add_argument("--allow-requantize", action="store_true",
                   help="allow already-quantized input tensors (lower quality than from f16/f32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
