"""finetune(): LoRA fine-tuning of a GGUF model on a text or JSONL file, written as a GGUF LoRA
adapter. The loop: epochs over the shuffled training sequences, batch_size * grad_accum sequences
per optimizer step (the loss is the mean over all their counted tokens), AdamW with warmup +
cosine or constant LR and gradient clipping; held-out loss at the start, every eval_every steps
and at the end. Every save_every steps (and on Ctrl-C) a checkpoint (adapter, optimizer state,
step) is written atomically beside the output; resume=True continues from it. Each step appends
one JSON line of metrics to the log; the loss curve is drawn at the end (plot.py)."""
from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .data import load_sequences, split
from .lora_model import LoraModel
from .optim import AdamW, lr_at


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def checkpoint_path(output) -> Path:
    return Path(str(output) + ".ckpt.npz")


def _save_checkpoint(path: Path, lm: LoraModel, opt: AdamW, step: int, tokens: int, config: dict) -> None:
    arrays = {f"p{i}": p for i, p in enumerate(lm.params())}
    arrays.update({f"opt_{k}": v for k, v in opt.state().items()})
    arrays["step"] = np.array(step)
    arrays["tokens"] = np.array(tokens)
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    from ..convert.writer import atomic_output
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_checkpoint(path: Path, lm: LoraModel, opt: AdamW, config: dict):
    with np.load(path) as z:
        saved = json.loads(str(z["config"]))
        keys = ("targets", "rank", "alpha", "dropout", "ctx", "data", "seed", "batch_size", "grad_accum")
        diff = [k for k in keys if saved.get(k) != config.get(k)]
        if diff:
            raise ValueError(f"{path}: checkpoint from another run ({', '.join(diff)} differ)")
        for i, p in enumerate(lm.params()):
            p[...] = z[f"p{i}"]
        opt.load_state({k[4:]: z[k] for k in z.files if k.startswith("opt_")})
        return int(z["step"]), int(z["tokens"])


