"""`Model`: the Python API over `_core.Model` (load, tokenize, eval, generate with streaming and
stop strings, from_pretrained). Argument names follow llama-cpp-python (constructor) and HF /
ctransformers (generation). All heavy work is in C++: eval releases the GIL, so Ctrl-C lands as
KeyboardInterrupt between tokens and leaves the Model usable (the next call starts fresh)."""
from __future__ import annotations

import os
import random
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .generate import GenerationStats, run_generation

_TRUE = ("1", "true", "True", "yes")


def _resolve_path(model_path) -> str:
    """A GGUF path for model_path: GGUF files as they are; legacy ggml GPT-J / llama2.c .bin files
    through the converter's aligned cache. Unknown formats raise GGUFError naming the file."""
    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model path is a directory, expected a GGUF file: {path}")
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":
            return path          # the C++ loader validates the rest
    try:
        from .convert.legacy import ensure_gguf
    except ImportError:
        return path
    try:
        return os.fspath(ensure_gguf(path))
    except ValueError as e:
        if isinstance(e, _core.GGUFError):
            raise
        raise _core.GGUFError(str(e)) from None


_warned_threads = False


def _warn_threads(n_threads: int) -> None:
    """Warns once per process when n_threads exceeds the CPUs this process may run on: threads
    then wait on each other at every barrier (-t 8 on 2 cores ran 4.4x slower than -t 2)."""
    global _warned_threads
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:       # not Linux
        usable = os.cpu_count() or 1
    if n_threads > usable and not _warned_threads:
        _warned_threads = True
        import warnings
        warnings.warn(f"n_threads = {n_threads} is more than the {usable} CPU cores this process may use; "
                      f"that is much slower than {usable} (0 picks the physical cores)", stacklevel=3)


def _check_range(name, value, ok, expected):
    if not ok:
        raise ValueError(f"{name} = {value!r}, expected {expected}")


