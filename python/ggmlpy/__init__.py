"""ggmlpy: run Llama-family and GPT-J models on the CPU from memory-mapped GGUF weights."""
import os as _os

# Development: GGMLPY_BUILD_DIR points at a CMake build folder holding _core*.so, so the sources
# in python/ggmlpy can be used without reinstalling. Installed wheels ignore it when unset.
if _os.environ.get("GGMLPY_BUILD_DIR"):
    __path__.insert(0, _os.environ["GGMLPY_BUILD_DIR"])  # noqa: F821

from . import _core  # noqa: E402
from ._core import GGUFError, ContextFullError  # noqa: E402
from .model import Model  # noqa: E402
from .quantize import quantize  # noqa: E402  (the function shadows the submodule attribute)
from .speculative import DraftModel, PromptLookup  # noqa: E402
from .state import ModelState, PromptCache  # noqa: E402


def finetune(*args, **kwargs):
    """LoRA fine-tuning (ggmlpy.training.finetune; imported on first use)."""
    from .training import finetune as _finetune
    return _finetune(*args, **kwargs)


__version__ = "0.1.0"
__all__ = ["Model", "quantize", "GGUFError", "ContextFullError", "PromptCache", "ModelState", "PromptLookup",
           "DraftModel", "finetune", "__version__"]
