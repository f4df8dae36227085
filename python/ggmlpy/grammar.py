"""Grammar-constrained sampling: the constraint object run_generation drives, and the per-Model
caches behind it. The engine is C++ (src/grammar/, bound as _core.Grammar / GrammarVocab /
GrammarAutomaton / GrammarMatcher); JSON Schema -> GBNF is json_schema.py.

Per generation: `mask(logits)` sets every token the grammar forbids to -inf (in place, float32
[n_vocab]); `accept(token)` advances; `done` is True once the grammar is complete and nothing may
follow. End-of-generation tokens are allowed only where the grammar is complete.

Per Model (cached on it): the vocabulary trie (built once, ~0.1 s for 49k tokens) and up to
CACHE_SIZE automata keyed by grammar text, so repeated calls with one schema reuse the states and
token masks already computed.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from . import _core
from .json_schema import schema_to_gbnf

CACHE_SIZE = 16
_cache_lock = threading.Lock()


class GrammarConstraint:
    """One generation's grammar state (see module docstring)."""

    def __init__(self, automaton) -> None:
        self._m = _core.GrammarMatcher(automaton)

    def mask(self, logits) -> np.ndarray:
        """Disallowed logits -> -inf; returns the array to sample from (the same one when it is a
        writable contiguous float32 array, else a masked copy)."""
        if not (isinstance(logits, np.ndarray) and logits.dtype == np.float32 and logits.ndim == 1
                and logits.flags.c_contiguous and logits.flags.writeable):
            logits = np.array(logits, dtype=np.float32).reshape(-1)
        if self._m.apply_mask(logits) == 0:
            raise ValueError("grammar: no token of the vocabulary can continue the text here "
                             "(the grammar needs bytes no token spells, or nesting deeper than 2048)")
        return logits

    def accept(self, token: int) -> None:
        if not self._m.accept_token(int(token)):
            raise ValueError(f"grammar: token {token} was sampled but the grammar does not allow it")

    def accept_bytes(self, data: bytes) -> bool:
        return self._m.accept_bytes(data)

    @property
    def complete(self) -> bool:
        return self._m.is_complete()

    @property
    def done(self) -> bool:
        return self._m.is_done()


def compile_grammar(text: str, root: str = "root"):
    """Parses and checks GBNF text: a _core.Grammar, or ValueError naming the rule and position."""
    if not isinstance(text, str):
        raise TypeError(f"grammar must be a str of GBNF rules, got {type(text).__name__}")
    if not isinstance(root, str):
        raise TypeError(f"root must be a str, got {type(root).__name__}")
    return _core.Grammar(text, root)


def grammar_text(grammar: Optional[str] = None, json_schema: Any = None) -> Optional[str]:
    """The GBNF text for generate()'s grammar= / json_schema= arguments (None: unconstrained)."""
    if grammar is not None and json_schema is not None:
        raise ValueError("pass either grammar or json_schema, not both")
    if grammar is not None:
        if not isinstance(grammar, str):
            raise TypeError(f"grammar must be a str of GBNF rules, got {type(grammar).__name__}")
        return grammar
    if json_schema is not None:
        return schema_to_gbnf(json_schema)
    return None


def constraint_for(model, text: Optional[str]) -> Optional[GrammarConstraint]:
    """A fresh GrammarConstraint for `text` on `model` (None when text is None), sharing the
    Model's cached vocabulary trie and automaton for that grammar."""
    if text is None:
        return None
    core = model._m
    with _cache_lock:
        cache = model.__dict__.get("_grammar_cache")
        if cache is None:
            cache = model.__dict__["_grammar_cache"] = {"vocab": None, "automata": OrderedDict()}
        automata = cache["automata"]
        auto = automata.get(text)
        if auto is not None:
            automata.move_to_end(text)
    if auto is None:
        g = compile_grammar(text)   # outside the lock: a bad grammar raises here
        with _cache_lock:
            if cache["vocab"] is None:
                cache["vocab"] = _core.GrammarVocab(core.tokenizer)
            auto = automata.get(text)
            if auto is None:
                auto = automata[text] = _core.GrammarAutomaton(g, cache["vocab"])
                while len(automata) > CACHE_SIZE:
                    automata.popitem(last=False)
    return GrammarConstraint(auto)
