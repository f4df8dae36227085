"""Peak RSS of `ggmlpy convert` (issue 5, acceptance 3): builds a random-weight Llama-shaped HF
checkpoint of >= 1 GB in /tmp (bf16 safetensors in 2 shards, or a PyTorch .bin), converts it in a
fresh subprocess, and reports the child's peak RSS (ru_maxrss) against the largest tensor and the
interpreter's own baseline (same imports, no conversion).

  GGMLPY_BUILD_DIR=build/x PYTHONPATH=python python benchmarks/convert_rss.py [--outtype f16]
      [--format safetensors|bin] [--layers 9] [--keep]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CFG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
           hidden_size=2048, intermediate_size=5632, num_attention_heads=16, num_key_value_heads=4,
           max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
           torch_dtype="bfloat16")


def tensor_shapes(cfg):
    e, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = e // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    out = {"model.embed_tokens.weight": (v, e)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": (e,), p + "self_attn.q_proj.weight": (e, e),
                    p + "self_attn.k_proj.weight": (kv, e), p + "self_attn.v_proj.weight": (kv, e),
                    p + "self_attn.o_proj.weight": (e, e), p + "post_attention_layernorm.weight": (e,),
                    p + "mlp.gate_proj.weight": (f, e), p + "mlp.up_proj.weight": (f, e),
                    p + "mlp.down_proj.weight": (e, f)})
    out["model.norm.weight"] = (e,)
    out["lm_head.weight"] = (v, e)
    return out


def random_bf16(shape, rng):
    x = (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    return (x.view(np.uint32) >> 16).astype(np.uint16)


def write_safetensors_streaming(path, shapes, rng):
    """safetensors written tensor by tensor (header first), so building the file is cheap too."""
    header, off = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in shapes.items():
            f.write(random_bf16(shape, rng).tobytes())
    return off


def build(folder, layers, fmt, seed=0):
    cfg = dict(CFG, num_hidden_layers=layers)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    # byte-level BPE tokenizer.json with the 256 byte tokens only, padded to vocab_size by convert
    from ggmlpy.convert.tokenizer_meta import bytes_to_unicode
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    tj = {"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": [],
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
          "decoder": {"type": "ByteLevel"}}
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    shapes = tensor_shapes(cfg)
    rng = np.random.default_rng(seed)
    names = list(shapes)
    if fmt == "safetensors":
        half = len(names) // 2
        wm, total = {}, 0
        for j, part in enumerate((names[:half], names[half:])):
            fname = f"model-{j + 1:05d}-of-00002.safetensors"
            total += write_safetensors_streaming(folder / fname, {k: shapes[k] for k in part}, rng)
            wm.update({k: fname for k in part})
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": wm}))
    else:
        import torch
        sd = {k: torch.from_numpy(random_bf16(s, rng)).view(torch.bfloat16) for k, s in shapes.items()}
        torch.save(sd, folder / "pytorch_model.bin")
        del sd
    total = sum(int(np.prod(s)) * 2 for s in shapes.values())
    largest = max(int(np.prod(s)) * 2 for s in shapes.values())
    return total, largest, max(shapes.items(), key=lambda kv: int(np.prod(kv[1])))[0]


# VmHWM (peak RSS of this process image) is read as well as ru_maxrss: on Linux ru_maxrss
# survives exec, so a child can inherit its parent's high-water mark; the parent stays small here
# (the checkpoint is built in its own subprocess) so both agree.
CHILD = r"""
import resource, sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from ggmlpy.convert import convert_hf
base = hwm()
t = time.time()
if sys.argv[1] != "-":
    convert_hf(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
print(base, hwm(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time() - t)
"""


def run_child(args):
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                       env=os.environ)
    if r.returncode:
        sys.exit(f"child failed:\n{r.stderr}")
    base, peak, maxrss, secs = r.stdout.split()
    return int(base) * 1024, int(peak) * 1024, int(maxrss) * 1024, float(secs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "bin"])
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--dir", default=None, help="work folder (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="ggmlpy-rss-", dir="/tmp"))
    src = work / f"hf-{a.format}"
    t = time.time()
    if a.build_only:
        print(json.dumps(build(src, a.layers, a.format)))
        return
    r = subprocess.run([sys.executable, __file__, "--build-only", "--dir", str(work), "--format",
                        a.format, "--layers", str(a.layers)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"building the checkpoint failed:\n{r.stderr}")
    total, largest, largest_name = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"checkpoint: {src} ({a.format}, bf16), {total / 2**30:.2f} GiB of weights, largest "
          f"tensor {largest_name} {largest / 2**20:.0f} MiB, built in {time.time() - t:.0f} s")
    try:
        _, idle, _, _ = run_child(["-", "-", "-"])
        out = work / "out.gguf"
        base, peak, maxrss, secs = run_child([str(src), str(out), a.outtype])
        size = out.stat().st_size
        print(f"convert --outtype {a.outtype}: {secs:.1f} s, output {size / 2**30:.2f} GiB")
        print(f"interpreter after imports (baseline VmHWM):       {idle / 2**20:.0f} MiB")
        print(f"peak RSS of convert (VmHWM / ru_maxrss):          {peak / 2**20:.0f} / "
              f"{maxrss / 2**20:.0f} MiB")
        print(f"peak - baseline:                                  {(peak - idle) / 2**20:.0f} MiB")
        print(f"largest source tensor:                            {largest / 2**20:.0f} MiB "
              f"(as float32: {largest * 2 / 2**20:.0f} MiB)")
        print(f"weights in the checkpoint:                        {total / 2**20:.0f} MiB")
        print(f"peak - baseline - largest tensor (the margin):    {(peak - idle - largest) / 2**20:.0f} MiB")
    finally:
        if not a.keep and not a.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
