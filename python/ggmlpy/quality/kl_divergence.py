"""KL divergence of a model against a base model's saved log-probabilities, the measurement
`llama-perplexity --kl-divergence` reports for quantized files: run the base (e.g. F16) once with
`save_base`, then each candidate with `kl_divergence` on the same chunks.

Base file (little-endian), written to a temp file and renamed:
  magic b"GGMLPYKL", uint32 version (1), n_ctx, n_vocab, n_chunks,
  int32 tokens[n_chunks * n_ctx] (the chunks as evaluated, BOS substitution included),
  then per scored row (n_chunks * (n_ctx - n_ctx/2 - 1) rows, chunk by chunk): float32 lo, float32
  step, uint16 q[n_vocab] with log p ~= lo + step * q (a row's log-probs spread evenly over 65536
  levels: the error is at most step / 2, about 2e-4 for a row's range of ~30 nats).
"""
from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .perplexity import prepare_chunks, scored_logits

MAGIC = b"GGMLPYKL"
VERSION = 1
_HEAD = struct.Struct("<8sIIII")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _encode_rows(logp: np.ndarray) -> bytes:
    lo = logp.min(axis=1)
    step = (logp.max(axis=1) - lo) / 65535.0
    step[step == 0] = 1.0
    q = np.clip(np.rint((logp - lo[:, None]) / step[:, None]), 0, 65535).astype("<u2")
    out = bytearray()
    for r in range(len(logp)):
        out += struct.pack("<ff", float(lo[r]), float(step[r])) + q[r].tobytes()
    return bytes(out)


