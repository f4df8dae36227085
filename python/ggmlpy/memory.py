"""The weight memory plan of a loaded model, for people: sizes like "6GiB" in, lines out.

A model whose weights do not fit the memory budget keeps what fits resident and streams the rest
from the file on every forward pass (src/io/weight_stream.h); `Model.memory` holds the plan's
numbers and these helpers turn them into the text `ggmlpy info -m` and the generate summary show.
"""
import re

import numpy as np

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")


def parse_size(name: str, value) -> int:
    """Bytes from an int or a string such as "6GiB", "6G" (10**9), "512MiB", "1.5GB"; 0 means
    "what is available". TypeError / ValueError naming `name` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a size in bytes (an int or a string like '6GiB'), got bool")
    if isinstance(value, (int, np.integer)):
        n = int(value)
    elif isinstance(value, str):
        m = _SIZE.match(value)
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(f"{name} must be a size such as 6GiB, 6G, 512MiB or a number of bytes, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[unit])
    else:
        raise TypeError(f"{name} must be a size in bytes (an int or a string like '6GiB'), "
                        f"got {type(value).__name__}")
    if n < 0 or n >= 2**63:
        raise ValueError(f"{name} must be between 0 and 2**63 bytes, got {value!r}")
    return n


def human(n: float) -> str:
    for unit, step in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= step:
            return f"{n / step:.2f} {unit}"
    return f"{int(n)} B"


def plan_lines(mem: dict) -> list:
    """Describes Model.memory's plan: the budget, what stays resident, what streams per pass."""
    budget = mem.get("mem_budget", 0)
    resident, streamed = mem.get("resident_bytes", 0), mem.get("streamed_bytes", 0)
    lines = [f"weights:     {human(mem.get('weight_bytes', 0))} in the file, budget {human(budget)}"]
    if not streamed:
        lines.append(f"plan:        all {human(resident)} resident (mapped from the file, no copy)")
        return lines
    locked = "locked" if mem.get("resident_locked") else "not locked"
    lines.append(f"plan:        {human(resident)} resident ({locked}), {human(streamed)} streamed from the file "
                 f"on every forward pass (read-ahead window {human(mem.get('window_bytes', 0))})")
    lines.append(f"I/O:         {human(streamed)} read per token (prompt: per batch of tokens)")
    passes = mem.get("stream_passes", 0)
    if passes:
        lines.append(f"streamed:    {human(mem.get('stream_prefetched', 0))} read ahead over {passes} "
                     f"forward pass{'' if passes == 1 else 'es'}")
    return lines
