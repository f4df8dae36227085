"""LoRA target modules: names users know (PEFT / HF module names, or short ones) -> the GGUF
weight names of every layer, per architecture."""
from __future__ import annotations

from typing import Dict, List, Sequence

# short name -> GGUF suffix; HF module names map to the same suffixes
MODULES: Dict[str, Dict[str, str]] = {
    "llama": {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
              "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"},
    "gptj": {"q": "attn_q", "k": "attn_k", "v": "attn_v", "out": "attn_output",
             "fc_in": "ffn_up", "fc_out": "ffn_down"},
}
HF_NAMES: Dict[str, Dict[str, str]] = {
    "llama": {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate",
              "up_proj": "up", "down_proj": "down"},
    "gptj": {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "out", "fc_in": "fc_in",
             "fc_out": "fc_out"},
}


def resolve_targets(arch: str, modules: Sequence[str] | str | None, n_layer: int) -> List[str]:
    """GGUF weight names for the target modules (None or "all": every one of the architecture)."""
    if arch not in MODULES:
        raise ValueError(f"LoRA training supports {', '.join(MODULES)} models, not {arch!r}")
    table = MODULES[arch]
    if modules is None or modules == "all" or modules == ["all"]:
        modules = list(table)
    if isinstance(modules, str):
        modules = [m for m in modules.replace(" ", "").split(",") if m]
    if not modules:
        raise ValueError("target modules: none given")
    out = []
    for m in modules:
        short = HF_NAMES[arch].get(m, m)
        if short not in table:
            raise ValueError(f"target module {m!r} is not one of {arch}'s: {', '.join(table)} "
                             f"(or {', '.join(HF_NAMES[arch])})")
        if table[short] not in out:
            out.append(table[short])
    return [f"blk.{i}.{s}.weight" for i in range(n_layer) for s in out]
