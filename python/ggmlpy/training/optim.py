"""AdamW with PyTorch's update rule (torch.optim.AdamW: decoupled weight decay, bias-corrected
moments), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and the learning-rate
schedules of HF transformers (linear warmup, then cosine to 0 or constant). All in float32 numpy
on the trainer's arrays, in place."""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np


def lr_at(step: int, lr: float, total: int, warmup: int, schedule: str) -> float:
    """Learning rate for optimizer step `step` (0-based), as get_cosine_schedule_with_warmup /
    get_constant_schedule_with_warmup."""
    if warmup > 0 and step < warmup:
        return lr * step / warmup
    if schedule == "constant":
        return lr
    progress = (step - warmup) / max(1, total - warmup)
    return lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def clip_grads(grads: List[np.ndarray], max_norm: float) -> float:
    """Scales grads in place so their global L2 norm is at most max_norm; returns the norm before."""
    total = math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)))
                          for g in grads))
    if max_norm > 0:
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g *= np.float32(coef)
    return total


class AdamW:
    def __init__(self, params: List[np.ndarray], betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = params
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps, self.wd = float(eps), float(weight_decay)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: List[np.ndarray], lr: float) -> None:
        self.t += 1
        bc1 = 1.0 - self.b1 ** self.t
        bc2 = 1.0 - self.b2 ** self.t
        step_size = np.float32(lr / bc1)
        sq2 = np.float32(math.sqrt(bc2))
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.wd:
                p *= np.float32(1.0 - lr * self.wd)
            m *= np.float32(self.b1)
            m += np.float32(1.0 - self.b1) * g
            v *= np.float32(self.b2)
            v += np.float32(1.0 - self.b2) * g * g
            p -= step_size * m / (np.sqrt(v) / sq2 + np.float32(self.eps))

    def state(self) -> Dict[str, np.ndarray]:
        out = {"t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"m{i}"], out[f"v{i}"] = m, v
        return out

    def load_state(self, state) -> None:
        self.t = int(state["t"])
        for i in range(len(self.params)):
            self.m[i][...] = state[f"m{i}"]
            self.v[i][...] = state[f"v{i}"]
