"""`Model`: the Python API over `_core.Model` (load, tokenize, eval, generate with streaming and
stop strings, from_pretrained). Argument names follow llama-cpp-python (constructor) and HF /
ctransformers (generation). All heavy work is in C++: eval releases the GIL, so Ctrl-C lands as
KeyboardInterrupt between tokens and leaves the Model usable (the next call starts fresh).
Arguments are checked here, before they reach the bindings, so a bad one is a TypeError /
ValueError naming it (never a pybind11 cast error)."""
from __future__ import annotations

import contextlib
import operator
import os
import random
import threading
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .generate import GenerationStats, run_generation

_TRUE = ("1", "true", "True", "yes")


_DEFAULT = object()   # generate(draft_model=...) not given: the Model's own
DRY_BREAKERS = ("\n", ":", "\"", "*")   # DRY's default sequence breakers (as llama.cpp)


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


INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int(name: str, value, lo: int, hi: int, expected: str) -> int:
    """value as an int in [lo, hi]: TypeError for bools, floats and other non-integers (numpy
    integers are fine), ValueError naming `name` out of range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = operator.index(value)
    _check_range(name, value, lo <= value <= hi, expected)
    return value


def _bool(name: str, value) -> bool:
    """bool, numpy bool or the ints 0 / 1 (C-style flags); anything else is a TypeError."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _float(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} = {value!r} is too large for a float") from None


def _text(name: str, text) -> str:
    """str (or UTF-8 bytes) that can be encoded as UTF-8: a lone surrogate is a ValueError."""
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: bytes are not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str or bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not encodable as UTF-8: {e.reason} at index {e.start} "
                         f"({text[e.start]!r})") from None
    return text


def _token_ids(name: str, ids, n_vocab: int) -> List[int]:
    """A list of token ids in [0, n_vocab) from a sequence of ints or a 1-D integer array. Floats
    (1.7, and 1.0 too) and bools are rejected rather than truncated."""
    if isinstance(ids, (str, bytes, bytearray)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {type(ids).__name__}")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got an array of dtype {ids.dtype}")
        ids = ids.tolist()
    out = []
    for i, t in enumerate(ids):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"{name}[{i}] = {t!r} is a {type(t).__name__}, expected an int token id")
        t = int(t)
        if not 0 <= t < n_vocab:
            raise ValueError(f"{name}[{i}]: token id {t} is outside the vocabulary [0, {n_vocab})")
        out.append(t)
    return out


def _path(name: str, value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return os.fsdecode(bytes(value))
    try:
        return os.fspath(value)
    except TypeError:
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}") from None


def _is_prompt_list(prompt) -> bool:
    """A list of prompts (texts or id lists), as opposed to one prompt given as token ids."""
    return (isinstance(prompt, (list, tuple)) and len(prompt) > 0
            and isinstance(prompt[0], (str, bytes, bytearray, list, tuple, np.ndarray)))


def _engine_stream(req):
    """The text pieces of a BatchEngine request; closing the iterator early cancels it."""
    try:
        yield from req
    finally:
        req.cancel()


class _Generation:
    """One generation's view of a shared Model, with the interface run_generation drives (reset,
    eval, n_past, n_ctx). It remembers its own evals (the chunks of token ids, in order); each
    eval goes through Model._eval_chunk, which first restores these chunks in the cache if another
    caller changed it. Chunks are replayed as they were evaluated, not merged: a batch of n tokens
    and n single-token evals give slightly different numbers, and the text must not change."""

    def __init__(self, model: "Model", n_ctx: int) -> None:
        self._model = model
        self.chunks: List[Tuple[int, ...]] = []
        self.n_ctx = n_ctx

        self.n_past = 0

    def reset(self) -> None:
        self.chunks = []
        self.n_past = 0

    def eval(self, ids, all_logits=False):
        out = self._model._eval_chunk(self, tuple(ids), all_logits)
        self.n_past += len(ids)
        return out

    def prefill(self, ids):
        """Starts this generation with the prompt ids: (logits of the last one, tokens reused)."""
        return self._model._prefill(self, tuple(ids))

    def truncate(self, n: int) -> None:
        """Keeps the first n tokens of this generation (speculative decoding's rejected drafts)."""
        self._model._truncate(self, n)


