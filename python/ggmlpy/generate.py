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
    logprobs: Optional[list] = None   # sampling_hooks.TokenLogprob per generated token, when asked for
    draft_passes: int = 0       # speculative decoding: passes of the model, tokens drafted, kept
    draft_tokens: int = 0
    draft_accepted: int = 0

    @property
    def prompt_tps(self) -> float:
        """Evaluated prompt tokens per second (cached ones cost nothing and are not counted)."""
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prompt_time if self.prompt_time > 0 else float("nan")

    @property
    def generation_tps(self) -> float:
        return self.generated_tokens / self.generation_time if self.generation_time > 0 else float("nan")


class TokenStepper:
    """One generation's rules from logits to text, shared by run_generation (one sequence) and the
    batch scheduler (batch.py, many): sample (through the grammar constraint if any), end at
    EOS/EOG or a stop id (unless ignore_eos; always under a constraint), at a stop string (never
    emitted), when the constraint is done, after max_new tokens or when the context is full; the
    text never ends in half a character unless the model ended it there. Fills `stats`."""

    def __init__(self, tokenizer, sampler, max_new: Optional[int], stop, ignore_eos: bool,
                 stats: GenerationStats, stop_ids: Sequence[int] = (), constraint=None, hooks=None) -> None:
        self.tok, self.sampler, self.max_new, self.stats = tokenizer, sampler, max_new, stats
        self.ignore_eos, self.stop_ids, self.constraint = ignore_eos, frozenset(stop_ids), constraint
        self.hooks = hooks      # sampling_hooks.SamplingHooks or None
        if hooks is not None and hooks.n_logprobs is not None:
            stats.logprobs = hooks.logprobs
        self.utf8, self.matcher = Utf8Stream(), StopMatcher(stop)
        stats.finish_reason = "interrupted"    # until a rule below ends it

    def step(self, logits, n_past: int, n_ctx: int):
        """Samples after the last evaluated token (n_past tokens in the cache). Returns (the token
        to evaluate next, or None when the generation has ended; the text pieces to emit)."""
        st, c, h = self.stats, self.constraint, self.hooks
        if self.max_new is not None and st.generated_tokens >= self.max_new:
            return None, self._end("length")
        raw = logits
        if h is not None:
            if h.should_stop(st.token_ids, logits):
                return None, self._end("stop")
            logits = h.process(st.token_ids, logits)
        if c is not None:
            logits = c.mask(logits)
        tid = self.sampler.sample(logits)
        if (not self.ignore_eos or c is not None) and (self.tok.is_eog(tid) or tid in self.stop_ids):
            return None, self._end("stop")
        if c is not None:
            c.accept(tid)
        self.sampler.accept(tid)
        if h is not None:
            h.record(raw, tid)
        st.token_ids.append(tid)
        st.generated_tokens += 1
        text, stopped = self.matcher.feed(self.utf8.feed(self.tok.token_to_piece(tid)))
        pieces = [text] if text else []
        if stopped or (c is not None and c.done):
            return None, pieces + self._end("stop")
        if self.max_new is not None and st.generated_tokens >= self.max_new:
            return None, pieces + self._end("length")
        if n_past >= n_ctx:
            return None, pieces + self._end("length")   # context full: nothing more can be evaluated
        return tid, pieces

    def _end(self, reason: str) -> List[str]:
        self.stats.finish_reason = reason
        if self.matcher.stopped_on is not None:
            return []
        # cut by a limit: drop half a character; ended by EOS: show it broken
        text, stopped = self.matcher.feed(self.utf8.flush(cut=reason != "stop"))
        text += "" if stopped else self.matcher.flush()
        if stopped:
            self.stats.finish_reason = "stop"
        return [text] if text else []


def run_generation(core, tokenizer, sampler, prompt_ids: Sequence[int], max_new_tokens: Optional[int],
                   stop: Optional[Sequence[str]], ignore_eos: bool, stats: GenerationStats,
                   stop_ids: Sequence[int] = (), constraint=None, hooks=None,
                   drafter=None) -> Iterator[str]:
    """Evaluates prompt_ids, then samples up to max_new_tokens (None: until EOS or the context is
    full), yielding text pieces (the rules: TokenStepper). Fills `stats` as it goes (also when the
    caller stops iterating early or Ctrl-C interrupts between tokens: "interrupted"). A core with
    `prefill(ids) -> (logits, n_cached)` keeps the part of the KV cache that already holds a prefix
    of prompt_ids and evaluates only the rest (multi-turn chat); other cores start from an empty
    context. stop_ids end the generation as EOS does (a template's end-of-turn token the
    vocabulary does not mark EOG); they are not part of the text.

    constraint (grammar.GrammarConstraint or None): masks the logits before each draw and accepts
    each drawn token; EOS/EOG can only be drawn where its grammar is complete and then always ends
    the text (ignore_eos does not apply), and generation stops ("stop") as soon as the grammar is
    complete and nothing may follow. A limit reached before that is "length" and the text is cut."""
    stepper = TokenStepper(tokenizer, sampler, max_new_tokens, stop, ignore_eos, stats, stop_ids, constraint, hooks)
    n_ctx = core.n_ctx
    stats.prompt_tokens = len(prompt_ids)
    t0 = time.perf_counter()
    if hasattr(core, "prefill"):
        logits, stats.cached_tokens = core.prefill(list(prompt_ids))
    else:
        core.reset()
        logits = core.eval(list(prompt_ids), False)
    t1 = time.perf_counter()
    stats.prompt_time = t1 - t0
    sampler.accept_many(list(prompt_ids))   # penalties see the prompt too, as in llama.cpp / HF
    if drafter is not None:    # speculative decoding (speculative.py): the same text, faster
        from .speculative import speculative_steps
        try:
            for text in speculative_steps(core, stepper, drafter, list(prompt_ids), logits, n_ctx, max_new_tokens):
                stats.generation_time = time.perf_counter() - t1
                yield text
        finally:
            stats.generation_time = time.perf_counter() - t1
        return
    try:
        while True:
            tid, pieces = stepper.step(logits, core.n_past, n_ctx)
            for text in pieces:
                stats.generation_time = time.perf_counter() - t1
                yield text
            if tid is None:
                break
            logits = core.eval([tid], False)
    finally:
        stats.generation_time = time.perf_counter() - t1
