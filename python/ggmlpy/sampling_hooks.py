"""Caller control over each sampling step, as llama-cpp-python's `Llama` offers it, and the
log-probabilities OpenAI's APIs return.

Order of one step (TokenStepper in generate.py), from the model's raw logits:
  1. stopping_criteria(ids, logits) on the raw logits: any True ends the generation ("stop")
     before this step's token is drawn;
  2. logit_bias: logits[id] += bias;
  3. logits_processor, each in turn: logits = f(ids, logits);
  4. the grammar mask (grammar= / json_schema=), then the sampler's own chain (penalties, top-k,
     temperature, min-p, top-p, draw; include/ggmlpy/sampler.h);
  5. logprobs: the drawn token's log-probability and the top-N alternatives, from the raw logits
     of step 1 (the model's distribution, not the one reshaped by 2-4), as OpenAI reports them.
`ids` is an int32 numpy array of every token so far (prompt, then generated); `logits` a float32
numpy array (n_vocab,). A processor returns an array of the same shape (a new one or its input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MAX_TOP_LOGPROBS = 20    # OpenAI's limit for top_logprobs


@dataclass
class TokenLogprob:
    """One generated (or echoed prompt) token: its id, its log-probability (None for a first prompt
    token, which nothing predicts) and the top alternatives [(id, logprob), ...], most likely first."""
    id: int
    logprob: Optional[float]
    top: List[Tuple[int, float]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities of float32 logits (rows), -inf where a logit is -inf."""
    x = np.asarray(logits, np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    return x - (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))


def top_logprobs(lp: np.ndarray, n: int) -> List[Tuple[int, float]]:
    """The n most likely (id, logprob), most likely first, ties by smaller id."""
    if n <= 0:
        return []
    n = min(n, lp.shape[-1])
    cand = np.argpartition(-lp, n - 1)[:n] if n < lp.shape[-1] else np.arange(lp.shape[-1])
    order = sorted(cand.tolist(), key=lambda i: (-lp[i], i))[:n]
    return [(i, float(lp[i])) for i in order]


def token_logprob(logits: np.ndarray, tid: int, n_top: int) -> TokenLogprob:
    lp = log_softmax(logits)
    return TokenLogprob(int(tid), float(lp[tid]), top_logprobs(lp, n_top))


def _callables(name: str, value) -> List[Callable]:
    if value is None:
        return []
    fs = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, f in enumerate(fs):
        if not callable(f):
            where = name if len(fs) == 1 and not isinstance(value, (list, tuple)) else f"{name}[{i}]"
            raise TypeError(f"{where} must be callable(ids, logits), got {type(f).__name__}")
    return fs


