"""Streaming GGUF writer: metadata and tensor infos are written first (from shapes alone), then each
tensor is loaded, converted in row chunks and written, so peak memory is about one source tensor.
Output goes to a temp file beside the target and is renamed at the end; on any failure the temp
file is removed and the exception propagates. Uses the `gguf` package for the header/KV/info bytes.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

# --outtype name -> (GGUF type for 2-D weights, general.file_type)
OUTTYPES = {
    "f32": (QT.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (QT.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (QT.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (QT.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}

CHUNK_ELEMS = 1 << 22  # rows are converted ~4M elements at a time (16 MB of f32)


@dataclass
class Source:
    """A loaded source tensor. `array` is float32/float16/float64, or uint16 holding bfloat16 bits
    when bf16 is True, or (raw=True) uint8 bytes already encoded in the output type."""
    array: np.ndarray
    bf16: bool = False
    raw: bool = False


@dataclass
class TensorPlan:
    name: str                      # GGUF tensor name
    shape: tuple                   # numpy (row-major) shape; GGUF ne is this reversed
    qtype: QT                      # type written to the file
    load: Callable[[], Source]     # called once, while writing
    source: str = ""               # where it comes from (for error messages)


def choose_type(shape: Sequence[int], outtype: str) -> QT:
    """1-D tensors (norms, biases) stay F32; 2-D weights get the outtype. Q8_0 needs rows that are a
    multiple of its 32-weight block; other rows fall back to F16 (as llama.cpp's converter does)."""
    wtype = OUTTYPES[outtype][0]
    if len(shape) < 2:
        return QT.F32
    if wtype == QT.Q8_0 and shape[-1] % 32 != 0:
        return QT.F16
    return wtype


def nbytes_of(shape: Sequence[int], qtype: QT) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if shape[-1] % block != 0:
        raise ValueError(f"row of {shape[-1]} elements is not a multiple of the {qtype.name} block "
                         f"size {block}")
    return n // block * size


def _to_f32(chunk: np.ndarray, bf16: bool) -> np.ndarray:
    if bf16:
        return (chunk.astype(np.uint32) << 16).view(np.float32)
    return chunk.astype(np.float32, copy=False)


def _encode(chunk_f32: np.ndarray, qtype: QT) -> np.ndarray:
    if qtype == QT.F32:
        return chunk_f32
    if qtype == QT.F16:
        return chunk_f32.astype(np.float16)
    return gguf.quants.quantize(chunk_f32, qtype)


def _write_tensor(fout, plan: TensorPlan, src: Source, expected_nbytes: int, bar) -> None:
    arr = src.array
    if src.raw:
        if arr.nbytes != expected_nbytes:
            raise ValueError(f"tensor {plan.name} ({plan.source}): {arr.nbytes} bytes of "
                             f"{plan.qtype.name} data, expected {expected_nbytes}")
        fout.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        if bar is not None:
            bar.update(arr.nbytes)
        return
    if tuple(arr.shape) != tuple(plan.shape):
        raise ValueError(f"tensor {plan.name} ({plan.source}): shape {tuple(arr.shape)}, "
                         f"expected {tuple(plan.shape)}")
    ne0 = plan.shape[-1] if plan.shape else 1
    rows = arr.reshape(-1, ne0)
    step = max(1, CHUNK_ELEMS // max(ne0, 1))
    written = 0
    for r in range(0, rows.shape[0], step):
        enc = _encode(_to_f32(rows[r:r + step], src.bf16), plan.qtype)
        enc = np.ascontiguousarray(enc)
        fout.write(memoryview(enc).cast("B"))
        written += enc.nbytes
        if bar is not None:
            bar.update(enc.nbytes)
    if written != expected_nbytes:  # cannot happen unless the encoder disagrees with the sizes
        raise ValueError(f"tensor {plan.name}: wrote {written} bytes, expected {expected_nbytes}")


@contextlib.contextmanager
def atomic_output(path: Path, suffix: str = ".tmp"):
    """Yields a temp path beside `path`; renamed to `path` when the block ends without an
    exception, removed otherwise."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _pad(fout, alignment: int) -> None:
    pos = fout.tell()
    pad = (-pos) % alignment
    if pad:
        fout.write(b"\0" * pad)


def write_gguf(path: str | os.PathLike, arch: str, add_metadata: Callable[[gguf.GGUFWriter], None],
               tensors: Sequence[TensorPlan], progress: bool = True,
               desc: Optional[str] = None) -> str:
    """Writes `path` atomically. add_metadata(writer) adds every KV pair (the architecture key is
    already there). Tensors are written in the given order. Returns the final path."""
    path = Path(path)
    out_dir = path.parent if str(path.parent) else Path(".")
    if not out_dir.is_dir():
        raise FileNotFoundError(f"output folder {out_dir} does not exist")
    names = set()
    for t in tensors:
        if t.name in names:
            raise ValueError(f"tensor {t.name} planned twice")
        names.add(t.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    writer = None
    bar = None
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        add_metadata(writer)
        sizes = []
        for t in tensors:
            nb = nbytes_of(t.shape, t.qtype) if t.shape else 4
            sizes.append(nb)
            if t.qtype in (QT.F32, QT.F16):
                dt = np.float32 if t.qtype == QT.F32 else np.float16
                writer.add_tensor_info(t.name, t.shape, np.dtype(dt), nb)
            else:  # byte shape + raw type: the gguf package turns it back into element counts
                bshape = gguf.quants.quant_shape_to_byte_shape(t.shape, t.qtype)
                writer.add_tensor_info(t.name, bshape, np.dtype(np.uint8), nb, raw_dtype=t.qtype)
        writer.write_header_to_file(Path(tmp))
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        fout = writer.fout[0]
        align = writer.data_alignment
        if progress and tensors:
            from tqdm import tqdm
            bar = tqdm(total=sum(sizes), unit="B", unit_scale=True, desc=desc or path.name)
        for t, nb in zip(tensors, sizes):
            _pad(fout, align)
            src = t.load()
            _write_tensor(fout, t, src, nb, bar)
            del src
        _pad(fout, align)
        writer.close()
        writer = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a model file is normally readable
        os.replace(tmp, path)
        return str(path)
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        if bar is not None:
            bar.close()