class Model:
    """A GGUF model on the CPU. `Model("model.gguf", n_ctx=2048, n_threads=8)`; `generate(...)`
    returns the new text (or an iterator of pieces with stream=True); `eval(ids)` returns logits.

    Memory: the KV cache and compute buffers for n_ctx are checked against the memory available
    (MemAvailable, cgroup limits) before they are allocated; MemoryError says how many bytes were
    asked for and that n_ctx should be lowered. Weights larger than RAM: mem_budget (bytes, or a
    size string such as "6GiB"; 0: what is available at load) is what the weights may hold in
    memory. What fits stays resident; the rest is read from the file ahead of each forward pass
    and dropped after use, with the same logits. `memory` reports the plan (resident_bytes,
    streamed_bytes per pass, window_bytes) and what the streaming has read.

    LoRA: lora="adapter.gguf", ("adapter.gguf", 0.5) or a list of them applies GGUF LoRA adapters
    (llama.cpp's adapter layout; `ggmlpy convert PEFT_FOLDER --base MODEL` makes one from PEFT)
    unmerged: each targeted matmul adds scale * alpha / r * B (A x); the base file is untouched.

    Thread safety: a Model may be shared. Calls on one Model are serialized by its lock (an
    RLock): generate() without stream holds it for the whole call, a streaming generator only
    while it evaluates a token (one that is not being advanced holds nothing), close() waits for
    the running call and then frees; later calls raise ValueError("Model is closed"). Every
    generation keeps its own tokens: if another call used the KV cache in between, the next step
    first restores its tokens (re-evaluating them), so interleaved generators each give the text
    they would give alone. Separate Models run in parallel (no global lock)."""

    def __init__(self, model_path, n_ctx: int = 0, n_threads: int = 0, n_batch: int = 512,
                 use_mmap: bool = True, use_mlock: bool = False, seed: int = -1, verbose: bool = False,
                 kv_type: str = "f16", n_seq_max: int = 1, draft_model=None, mem_budget=0,
                 lora=None):
        self._core = None
        self._drafter = None
        self._prompt_cache = None       # set_cache()
        self._lock = threading.RLock()
        # What the C++ KV cache holds: the evaluated chunks of ids, in order, and the generation
        # they belong to (None: eval() calls or unknown). Only changed with the lock held.
        self._cache_chunks: List[Tuple[int, ...]] = []
        self._cache_owner: Optional[_Generation] = None
        self._batch_engine = None       # start_batching()
        n_ctx = _int("n_ctx", n_ctx, 0, INT32_MAX, "an int >= 0 (0: the model's)")
        n_threads = _int("n_threads", n_threads, 0, INT32_MAX, "an int >= 0 (0: physical cores)")
        n_batch = _int("n_batch", n_batch, 1, INT32_MAX, "an int >= 1")
        n_seq_max = _int("n_seq_max", n_seq_max, 1, 256, "an int in [1, 256]")
        seed = _int("seed", seed, INT64_MIN, INT64_MAX, "an int (-1: random)")
        use_mmap, use_mlock = _bool("use_mmap", use_mmap), _bool("use_mlock", use_mlock)
        from .memory import parse_size
        mem_budget = parse_size("mem_budget", mem_budget)
        from .lora import lora_specs
        lora = lora_specs(lora)
        verbose = _bool("verbose", verbose)
        if not isinstance(kv_type, str):
            raise TypeError("kv_type must be a str ('f16', 'f32', 'q8_0' or 'q4_0'), "
                            f"got {type(kv_type).__name__}")
        _warn_threads(n_threads)
        import time
        self.model_path = _path("model_path", model_path)
        self.verbose = verbose
        path = _resolve_path(self.model_path)
        t0 = time.perf_counter()
        self._core = _core.Model(path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                 use_mmap=use_mmap, use_mlock=use_mlock, kv_type=kv_type, n_seq_max=n_seq_max,
                                 mem_budget=mem_budget, lora=lora)
        self.lora = lora
        self.load_time = time.perf_counter() - t0
        self.seed = seed
        self._rng = random.Random(seed if seed >= 0 else None)  # draws per-call seeds
        self.last_stats: Optional[GenerationStats] = None
        try:
            self._drafter = self._make_drafter(draft_model)   # speculative decoding by default
        except BaseException:
            self.close()
            raise
        if verbose:
            import sys
            print(f"ggmlpy: loaded {path} ({self.arch}, n_vocab {self.n_vocab}, n_ctx {self.n_ctx}, "
                  f"{self.n_threads} thread{'' if self.n_threads == 1 else 's'}) in {self.load_time * 1e3:.1f} ms", file=sys.stderr)

    def _make_drafter(self, draft_model):
        from .speculative import make_drafter
        return make_drafter(draft_model, self)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def _m(self):
        """The core for reading what never changes after load (sizes, tokenizer, metadata)."""
        core = self._core
        if core is None:
            raise ValueError("Model is closed")
        return core

    @contextlib.contextmanager
    def _use(self):
        """The core, with the Model's lock held (for anything that uses or changes the cache)."""
        with self._lock:
            if self._core is None:
                raise ValueError("Model is closed")
            yield self._core

    def start_batching(self, prefill_chunk: int = 128) -> None:
        """From now on, generate() calls with one prompt (and the chat / completion calls built on
        it) from any number of threads run together: a background thread (batch.BatchEngine)
        steps up to n_seq_max - 1 of them per forward pass on sequences 1 .. n_seq_max - 1,
        admitting new ones between steps, feeding long prompts prefill_chunk tokens a step. Each
        gives the text it gives alone. Needs n_seq_max >= 2; close() stops it. Prefix reuse across
        calls does not apply to these generations."""
        from .batch import BatchEngine
        prefill_chunk = _int("prefill_chunk", prefill_chunk, 1, INT32_MAX, "an int >= 1")
        with self._use():
            if self._batch_engine is None:
                self._batch_engine = BatchEngine(self, prefill_chunk=prefill_chunk)

    def stop_batching(self) -> None:
        """Stops the engine of start_batching; requests still running end with an error."""
        engine, self._batch_engine = self._batch_engine, None
        if engine is not None:
            engine.close()

    def close(self) -> None:
        """Releases the weights mapping and the KV cache; the Model cannot be used afterwards.
        Waits for a call running in another thread to finish first."""
        lock = getattr(self, "_lock", None)
        if lock is None:     # __init__ failed before the lock existed
            return
        self.stop_batching()
        with lock:
            if self._core is not None:
                core, self._core = self._core, None
                self._cache_chunks, self._cache_owner = [], None
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
    n_seq_max = property(lambda self: self._m.n_seq_max)
    metadata = property(lambda self: self._m.metadata)
    memory = property(lambda self: self._m.memory)
    tokenizer = property(lambda self: self._m.tokenizer)

    @property
    def n_threads(self) -> int:
        return self._m.n_threads

    @n_threads.setter
    def n_threads(self, n: int) -> None:
        n = _int("n_threads", n, 0, INT32_MAX, "an int >= 0 (0: physical cores)")
        _warn_threads(n)
        with self._use() as m:
            m.n_threads = n

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
        text = _text("tokenize: text", text)
        add_bos = self.add_bos if add_bos is None else _bool("add_bos", add_bos)
        special = _bool("special", special)
        return list(self.tokenizer.encode(text, add_bos=add_bos, parse_special=special))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(_token_ids("detokenize: ids", ids, self.n_vocab))

    def token_to_piece(self, id: int) -> bytes:
        id = _int("token_to_piece: id", id, 0, self.n_vocab - 1, f"a token id in [0, {self.n_vocab})")
        return self.tokenizer.token_to_piece(id)

    # ---- evaluation ------------------------------------------------------------------------
    def eval(self, ids: Sequence[int], logits: Optional[str] = "all") -> Optional[np.ndarray]:
        """Appends ids to the context (at n_past). logits="all" returns float32 logits
        (len(ids), n_vocab); "last" only the last token's (n_vocab,), and the rows before it are
        never computed or stored (a long prompt then costs no more memory than one row); None
        returns nothing (the KV cache is filled all the same)."""
        if logits not in ("all", "last", None):
            raise ValueError(f"eval: logits = {logits!r}, expected 'all', 'last' or None")
        ids = _token_ids("eval: ids", ids, self.n_vocab)
        if not ids:
            raise ValueError("eval: ids is empty, expected at least one token id")
        with self._use() as m:
            if m.n_past + len(ids) > m.n_ctx:
                raise _core.ContextFullError(f"eval: {len(ids)} tokens at n_past {m.n_past} exceed n_ctx {m.n_ctx}")
            out = self._cache_eval(m, None, tuple(ids), logits == "all")
        if logits is None:
            return None
        return out.reshape(len(ids), -1) if logits == "all" else out

    def reset(self) -> None:
        """Empties the context (n_past = 0)."""
        with self._use() as m:
            m.reset()
            self._cache_chunks, self._cache_owner = [], None

    def _cache_eval(self, core, owner, chunk, all_logits):
        """core.eval(chunk) with the cache record kept true (lock held). If the eval fails, or is
        interrupted before the record is updated, the record says "unknown" (empty, no owner):
        the next generation step then starts from an empty cache instead of trusting it."""
        ok = False
        try:
            out = core.eval(list(chunk), all_logits)
            self._cache_chunks.append(chunk)
            self._cache_owner = owner
            ok = True
            return out
        finally:
            if not ok:
                self._cache_chunks, self._cache_owner = [], None

    def _eval_chunk(self, gen: _Generation, chunk: Tuple[int, ...], all_logits: bool):
        """Evaluates chunk after gen's own chunks. If the cache no longer holds exactly gen's
        chunks (another generation or eval() used it), keeps the longest common run of whole
        chunks and re-evaluates the rest of gen's chunks one by one, as they were first evaluated."""
        with self._use() as core:
            if self._cache_owner is not gen:
                cached, mine = self._cache_chunks, gen.chunks
                keep = 0
                while keep < min(len(cached), len(mine)) and cached[keep] == mine[keep]:
                    keep += 1
                core.truncate(sum(len(c) for c in cached[:keep]))
                self._cache_chunks = list(cached[:keep])
                self._cache_owner = gen
                for c in mine[keep:]:
                    self._cache_eval(core, gen, c, False)
            out = self._cache_eval(core, gen, chunk, all_logits)
            gen.chunks.append(chunk)
            return out

    def _truncate(self, gen: _Generation, n: int) -> None:
        """Cuts gen's tokens to the first n (its chunks, and the cache if it holds them)."""
        with self._use() as core:
            kept: List[Tuple[int, ...]] = []
            total = 0
            for c in gen.chunks:
                if total + len(c) > n:
                    if n > total:
                        kept.append(c[:n - total])
                    total = n
                    break
                kept.append(c)
                total += len(c)
            gen.chunks, gen.n_past = kept, total
            if self._cache_owner is gen:
                core.truncate(total)
                self._cache_chunks = list(kept)

    def _eval_hidden(self, ids: List[int]) -> np.ndarray:
        """Final hidden states (len(ids), n_embd) of ids from an empty context. The cache then
        holds ids, exactly as an eval of them would leave it, and is recorded so."""
        with self._use() as core:
            core.reset()
            self._cache_chunks, self._cache_owner = [], None
            out = core.eval_embeddings(list(ids))
            self._cache_chunks = [tuple(ids)]
            return out

    # ---- saved state and the prompt cache (python/ggmlpy/state.py) ----------------------------
    def save_state(self):
        """The KV cache of the Model's context (the last generation's or eval's tokens), the token
        ids it holds and the seed generator, as a state.ModelState (save(path) writes it to disk)."""
        from .state import ModelState, model_identity
        with self._use() as core:
            return self._state_of(core, ModelState, model_identity)

    def _state_of(self, core, ModelState, model_identity):
        toks = tuple(t for c in self._cache_chunks for t in c)
        known = len(toks) == core.n_past and (core.n_past == 0 or self._cache_chunks)
        return ModelState(model_identity(self), toks if known else None, core.kv_state(0), self._rng.getstate())

    def load_state(self, state) -> None:
        """Puts a state from save_state (or state.ModelState.load(path)) back: a generate whose
        prompt starts with its tokens evaluates only the rest, with the text generating straight on
        would give. A state of another model is refused (ValueError naming what differs)."""
        from .state import ModelState, check_identity
        if not isinstance(state, ModelState):
            raise TypeError(f"load_state takes a ModelState (from save_state or ModelState.load), "
                            f"got {type(state).__name__}")
        with self._use() as core:
            check_identity(state, self)
            core.set_kv_state(state.kv)
            self._cache_chunks = [tuple(state.tokens)] if state.tokens else []
            self._cache_owner = None
            if state.rng_state is not None:
                self._rng.setstate(state.rng_state)

    def set_cache(self, cache) -> None:
        """A state.PromptCache (or None): generations then start from the cached state sharing the
        longest prefix with their prompt when it beats the live KV cache, and the live cache's
        contents are stored there before a generation discards them."""
        from .state import PromptCache
        if cache is not None and not isinstance(cache, PromptCache):
            raise TypeError(f"set_cache takes a PromptCache or None, got {type(cache).__name__}")
        self._prompt_cache = cache

    def _use_prompt_cache(self, core, ids: Tuple[int, ...]) -> None:
        """Before a prefill of ids: store the live cache if ids would discard part of it, and load
        the stored state that shares more of ids than the live cache does."""
        from .state import ModelState, model_identity
        cache = self._prompt_cache
        live = tuple(t for c in self._cache_chunks for t in c)
        n_live = 0
        while n_live < min(len(live), len(ids) - 1) and live[n_live] == ids[n_live]:
            n_live += 1
        if len(live) > n_live and len(live) == core.n_past:
            cache.put(self._state_of(core, ModelState, model_identity))
        n, state = cache.longest_prefix(ids[:-1])
        if state is not None and n > n_live and state.tokens and len(state.tokens) == state.n_tokens:
            rng = self._rng.getstate()        # a cached state does not move the seed generator
            core.set_kv_state(state.kv)
            self._rng.setstate(rng)
            self._cache_chunks, self._cache_owner = [tuple(state.tokens)], None

    def _prefill(self, gen: _Generation, ids: Tuple[int, ...]):
        """Makes gen's context the prompt ids, keeping the longest prefix of ids the cache already
        holds (whole chunks, then part of the next one) and evaluating only the rest as one chunk.
        At least the last token is evaluated: its logits start the sampling. Turn N of a chat
        whose earlier turns are in the cache thus costs only its new tokens. Returns (logits,
        number of tokens reused)."""
        with self._use() as core:
            if self._prompt_cache is not None:
                self._use_prompt_cache(core, ids)
            kept: List[Tuple[int, ...]] = []
            n_keep, limit = 0, len(ids) - 1
            for c in self._cache_chunks:
                same = 0
                while same < len(c) and n_keep + same < limit and c[same] == ids[n_keep + same]:
                    same += 1
                if same:
                    kept.append(c if same == len(c) else c[:same])
                    n_keep += same
                if same < len(c):
                    break
            core.truncate(n_keep)
            self._cache_chunks, self._cache_owner = list(kept), gen
            gen.chunks, gen.n_past = list(kept), n_keep
            return gen.eval(ids[n_keep:]), n_keep

    # ---- generation ------------------------------------------------------------------------
    def generate(self, prompt: Union[str, Sequence[int]], max_new_tokens: Optional[int] = 128,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
                 presence_penalty: float = 0.0, repeat_last_n: int = 64,
                 stop: Optional[Union[str, Sequence[str]]] = None, seed: Optional[int] = None,
                 stream: bool = False, ignore_eos: bool = False, add_bos: Optional[bool] = None,
                 stop_token_ids: Optional[Sequence[int]] = None,
                 grammar: Optional[str] = None, json_schema=None,
                 logit_bias=None, logits_processor=None, stopping_criteria=None,
                 logprobs: Optional[int] = None, draft_model=_DEFAULT, typical_p: float = 1.0,
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                 dry_multiplier: float = 0.0, dry_base: float = 1.75, dry_allowed_length: int = 2,
                 dry_penalty_last_n: int = -1, dry_sequence_breakers=DRY_BREAKERS,
                 ) -> Union[str, Iterator[str]]:
        """Generates from prompt (text, or token ids). Returns the new text (without the prompt),
        or with stream=True an iterator of text pieces. temperature 0 is greedy. Ends at EOS/EOG or
        one of stop_token_ids (unless ignore_eos), at a stop string (never included), after
        max_new_tokens (None or -1: until the context is full) or when the context is full.
        Timings and the finish reason are in `last_stats` afterwards. The part of the prompt the
        KV cache already holds (the previous call's prompt and reply: a chat's earlier turns) is
        not evaluated again (`last_stats.cached_tokens`). The Model may be shared between threads
        and generators (see the class docstring).

        grammar (GBNF text) or json_schema (a JSON Schema dict) constrains every sampled token so
        the text is a sentence of the grammar / a JSON document valid under the schema; it ends
        when the grammar is complete ("stop"), or is cut by max_new_tokens ("length").

        dry_multiplier > 0 turns on the DRY penalty: a token that would extend a repeat of L >=
        dry_allowed_length tokens loses dry_multiplier * dry_base^(L - dry_allowed_length) (over the
        last dry_penalty_last_n tokens, -1: all; a repeat does not run across a token whose text
        holds one of dry_sequence_breakers). typical_p < 1 keeps the locally typical set; mirostat_mode 1 or 2 samples with Mirostat
        (target surprise mirostat_tau bits, learning rate mirostat_eta) instead of top-k / top-p /
        min-p / typical-p (include/ggmlpy/sampler.h has the order of the steps).

        As llama-cpp-python's Llama: logit_bias {token id: bias} is added to the logits;
        logits_processor (a callable or a list) maps (ids, logits) -> logits, ids an int32 array
        of the prompt and the tokens so far; stopping_criteria (a callable or a list) of (ids,
        logits) returning True ends the generation ("stop") before the next token. logprobs=N
        (0..20) records each generated token's log-probability under the model's logits and the N
        most likely alternatives in last_stats.logprobs. The order of the steps:
        python/ggmlpy/sampling_hooks.py.

        draft_model (default: the Model's own draft_model) turns on speculative decoding:
        "prompt-lookup" (or speculative.PromptLookup(k=...)) drafts from n-grams repeated in the
        prompt and text, a smaller Model with the same vocabulary (or speculative.DraftModel(m,
        k=...)) by its greedy tokens; None turns it off. The text is identical to decoding without
        it (greedy and sampled); last_stats counts draft_passes, draft_tokens, draft_accepted. It
        applies to one prompt without start_batching (a list of prompts and the batch engine
        decode without drafts)."""
        m = self._m
        if max_new_tokens is not None:
            max_new_tokens = _int("max_new_tokens", max_new_tokens, -1, 2**62,
                                  "an int >= 0 (-1 or None: until EOS or a full context)")
            if max_new_tokens == -1:
                max_new_tokens = None
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None:
            if not hasattr(stop, "__iter__") or not all(isinstance(s, str) for s in stop):
                raise TypeError("stop must be a str or a list of str")
            stop = [_text("stop", s) for s in stop]
        top_k = _int("top_k", top_k, 0, INT32_MAX, "an int >= 0 (0: off)")
        repeat_last_n = _int("repeat_last_n", repeat_last_n, INT32_MAX * -1 - 1, INT32_MAX,
                             "an int >= -1 (-1: all, 0: off)")
        stream, ignore_eos = _bool("stream", stream), _bool("ignore_eos", ignore_eos)
        stop_ids = _token_ids("stop_token_ids", stop_token_ids or [], m.n_vocab)
        floats = {k: _float(k, v) for k, v in dict(
            temperature=temperature, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, typical_p=typical_p,
            mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, dry_multiplier=dry_multiplier,
            dry_base=dry_base).items()}
        mirostat_mode = _int("mirostat_mode", mirostat_mode, 0, 2, "0 (off), 1 or 2")
        dry = dict(dry_allowed_length=_int("dry_allowed_length", dry_allowed_length, 1, INT32_MAX, "an int >= 1"),
                   dry_penalty_last_n=_int("dry_penalty_last_n", dry_penalty_last_n, -1, INT32_MAX,
                                           "an int >= -1 (-1: all)"),
                   dry_breakers=self._dry_breaker_ids(dry_sequence_breakers) if floats["dry_multiplier"] > 0 else [])

        def sampler_for(seed, name="seed"):
            if seed is None:
                seed = self._rng.randrange(2**63) if self.seed >= 0 else -1
            seed = _int(name, seed, INT64_MIN, INT64_MAX, "an int in [-2**63, 2**63) (-1: random)")
            # the sampler validates the float ranges and names the parameter
            return _core.Sampler(top_k=top_k, repeat_last_n=repeat_last_n, seed=seed, mirostat=mirostat_mode,
                                 **floats, **dry)

        from .grammar import constraint_for, grammar_text
        from .sampling_hooks import SamplingHooks
        constraint_text = grammar_text(grammar, json_schema)   # a bad grammar raises here, once

        def hooks_for(prompt_ids):   # checks the arguments (raises before anything runs)
            return SamplingHooks.make(prompt_ids, m.n_vocab, logit_bias, logits_processor,
                                      stopping_criteria, logprobs)
        hooks_for([])
        drafter = self._drafter if draft_model is _DEFAULT else self._make_drafter(draft_model)

        if _is_prompt_list(prompt):
            from .batch import generate_batch
            if stream:
                raise ValueError("stream=True takes one prompt; a list of prompts returns a list of texts")
            prompts = list(prompt)
            if isinstance(seed, (list, tuple)):
                if len(seed) != len(prompts):
                    raise ValueError(f"seed has {len(seed)} values for {len(prompts)} prompts")
                samplers = [sampler_for(x, f"seed[{i}]") for i, x in enumerate(seed)]
            else:          # one seed for all (None: a fresh draw per prompt)
                samplers = [sampler_for(seed) for _ in prompts]
            ids = [self._prompt_ids(p, add_bos, f"prompt[{i}]") for i, p in enumerate(prompts)]
            constraints = [constraint_for(self, constraint_text) for _ in prompts]
            return generate_batch(self, ids, samplers, max_new_tokens, stop, ignore_eos, stop_ids, constraints,
                                  [hooks_for(x) for x in ids])

        sampler = sampler_for(seed)
        ids = self._prompt_ids(prompt, add_bos, "prompt")
        engine = self._batch_engine
        if engine is not None:     # continuous batching (start_batching): on a sequence of its own
            req = engine.submit(ids, sampler, max_new_tokens, stop, ignore_eos, stop_ids,
                                constraint_for(self, constraint_text), hooks_for(ids))
            self.last_stats = req.stats
            it = _engine_stream(req)
            return it if stream else "".join(it)
        stats = GenerationStats(seed=sampler.seed)
        self.last_stats = stats
        it = run_generation(_Generation(self, m.n_ctx), m.tokenizer, sampler, ids, max_new_tokens, stop,
                            ignore_eos, stats, stop_ids, constraint=constraint_for(self, constraint_text),
                            hooks=hooks_for(ids), drafter=drafter)
        if stream:
            return it          # takes the lock per token (in _eval_chunk)
        with self._lock:       # the whole call at once: other callers wait, none re-syncs
            return "".join(it)

    def _dry_breaker_ids(self, breakers) -> List[int]:
        """Token ids whose text holds one of the breaker strings (cached per set of strings)."""
        if isinstance(breakers, str) or not all(isinstance(b, str) for b in breakers):
            raise TypeError("dry_sequence_breakers must be a list of str")
        key = tuple(sorted(set(breakers)))
        cache = self.__dict__.setdefault("_dry_cache", {})
        if key not in cache:
            m = self._m
            ids = []
            for i in range(m.n_vocab):
                piece = m.tokenizer.token_to_piece(i).decode("utf-8", errors="replace")
                if any(b in piece for b in key):
                    ids.append(i)
            cache[key] = ids
        return cache[key]

    def _prompt_ids(self, prompt, add_bos, name: str) -> List[int]:
        """Token ids of one prompt (text or ids), at least one token, no longer than n_ctx."""
        m = self._m
        if isinstance(prompt, (str, bytes, bytearray)):
            ids = self.tokenize(prompt, add_bos=add_bos)
        else:
            ids = _token_ids(name, prompt, m.n_vocab)
        if not ids:
            bos = getattr(self.tokenizer, "bos", -1)
            if bos is None or bos < 0:
                raise ValueError(f"{name} is empty and the model has no BOS token to start from")
            ids = [bos]
        if len(ids) > m.n_ctx:
            raise ValueError(f"{name} is {len(ids)} tokens, longer than the context n_ctx = {m.n_ctx} "
                             "(load the Model with a larger n_ctx or shorten the prompt)")
        return ids

    __call__ = generate

    # ---- embeddings (python/ggmlpy/embeddings.py) ---------------------------------------------
    def embed(self, texts: Union[str, Sequence[str]], pooling: str = "mean", normalize: bool = True,
              add_bos: Optional[bool] = None) -> np.ndarray:
        """Embeddings of texts from the final hidden states: float32 (n_embd,) for a str,
        (len(texts), n_embd) for a list. pooling "mean" (default), "last" or "cls" (first token);
        normalize scales to unit length."""
        from . import embeddings
        return embeddings.embed(self, texts, pooling=pooling, normalize=normalize, add_bos=add_bos)

    # ---- chat (python/ggmlpy/chat.py) -------------------------------------------------------
    def apply_chat_template(self, messages, add_generation_prompt: bool = True,
                            chat_template: Optional[str] = None, tools=None) -> str:
        """messages ([{"role": ..., "content": ...}, ...]) rendered with the GGUF's
        tokenizer.chat_template (or chat_template) as HF transformers renders it."""
        from . import chat
        return chat.apply_chat_template(self, messages, add_generation_prompt=add_generation_prompt,
                                        chat_template=chat_template, tools=tools)

    def create_chat_completion(self, messages, max_tokens: Optional[int] = None, temperature: float = 0.8,
                               top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, stop=None,
                               seed: Optional[int] = None, stream: bool = False, repeat_penalty: float = 1.0,
                               frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                               chat_template: Optional[str] = None, response_format=None,
                               grammar: Optional[str] = None, tools=None, logprobs: bool = False,
                               top_logprobs: Optional[int] = None, logit_bias=None, logits_processor=None,
                               stopping_criteria=None, **sampling):
        """An OpenAI `chat.completion` dict, or with stream=True an iterator of
        `chat.completion.chunk` dicts (the last one has finish_reason and usage).
        response_format {"type": "json_object"} or {"type": "json_schema", "json_schema":
        {"name": ..., "schema": {...}}} (or grammar=GBNF text) constrains the reply. tools (OpenAI
        tool definitions) go to the chat template, as HF's apply_chat_template passes them; the
        reply is returned as text (no tool-call parsing). logprobs=True (with top_logprobs=N
        alternatives, 0..20) adds OpenAI's choices[0].logprobs.content; logit_bias,
        logits_processor and stopping_criteria as in generate(), and so are typical_p,
        mirostat_mode, mirostat_tau, mirostat_eta and draft_model (keyword arguments)."""
        from . import chat
        return chat.create_chat_completion(
            self, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, stop=stop, seed=seed, stream=stream, repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, chat_template=chat_template,
            response_format=response_format, grammar=grammar, tools=tools, logprobs=logprobs,
            top_logprobs=top_logprobs, logit_bias=logit_bias, logits_processor=logits_processor,
            stopping_criteria=stopping_criteria, **sampling)

    def create_completion(self, prompt, max_tokens: Optional[int] = 16, temperature: float = 0.8,
                          top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, stop=None,
                          seed: Optional[int] = None, stream: bool = False, repeat_penalty: float = 1.0,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                          response_format=None, grammar: Optional[str] = None, logprobs: Optional[int] = None,
                          echo: bool = False, logit_bias=None, logits_processor=None, stopping_criteria=None,
                          **sampling):
        """An OpenAI `text_completion` dict (or an iterator of them with stream=True);
        response_format / grammar as in create_chat_completion. logprobs=N (0..20) adds
        choices[0].logprobs (tokens, token_logprobs, top_logprobs, text_offset); echo=True puts
        the prompt before the text (and its tokens in logprobs, the first with None)."""
        from . import chat
        return chat.create_completion(
            self, prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, stop=stop, seed=seed, stream=stream, repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            response_format=response_format, grammar=grammar, logprobs=logprobs, echo=echo,
            logit_bias=logit_bias, logits_processor=logits_processor, stopping_criteria=stopping_criteria,
            **sampling)

    def chat(self, messages_or_text, **kwargs) -> str:
        """The assistant's reply as a str; a str argument is one user message. Keyword arguments
        as create_chat_completion (without stream)."""
        from . import chat
        return chat.chat(self, messages_or_text, **kwargs)

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
