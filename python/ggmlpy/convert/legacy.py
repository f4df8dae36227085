"""Legacy model files -> GGUF. detect_format() tells GGUF, ggml GPT-J .bin (magic "lmgg") and
llama2.c version 0 .bin (no magic: header values whose implied size equals the file size) apart.
convert_legacy() writes a GGUF; ensure_gguf() is what loaders call: a GGUF path comes back as is, a
legacy file is converted once into an aligned GGUF in a cache folder keyed by the source path, size
and mtime (and those of its tokenizer), so unaligned legacy tensors are never used in place.
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Optional

import gguf

from . import legacy_gptj, llama2c
from .writer import OUTTYPES, write_gguf

CACHE_VERSION = "1"  # bump when the conversion output changes


def detect_format(path) -> str:
    """"gguf", "ggml-gptj" or "llama2c"; ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(36)
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) >= 4:
        magic, = struct.unpack("<I", head[:4])
        if magic == legacy_gptj.GGML_MAGIC:
            return "ggml-gptj"
        if head[:4] in (b"fmgg", b"tjgg"):
            raise ValueError(f"{path}: legacy llama GGMF/GGJT file; not supported (convert it with "
                             "llama.cpp's convert_llama_ggml_to_gguf.py)")
    try:
        llama2c.Llama2c(path)
        return "llama2c"
    except llama2c.NotLlama2c:   # its header check's detail means nothing for an unrelated file
        raise ValueError(f"{path}: not a GGUF, ggml GPT-J .bin or llama2.c .bin file") from None


def _llama2c_tokenizer(path: Path, tokenizer: Optional[str]) -> Path:
    t = Path(tokenizer) if tokenizer else path.parent / "tokenizer.bin"
    if t.is_dir():
        t = t / "tokenizer.bin"
    if not t.is_file():
        raise FileNotFoundError(f"llama2.c checkpoint {path} needs its tokenizer.bin ({t} not found; "
                                "pass --tokenizer PATH)")
    return t


def convert_legacy(path, out, outtype: Optional[str] = None, tokenizer: Optional[str] = None,
                   progress: bool = True) -> str:
    """outtype None: keep the stored types (GPT-J .bin) / f32 (llama2.c)."""
    path = Path(path)
    if outtype is not None and outtype not in OUTTYPES:
        raise ValueError(f"outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    fmt = detect_format(path)
    if fmt == "gguf":
        raise ValueError(f"{path} is already GGUF")
    if fmt == "ggml-gptj":
        model = legacy_gptj.LegacyGPTJ(path)
        params, plans = legacy_gptj.plan(model, outtype)
        tok = legacy_gptj.tokenizer(model, tokenizer)
        tok.pad_to(params.n_vocab)
        ftype = legacy_gptj.file_type(model, outtype)
        quantized = any(t.qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                                        gguf.GGMLQuantizationType.BF16) for t in plans)
        arch, add_hparams = "gptj", params.add_metadata
    else:
        model = llama2c.Llama2c(path)
        tok = llama2c.read_tokenizer_bin(_llama2c_tokenizer(path, tokenizer), model.vocab_size)
        plans = model.plan(outtype or "f32")
        ftype = llama2c.file_type(outtype or "f32")
        quantized = outtype == "q8_0"
        arch, add_hparams = "llama", model.add_metadata

    def add_metadata(w):
        w.add_name(path.stem)
        add_hparams(w)
        w.add_file_type(int(ftype))
        if quantized:
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok.write(w)
    return write_gguf(out, arch, add_metadata, plans, progress=progress, desc=Path(out).name)


def default_cache_dir() -> Path:
    if os.environ.get("GGMLPY_CACHE_DIR"):
        return Path(os.environ["GGMLPY_CACHE_DIR"]) / "converted"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ggmlpy" / "converted"


def _stat_key(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def ensure_gguf(path, cache_dir=None, tokenizer: Optional[str] = None,
                progress: bool = False) -> str:
    """Path of a GGUF for `path`: itself if it is GGUF, else a cached conversion (made if needed).
    tokenizer: merges.txt/tokenizer.json for a GPT-J .bin, tokenizer.bin for llama2.c (default:
    looked up beside the file)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "gguf":
        return str(path)
    key = [CACHE_VERSION, fmt, _stat_key(path)]
    if fmt == "llama2c":
        key.append(_stat_key(_llama2c_tokenizer(path, tokenizer)))
    else:
        src = legacy_gptj._find_tokenizer_source(path, tokenizer)
        key.append(_stat_key(src) if src is not None else "approximate")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{path.stem}-{digest}.gguf"
    if out.is_file():
        return str(out)
    return convert_legacy(path, out, None, tokenizer, progress=progress)
