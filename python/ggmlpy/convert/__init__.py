"""Conversion to GGUF: Hugging Face Llama-family and GPT-J checkpoints (convert_hf), legacy ggml
GPT-J .bin and llama2.c .bin (convert_legacy), and ensure_gguf() for loaders that accept legacy
files. Tensors are streamed one at a time; outputs are written atomically.
"""
from .hf_convert import convert_hf
from .legacy import convert_legacy, detect_format, ensure_gguf

__all__ = ["convert_hf", "convert_legacy", "detect_format", "ensure_gguf"]