def parse_logit_bias(logit_bias, n_vocab: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """{token id (int, or its decimal str as JSON sends it): bias} -> (ids, biases) arrays, or None.
    A bias is a finite number, or -inf to ban the token."""
    if logit_bias is None or len(logit_bias) == 0:
        return None
    if not isinstance(logit_bias, dict):
        raise TypeError(f"logit_bias must be a dict {{token id: bias}}, got {type(logit_bias).__name__}")
    ids, vals = [], []
    for k, v in logit_bias.items():
        try:
            tid = int(k) if not isinstance(k, bool) and (isinstance(k, int) or str(k).lstrip("-").isdigit()) else None
        except (TypeError, ValueError):
            tid = None
        if tid is None:
            raise ValueError(f"logit_bias: key {k!r} is not a token id")
        if not 0 <= tid < n_vocab:
            raise ValueError(f"logit_bias: token id {tid} is outside [0, {n_vocab})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
            raise ValueError(f"logit_bias[{k!r}] = {v!r}, expected a finite number or -inf")
        ids.append(tid)
        vals.append(float(v))
    return np.asarray(ids, np.int64), np.asarray(vals, np.float32)


class SamplingHooks:
    """The caller's controls for one generation (see the module docstring for the order)."""

    def __init__(self, prompt_ids: Sequence[int], n_vocab: int, logit_bias=None, logits_processor=None,
                 stopping_criteria=None, logprobs: Optional[int] = None) -> None:
        self.n_vocab = n_vocab
        self.bias = parse_logit_bias(logit_bias, n_vocab)
        self.processors = _callables("logits_processor", logits_processor)
        self.criteria = _callables("stopping_criteria", stopping_criteria)
        if logprobs is not None:
            if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_TOP_LOGPROBS:
                raise ValueError(f"logprobs = {logprobs!r}, expected an int in [0, {MAX_TOP_LOGPROBS}] "
                                 "(the number of top alternatives) or None")
        self.n_logprobs = logprobs
        self.prompt = [int(i) for i in prompt_ids]
        self.logprobs: List[TokenLogprob] = []

    @classmethod
    def make(cls, prompt_ids, n_vocab, logit_bias=None, logits_processor=None, stopping_criteria=None,
             logprobs=None) -> Optional["SamplingHooks"]:
        """SamplingHooks, or None when none of the controls is asked for (the fast path)."""
        if (logit_bias is None or len(logit_bias) == 0) and logits_processor is None and \
                stopping_criteria is None and logprobs is None:
            return None
        return cls(prompt_ids, n_vocab, logit_bias, logits_processor, stopping_criteria, logprobs)

    def _ids(self, generated: Sequence[int]) -> np.ndarray:
        return np.asarray(self.prompt + list(generated), np.int32)

    def should_stop(self, generated: Sequence[int], logits: np.ndarray) -> bool:
        if not self.criteria:
            return False
        ids = self._ids(generated)
        return any(bool(f(ids, logits)) for f in self.criteria)

    def process(self, generated: Sequence[int], logits: np.ndarray) -> np.ndarray:
        if self.bias is None and not self.processors:
            return logits
        out = np.array(logits, np.float32, copy=True)
        if self.bias is not None:
            np.add.at(out, self.bias[0], self.bias[1])
        if self.processors:
            ids = self._ids(generated)
            for i, f in enumerate(self.processors):
                r = f(ids, out)
                r = out if r is None else np.asarray(r, np.float32)
                if r.shape != (self.n_vocab,):
                    raise ValueError(f"logits_processor[{i}] returned shape {r.shape}, expected ({self.n_vocab},)")
                out = r
        return out

    def record(self, raw_logits: np.ndarray, tid: int) -> None:
        if self.n_logprobs is not None:
            self.logprobs.append(token_logprob(raw_logits, tid, self.n_logprobs))


def prompt_logprobs(model, ids: Sequence[int], n_top: int) -> List[TokenLogprob]:
    """Log-probabilities of a prompt's own tokens (OpenAI's echo): token i's under the logits after
    tokens 0..i-1; the first token has none. Evaluates the prompt with all its logits."""
    ids = list(ids)
    model.reset()
    logits = model.eval(ids, logits="all")
    lp = log_softmax(logits)
    out = [TokenLogprob(ids[0], None, [])]
    for i in range(1, len(ids)):
        out.append(TokenLogprob(ids[i], float(lp[i - 1][ids[i]]), top_logprobs(lp[i - 1], n_top)))
    return out


def emitted_count(model, entries: Sequence[TokenLogprob], text: str) -> int:
    """How many of the generated tokens make up text (the returned text stops before a stop
    string, whose tokens were generated but are not part of it)."""
    want = len(text.encode("utf-8"))
    n, got = 0, 0
    for e in entries:
        got += len(model.token_to_piece(e.id))
        if got > want:
            break
        n += 1
    return n


def _piece(model, tid: int) -> Tuple[str, List[int]]:
    b = model.token_to_piece(tid)
    return b.decode("utf-8", errors="replace"), list(b)


def chat_logprobs(model, entries: Sequence[TokenLogprob]) -> Dict:
    """OpenAI chat shape: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}."""
    content = []
    for e in entries:
        tok, bts = _piece(model, e.id)
        tops = []
        for i, lp in e.top:
            t, b = _piece(model, i)
            tops.append({"token": t, "logprob": lp, "bytes": b})
        content.append({"token": tok, "logprob": e.logprob, "bytes": bts, "top_logprobs": tops})
    return {"content": content}


def completion_logprobs(model, entries: Sequence[TokenLogprob], text_offset: int = 0) -> Dict:
    """OpenAI completions shape: {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    text_offset counts characters from the start of the returned text (plus text_offset)."""
    tokens, lps, tops, offs = [], [], [], []
    pos = text_offset
    for e in entries:
        tok, _ = _piece(model, e.id)
        tokens.append(tok)
        lps.append(e.logprob)
        tops.append(None if e.logprob is None else {_piece(model, i)[0]: lp for i, lp in e.top})
        offs.append(pos)
        pos += len(tok)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs}
