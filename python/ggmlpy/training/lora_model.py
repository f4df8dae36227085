"""LoraModel: a Model's frozen weights plus trainable LoRA pairs (the C++ LoraTrainer), with
PEFT's initialization, the optimizer step over a batch, evaluation, and adapter files in
llama.cpp's GGUF layout (the same ones Model(lora=...) and `ggmlpy export-lora` read)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import gguf

from .. import _core
from .optim import AdamW, clip_grads
from .targets import resolve_targets

Seq = Tuple[np.ndarray, np.ndarray]  # (ids, targets) int32, targets -1 where not counted


class LoraModel:
    def __init__(self, model, targets=None, rank: int = 8, alpha: float = 16.0, seed: int = 0,
                 n_threads: int = 0, dropout: float = 0.0):
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an int >= 1, got {rank!r}")
        self.model = model
        self.arch = model.arch
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.rank, self.alpha, self.dropout, self.seed = rank, float(alpha), float(dropout), int(seed)
        self.targets = resolve_targets(self.arch, targets, model._m.n_layer)
        with model._lock:
            self._t = _core.LoraTrainer(model._core, self.targets, rank, self.alpha, n_threads, self.dropout)
        self.slots = self._t.slots()
        self.init_params(seed)

    # ---- parameters ----------------------------------------------------------------------------
    def params(self) -> List[np.ndarray]:
        return [a for s in self.slots for a in (s["a"], s["b"])]

    def grads(self) -> List[np.ndarray]:
        return [a for s in self.slots for a in (s["ga"], s["gb"])]

    def init_params(self, seed: int) -> None:
        """PEFT's default: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (kaiming_uniform, a=sqrt(5)), B = 0,
        so training starts from the base model exactly."""
        rng = np.random.default_rng(seed)
        for s in self.slots:
            bound = 1.0 / np.sqrt(s["a"].shape[1])
            s["a"][...] = rng.uniform(-bound, bound, s["a"].shape).astype(np.float32)
            s["b"][...] = 0.0

    def load_adapter(self, path) -> None:
        """Starts from a GGUF LoRA adapter (ours or llama.cpp's): it must target exactly these
        weights with this rank and alpha / rank."""
        from ..quantize import _open
        r = _open(Path(path))
        f = r.fields
        kind = (f["general.type"].contents() if "general.type" in f else None,
                f["adapter.type"].contents() if "adapter.type" in f else None)
        if kind != ("adapter", "lora"):
            raise ValueError(f"{path}: not a LoRA adapter (general.type / adapter.type {kind})")
        if f["general.architecture"].contents() != self.arch:
            raise ValueError(f"{path}: adapter for {f['general.architecture'].contents()!r}, the model is {self.arch!r}")
        alpha = float(f["adapter.lora.alpha"].contents()) if "adapter.lora.alpha" in f else 0.0
        tensors = {t.name: t for t in r.tensors}
        want = {s["name"] for s in self.slots}
        have = {n[:-len(".lora_a")] for n in tensors if n.endswith(".lora_a")}
        if have != want:
            extra, missing = sorted(have - want), sorted(want - have)
            raise ValueError(f"{path}: targets differ from this run's (extra: {extra[:3]}, missing: "
                             f"{missing[:3]}); pass the adapter's target modules")
        for s in self.slots:
            a = _f32(tensors[s["name"] + ".lora_a"])
            b = _f32(tensors[s["name"] + ".lora_b"])
            if a.shape != s["a"].shape or b.shape != s["b"].shape:
                raise ValueError(f"{path}: {s['name']} has rank {a.shape[0]}, this run uses rank {self.rank}")
            s["a"][...] = a
            s["b"][...] = b * np.float32((alpha / self.rank if alpha else 1.0) / s["scale"])

    def save_adapter(self, path, name: Optional[str] = None) -> str:
        """Writes the adapter (f32) atomically."""
        from ..convert.writer import Source, TensorPlan, write_gguf
        plans = []
        for s in self.slots:
            for key in ("a", "b"):
                arr = np.array(s[key], copy=True)
                plans.append(TensorPlan(f"{s['name']}.lora_{key}", arr.shape, gguf.GGMLQuantizationType.F32,
                                        lambda arr=arr: Source(arr), "trained"))

        def meta(w):
            w.add_type(gguf.GGUFType.ADAPTER)
            w.add_string(gguf.Keys.Adapter.TYPE, "lora")
            w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, self.alpha)
            w.add_name(name or Path(path).stem)
        return write_gguf(path, self.arch, meta, plans, progress=False)

    # ---- steps ---------------------------------------------------------------------------------
    def _check_open(self):
        if self.model._core is None:
            raise ValueError("the model is closed")

    def dropout_seed(self, step: int, j: int) -> int:
        """The dropout seed of sequence j of optimizer step `step` (slot k's mask uses
        seed * 1000003 + k, as the C++ TrainGraph::dropout_seed)."""
        return (self.seed * 1000003 + step * 65537 + j) % (1 << 62)

    def accumulate(self, batch: Sequence[Seq], grad_scale: float, step: int = 0) -> Tuple[float, int]:
        """Adds grad_scale * d(summed loss)/d(params) of every sequence; returns (summed loss,
        counted tokens). step picks the dropout masks."""
        total, count = 0.0, 0
        for j, (ids, tg) in enumerate(batch):
            with self.model._lock:
                self._check_open()
                loss, n = self._t.step(ids, tg, grad_scale, self.dropout_seed(step, j))
            total += loss
            count += n
        return total, count

    def train_step(self, batch: Sequence[Seq], opt: AdamW, lr: float, max_grad_norm: float = 0.0
                   ) -> Tuple[float, int, float]:
        """One optimizer step on the mean token loss over the batch (all its sequences, as HF's
        causal-LM loss over a batch). Returns (mean loss, counted tokens, gradient norm)."""
        count = sum(int((tg >= 0).sum()) for _, tg in batch)
        if count == 0:
            raise ValueError("the batch has no counted tokens")
        self._t.zero_grad()
        total, _ = self.accumulate(batch, 1.0 / count, opt.t)
        norm = clip_grads(self.grads(), max_grad_norm)
        opt.step(self.grads(), lr)
        return total / count, count, norm

    def eval_loss(self, seqs: Sequence[Seq]) -> Tuple[float, int]:
        total, count = 0.0, 0
        for ids, tg in seqs:
            with self.model._lock:
                self._check_open()
                loss, n = self._t.loss(ids, tg)
            total += loss
            count += n
        return (total / count if count else float("nan")), count

    @property
    def peak_activation_bytes(self) -> int:
        return self._t.peak_activation_bytes


def _f32(t) -> np.ndarray:
    shape = tuple(int(x) for x in reversed(list(t.shape)))
    return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
