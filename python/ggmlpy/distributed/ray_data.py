"""Batch generation and embeddings over a Ray Data dataset.

    import ray
    from ggmlpy.distributed.ray_data import generate_dataset
    ds = ray.data.read_json("prompts.jsonl")                    # rows with a "prompt" column
    out = generate_dataset(ds, "model.gguf", concurrency=4, max_new_tokens=64, temperature=0)
    out.write_json("generated/")                                  # rows gain a "generated" column

Each Ray actor loads the model once, from its own path (a file every node can read: a shared
disk, or the same download on each node), so the weights are mapped by each actor's process and
never pass through Ray's object store. Every batch of rows goes through the batched engine
(`Model(..., n_seq_max=N)`, `generate(list_of_prompts)`), so an actor reads the weights once per
step for up to N prompts. Results equal a single-process `Model.generate` on the same prompts
(with the same seeds): the engine is batch invariant.

`Generate` / `Embed` are the callable classes for `Dataset.map_batches` when more control is
wanted; `generate_dataset` / `embed_dataset` wrap them."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np


class Generate:
    """map_batches callable: batch[prompt_column] (str) -> batch[output_column] (str)."""

    def __init__(self, model_path: str, n_seq_max: int = 8, n_ctx: int = 0, n_threads: int = 0,
                 prompt_column: str = "prompt", output_column: str = "generated", **generate_kwargs):
        from ..model import Model
        if generate_kwargs.get("stream"):
            raise ValueError("stream=True cannot be used in a dataset map")
        self.model = Model(model_path, n_ctx=n_ctx, n_threads=n_threads, n_seq_max=n_seq_max)
        self.prompt_column, self.output_column = prompt_column, output_column
        self.kwargs = generate_kwargs

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        if self.prompt_column not in batch:
            raise KeyError(f"the dataset has no column {self.prompt_column!r} (columns: {sorted(batch)})")
        prompts = [str(p) for p in batch[self.prompt_column]]
        out = self.model.generate(prompts, **self.kwargs) if prompts else []
        batch[self.output_column] = np.array(out, dtype=object)
        return batch


class Embed:
    """map_batches callable: batch[text_column] (str) -> batch[output_column] (float32 vectors)."""

    def __init__(self, model_path: str, n_ctx: int = 0, n_threads: int = 0, text_column: str = "text",
                 output_column: str = "embedding", pooling: str = "mean", normalize: bool = True):
        from ..model import Model
        self.model = Model(model_path, n_ctx=n_ctx, n_threads=n_threads)
        self.text_column, self.output_column = text_column, output_column
        self.pooling, self.normalize = pooling, normalize

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        if self.text_column not in batch:
            raise KeyError(f"the dataset has no column {self.text_column!r} (columns: {sorted(batch)})")
        texts = [str(t) for t in batch[self.text_column]]
        vecs = self.model.embed(texts, pooling=self.pooling, normalize=self.normalize) if texts else \
            np.zeros((0, self.model._m.n_embd), np.float32)
        batch[self.output_column] = list(vecs)
        return batch


def generate_dataset(ds, model_path: str, concurrency: int = 1, batch_size: Optional[int] = None,
                     num_cpus: Optional[float] = None, n_seq_max: int = 8, **kwargs):
    """ds with an output column ("generated") from `concurrency` actors, each with the model loaded
    once. batch_size defaults to n_seq_max (one engine batch per Ray batch); num_cpus per actor
    defaults to the actor's n_threads (or 1). Other keyword arguments go to Generate (n_ctx,
    n_threads, column names) and on to Model.generate (max_new_tokens, temperature, stop, seed...)."""
    threads = kwargs.get("n_threads") or 1
    return ds.map_batches(Generate, fn_constructor_kwargs=dict(model_path=str(model_path), n_seq_max=n_seq_max, **kwargs),
                          concurrency=concurrency, batch_size=batch_size or n_seq_max,
                          num_cpus=num_cpus if num_cpus is not None else threads)


def embed_dataset(ds, model_path: str, concurrency: int = 1, batch_size: int = 16,
                  num_cpus: Optional[float] = None, **kwargs):
    """ds with an "embedding" column (see Embed for the keyword arguments)."""
    threads = kwargs.get("n_threads") or 1
    return ds.map_batches(Embed, fn_constructor_kwargs=dict(model_path=str(model_path), **kwargs),
                          concurrency=concurrency, batch_size=batch_size,
                          num_cpus=num_cpus if num_cpus is not None else threads)