class Model:
    """A GGUF model on the CPU. `Model("model.gguf", n_ctx=2048, n_threads=8)`; `generate(...)`
    returns the new text (or an iterator of pieces with stream=True); `eval(ids)` returns logits."""

    def __init__(self, model_path, n_ctx: int = 0, n_threads: int = 0, n_batch: int = 512,
                 use_mmap: bool = True, use_mlock: bool = False, seed: int = -1, verbose: bool = False,
                 kv_type: str = "f16"):
        _check_range("n_ctx", n_ctx, isinstance(n_ctx, int) and n_ctx >= 0, "an int >= 0 (0: the model's)")
        _check_range("n_threads", n_threads, isinstance(n_threads, int) and n_threads >= 0,
                     "an int >= 0 (0: physical cores)")
        _check_range("n_batch", n_batch, isinstance(n_batch, int) and n_batch >= 1, "an int >= 1")
        _check_range("seed", seed, isinstance(seed, int), "an int (-1: random)")
        _warn_threads(n_threads)
        import time
        self._core = None
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        path = _resolve_path(model_path)
        t0 = time.perf_counter()
        self._core = _core.Model(path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                 use_mmap=use_mmap, use_mlock=use_mlock, kv_type=kv_type)
        self.load_time = time.perf_counter() - t0
        self.seed = seed
        self._rng = random.Random(seed if seed >= 0 else None)  # draws per-call seeds
        self.last_stats: Optional[GenerationStats] = None
        if verbose:
            import sys
            print(f"ggmlpy: loaded {path} ({self.arch}, n_vocab {self.n_vocab}, n_ctx {self.n_ctx}, "
                  f"{self.n_threads} thread{'' if self.n_threads == 1 else 's'}) in {self.load_time * 1e3:.1f} ms", file=sys.stderr)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def _m(self):
        if self._core is None:
            raise ValueError("Model is closed")
        return self._core

    def close(self) -> None:
        """Releases the weights mapping and the KV cache; the Model cannot be used afterwards."""
        if self._core is not None:
            core, self._core = self._core, None
            core.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self._core is None:
            return f"Model({self.model_path!r}, closed)"
        return f"Model({self.model_path!r}, arch={self.arch!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"

    # ---- properties ------------------------------------------------------------------------
    arch = property(lambda self: self._m.arch)
    n_vocab = property(lambda self: self._m.n_vocab)
    n_ctx = property(lambda self: self._m.n_ctx)
    n_past = property(lambda self: self._m.n_past)
    metadata = property(lambda self: self._m.metadata)
    memory = property(lambda self: self._m.memory)
    tokenizer = property(lambda self: self._m.tokenizer)

    @property
    def n_threads(self) -> int:
        return self._m.n_threads

    @n_threads.setter
    def n_threads(self, n: int) -> None:
        _check_range("n_threads", n, isinstance(n, int) and n >= 0, "an int >= 0 (0: physical cores)")
        _warn_threads(n)
        self._m.n_threads = n

    @property
    def add_bos(self) -> bool:
        """Whether prompts get BOS by default (tokenizer.ggml.add_bos_token)."""
        tok = self.tokenizer
        v = getattr(tok, "add_bos", None)
        if v is None:
            v = str(self.metadata.get("tokenizer.ggml.add_bos_token", "false")) in _TRUE
        return bool(v) and getattr(tok, "bos", -1) >= 0

    # ---- tokens ----------------------------------------------------------------------------
    def tokenize(self, text: Union[str, bytes], add_bos: Optional[bool] = None, special: bool = True) -> List[int]:
        """Token ids of text. add_bos None: the model's default. special: text spelling a control
        token (e.g. "<|im_start|>") becomes that token."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"tokenize: text must be str or bytes, got {type(text).__name__}")
        if add_bos is None:
            add_bos = self.add_bos
        return list(self.tokenizer.encode(text, add_bos=add_bos, parse_special=special))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def token_to_piece(self, id: int) -> bytes:
        return self.tokenizer.token_to_piece(int(id))

    # ---- evaluation ------------------------------------------------------------------------
    def eval(self, ids: Sequence[int]) -> np.ndarray:
        """Appends ids to the context (at n_past) and returns float32 logits (len(ids), n_vocab)."""
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("eval: ids is empty, expected at least one token id")
        if self.n_past + len(ids) > self.n_ctx:
            raise _core.ContextFullError(f"eval: {len(ids)} tokens at n_past {self.n_past} exceed n_ctx {self.n_ctx}")
        out = self._m.eval(ids, True)
        return out.reshape(len(ids), -1)

    def reset(self) -> None:
        """Empties the context (n_past = 0)."""
        self._m.reset()

    # ---- generation ------------------------------------------------------------------------
    def generate(self, prompt: Union[str, Sequence[int]], max_new_tokens: Optional[int] = 128,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
                 presence_penalty: float = 0.0, repeat_last_n: int = 64,
                 stop: Optional[Union[str, Sequence[str]]] = None, seed: Optional[int] = None,
                 stream: bool = False, ignore_eos: bool = False, add_bos: Optional[bool] = None,
                 ) -> Union[str, Iterator[str]]:
        """Generates from prompt (text, or token ids) after an empty context. Returns the new text
        (without the prompt), or with stream=True an iterator of text pieces. temperature 0 is
        greedy. Ends at EOS/EOG (unless ignore_eos), at a stop string (never included), after
        max_new_tokens (None or -1: until the context is full) or when the context is full.
        Timings and the finish reason are in `last_stats` afterwards."""
        m = self._m
        if max_new_tokens is not None:
            _check_range("max_new_tokens", max_new_tokens, isinstance(max_new_tokens, int) and max_new_tokens >= -1,
                         "an int >= 0 (-1 or None: until EOS or a full context)")
            if max_new_tokens == -1:
                max_new_tokens = None
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and not all(isinstance(s, str) for s in stop):
            raise TypeError("stop must be a str or a list of str")
        if seed is None:
            seed = self._rng.randrange(2**63) if self.seed >= 0 else -1
        _check_range("seed", seed, isinstance(seed, int), "an int (-1: random)")
        _check_range("top_k", top_k, isinstance(top_k, int) and top_k >= 0, "an int >= 0 (0: off)")
        # the sampler validates the float ranges and names the parameter
        sampler = _core.Sampler(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                                presence_penalty=presence_penalty, repeat_last_n=repeat_last_n, seed=seed)
        if isinstance(prompt, str):
            ids = self.tokenize(prompt, add_bos=add_bos)
        else:
            ids = [int(i) for i in prompt]
        if not ids:
            bos = getattr(self.tokenizer, "bos", -1)
            if bos is None or bos < 0:
                raise ValueError("prompt is empty and the model has no BOS token to start from")
            ids = [bos]
        if len(ids) > m.n_ctx:
            raise ValueError(f"prompt is {len(ids)} tokens, longer than the context n_ctx = {m.n_ctx} "
                             "(load the Model with a larger n_ctx or shorten the prompt)")
        stats = GenerationStats(seed=sampler.seed)
        self.last_stats = stats
        it = run_generation(m, m.tokenizer, sampler, ids, max_new_tokens, stop, ignore_eos, stats)
        if stream:
            return it
        return "".join(it)

    __call__ = generate

    # ---- hub ---------------------------------------------------------------------------------
    @classmethod
    def default(cls, **kwargs) -> "Model":
        """The default model (SmolLM2-135M-Instruct Q4_1): from the local cache, downloaded on first
        use (as `ggmlpy generate` without -m). Keyword arguments go to Model()."""
        from .hub import default_model_path
        return cls(default_model_path(download=True), **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: Optional[str] = None, *, model_file: Optional[str] = None,
                        revision: Optional[str] = None, cache_dir=None, local_dir=None, **kwargs) -> "Model":
        """Downloads (or finds in the Hugging Face cache) one file of a Hub repo and loads it.
        filename may be a glob ("*Q4_K_M.gguf") that must match exactly one file in the repo;
        model_file is an alias (ctransformers). Other keyword arguments go to Model()."""
        from .hub import hf_download
        path = hf_download(repo_id, filename or model_file or "*.gguf", revision=revision,
                           cache_dir=cache_dir, local_dir=local_dir)
        return cls(path, **kwargs)
