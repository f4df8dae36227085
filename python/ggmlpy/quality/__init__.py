"""Quality tools: perplexity over a text, the way llama.cpp's `llama-perplexity` measures it."""
from .perplexity import PerplexityResult, perplexity

__all__ = ["PerplexityResult", "perplexity"]