def save_base(model, text: str, path, n_ctx: int = 512, max_chunks: Optional[int] = None,
              progress: Optional[Callable[[int, int, float], None]] = None):
    """Evaluates text as `perplexity` does and writes every scored row's log-probs to path (atomic:
    a temp file renamed). Returns the base's PerplexityResult."""
    from .perplexity import score_chunks
    path = os.fspath(path)
    n_tokens, chunks = prepare_chunks(model, text, n_ctx, max_chunks)
    fd, tmp = tempfile.mkstemp(prefix=".kl-base-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEAD.pack(MAGIC, VERSION, n_ctx, model.n_vocab, len(chunks)))
            f.write(np.concatenate(chunks).astype("<i4").tobytes())
            r = score_chunks(model, chunks, n_ctx, n_tokens, progress=progress,
                             on_chunk=lambda chunk, logits: f.write(_encode_rows(_log_softmax(logits))))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return r


@dataclass
class KLResult:
    n_chunks: int
    n_scored: int
    ppl: float                # the candidate's perplexity on the base's chunks
    ppl_err: float
    ppl_base: float
    ln_ppl_ratio: float       # mean of ln p_base(token) - ln p(token): ln(PPL / PPL(base))
    ln_ppl_ratio_err: float
    kld_mean: float           # mean over scored rows of KL(base || candidate), nats
    kld_err: float
    kld_max: float
    kld_p999: float
    kld_p99: float
    kld_median: float
    kld_min: float
    dp_mean: float            # mean of p(token) - p_base(token)
    dp_rms: float
    same_top: float           # fraction of rows whose argmax equals the base's
    same_top_err: float

    def report(self) -> str:
        pct = 100.0
        return "\n".join([
            "====== Perplexity statistics ======",
            f"Mean PPL(Q)                   : {self.ppl:10.6f} ± {self.ppl_err:10.6f}",
            f"Mean PPL(base)                : {self.ppl_base:10.6f}",
            f"Mean ln(PPL(Q)/PPL(base))     : {self.ln_ppl_ratio:10.6f} ± {self.ln_ppl_ratio_err:10.6f}",
            f"Mean PPL(Q)/PPL(base)         : {math.exp(self.ln_ppl_ratio):10.6f}",
            "====== KL divergence statistics ======",
            f"Mean    KLD: {self.kld_mean:10.6f} ± {self.kld_err:10.6f}",
            f"Maximum KLD: {self.kld_max:10.6f}",
            f"99.9%   KLD: {self.kld_p999:10.6f}",
            f"99.0%   KLD: {self.kld_p99:10.6f}",
            f"Median  KLD: {self.kld_median:10.6f}",
            f"Minimum KLD: {self.kld_min:10.6f}",
            "====== Token probability statistics ======",
            f"Mean    Δp: {pct * self.dp_mean:8.3f} %",
            f"RMS Δp    : {pct * self.dp_rms:8.3f} %",
            f"Same top p: {pct * self.same_top:8.3f} ± {pct * self.same_top_err:6.3f} %",
        ])


def read_base_header(path) -> tuple:
    """(n_ctx, n_vocab, n_chunks) of a base file; ValueError naming the file if it is not one."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or head[:8] != MAGIC:
        raise ValueError(f"{path}: not a ggmlpy KL-divergence base file (written by --kl-divergence-base)")
    _, version, n_ctx, n_vocab, n_chunks = _HEAD.unpack(head)
    if version != VERSION:
        raise ValueError(f"{path}: base file version {version}, this ggmlpy reads version {VERSION}")
    if n_ctx < 4 or n_ctx % 2 or n_chunks < 1 or n_vocab < 1:
        raise ValueError(f"{path}: inconsistent header (n_ctx {n_ctx}, n_vocab {n_vocab}, {n_chunks} chunks)")
    return n_ctx, n_vocab, n_chunks


def kl_divergence(model, base_path, progress: Optional[Callable[[int, int, float], None]] = None) -> KLResult:
    """Compares model with the base log-probs in base_path (save_base) on the base's chunks."""
    base_path = os.fspath(base_path)
    n_ctx, n_vocab, n_chunks = read_base_header(base_path)
    size = os.path.getsize(base_path)
    with open(base_path, "rb") as f:
        f.seek(_HEAD.size)
        first = n_ctx // 2
        per_chunk = n_ctx - first - 1
        row_bytes = 8 + 2 * n_vocab
        rows_at = _HEAD.size + 4 * n_ctx * n_chunks
        expect = rows_at + n_chunks * per_chunk * row_bytes
        if size != expect:
            raise ValueError(f"{base_path}: {size} bytes, expected {expect} for its header")
        if n_vocab != model.n_vocab:
            raise ValueError(f"{base_path}: the base has a vocabulary of {n_vocab} tokens, the model {model.n_vocab}")
        if n_ctx > model.n_ctx:
            raise ValueError(f"{base_path}: chunks of {n_ctx} tokens, larger than the model's context ({model.n_ctx})")
        tokens = np.frombuffer(f.read(4 * n_ctx * n_chunks), dtype="<i4").astype(np.int64)
        if tokens.min() < 0 or tokens.max() >= n_vocab:
            raise ValueError(f"{base_path}: token ids outside the vocabulary")
        row_t = np.dtype([("lo", "<f4"), ("step", "<f4"), ("q", "<u2", (n_vocab,))])
        kld, dp, same, nll, nll_base = [], [], [], [], []
        try:
            for c in range(n_chunks):
                chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
                rec = np.frombuffer(f.read(per_chunk * row_bytes), dtype=row_t)
                base = rec["lo"][:, None].astype(np.float64) + rec["step"][:, None].astype(np.float64) * rec["q"]
                logp = _log_softmax(scored_logits(model, chunk))
                target, rows = chunk[first + 1:], np.arange(per_chunk)
                pb = np.exp(base)
                kld.append((pb * (base - logp)).sum(axis=1))
                dp.append(np.exp(logp[rows, target]) - pb[rows, target])
                same.append(logp.argmax(axis=1) == base.argmax(axis=1))
                nll.append(-logp[rows, target])
                nll_base.append(-base[rows, target])
                if progress:
                    progress(c + 1, n_chunks, math.exp(np.concatenate(nll).mean()))
        finally:
            model.reset()
    kld, dp, same = np.concatenate(kld), np.concatenate(dp), np.concatenate(same).astype(np.float64)
    nll, nll_base = np.concatenate(nll), np.concatenate(nll_base)
    n = len(kld)

    def se(v):
        return float(np.std(v, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    ppl = math.exp(nll.mean())
    return KLResult(
        n_chunks=n_chunks, n_scored=n, ppl=ppl, ppl_err=ppl * se(nll), ppl_base=math.exp(nll_base.mean()),
        ln_ppl_ratio=float((nll - nll_base).mean()), ln_ppl_ratio_err=se(nll - nll_base),
        kld_mean=float(kld.mean()), kld_err=se(kld), kld_max=float(kld.max()),
        kld_p999=float(np.quantile(kld, 0.999)), kld_p99=float(np.quantile(kld, 0.99)),
        kld_median=float(np.median(kld)), kld_min=float(kld.min()),
        dp_mean=float(dp.mean()), dp_rms=float(np.sqrt((dp * dp).mean())),
        same_top=float(same.mean()), same_top_err=se(same))
