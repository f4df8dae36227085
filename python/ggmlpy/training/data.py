"""Training data -> sequences of (ids, targets) for LoraModel.

- Plain text (any file that is not .jsonl): tokenized once (BOS first when the model adds one)
  and cut into windows of ctx + 1 tokens; a window trains ids = w[:-1] to predict w[1:].
- JSONL: one record per line, each one sequence (cut at ctx + 1 tokens), rendered with the
  model's chat template; the loss counts the assistant tokens only (each assistant message's
  text and its end-of-turn marker), like TRL's assistant-only loss. Records: {"messages": [{"role",
  "content"}, ...]}, or {"prompt", "completion"} / {"instruction", "input"?, "output"} (a user
  turn and an assistant turn).
Errors name the file and line."""
from __future__ import annotations

import json
import os
import random
from typing import List, Tuple

import numpy as np

Seq = Tuple[np.ndarray, np.ndarray]


def _messages(rec, where: str) -> List[dict]:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"{where}: 'messages' must be a non-empty list")
        return msgs
    if "prompt" in rec and "completion" in rec:
        return [{"role": "user", "content": str(rec["prompt"])},
                {"role": "assistant", "content": str(rec["completion"])}]
    if "instruction" in rec and "output" in rec:
        user = str(rec["instruction"]) + (("\n\n" + str(rec["input"])) if rec.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": str(rec["output"])}]
    raise ValueError(f"{where}: a record needs 'messages', 'prompt'+'completion' or "
                     f"'instruction'+'output' (keys: {', '.join(sorted(rec))})")


def chat_sequence(model, messages, template: str, ctx: int) -> Seq | None:
    """ids and targets of one conversation: segments between assistant turns are tokenized in
    order, so the assistant tokens are known exactly; None when no assistant token survives."""
    from ..chat import check_messages, render, special_tokens
    messages = check_messages(messages)
    bos, eos = special_tokens(model)
    ids: List[int] = []
    counted: List[bool] = []
    done = ""
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        head = render(template, messages[:i], add_generation_prompt=True, bos_token=bos, eos_token=eos)
        full = render(template, messages[:i + 1], add_generation_prompt=False, bos_token=bos, eos_token=eos)
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError("the chat template does not render conversations as growing prefixes; "
                             "assistant-only loss needs that")
        for text, is_asst in ((head[len(done):], False), (full[len(head):], True)):
            if not text:
                continue
            add_bos = not ids and model.add_bos and not (bos and text.startswith(bos))
            t = model.tokenize(text, add_bos=add_bos, special=True)
            ids += t
            counted += [is_asst] * len(t)
        done = full
    if not ids:
        return None
    ids, counted = ids[:ctx + 1], counted[:ctx + 1]
    tg = np.array(ids[1:] + [-1], dtype=np.int32)
    mask = np.array(counted[1:] + [False])
    tg[~mask] = -1
    if not (tg >= 0).any():
        return None
    return np.array(ids, dtype=np.int32), tg


def load_sequences(model, path, ctx: int, chat_template=None) -> List[Seq]:
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "training data not found", str(path))
    if ctx < 8:
        raise ValueError(f"ctx must be >= 8, got {ctx}")
    if str(path).endswith(".jsonl"):
        from ..chat import model_template
        template = model_template(model, chat_template)
        out = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{where}: not valid JSON ({e})") from None
                s = chat_sequence(model, _messages(rec, where), template, ctx)
                if s is not None:
                    out.append(s)
        if not out:
            raise ValueError(f"{path}: no record has assistant tokens to train on")
        return out
    from ..cli import read_text_arg
    text = read_text_arg(str(path), "training data")
    ids = model.tokenize(text, special=False)
    if len(ids) < 2:
        raise ValueError(f"{path}: fewer than 2 tokens of text")
    out = []
    for s in range(0, len(ids) - 1, ctx):
        w = ids[s:s + ctx + 1]
        if len(w) < 2:
            break
        out.append((np.array(w[:-1], dtype=np.int32), np.array(w[1:], dtype=np.int32)))
    return out


def split(seqs: List[Seq], eval_fraction: float, seed: int) -> Tuple[List[Seq], List[Seq]]:
    """Shuffled (by seed) into train and held-out sets; at least one of each when there are 2+."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    idx = list(range(len(seqs)))
    random.Random(seed).shuffle(idx)
    n_eval = int(round(len(seqs) * eval_fraction))
    if eval_fraction > 0 and n_eval == 0 and len(seqs) > 1:
        n_eval = 1
    ev = [seqs[i] for i in idx[:n_eval]]
    tr = [seqs[i] for i in idx[n_eval:]]
    if not tr:
        raise ValueError("no training sequences left after the held-out split")
    return tr, ev
