"""Quality tools: perplexity over a text (llama-perplexity's method) and the KL divergence of a
model against a base model's saved log-probabilities (llama-perplexity --kl-divergence)."""
from .kl_divergence import KLResult, kl_divergence, save_base
from .perplexity import PerplexityResult, perplexity

__all__ = ["KLResult", "PerplexityResult", "kl_divergence", "perplexity", "save_base"]
