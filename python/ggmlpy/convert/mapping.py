"""HF tensor name -> GGUF tensor name (gguf.TensorNameMap of the architecture), checked against the
shapes the config implies: every expected tensor present with its shape, nothing unmapped left
over. Errors name the folder, the tensor and expected vs found. Produces writer.TensorPlan's.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional

import gguf

from .writer import Source, TensorPlan, choose_type

SUFFIXES = (".weight", ".bias")


def plan_from_checkpoint(ckpt, arch: gguf.MODEL_ARCH, n_layer: int, expected: Dict[str, tuple],
                         outtype: str, skip: Optional[re.Pattern] = None,
                         transforms: Optional[Dict[str, Callable[[Source], Source]]] = None,
                         optional: tuple = (), aliases: Optional[Dict[str, str]] = None
                         ) -> List[TensorPlan]:
    """expected: GGUF name -> numpy shape, in file order. optional: GGUF names that may be absent.
    aliases: GGUF name -> HF name to read it from when it is absent (tied output)."""
    tmap = gguf.get_tensor_name_map(arch, n_layer)
    transforms = transforms or {}
    found: Dict[str, str] = {}
    for name in ckpt.names():
        if skip is not None and skip.search(name):
            continue
        g = tmap.get_name(name, try_suffixes=SUFFIXES)
        if g is None or g not in expected:
            raise ValueError(f"{ckpt.folder}: tensor {name} {list(ckpt.shape(name))} is not part of "
                             f"a {arch.name.lower()} model with this config (no GGUF name"
                             f"{'' if g is None else ' ' + g + ' expected'})")
        if g in found:
            raise ValueError(f"{ckpt.folder}: tensors {found[g]} and {name} both map to {g}")
        found[g] = name
    for g, hf in (aliases or {}).items():
        if g not in found and hf in ckpt:
            found[g] = hf
    missing = [g for g in expected if g not in found and g not in optional]
    if missing:
        raise ValueError(f"{ckpt.folder}: missing tensor(s) for {', '.join(missing[:8])}"
                         f"{' ...' if len(missing) > 8 else ''} ({len(missing)} missing)")
    plans = []
    for g, shape in expected.items():
        if g not in found:
            continue
        hf = found[g]
        got = tuple(ckpt.shape(hf))
        if got != tuple(shape):
            raise ValueError(f"{ckpt.folder}: tensor {hf} ({g}) has shape {list(got)}, expected "
                             f"{list(shape)} from config.json")
        fn = transforms.get(g)

        def load(hf=hf, fn=fn):
            src = ckpt.load(hf)
            return fn(src) if fn is not None else src
        plans.append(TensorPlan(name=g, shape=tuple(shape), qtype=choose_type(shape, outtype),
                                load=load, source=ckpt.describe(hf)))
    return plans
