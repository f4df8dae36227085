"""Hugging Face checkpoint access for the converters: resolve SOURCE (local folder or Hub repo id),
read config.json, and list/load weights one tensor at a time from safetensors (single or sharded
with model.safetensors.index.json) or PyTorch .bin (single or sharded). Safetensors are read with
positioned reads and PyTorch .bin (zip) storages are read from the zip on demand with a restricted
unpickler (no torch needed, no code from the file runs), so resident memory stays about one tensor.
"""
from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .writer import Source

HUB_PATTERNS = ["*.json", "*.safetensors", "*.bin", "tokenizer.model", "*.txt", "*.jinja",
                "*.tiktoken"]

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}


def resolve_source(source: str, revision: Optional[str] = None, vocab_only: bool = False) -> Path:
    """A local folder is used as is; otherwise SOURCE must look like a Hub repo id ("org/name")
    and is fetched with huggingface_hub.snapshot_download (cache, revision, HF_HUB_OFFLINE)."""
    p = Path(source).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise ValueError(f"{source} is a file, expected a Hugging Face model folder or repo id")
    parts = source.split("/")
    if len(parts) != 2 or not all(parts) or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such folder, and not a Hub repo id (org/name)")
    from ..hub import hf_snapshot
    patterns = [x for x in HUB_PATTERNS if not (vocab_only and x in ("*.safetensors", "*.bin"))]
    return hf_snapshot(source, patterns, revision=revision)


def read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a Hugging Face model folder)")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg}: not valid JSON ({e})") from None


def require_int(cfg: dict, key: str, where: str) -> int:
    """cfg[key] as int; ValueError naming the config file and key when it is missing."""
    if cfg.get(key) is None:
        raise ValueError(f"{where}: config.json has no {key}")
    return int(cfg[key])


def get_rope_theta(cfg: dict, default: float) -> float:
    """rope_theta lives at the top level (transformers <5) or in rope_parameters (>=5)."""
    if cfg.get("rope_theta") is not None:
        return float(cfg["rope_theta"])
    rp = cfg.get("rope_parameters") or {}
    if isinstance(rp, dict) and rp.get("rope_theta") is not None:
        return float(rp["rope_theta"])
    return float(default)


def get_rope_scaling(cfg: dict) -> Optional[dict]:
    rs = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if not isinstance(rs, dict):
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return None
    return dict(rs, rope_type=kind)


class _SafetensorsFile:
    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError(f"{path}: safetensors header of {n} bytes exceeds the file")
            try:
                meta = json.loads(f.read(n))
            except ValueError as e:
                raise ValueError(f"{path}: bad safetensors header ({e})") from None
        self.base = 8 + n
        self.entries: Dict[str, Tuple[str, tuple, int, int]] = {}
        for name, info in meta.items():
            if name == "__metadata__":
                continue
            dt = info["dtype"]
            if dt not in _ST_DTYPES:
                raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
            b, e = info["data_offsets"]
            shape = tuple(int(x) for x in info["shape"])
            want = int(np.prod(shape, dtype=np.int64)) * np.dtype(_ST_DTYPES[dt]).itemsize
            if e - b != want or self.base + e > size:
                raise ValueError(f"{path}: tensor {name} data [{b}, {e}) does not fit its shape "
                                 f"{list(shape)} {dt} or the file size {size} (truncated?)")
            self.entries[name] = (dt, shape, b, e)

    def shape(self, name):
        return self.entries[name][1]

    def load(self, name) -> Source:
        dt, shape, b, e = self.entries[name]
        npdt = np.dtype(_ST_DTYPES[dt])
        count = (e - b) // npdt.itemsize
        arr = np.fromfile(self.path, dtype=npdt.newbyteorder("<"), count=count,
                          offset=self.base + b)
        if arr.size != count:
            raise ValueError(f"{self.path}: tensor {name} is truncated")
        return Source(arr.reshape(shape), bf16=(dt == "BF16"))


_TORCH_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "BFloat16Storage": np.uint16,
                   "DoubleStorage": np.float64, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), tuple(size), tuple(stride)


class _StorageType:
    def __init__(self, name):
        if name not in _TORCH_STORAGES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.name, self.dtype = name, np.dtype(_TORCH_STORAGES[name])


