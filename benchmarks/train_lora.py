#!/usr/bin/env python3
"""LoRA training speed and memory: ggmlpy (LoraModel over the GGUF, weights mapped) against PEFT +
PyTorch on the same model in float32 (an HF LlamaForCausalLM holding the GGUF's weights,
dequantized), side by side, alternating, each side in its own process so memory is its own.

    python benchmarks/train_lora.py -m SmolLM2-135M-Instruct.Q4_1.gguf --ctx 256 --rank 8 -t 2 -r 3
    python benchmarks/train_lora.py -m llama-1b-q4_0.gguf --sides ours --steps 2   # memory of a 1.1B

Each process runs --steps optimizer steps (AdamW, one sequence of --ctx tokens per step, every
attention and MLP matrix adapted) after one warm-up step, and prints tokens/s (median step), peak
RSS (VmHWM) and the peak anonymous memory (RssAnon sampled after each step: what is not the
model file's page cache). Needs torch and peft for the PEFT side.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _windows(n_vocab, ctx, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, n_vocab, ctx + 1) for _ in range(n)]


def run_ours(a):
    from ggmlpy import Model
    from ggmlpy.training import LoraModel
    from ggmlpy.training.optim import AdamW
    m = Model(a.model, n_ctx=a.ctx + 1, n_threads=a.threads)
    lm = LoraModel(m, None, rank=a.rank, alpha=2.0 * a.rank, n_threads=a.threads)
    opt = AdamW(lm.params())
    times, anon = [], 0.0
    for i, w in enumerate(_windows(m.n_vocab, a.ctx, a.steps + 1)):
        batch = [(w[:-1].astype(np.int32), w[1:].astype(np.int32))]
        t0 = time.perf_counter()
        lm.train_step(batch, opt, 1e-4, 1.0)
        if i:
            times.append(time.perf_counter() - t0)
        anon = max(anon, _status("RssAnon"))
    return times, anon


def _hf_from_gguf(path):
    """LlamaForCausalLM (float32) with the GGUF's weights, Q/K rows back in HF order."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from ggmlpy.convert.llama import interleaved_to_hf
    r = gguf.GGUFReader(path)
    f = r.fields

    def k(name, default=None):
        v = f.get("llama." + name)
        return default if v is None else v.contents()
    t = {x.name: x for x in r.tensors}
    n_vocab = int(t["token_embd.weight"].shape[1])
    cfg = LlamaConfig(vocab_size=n_vocab, hidden_size=int(k("embedding_length")),
                      intermediate_size=int(k("feed_forward_length")), num_hidden_layers=int(k("block_count")),
                      num_attention_heads=int(k("attention.head_count")),
                      num_key_value_heads=int(k("attention.head_count_kv")),
                      rms_norm_eps=float(k("attention.layer_norm_rms_epsilon")),
                      rope_theta=float(k("rope.freq_base", 10000.0)), max_position_embeddings=2048,
                      tie_word_embeddings="output.weight" not in t)
    model = LlamaForCausalLM(cfg)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, p in model.named_parameters():
        g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        x = t[g]
        w = np.asarray(gguf.quants.dequantize(x.data, x.tensor_type), dtype=np.float32).reshape(p.shape)
        if ".attn_q." in g:
            w = interleaved_to_hf(w, cfg.num_attention_heads)
        elif ".attn_k." in g:
            w = interleaved_to_hf(w, cfg.num_key_value_heads)
        with torch.no_grad():
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model.float(), n_vocab


def run_peft(a):
    import torch
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(a.threads or os.cpu_count())
    hf, n_vocab = _hf_from_gguf(a.model)
    model = get_peft_model(hf, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, anon = [], 0.0
    for i, w in enumerate(_windows(n_vocab, a.ctx, a.steps + 1)):
        ids = torch.tensor(w[None, :-1])
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)  # HF shifts the labels itself
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()
        if i:
            times.append(time.perf_counter() - t0)
        anon = max(anon, _status("RssAnon"))
    return times, anon


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per process (after one warm-up)")
    p.add_argument("-r", "--rounds", type=int, default=3, help="processes per side, alternating")
    p.add_argument("--sides", default="ours,peft")
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        times, anon = (run_ours if a.side == "ours" else run_peft)(a)
        print(json.dumps({"tok_s": a.ctx / statistics.median(times), "hwm_mb": _status("VmHWM"),
                          "anon_mb": anon}))
        return
    res = {s: [] for s in a.sides.split(",")}
    for _ in range(a.rounds):
        for side in res:
            cmd = [sys.executable, __file__, "-m", a.model, "--ctx", str(a.ctx), "--rank", str(a.rank), "-t",
                   str(a.threads), "--steps", str(a.steps), "--side", side]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res[side].append(r)
            print(f"{side}: {r['tok_s']:.1f} tok/s, peak RSS {r['hwm_mb']:.0f} MB, peak anon {r['anon_mb']:.0f} MB",
                  flush=True)
    print(f"\n{os.path.basename(a.model)}, ctx {a.ctx}, r={a.rank}, {a.threads} threads, median of {a.rounds}:")
    for side, rs in res.items():
        print(f"  {side:5s} {statistics.median(r['tok_s'] for r in rs):7.1f} tok/s   peak RSS "
              f"{statistics.median(r['hwm_mb'] for r in rs):6.0f} MB   peak anon "
              f"{statistics.median(r['anon_mb'] for r in rs):6.0f} MB")


if __name__ == "__main__":
    main()
