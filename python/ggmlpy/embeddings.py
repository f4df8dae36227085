"""Text embeddings from a decoder model's final hidden states (after the output norm, the vectors
the LM head reads), pooled per text: "mean" over all tokens (BOS included when the model adds
one), "last" (the last token: decoder embedding models that put the summary at the end), or
"cls" (the first token). normalize=True scales each vector to unit L2 length, so a dot product is
the cosine similarity. Each text is evaluated on its own from an empty context.

Model.embed is the thin wrapper over `embed` here."""
from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np

POOLINGS = ("mean", "last", "cls")


def pool(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """hidden: (n_tokens, n_embd) float32 -> (n_embd,) float32."""
    if pooling == "mean":
        return hidden.mean(axis=0, dtype=np.float64).astype(np.float32)
    if pooling == "last":
        return hidden[-1].copy()
    return hidden[0].copy()   # "cls"


def l2_normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v.astype(np.float64)))
    return (v / n).astype(np.float32) if n > 0 else v


def _texts(texts) -> List[str]:
    if isinstance(texts, (str, bytes, bytearray)):
        return [texts]
    if isinstance(texts, (list, tuple)):
        if not texts:
            raise ValueError("embed: texts is empty, expected a str or a non-empty list of str")
        return list(texts)
    raise TypeError(f"embed: texts must be a str or a list of str, got {type(texts).__name__}")


def embed(model, texts: Union[str, Sequence[str]], pooling: str = "mean", normalize: bool = True,
          add_bos=None) -> np.ndarray:
    """(n_embd,) for one str, (len(texts), n_embd) float32 for a list. A text longer than the
    context is a ValueError naming it (index and token count); nothing is truncated silently."""
    from .model import _bool, _text
    if pooling not in POOLINGS:
        raise ValueError(f"pooling = {pooling!r}, expected one of {', '.join(POOLINGS)}")
    normalize = _bool("normalize", normalize)
    single = isinstance(texts, (str, bytes, bytearray))
    items = _texts(texts)
    ids_list = []
    for i, t in enumerate(items):
        if not isinstance(t, (str, bytes, bytearray)):
            raise TypeError(f"embed: texts[{i}] must be a str, got {type(t).__name__}")
        ids = model.tokenize(_text(f"embed: texts[{i}]", t), add_bos=add_bos, special=False)
        if not ids:
            raise ValueError(f"embed: texts[{i}] is empty (no tokens) and the model adds no BOS")
        if len(ids) > model.n_ctx:
            raise ValueError(f"embed: texts[{i}] is {len(ids)} tokens, longer than the context "
                             f"n_ctx = {model.n_ctx} (shorten it or load the Model with a larger n_ctx)")
        ids_list.append(ids)
    out = np.empty((len(items), model._m.n_embd), dtype=np.float32)
    for i, ids in enumerate(ids_list):
        v = pool(model._eval_hidden(ids), pooling)
        out[i] = l2_normalize(v) if normalize else v
    return out[0] if single else out
