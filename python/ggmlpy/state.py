"""Saved model state and the prompt cache.

`ModelState` is what `Model.save_state()` captures: the KV cache of the Model's sequence 0 (the
C++ `kv_state` bytes: a header checked against the model on load, then every layer's K and V for
the cached tokens), the token ids it holds, and the Model's seed generator (so generate(seed=None)
draws on as it would have). `load_state` puts it back: the next generate whose prompt starts with
those tokens evaluates only the rest, and its text is exactly what generating straight on gives.
`save(path)` writes a versioned file atomically (temp file, fsync, rename); `ModelState.load`
reads it back and `load_state` refuses a state of another model, naming what differs.

`PromptCache` keeps states keyed by their token ids, least recently used first out, bounded in
bytes, in RAM or in a folder on disk. With `Model.set_cache(cache)`, a generation whose prompt
shares a longer prefix with a cached state than with the live KV cache starts from that state, and
the live cache's contents are stored before a generation discards them.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

_MAGIC = b"GGPYSTATE\0"
_VERSION = 1


def model_identity(model) -> Dict:
    """What a state must match: the file (name and size) and the shapes."""
    core = model._m
    path = model.model_path
    try:
        size = os.path.getsize(path)
    except OSError:
        size = -1
    return {"file": os.path.basename(path), "file_size": size, "arch": core.arch, "n_vocab": core.n_vocab,
            "n_embd": core.n_embd, "n_layer": core.n_layer}


@dataclass
class ModelState:
    identity: Dict
    tokens: Optional[Tuple[int, ...]]   # the cached token ids (None: not known)
    kv: bytes
    rng_state: Optional[tuple] = None

    @property
    def n_tokens(self) -> int:
        return int.from_bytes(self.kv[24:28], "little") if len(self.kv) >= 28 else 0   # header's n_past

    @property
    def nbytes(self) -> int:
        return len(self.kv) + 4 * len(self.tokens or ())

    def save(self, path) -> None:
        """Writes the state to path atomically: a crash leaves the old file or the new one."""
        path = os.fspath(path)
        head = json.dumps({"version": _VERSION, "identity": self.identity,
                           "tokens": list(self.tokens) if self.tokens is not None else None,
                           "rng_state": _rng_to_json(self.rng_state)}).encode()
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".ggmlpy-state-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + len(head).to_bytes(8, "little") + head)
                f.write(self.kv)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path) -> "ModelState":
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
            raise ValueError(f"{path}: not a ggmlpy state file")
        n = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 8], "little")
        start = len(_MAGIC) + 8
        if start + n > len(data):
            raise ValueError(f"{path}: truncated state file ({len(data)} bytes)")
        try:
            head = json.loads(data[start:start + n])
        except ValueError as e:
            raise ValueError(f"{path}: damaged state header ({e})") from None
        if not isinstance(head, dict) or head.get("version") != _VERSION:
            raise ValueError(f"{path}: state format version {head.get('version') if isinstance(head, dict) else '?'}, "
                             f"this ggmlpy reads version {_VERSION}")
        tokens = head.get("tokens")
        return cls(head.get("identity") or {}, tuple(tokens) if tokens is not None else None,
                   data[start + n:], _rng_from_json(head.get("rng_state")))


def _rng_to_json(state):
    if state is None:
        return None
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(v):
    if v is None:
        return None
    return (v[0], tuple(v[1]), v[2])


def check_identity(state: ModelState, model) -> None:
    mine = model_identity(model)
    for k, want in mine.items():
        got = state.identity.get(k)
        if got != want:
            raise ValueError(f"load_state: the state belongs to a model with {k} = {got!r}, this one has {want!r}")


class PromptCache:
    """States keyed by their token ids, the least recently used dropped first once the total
    passes capacity_bytes. path=None keeps them in RAM; a folder keeps them on disk (one file per
    state, written atomically; an index in memory), so they survive in the folder for later runs
    of the same process only through that index (files of earlier runs are removed at start)."""

    def __init__(self, capacity_bytes: int = 2 << 30, path=None) -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int) or capacity_bytes <= 0:
            raise ValueError(f"PromptCache: capacity_bytes = {capacity_bytes!r}, expected an int > 0")
        self.capacity_bytes = capacity_bytes
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: "OrderedDict[Tuple[int, ...], Tuple[int, object]]" = OrderedDict()   # key -> (bytes, state or file)
        self._bytes = 0
        self._n = 0
        if self.path is not None:
            os.makedirs(self.path, exist_ok=True)
            for name in os.listdir(self.path):
                if name.startswith("state-") and name.endswith(".ggmlpy"):
                    try:
                        os.unlink(os.path.join(self.path, name))
                    except OSError:
                        pass

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, state: ModelState) -> None:
        if not state.tokens:
            return
        key = tuple(state.tokens)
        size = state.nbytes
        if size > self.capacity_bytes:
            return
        with self._lock:
            self._drop(key)
            if self.path is not None:
                self._n += 1
                f = os.path.join(self.path, f"state-{self._n}.ggmlpy")
                state.save(f)
                self._entries[key] = (size, f)
            else:
                self._entries[key] = (size, state)
            self._bytes += size
            while self._bytes > self.capacity_bytes and self._entries:
                self._drop(next(iter(self._entries)))

    def _drop(self, key) -> None:
        e = self._entries.pop(key, None)
        if e is None:
            return
        self._bytes -= e[0]
        if isinstance(e[1], str):
            try:
                os.unlink(e[1])
            except OSError:
                pass

    def longest_prefix(self, ids) -> Tuple[int, Optional[ModelState]]:
        """(n, state): the cached state sharing the longest prefix with ids (n tokens), marked as
        recently used; (0, None) when none shares any."""
        ids = tuple(ids)
        best_key, best_n = None, 0
        with self._lock:
            for key in self._entries:
                n = 0
                m = min(len(key), len(ids))
                while n < m and key[n] == ids[n]:
                    n += 1
                if n > best_n:
                    best_key, best_n = key, n
            if best_key is None:
                return 0, None
            self._entries.move_to_end(best_key)
            e = self._entries[best_key][1]
        return best_n, (ModelState.load(e) if isinstance(e, str) else e)
