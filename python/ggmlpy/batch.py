"""Batch generation: many prompts through one Model's sequences at once.

`Model(..., n_seq_max=N)` has N sequences in its KV cache. `generate_batch` keeps up to N prompts
running: every step is one `eval_batch` forward pass holding each running sequence's next token
(or a newly admitted prompt), so the weights are read once per step for all of them. A finished
sequence frees its slot for the next waiting prompt (continuous batching). Each prompt has its own
sampler, stop strings and limits, and gives the same text as `generate` on that prompt alone:
`eval_batch` gives a sequence the same logits bits whatever shares its batch.

Model.generate(list_of_prompts, ...) validates the arguments and calls generate_batch."""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import List, Optional, Sequence

from .generate import GenerationStats, TokenStepper


class _Sequence:
    """One prompt's generation in the batch: a TokenStepper (the same rules as run_generation)
    plus what the scheduler needs (its index, the text so far, how many tokens its cache holds)."""

    def __init__(self, index, ids, sampler, max_new, stop, ignore_eos, stop_ids, tokenizer, n_ctx,
                 constraint=None, hooks=None):
        self.index, self.n_ctx = index, n_ctx
        self.stats = GenerationStats(seed=sampler.seed, prompt_tokens=len(ids))
        self.stepper = TokenStepper(tokenizer, sampler, max_new, stop, ignore_eos, self.stats, stop_ids,
                                    constraint, hooks)
        self.n_past = len(ids)       # tokens in this sequence's cache once the prompt is evaluated
        self.pieces: List[str] = []
        self.prompt_done = False     # its prompt has been through a pass
        self.t_start = time.perf_counter()
        sampler.accept_many(list(ids))   # penalties see the prompt too, as in run_generation

    def step(self, logits) -> Optional[int]:
        """Samples from the logits after the last evaluated token. Returns the token to evaluate
        next, or None when the sequence has finished."""
        tid, pieces = self.stepper.step(logits, self.n_past, self.n_ctx)
        self.pieces += pieces
        if tid is None:
            self.stats.generation_time = time.perf_counter() - self.t_start - self.stats.prompt_time
            return None
        self.n_past += 1
        return tid

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class _Slots:
    """The sequences of one core in flight: each running _Sequence has a slot (a sequence id of
    the KV cache); step() evaluates every slot's next ids in one eval_batch and samples. A prompt
    longer than `chunk` tokens is fed `chunk` tokens per step (it does not stall the others).
    Each slot remembers the ids its cache holds, and a new prompt takes a free slot that holds a
    prefix of it where one does, evaluating only the rest (a chat's next turn on the server); the
    bits do not depend on how a prompt was split, so the text is the same as from an empty slot."""

    def __init__(self, slots, chunk: Optional[int] = None):
        self.free = list(slots)
        self.active = {}     # slot -> _Sequence
        self.feed = {}       # slot -> ids not yet evaluated
        self.cached = {s: [] for s in self.free}   # slot -> ids in its KV cache
        self.used = {s: 0 for s in self.free}      # slot -> when it was last admitted to
        self.clock = 0
        self.chunk = chunk

    def admit(self, core, seq: "_Sequence", ids) -> bool:
        if not self.free:
            return False
        ids = list(ids)

        def common(slot):     # reusable tokens; the last prompt token is always evaluated
            held, n = self.cached[slot], 0
            while n < min(len(held), len(ids) - 1) and held[n] == ids[n]:
                n += 1
            return n
        # the free slot whose cache loses the fewest ids (others' histories stay for their next
        # turns), then the one that reuses the most, then the one used longest ago
        slot = min(self.free, key=lambda s: (len(self.cached[s]) - common(s), -common(s), self.used[s]))
        keep = common(slot)
        self.free.remove(slot)
        self.clock += 1
        self.used[slot] = self.clock
        core.truncate_seq(slot, keep)
        del self.cached[slot][keep:]
        seq.stats.cached_tokens = keep
        self.active[slot], self.feed[slot] = seq, ids[keep:]
        return True

    def invalidate(self) -> None:
        """After a failed pass: what the caches hold is unknown, so nothing is reused."""
        for slot in self.cached:
            self.cached[slot] = []

    def drop(self, seq: "_Sequence") -> None:
        for slot, s in list(self.active.items()):
            if s is seq:
                del self.active[slot], self.feed[slot]
                self.free.append(slot)

    def step(self, core) -> List["_Sequence"]:
        """One forward pass; returns the sequences that finished in it."""
        slots = list(self.feed)
        take = {s: self.feed[s][: self.chunk] if self.chunk else self.feed[s] for s in slots}
        t0 = time.perf_counter()
        try:
            logits = core.eval_batch(slots, [take[s] for s in slots])
        except BaseException:
            self.invalidate()
            raise
        dt = time.perf_counter() - t0
        for s in slots:
            self.cached[s] += take[s]
        finished = []
        for row, slot in enumerate(slots):
            seq = self.active[slot]
            rest = self.feed[slot][len(take[slot]):]
            if not seq.prompt_done:
                seq.stats.prompt_time += dt
                if rest:                  # more of the prompt to feed: nothing to sample yet
                    self.feed[slot] = rest
                    continue
                seq.prompt_done = True
            nxt = seq.step(logits[row])
            if nxt is None:
                finished.append(seq)
                del self.active[slot], self.feed[slot]
                self.free.append(slot)
            else:
                self.feed[slot] = [nxt]
        return finished


