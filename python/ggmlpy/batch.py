"""Batch generation: many prompts through one Model's sequences at once.

`Model(..., n_seq_max=N)` has N sequences in its KV cache. `generate_batch` keeps up to N prompts
running: every step is one `eval_batch` forward pass holding each running sequence's next token
(or a newly admitted prompt), so the weights are read once per step for all of them. A finished
sequence frees its slot for the next waiting prompt (continuous batching). Each prompt has its own
sampler, stop strings and limits, and gives the same text as `generate` on that prompt alone:
`eval_batch` gives a sequence the same logits bits whatever shares its batch.

Model.generate(list_of_prompts, ...) validates the arguments and calls generate_batch."""
from __future__ import annotations

import time
from collections import deque
from typing import List, Optional, Sequence

from .generate import GenerationStats, StopMatcher, Utf8Stream


class _Sequence:
    """One prompt's generation, stepped by the batch loop with the same rules as run_generation:
    EOG / stop ids end it (unless ignore_eos), a stop string ends it and is never part of the text,
    max_new_tokens and a full context cut it; the text never ends in half a UTF-8 character."""

    def __init__(self, index, ids, sampler, max_new, stop, ignore_eos, stop_ids, tokenizer, n_ctx):
        self.index, self.sampler, self.max_new = index, sampler, max_new
        self.ignore_eos, self.stop_ids, self.tok, self.n_ctx = ignore_eos, stop_ids, tokenizer, n_ctx
        self.utf8, self.matcher = Utf8Stream(), StopMatcher(stop)
        self.stats = GenerationStats(seed=sampler.seed, prompt_tokens=len(ids), finish_reason="interrupted")
        self.n_past = len(ids)       # tokens in this sequence's cache once the prompt is evaluated
        self.pieces: List[str] = []
        self.prompt_done = False     # its prompt has been through a pass
        self.t_start = time.perf_counter()
        sampler.accept_many(list(ids))   # penalties see the prompt too, as in run_generation

    def step(self, logits) -> Optional[int]:
        """Samples from the logits after the last evaluated token. Returns the token to evaluate
        next, or None when the sequence has finished."""
        st = self.stats
        if self.max_new is not None and st.generated_tokens >= self.max_new:
            return self._finish("length")
        tid = self.sampler.sample(logits)
        if not self.ignore_eos and (self.tok.is_eog(tid) or tid in self.stop_ids):
            return self._finish("stop")
        self.sampler.accept(tid)
        st.token_ids.append(tid)
        st.generated_tokens += 1
        text, stopped = self.matcher.feed(self.utf8.feed(self.tok.token_to_piece(tid)))
        if text:
            self.pieces.append(text)
        if stopped:
            return self._finish("stop")
        if self.max_new is not None and st.generated_tokens >= self.max_new:
            return self._finish("length")
        if self.n_past >= self.n_ctx:
            return self._finish("length")   # context full: nothing more can be evaluated
        self.n_past += 1
        return tid

    def _finish(self, reason: str) -> None:
        st = self.stats
        st.finish_reason = reason
        if self.matcher.stopped_on is None:
            text, stopped = self.matcher.feed(self.utf8.flush(cut=reason != "stop"))
            text += "" if stopped else self.matcher.flush()
            if stopped:
                st.finish_reason = "stop"
            if text:
                self.pieces.append(text)
        st.generation_time = time.perf_counter() - self.t_start - st.prompt_time
        return None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generate_batch(model, prompts: Sequence[List[int]], samplers, max_new: Optional[int], stop,
                   ignore_eos: bool, stop_ids: Sequence[int]) -> List[str]:
    """Texts for prompts (token id lists), in order; model.last_stats becomes the list of their
    GenerationStats. Holds the Model's lock for the whole call."""
    stop_ids = frozenset(stop_ids)
    results: List[Optional[_Sequence]] = [None] * len(prompts)
    with model._use() as core:
        # the batch uses sequence 0 too: what the prefix cache knew of it is void
        model._cache_chunks, model._cache_owner = [], None
        n_slots = core.n_seq_max
        pending = deque(range(len(prompts)))
        active = {}      # slot -> _Sequence
        feed = {}        # slot -> ids to evaluate in the next pass
        while pending or active:
            for slot in range(n_slots):
                if not pending:
                    break
                if slot not in active:
                    i = pending.popleft()
                    core.truncate_seq(slot, 0)
                    active[slot] = _Sequence(i, prompts[i], samplers[i], max_new, stop, ignore_eos, stop_ids,
                                             core.tokenizer, core.n_ctx)
                    feed[slot] = prompts[i]
            slots = list(feed)
            t0 = time.perf_counter()
            logits = core.eval_batch(slots, [feed[s] for s in slots])
            dt = time.perf_counter() - t0
            new_feed = {}
            for row, slot in enumerate(slots):
                seq = active[slot]
                if not seq.prompt_done:           # the pass that evaluated its prompt
                    seq.stats.prompt_time, seq.prompt_done = dt, True
                nxt = seq.step(logits[row])
                if nxt is None:
                    results[seq.index] = seq
                    del active[slot]
                else:
                    new_feed[slot] = [nxt]
            feed = new_feed
    model.last_stats = [s.stats for s in results]
    return [s.text for s in results]