def finetune(model, data, output, *, ctx: int = 256, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             targets=None,
             lr: float = 2e-4, weight_decay: float = 0.0, epochs: int = 1, max_steps: Optional[int] = None,
             batch_size: int = 1, grad_accum: int = 1, warmup: int = 0, schedule: str = "cosine",
             max_grad_norm: float = 1.0, seed: int = 0, eval_fraction: float = 0.1, eval_every: int = 0,
             save_every: int = 0, resume: bool = False, init_adapter=None, log_file=None, plot=True,
             chat_template=None, n_threads: int = 0, progress: bool = True,
             callback: Optional[Callable[[dict], None]] = None) -> dict:
    """Trains a LoRA adapter and writes it to `output` (GGUF). model: a path or a ggmlpy.Model
    (its n_ctx must hold ctx + 1 tokens). Returns a summary dict. callback(metrics) runs after
    every step with the metrics line. Errors (bad arguments, data, files) raise before training."""
    from ..model import Model
    for name, v, lo in (("ctx", ctx, 8), ("epochs", epochs, 1), ("batch_size", batch_size, 1),
                        ("grad_accum", grad_accum, 1), ("warmup", warmup, 0), ("save_every", save_every, 0),
                        ("eval_every", eval_every, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be an int >= 1 or None, got {max_steps!r}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    output = Path(output)
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise FileNotFoundError(2, "output folder does not exist", str(output.parent))
    own = not isinstance(model, Model)
    m = Model(model, n_ctx=ctx + 1, n_threads=n_threads) if own else model
    try:
        if m.n_ctx < ctx + 1:
            raise ValueError(f"the model's n_ctx {m.n_ctx} is smaller than ctx + 1 = {ctx + 1}")
        seqs = load_sequences(m, data, ctx, chat_template)
        train, held = split(seqs, eval_fraction, seed)
        lm = LoraModel(m, targets, rank, alpha, seed, n_threads, dropout)
        if init_adapter is not None:
            lm.load_adapter(init_adapter)
        opt = AdamW(lm.params(), weight_decay=weight_decay)
        per_step = batch_size * grad_accum
        steps_per_epoch = max(1, math.ceil(len(train) / per_step))
        total = max_steps or epochs * steps_per_epoch
        config = dict(targets=lm.targets, rank=rank, alpha=float(alpha), dropout=float(dropout), ctx=ctx, data=str(data), seed=seed,
                      batch_size=batch_size, grad_accum=grad_accum, lr=lr, schedule=schedule, warmup=warmup,
                      total_steps=total, base=str(m.model_path))
        ckpt = checkpoint_path(output)
        step, tokens = 0, 0
        if resume:
            if not ckpt.is_file():
                raise FileNotFoundError(2, "no checkpoint to resume from", str(ckpt))
            step, tokens = _load_checkpoint(ckpt, lm, opt, config)
        log_path = Path(log_file) if log_file else Path(str(output) + ".log.jsonl")
        log = open(log_path, "a" if resume else "w", encoding="utf-8")
        summary = {"adapter": str(output), "log": str(log_path), "train_sequences": len(train),
                   "eval_sequences": len(held), "total_steps": total}
        try:
            def evaluate():
                return lm.eval_loss(held)[0] if held else float("nan")
            if step == 0:
                summary["eval_loss_start"] = evaluate()
                log.write(json.dumps({"step": 0, "tokens": 0, "eval_loss": summary["eval_loss_start"]}) + "\n")
                log.flush()
            order = []
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=total, initial=step, unit="step", desc="finetune", dynamic_ncols=True)
            t_run, tok_run = time.perf_counter(), 0
            try:
                while step < total:
                    epoch, pos = divmod(step * per_step, steps_per_epoch * per_step)
                    if not order or pos == 0 or len(order) != len(train):
                        order = list(range(len(train)))
                        random.Random(seed * 1000003 + epoch).shuffle(order)
                    batch = [train[order[(pos + i) % len(train)]] for i in range(per_step)]
                    rate = lr_at(step, lr, total, warmup, schedule)
                    t0 = time.perf_counter()
                    loss, n, norm = lm.train_step(batch, opt, rate, max_grad_norm)
                    dt = time.perf_counter() - t0
                    step += 1
                    tokens += sum(len(ids) for ids, _ in batch)
                    tok_run += sum(len(ids) for ids, _ in batch)
                    rec = {"step": step, "epoch": epoch, "tokens": tokens, "loss": loss, "lr": rate,
                           "grad_norm": norm, "tokens_per_s": sum(len(i) for i, _ in batch) / dt,
                           "rss_mb": round(_rss_mb(), 1)}
                    if (eval_every and step % eval_every == 0) or step == total:
                        rec["eval_loss"] = evaluate()
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_run / (time.perf_counter() - t_run):.0f}")
                        bar.update(1)
                    if callback is not None:
                        callback(dict(rec))
                    if save_every and step % save_every == 0 and step < total:
                        _save_checkpoint(ckpt, lm, opt, step, tokens, config)
                    summary["train_loss"] = loss
                    if "eval_loss" in rec:
                        summary["eval_loss"] = rec["eval_loss"]
            except KeyboardInterrupt:
                _save_checkpoint(ckpt, lm, opt, step, tokens, config)
                summary["interrupted_at"] = step
                summary["checkpoint"] = str(ckpt)
                raise
            finally:
                if bar is not None:
                    bar.close()
        finally:
            log.close()
        lm.save_adapter(output)
        if ckpt.is_file():
            ckpt.unlink()
        summary.update(steps=step, tokens=tokens, peak_activation_mb=lm.peak_activation_bytes / 2**20)
        if plot:
            from .plot import plot_log
            png = Path(plot) if isinstance(plot, (str, os.PathLike)) else output.with_suffix(".loss.png")
            try:
                summary["plot"] = plot_log(log_path, png)
            except ImportError as e:
                import warnings
                warnings.warn(f"no loss plot: {e}")
        return summary
    finally:
        if own:
            m.close()
