"""`ggmlpy finetune -m BASE --data FILE -o ADAPTER.gguf [...]` (LoRA fine-tuning, finetune.py) and
`ggmlpy plot-log LOG.jsonl [-o PNG]` (the loss curve of a log). add_subparsers() registers both."""
from __future__ import annotations

import sys


def run_finetune(a) -> int:
    from ..cli import _check, _resolve_model
    from .finetune import checkpoint_path, finetune
    _check(a.threads >= 0, "-t/--threads", a.threads, "an int >= 0")
    base = _resolve_model(a.model)
    try:
        s = finetune(base, a.data, a.output, ctx=a.ctx, rank=a.rank, alpha=a.alpha, dropout=a.dropout,
                     targets=a.targets,
                     lr=a.lr, weight_decay=a.weight_decay, epochs=a.epochs, max_steps=a.max_steps,
                     batch_size=a.batch_size, grad_accum=a.grad_accum, warmup=a.warmup, schedule=a.schedule,
                     max_grad_norm=a.clip, seed=a.seed, eval_fraction=a.eval_split, eval_every=a.eval_every,
                     save_every=a.save_every, resume=a.resume, init_adapter=a.init_adapter, log_file=a.log,
                     plot=not a.no_plot, n_threads=a.threads, progress=not a.no_progress)
    except KeyboardInterrupt:
        print(f"ggmlpy finetune: interrupted; checkpoint saved to {checkpoint_path(a.output)} "
              f"(continue with --resume)", file=sys.stderr)
        return 130
    start, end = s.get("eval_loss_start"), s.get("eval_loss")
    held = f", held-out loss {start:.4f} -> {end:.4f}" if start is not None and end is not None else ""
    print(f"ggmlpy finetune: {s['steps']} steps, {s['tokens']} tokens, train loss "
          f"{s.get('train_loss', float('nan')):.4f}{held}; log {s['log']}"
          + (f", plot {s['plot']}" if s.get("plot") else ""), file=sys.stderr)
    print(s["adapter"])
    return 0


def run_plot(a) -> int:
    from pathlib import Path
    from .plot import plot_log
    out = a.output or str(Path(a.log).with_suffix(".png"))
    print(plot_log(a.log, out))
    return 0


def add_subparsers(sub) -> None:
    s = sub.add_parser("finetune", help="train a LoRA adapter on a text or JSONL file",
                       description=__doc__.split("\n")[0])
    s.add_argument("-m", "--model", help="base GGUF model (default: the default model); stays read-only")
    s.add_argument("--data", required=True, help="plain text (packed into --ctx windows) or JSONL chat/"
                   "instruction records (the chat template applied, loss on assistant tokens)")
    s.add_argument("-o", "--output", required=True, help="output adapter .gguf")
    s.add_argument("--ctx", type=int, default=256, help="tokens per training sequence (default 256)")
    s.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    s.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha; scale = alpha / r (default 16)")
    s.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout on the adapters' input (default 0)")
    s.add_argument("--targets", default=None,
                   help="comma-separated modules (llama: q,k,v,o,gate,up,down; gptj: q,k,v,out,fc_in,fc_out; "
                        "HF names too); default all")
    s.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    s.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    s.add_argument("--epochs", type=int, default=1, help="passes over the training sequences")
    s.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    s.add_argument("--batch-size", type=int, default=1, help="sequences per micro-batch")
    s.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    s.add_argument("--warmup", type=int, default=0, help="linear warmup steps")
    s.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning rate after the warmup: cosine to 0, or constant")
    s.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: off)")
    s.add_argument("--seed", type=int, default=0, help="seed of the initialization, data order and dropout")
    s.add_argument("--eval-split", type=float, default=0.1, help="fraction held out for eval loss")
    s.add_argument("--eval-every", type=int, default=0, help="eval every N steps (0: start and end)")
    s.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (also on Ctrl-C)")
    s.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt.npz")
    s.add_argument("--init-adapter", default=None, help="start from this GGUF LoRA adapter")
    s.add_argument("--log", default=None, help="metrics JSONL (default OUTPUT.log.jsonl)")
    s.add_argument("--no-plot", action="store_true", help="no loss-curve PNG at the end")
    s.add_argument("-t", "--threads", type=int, default=0, help="threads (0: physical cores)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run_finetune)
    p = sub.add_parser("plot-log", help="draw the loss curve of a finetune log as a PNG")
    p.add_argument("log", help="metrics JSONL written by ggmlpy finetune")
    p.add_argument("-o", "--output", default=None, help="PNG path (default LOG with .png)")
    p.set_defaults(func=run_plot)
