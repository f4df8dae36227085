"""Perplexity of a model over a text, by llama.cpp's method (`llama-perplexity -c N`), so the
figures compare one to one with the numbers the llama.cpp community publishes:

- the whole text is tokenized once (with BOS when the model adds one) and cut into
  len(tokens) // n_ctx chunks of n_ctx tokens (the tail is dropped; at least 2 chunks are needed);
- each chunk is evaluated from an empty context (its first token replaced by BOS when the model
  adds BOS), and only its second half is scored: the logits at positions n_ctx/2 .. n_ctx-2 predict
  the next token, so each chunk contributes n_ctx - n_ctx/2 - 1 tokens that all saw at least n_ctx/2
  tokens of context;
- PPL = exp(mean NLL) over all scored tokens, and its uncertainty ppl * sqrt(var(NLL) / (count - 1)),
  var(NLL) = mean(NLL^2) - mean(NLL)^2.

The first half of each chunk is evaluated without logits (llama.cpp computes them and throws them
away): the output layer over a 49k vocabulary is a large part of a small model's work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np


@dataclass
class PerplexityResult:
    ppl: float                 # exp(mean NLL) over every scored token
    ppl_err: float             # its standard error, as llama.cpp prints after "+/-"
    n_tokens: int              # tokens of the whole text
    n_chunks: int
    n_scored: int              # tokens scored (n_chunks * (n_ctx - n_ctx // 2 - 1))
    chunk_ppl: List[float] = field(default_factory=list)  # running PPL after each chunk ("[1]..., [2]...")

    def __str__(self) -> str:
        return f"PPL = {self.ppl:.4f} +/- {self.ppl_err:.5f}"


def _token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits_i)[targets_i] per row (float64): rows [n, n_vocab] float32."""
    mx = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - mx).sum(axis=1, dtype=np.float64)) + mx[:, 0]
    return lse - logits[np.arange(len(targets)), targets].astype(np.float64)


def _chunks(tokens: np.ndarray, n_ctx: int, n_chunks: int, bos: Optional[int] = None) -> List[np.ndarray]:
    """The n_chunks chunks of n_ctx tokens as evaluated (first token BOS when the model adds one)."""
    out = []
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx].copy()
        if bos is not None:
            chunk[0] = bos
        out.append(chunk)
    return out


def prepare_chunks(model, text: str, n_ctx: int, max_chunks: Optional[int] = None):
    """(token count of text, its chunks) with the checks perplexity makes."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 4 or n_ctx % 2:
        raise ValueError(f"n_ctx must be an even int >= 4, got {n_ctx!r}")
    if n_ctx > model.n_ctx:
        raise ValueError(f"n_ctx {n_ctx} is larger than the model's context ({model.n_ctx}): load it with "
                         f"n_ctx={n_ctx} or more")
    if max_chunks is not None and (not isinstance(max_chunks, int) or max_chunks < 1):
        raise ValueError(f"max_chunks must be an int >= 1 or None, got {max_chunks!r}")
    tokens = np.asarray(model.tokenize(text), dtype=np.int64)
    n_chunks = len(tokens) // n_ctx
    if n_chunks < 2:
        raise ValueError(f"the text is {len(tokens)} tokens: perplexity with n_ctx {n_ctx} needs at least "
                         f"{2 * n_ctx} (two chunks)")
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    bos = model.tokenizer.bos if model.add_bos else None
    return len(tokens), _chunks(tokens, n_ctx, n_chunks, bos)


def scored_logits(model, chunk: np.ndarray) -> np.ndarray:
    """Logits [n_ctx - n_ctx/2 - 1, n_vocab] of positions n_ctx/2 .. n_ctx-2 of chunk, evaluated
    from an empty context (the first half without logits)."""
    first = len(chunk) // 2
    model.reset()
    model.eval(chunk[:first].tolist(), logits=None)
    return np.asarray(model.eval(chunk[first:].tolist(), logits="all"))[:-1]


def perplexity(model, text: str, n_ctx: int = 512, max_chunks: Optional[int] = None,
               progress: Optional[Callable[[int, int, float], None]] = None,
               on_chunk: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> PerplexityResult:
    """Perplexity of `model` (a ggmlpy.Model with n_ctx >= n_ctx) over `text`; see the module
    docstring. progress(chunk, n_chunks, running_ppl) is called after each chunk, on_chunk(chunk,
    scored logits) with each chunk's tokens and scored rows (save_base uses it)."""
    n_tokens, chunks = prepare_chunks(model, text, n_ctx, max_chunks)
    return score_chunks(model, chunks, n_ctx, n_tokens, progress, on_chunk)


def score_chunks(model, chunks: List[np.ndarray], n_ctx: int, n_tokens: int,
                 progress: Optional[Callable[[int, int, float], None]] = None,
                 on_chunk: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> PerplexityResult:
    """perplexity over chunks from prepare_chunks (n_tokens: the text's token count)."""
    first = n_ctx // 2
    nll_sum = nll2_sum = 0.0
    count = 0
    running: List[float] = []
    try:
        for c, chunk in enumerate(chunks):
            logits = scored_logits(model, chunk)
            if on_chunk:
                on_chunk(chunk, logits)
            nll = _token_nll(logits, chunk[first + 1:])               # predicts first+1 .. n_ctx-1
            nll_sum += float(nll.sum())
            nll2_sum += float((nll * nll).sum())
            count += len(nll)
            running.append(math.exp(nll_sum / count))
            if progress:
                progress(c + 1, len(chunks), running[-1])
    finally:
        model.reset()
    mean = nll_sum / count
    var = nll2_sum / count - mean * mean
    ppl = math.exp(mean)
    err = ppl * math.sqrt(var / (count - 1)) if var > 0 else 0.0
    return PerplexityResult(ppl, err, n_tokens, len(chunks), count, running)