def generate_batch(model, prompts: Sequence[List[int]], samplers, max_new: Optional[int], stop,
                   ignore_eos: bool, stop_ids: Sequence[int], constraints=None, hooks=None) -> List[str]:
    """Texts for prompts (token id lists), in order; model.last_stats becomes the list of their
    GenerationStats. constraints: a grammar constraint (or None) per prompt; hooks: a
    sampling_hooks.SamplingHooks (or None) per prompt. Holds the Model's lock for the whole call."""
    results: List[Optional[_Sequence]] = [None] * len(prompts)
    with model._use() as core:
        # the batch uses sequence 0 too: what the prefix cache knew of it is void
        model._cache_chunks, model._cache_owner = [], None
        slots = _Slots(range(core.n_seq_max))
        pending = deque(range(len(prompts)))
        while pending or slots.active:
            while pending and slots.free:
                i = pending.popleft()
                seq = _Sequence(i, prompts[i], samplers[i], max_new, stop, ignore_eos, stop_ids,
                                core.tokenizer, core.n_ctx, constraints[i] if constraints else None,
                                hooks[i] if hooks else None)
                slots.admit(core, seq, prompts[i])
            for seq in slots.step(core):
                results[seq.index] = seq
    model.last_stats = [s.stats for s in results]
    return [s.text for s in results]


class BatchRequest:
    """One request submitted to a BatchEngine: iterate it for the text pieces as they are
    generated; `stats` is its GenerationStats; cancel() ends it at the next step (a client that
    went away). Iterating raises the engine's error if the engine failed."""

    _END = object()

    def __init__(self, seq: _Sequence, ids) -> None:
        self.seq, self.ids = seq, list(ids)
        self.stats = seq.stats
        self.cancelled = False
        self._queue: "queue.Queue" = queue.Queue()
        self._sent = 0

    def cancel(self) -> None:
        self.cancelled = True

    def _push_new(self) -> None:
        pieces = self.seq.pieces
        while self._sent < len(pieces):
            self._queue.put(pieces[self._sent])
            self._sent += 1

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def text(self) -> str:
        return "".join(self)


class BatchEngine:
    """Continuous batching for concurrent callers (the server): a background thread keeps up to
    n_seq_max - 1 requests running on sequences 1 .. n_seq_max - 1 of the Model, one eval_batch
    per step, admitting new requests between steps and dropping finished or cancelled ones.
    Sequence 0 stays for the Model's one-sequence calls (generate, eval, embed), which interleave
    with the engine's steps under the Model's lock. Long prompts are fed `prefill_chunk` tokens per
    step. Each request gives the text generate() gives alone (batch invariance)."""

    def __init__(self, model, prefill_chunk: int = 128) -> None:
        n = model.n_seq_max
        if n < 2:
            raise ValueError(f"BatchEngine needs a Model with n_seq_max >= 2 (sequence 0 is kept for "
                             f"one-sequence calls), got n_seq_max = {n}")
        self.model = model
        self.slots = _Slots(range(1, n), chunk=prefill_chunk)
        self._pending: deque = deque()
        self._requests: List[BatchRequest] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ggmlpy-batch-engine", daemon=True)
        self._thread.start()

    def load(self):
        """(running, waiting) requests."""
        with self._cv:
            return len(self._requests) - len(self._pending), len(self._pending)

    def submit(self, ids, sampler, max_new: Optional[int] = None, stop=None, ignore_eos: bool = False,
               stop_ids=(), constraint=None, hooks=None) -> BatchRequest:
        """Queues prompt ids (checked by the caller: non-empty, within n_ctx) for generation;
        constraint: a grammar.GrammarConstraint or None; hooks: a SamplingHooks or None."""
        m = self.model._m
        seq = _Sequence(0, ids, sampler, max_new, stop, ignore_eos, stop_ids, m.tokenizer, m.n_ctx, constraint,
                        hooks)
        req = BatchRequest(seq, ids)
        with self._cv:
            if self._closed:
                raise ValueError("the batch engine is closed")
            self._pending.append(req)
            self._requests.append(req)
            self._cv.notify()
        return req

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _finish(self, req: BatchRequest, error: Optional[BaseException] = None) -> None:
        req._push_new()
        req._queue.put(error if error is not None else BatchRequest._END)
        self._requests.remove(req)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._requests:
                    self._cv.wait()
                if self._closed:
                    for req in list(self._requests):
                        self._finish(req, ValueError("the batch engine was closed"))
                    return
                for req in [r for r in self._requests if r.cancelled]:
                    if req in self._pending:
                        self._pending.remove(req)
                    self.slots.drop(req.seq)
                    req.seq.stats.finish_reason = "interrupted"
                    self._finish(req)
            try:
                with self.model._use() as core:
                    with self._cv:
                        while self._pending and self.slots.free:
                            req = self._pending.popleft()
                            self.slots.admit(core, req.seq, req.ids)
                    finished = self.slots.step(core) if self.slots.active else []
            except BaseException as e:      # the model was closed, or a bug: fail the requests, not the thread
                with self._cv:
                    for req in list(self._requests):
                        self.slots.drop(req.seq)
                        self._finish(req, e if isinstance(e, Exception) else RuntimeError(str(e)))
                    self._pending.clear()
                continue
            with self._cv:
                done = {id(s) for s in finished}
                for req in list(self._requests):
                    if id(req.seq) in done:
                        self._finish(req)
                    else:
                        req._push_new()
