"""Speculative decoding: a cheap drafter proposes the next few tokens, the model evaluates them all
in one pass, and every proposed token that equals what the model's own sampling step picks is kept.

Verification runs the generation's normal step (TokenStepper: hooks, grammar, sampler with its RNG)
on each row of the pass in turn. A draft token is kept only when the step drew exactly that token,
and then the next row's logits are the ones the model would have given after it anyway (batch
invariance: a row's bits do not depend on how many rows share the pass). So the text is identical
to decoding without a drafter, for greedy and sampled decoding alike (the sampler is called once per
emitted token, as without a drafter); the drafter only changes the speed. Rejected draft tokens are
cut from the KV cache.

Drafters: `PromptLookup` (n-gram lookup in the prompt and the text so far: a repeated n-gram
proposes what followed it last time; no model) and `DraftModel` (greedy tokens of a smaller model
with the same vocabulary). A draft is at most `k` tokens, and about as long as the last one kept
(doubling after a draft kept whole): rejected rows cost time and give nothing. Drafts of one token
are not evaluated (a pass of 2 rows costs about 2 steps), and PromptLookup proposes nothing where no
n-gram of 2 or more tokens repeats, so text that does not copy costs what plain decoding costs."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


MIN_DRAFT = 2    # shorter drafts are not evaluated


class PromptLookup:
    """Drafts by prompt lookup: the longest suffix of the tokens so far (max_ngram down to
    min_ngram tokens) that occurred before proposes the (up to k) tokens that followed its most
    recent earlier occurrence."""

    def __init__(self, k: int = 10, max_ngram: int = 3, min_ngram: int = 2) -> None:
        for name, v, lo in (("k", k, 1), ("max_ngram", max_ngram, 1), ("min_ngram", min_ngram, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"PromptLookup: {name} = {v!r}, expected an int >= {lo}")
        if min_ngram > max_ngram:
            raise ValueError(f"PromptLookup: min_ngram {min_ngram} > max_ngram {max_ngram}")
        self.k, self.max_ngram, self.min_ngram = k, max_ngram, min_ngram

    def propose(self, tokens: Sequence[int], k: int) -> List[int]:
        toks = np.asarray(tokens, np.int64)
        n = len(toks)
        for g in range(min(self.max_ngram, n - 1), self.min_ngram - 1, -1):
            tail = toks[n - g:]
            # windows starting at i < n - g that equal the tail; the most recent one wins
            win = np.lib.stride_tricks.sliding_window_view(toks[:n - 1], g)
            hits = np.nonzero((win == tail).all(axis=1))[0]
            hits = hits[hits + g < n]           # something must follow the match
            if len(hits):
                start = int(hits[-1]) + g
                return [int(t) for t in toks[start:start + k]]
        return []

    def check(self, model) -> None:
        pass


class DraftModel:
    """Drafts with a smaller Model of the same vocabulary: its greedy continuation of the tokens
    so far. Its KV cache keeps the longest common prefix between calls, so each call evaluates
    only the tokens that are new to it."""

    def __init__(self, model, k: int = 4) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"DraftModel: k = {k!r}, expected an int >= 1")
        self.model, self.k = model, k
        self._tokens: List[int] = []      # what the draft model's cache holds
        self._checked = None              # the target whose vocabulary was compared

    def check(self, target) -> None:
        """The draft's vocabulary must be the target's, token for token (checked once per target:
        a DraftModel passed to every generate call does not compare the vocabularies every time)."""
        if self._checked is target:
            return
        d = self.model
        if d is target:
            raise ValueError("draft_model is the model itself: use a smaller model (or PromptLookup)")
        if d.n_vocab != target.n_vocab:
            raise ValueError(f"draft_model has {d.n_vocab} tokens, the model {target.n_vocab}: "
                             "the vocabularies must be the same")
        for i in range(target.n_vocab):
            if d.token_to_piece(i) != target.token_to_piece(i):
                raise ValueError(f"draft_model's token {i} is {d.token_to_piece(i)!r}, the model's "
                                 f"{target.token_to_piece(i)!r}: the vocabularies must be the same")
        self._checked = target

    def propose(self, tokens: Sequence[int], k: int) -> List[int]:
        d = self.model
        tokens = list(tokens)
        if len(tokens) + k >= d.n_ctx:
            return []
        with d._use() as core:
            if d._cache_owner is not self:        # someone else used the draft model's cache
                self._tokens = []
            same = 0
            while same < min(len(tokens) - 1, len(self._tokens)) and self._tokens[same] == tokens[same]:
                same += 1
            d._cache_chunks, d._cache_owner = [], None   # unknown until recorded below
            core.truncate(same)
            logits = core.eval(tokens[same:], False)
            out = []
            for _ in range(k):
                t = int(np.argmax(logits))
                out.append(t)
                if len(out) == k:
                    break
                logits = core.eval([t], False)
            self._tokens = tokens + out[:-1]
            d._cache_chunks, d._cache_owner = [tuple(self._tokens)], self
        return out


def make_drafter(draft_model, target):
    """None, "prompt-lookup" (PromptLookup()), a PromptLookup / DraftModel, or a Model (a
    DraftModel of it), checked against target."""
    if draft_model is None:
        return None
    if isinstance(draft_model, str):
        if draft_model != "prompt-lookup":
            raise ValueError(f"draft_model = {draft_model!r}, expected 'prompt-lookup', a Model, "
                             "a PromptLookup or a DraftModel")
        return PromptLookup()
    if isinstance(draft_model, (PromptLookup, DraftModel)):
        d = draft_model
    elif hasattr(draft_model, "_use") and hasattr(draft_model, "n_vocab"):
        d = DraftModel(draft_model)
    else:
        raise TypeError(f"draft_model must be 'prompt-lookup', a Model, a PromptLookup or a DraftModel, "
                        f"got {type(draft_model).__name__}")
    d.check(target)
    return d


def speculative_steps(core, stepper, drafter, tokens: List[int], first_logits, n_ctx: int,
                      max_new: Optional[int]):
    """Drives stepper (generate.TokenStepper) from first_logits on, drafting with drafter;
    yields the text pieces. core: the generation's view (eval(ids, all_logits), truncate(n),
    n_past); tokens: the prompt ids (extended in place with the accepted tokens). Counts the
    passes, drafted and accepted tokens in stepper.stats (draft_passes, draft_tokens,
    draft_accepted)."""
    stats = stepper.stats
    k_cur = drafter.k
    tid, pieces = stepper.step(first_logits, core.n_past, n_ctx)
    yield from pieces
    while tid is not None:
        tokens.append(tid)
        base = core.n_past                        # tokens in the cache before tid
        room = n_ctx - base - 1                   # draft tokens that fit after tid
        if max_new is not None:   # the pass's last row gives the last token: no draft past it
            room = min(room, max_new - stepper.stats.generated_tokens - 1)
        draft = drafter.propose(tokens, min(k_cur, room)) if room > 0 else []
        draft = draft[:max(0, room)]
        if len(draft) < MIN_DRAFT:      # a pass of 2 rows costs about 2 steps: a 1-token draft never pays
            draft = []
        stats.draft_passes += 1
        stats.draft_tokens += len(draft)
        rows = core.eval([tid] + draft, True) if draft else core.eval([tid], False)[None, :]
        accepted = 0
        for j in range(len(draft) + 1):
            nxt, pieces = stepper.step(rows[j], base + 1 + j, n_ctx)
            yield from pieces
            if nxt is not None and j < len(draft) and nxt == draft[j]:
                accepted += 1
                tokens.append(nxt)
                continue
            break
        stats.draft_accepted += accepted
        if draft:   # drafts of about what the last ones kept: rejected rows cost time for nothing
            k_cur = min(drafter.k, 2 * k_cur) if accepted == len(draft) else max(MIN_DRAFT, accepted + 1)
        if accepted < len(draft):                 # the rejected drafts leave the cache
            core.truncate(base + 1 + accepted)
        tid = nxt
