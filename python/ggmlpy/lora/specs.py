"""The adapters a model is loaded with: `Model(base, lora=...)` and the CLI's `--lora PATH[:SCALE]`
normalized to [(path, scale), ...], checked before the C++ loader sees them."""
from __future__ import annotations

import math
import os
from typing import List, Tuple


def _one(item, where: str) -> Tuple[str, float]:
    if isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise ValueError(f"{where} must be a path or a (path, scale) pair, got {len(item)} items")
        path, scale = item
    else:
        path, scale = item, 1.0
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{where}: the adapter path must be a str or os.PathLike, "
                        f"got {type(path).__name__}") from None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{where}: the scale of {path} must be a number, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{where}: the scale of {path} must be finite, got {scale}")
    if not os.path.exists(path):
        raise FileNotFoundError(2, "LoRA adapter not found", path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, "LoRA adapter is a folder, expected a GGUF adapter file (a PEFT "
                                    "folder is converted with `ggmlpy convert FOLDER --base MODEL`)", path)
    return path, float(scale)


def lora_specs(value) -> List[Tuple[str, float]]:
    """None -> []; a path; (path, scale); or a list of paths / (path, scale) pairs."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray, os.PathLike)):
        return [_one(value, "lora")]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float)) \
            and not isinstance(value[1], bool):
        return [_one(value, "lora")]
    if not isinstance(value, (list, tuple)):
        raise TypeError("lora must be a path, a (path, scale) pair or a list of them, "
                        f"got {type(value).__name__}")
    return [_one(v, f"lora[{i}]") for i, v in enumerate(value)]


def parse_lora_flag(text: str) -> Tuple[str, float]:
    """--lora PATH[:SCALE]: a trailing ':number' is the scale (a path may itself contain ':')."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return text, 1.0
