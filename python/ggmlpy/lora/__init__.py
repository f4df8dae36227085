"""LoRA adapters: loading them unmerged (Model(base, lora=...)), converting PEFT adapters to GGUF
adapter files (peft_convert), merging them into a new model file (merge, `ggmlpy export-lora`)."""
from .specs import lora_specs, parse_lora_flag

__all__ = ["lora_specs", "parse_lora_flag", "convert_peft", "export_lora"]


def convert_peft(*args, **kwargs):
    from .peft_convert import convert_peft as fn
    return fn(*args, **kwargs)


def export_lora(*args, **kwargs):
    from .merge import export_lora as fn
    return fn(*args, **kwargs)
