"""The loss curve of a fine-tuning log (JSONL, one object per step): train loss and held-out loss
against tokens seen, as a PNG (matplotlib, written to a temp file and renamed)."""
from __future__ import annotations

import json
from pathlib import Path


def read_log(path):
    steps = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    steps.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
    return steps


def plot_log(log_path, png_path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the loss plot needs matplotlib (pip install matplotlib)") from None
    recs = read_log(log_path)
    train = [(r["tokens"], r["loss"]) for r in recs if "loss" in r]
    held = [(r["tokens"], r["eval_loss"]) for r in recs if r.get("eval_loss") is not None]
    if not train and not held:
        raise ValueError(f"{log_path}: no loss values to plot")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if held:
        ax.plot(*zip(*held), "o-", label="held-out loss")
    ax.set_xlabel("tokens")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(Path(log_path).name)
    ax.grid(alpha=0.3)
    ax.legend()
    from ..convert.writer import atomic_output
    try:
        with atomic_output(Path(png_path), suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return str(png_path)
