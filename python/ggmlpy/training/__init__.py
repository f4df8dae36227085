"""LoRA fine-tuning over the frozen, memory-mapped weights (the C++ LoraTrainer in
src/training): finetune() and `ggmlpy finetune`, LoraModel for custom loops, plot_log."""
from .finetune import finetune
from .lora_model import LoraModel
from .plot import plot_log

__all__ = ["finetune", "LoraModel", "plot_log"]