class _TorchUnpickler(pickle.Unpickler):
    """Reads a torch.save'd state dict's pickle without torch and without loading data: tensors
    become _LazyTensor records (storage key, dtype, offset, shape, stride). Only the globals a
    state dict needs are allowed, so no code from the file runs."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: _LazyTensor(storage, offset, size, stride)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return (pid[1], str(pid[2]))


class _TorchFile:
    """PyTorch .bin (torch.save zip): each tensor's bytes are read from its storage entry in the
    zip on demand, so memory stays about one tensor. Old (non-zip) pickles fall back to torch.load."""

    def __init__(self, path: Path):
        self.path = path
        self.sd = None
        if not zipfile.is_zipfile(path):
            import torch
            try:
                self.sd = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as e:
                raise ValueError(f"{path}: cannot read PyTorch checkpoint ({e})") from None
            self.entries = {k: tuple(v.shape) for k, v in self.sd.items() if hasattr(v, "shape")}
            return
        try:
            with zipfile.ZipFile(path) as z:
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if not pkl:
                    raise ValueError("no data.pkl")
                self.prefix = pkl[0][: -len("data.pkl")]
                obj = _TorchUnpickler(io.BytesIO(z.read(pkl[0]))).load()
                self.sizes = {i.filename: i.file_size for i in z.infolist()}
                # data offsets of uncompressed entries (torch.save stores them uncompressed):
                # local header is 30 bytes + name + extra field
                self.stored = {}
                with open(path, "rb") as fh:
                    for i in z.infolist():
                        if i.compress_type != zipfile.ZIP_STORED or "/data/" not in i.filename:
                            continue
                        fh.seek(i.header_offset)
                        h = fh.read(30)
                        if len(h) == 30 and h[:4] == b"PK\x03\x04":
                            n_name, n_extra = struct.unpack("<HH", h[26:30])
                            self.stored[i.filename] = i.header_offset + 30 + n_name + n_extra
        except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: cannot read PyTorch checkpoint ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: PyTorch checkpoint is not a state dict")
        self.lazy = {k: v for k, v in obj.items() if isinstance(v, _LazyTensor)}
        self.entries = {k: v.shape for k, v in self.lazy.items()}

    def shape(self, name):
        return self.entries[name]

    def load(self, name) -> Source:
        if self.sd is not None:
            import torch
            t = self.sd[name]
            if t.dtype == torch.bfloat16:
                return Source(t.contiguous().view(torch.int16).numpy().view(np.uint16).copy(), bf16=True)
            return Source(t.contiguous().numpy().copy())
        t = self.lazy[name]
        stype, key = t.storage
        dt = stype.dtype
        entry = f"{self.prefix}data/{key}"
        n = int(np.prod(t.shape, dtype=np.int64))
        contiguous = all(t.stride[i] == int(np.prod(t.shape[i + 1:], dtype=np.int64))
                         for i in range(len(t.shape)) if t.shape[i] > 1)
        if entry not in self.sizes:
            raise ValueError(f"{self.path}: storage {entry} of tensor {name} is missing")
        start = self.stored.get(entry)
        if contiguous and start is not None:  # uncompressed entry: one positioned read, no copies
            if (t.offset + n) * dt.itemsize > self.sizes[entry]:
                raise ValueError(f"{self.path}: tensor {name} lies past the end of its storage")
            arr = np.fromfile(self.path, dtype=dt.newbyteorder("<"), count=n,
                              offset=start + t.offset * dt.itemsize)
            if arr.size != n:
                raise ValueError(f"{self.path}: tensor {name} is truncated")
            return Source(arr.reshape(t.shape), bf16=(stype.name == "BFloat16Storage"))
        with zipfile.ZipFile(self.path) as z:
            with z.open(entry) as f:
                if contiguous:
                    f.seek(t.offset * dt.itemsize)
                    arr = np.empty(t.shape, dtype=dt.newbyteorder("<"))  # read straight into it
                    view = memoryview(arr.reshape(-1).view(np.uint8))
                    got = 0
                    while got < arr.nbytes:
                        k = f.readinto(view[got:])
                        if not k:
                            raise ValueError(f"{self.path}: tensor {name} is truncated")
                        got += k
                else:
                    whole = np.frombuffer(f.read(), dtype=dt.newbyteorder("<"))
                    arr = np.lib.stride_tricks.as_strided(
                        whole[t.offset:], shape=t.shape,
                        strides=tuple(x * dt.itemsize for x in t.stride)).copy()
        return Source(arr, bf16=(stype.name == "BFloat16Storage"))


class Checkpoint:
    """All weight tensors of a folder, by HF name: names(), shape(name), load(name) -> Source."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: Dict[str, object] = {}
        self.where: Dict[str, str] = {}
        self.kind = None
        for kind, single, index in (("safetensors", "model.safetensors", "model.safetensors.index.json"),
                                    ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json")):
            if (folder / index).is_file():
                try:
                    wm = json.loads((folder / index).read_text())["weight_map"]
                except (ValueError, KeyError) as e:
                    raise ValueError(f"{folder / index}: bad index ({e})") from None
                for fname in sorted(set(wm.values())):
                    if not (folder / fname).is_file():
                        raise FileNotFoundError(f"{folder / index} names shard {fname}, "
                                                f"which is missing from {folder}")
                shard_files = sorted(set(wm.values()))
            elif (folder / single).is_file():
                shard_files = [single]
            else:
                shard_files = sorted(p.name for p in folder.glob(f"*.{kind}")
                                     if not p.name.startswith("training_args"))
                if kind == "bin":
                    shard_files = [f for f in shard_files if f.startswith("pytorch_model")]
            if shard_files:
                self.kind = kind
                for fname in shard_files:
                    f = _SafetensorsFile(folder / fname) if kind == "safetensors" \
                        else _TorchFile(folder / fname)
                    self.files[fname] = f
                    for name in f.entries:
                        self.where[name] = fname
                break
        if self.kind is None:
            raise FileNotFoundError(
                f"{folder}: no weights found (expected model.safetensors, model-*.safetensors with "
                "model.safetensors.index.json, or pytorch_model*.bin); use --vocab-only to write "
                "only the tokenizer")

    def names(self) -> List[str]:
        return list(self.where)

    def __contains__(self, name):
        return name in self.where

    def shape(self, name) -> tuple:
        return self.files[self.where[name]].shape(name)

    def load(self, name) -> Source:
        return self.files[self.where[name]].load(name)

    def describe(self, name) -> str:
        return f"{self.where[name]}:{name}"
