"""Token-by-token generation on a loaded `_core.Model`: the pieces that turn sampled token ids into
text safely. `Utf8Stream` never yields part of a UTF-8 character; `StopMatcher` holds back text
that could be the start of a stop string, so nothing past a stop string is ever emitted;
`run_generation` drives eval -> sample -> decode and records timings in a `GenerationStats`.
No model loading or argument defaults here (see model.py)."""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Sequence


class Utf8Stream:
    """Bytes in, complete characters out. Invalid bytes become U+FFFD; an incomplete sequence at
    the end is held until more bytes arrive. `flush(cut=True)` drops it: generation cut by the
    token limit in the middle of a character ends on the last whole character, not on U+FFFD (the
    decoder holds back only a valid prefix of a multi-byte character, so nothing else is lost).
    `flush()` is for text that really ended there (EOS): the broken character becomes U+FFFD."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._dec.decode(data, final=False)

    def flush(self, cut: bool = False) -> str:
        if cut:
            self._dec.reset()
            return ""
        return self._dec.decode(b"", final=True)


class StopMatcher:
    """Text in, text that is safe to emit out. `feed` returns (text, stopped): once a stop string
    appears, the text before it is returned with stopped=True and nothing after it ever is."""

    def __init__(self, stops: Optional[Iterable[str]] = None) -> None:
        self.stops: List[str] = [s for s in (stops or []) if s]
        self._pending = ""
        self.stopped_on: Optional[str] = None

    def _held_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def feed(self, text: str):
        if not self.stops:
            return text, False
        self._pending += text
        first = None
        for s in self.stops:
            i = self._pending.find(s)
            if i >= 0 and (first is None or i < first[0]):
                first = (i, s)
        if first is not None:
            out = self._pending[: first[0]]
            self._pending = ""
            self.stopped_on = first[1]
            return out, True
        hold = self._held_suffix(self._pending)
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


@dataclass
class GenerationStats:
    """Timings of one generate() call (seconds) and why it ended: "stop" (EOS/EOG or a stop
    string), "length" (max_new_tokens or a full context) or "interrupted" (Ctrl-C)."""
    prompt_tokens: int = 0
    cached_tokens: int = 0      # prompt tokens whose KV was already in the cache (not evaluated again)
    prompt_time: float = 0.0
    generated_tokens: int = 0
    generation_time: float = 0.0
    finish_reason: str = "length"
    seed: int = -1
    token_ids: List[int] = field(default_factory=list)

    @property
    def prompt_tps(self) -> float:
        """Evaluated prompt tokens per second (cached ones cost nothing and are not counted)."""
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prompt_time if self.prompt_time > 0 else float("nan")

    @property
    def generation_tps(self) -> float:
        return self.generated_tokens / self.generation_time if self.generation_time > 0 else float("nan")


def run_generation(core, tokenizer, sampler, prompt_ids: Sequence[int], max_new_tokens: Optional[int],
                   stop: Optional[Sequence[str]], ignore_eos: bool, stats: GenerationStats,
                   stop_ids: Sequence[int] = (), constraint=None) -> Iterator[str]:
    """Evaluates prompt_ids, then samples up to max_new_tokens (None: until EOS or the context is
    full), yielding text pieces. Fills `stats` as it goes (also when the caller stops iterating
    early or Ctrl-C interrupts between tokens). A core with `prefill(ids) -> (logits, n_cached)`
    keeps the part of the KV cache that already holds a prefix of prompt_ids and evaluates only
    the rest (multi-turn chat); other cores start from an empty context. stop_ids end the
    generation as EOS does (a template's end-of-turn token the vocabulary does not mark EOG);
    they are not part of the text.

    constraint (grammar.GrammarConstraint or None): masks the logits before each draw and accepts
    each drawn token; EOS/EOG can only be drawn where its grammar is complete and then always ends
    the text (ignore_eos does not apply), and generation stops ("stop") as soon as the grammar is
    complete and nothing may follow. A limit reached before that is "length" and the text is cut."""
    utf8 = Utf8Stream()
    matcher = StopMatcher(stop)
    n_ctx = core.n_ctx
    stop_ids = frozenset(stop_ids)
    stats.prompt_tokens = len(prompt_ids)
    stats.finish_reason = "interrupted"
    t0 = time.perf_counter()
    if hasattr(core, "prefill"):
        logits, stats.cached_tokens = core.prefill(list(prompt_ids))
    else:
        core.reset()
        logits = core.eval(list(prompt_ids), False)
    t1 = time.perf_counter()
    stats.prompt_time = t1 - t0
    sampler.accept_many(list(prompt_ids))   # penalties see the prompt too, as in llama.cpp / HF
    try:
        while max_new_tokens is None or stats.generated_tokens < max_new_tokens:
            if constraint is not None:
                logits = constraint.mask(logits)
            tid = sampler.sample(logits)
            if (not ignore_eos or constraint is not None) and (tokenizer.is_eog(tid) or tid in stop_ids):
                stats.finish_reason = "stop"
                break
            if constraint is not None:
                constraint.accept(tid)
            sampler.accept(tid)
            stats.token_ids.append(tid)
            stats.generated_tokens += 1
            text, stopped = matcher.feed(utf8.feed(tokenizer.token_to_piece(tid)))
            if text:
                stats.generation_time = time.perf_counter() - t1
                yield text
            if stopped or (constraint is not None and constraint.done):
                stats.finish_reason = "stop"
                break
            if max_new_tokens is not None and stats.generated_tokens >= max_new_tokens:
                stats.finish_reason = "length"
                break
            if core.n_past >= n_ctx:
                stats.finish_reason = "length"   # context full: nothing more can be evaluated
                break
            logits = core.eval([tid], False)
        else:
            stats.finish_reason = "length"
        if matcher.stopped_on is None:
            # cut by the limit (or Ctrl-C): drop half a character; ended by EOS: show it broken
            text, stopped = matcher.feed(utf8.flush(cut=stats.finish_reason != "stop"))
            text += "" if stopped else matcher.flush()
            if stopped:
                stats.finish_reason = "stop"
            if text:
                yield text
    finally:
        stats.generation_time = time.perf_counter() - t1
