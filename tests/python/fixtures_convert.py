"""Builders for the conversion tests (no network): tiny random-weight HF Llama / GPT-J folders with
an offline-trained tokenizer, writers of legacy files that follow the documented byte layouts
(ggml GPT-J .bin: feature-anchors.md 2.1; llama2.c .bin + tokenizer.bin: 2.3-2.4), and numpy
forward passes over a GGUF (via gguf.GGUFReader) used to check converted files against HF logits.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

CORPUS = [
    "Once upon a time there was a little girl named Lily. She liked to play outside in the sun.",
    "The quick brown fox jumps over the lazy dog 1234567890 times!",
    "def main():\n    print('hello world')\n    return 42\n",
    "GPT-J and Llama are decoder-only transformers; ggml runs them on CPUs.",
    "Ünïcödé text: naïve café, 東京, emoji 🙂 and tabs\tand newlines\n\n.",
] * 20


# ---- tokenizers -------------------------------------------------------------------------------

def make_bpe_tokenizer(folder: Path, vocab_size: int = 320, pre: str = "gpt2",
                       chat_template: str | None = None) -> None:
    """Byte-level BPE trained on CORPUS, saved as tokenizer.json (+ tokenizer_config.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, Regex
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    if pre == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False)])
    elif pre == "llama-bpe":
        rx = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
              "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(rx), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        raise ValueError(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(str(folder))


def make_spm_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    """SentencePiece BPE model with byte fallback (like Llama-2's), trained on CORPUS."""
    import io
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        minloglevel=2)  # normalizer as Llama-2's
    path = Path(folder) / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    (Path(folder) / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
         "unk_token": "<unk>"}))
    return path


# ---- tiny HF models ---------------------------------------------------------------------------

def _save(model, folder: Path, fmt: str) -> None:
    if fmt == "safetensors":
        model.save_pretrained(str(folder))
    elif fmt == "sharded":
        model.save_pretrained(str(folder), max_shard_size="200KB")
    elif fmt in ("bin", "bin-sharded"):
        # transformers 5 no longer writes PyTorch .bin (safe_serialization=False is ignored), so
        # write what transformers 4 wrote: torch.save'd state dicts (+ index when sharded), with
        # the tied lm_head left out
        import torch
        model.config.save_pretrained(str(folder))
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        if fmt == "bin":
            torch.save(sd, folder / "pytorch_model.bin")
            return
        names = list(sd)
        parts = [names[i::3] for i in range(3)]
        wm = {}
        for j, part in enumerate(parts):
            fname = f"pytorch_model-{j + 1:05d}-of-00003.bin"
            torch.save({k: sd[k] for k in part}, folder / fname)
            wm.update({k: fname for k in part})
        total = sum(v.numel() * v.element_size() for v in sd.values())
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": wm}))
    else:
        raise ValueError(fmt)


def make_llama(folder: Path, fmt: str = "safetensors", seed: int = 0, tokenizer: str = "bpe",
               **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pre = overrides.pop("pre", "gpt2")
    cfg = dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
               rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.1,
               bos_token_id=0, eos_token_id=0)
    cfg.update(overrides)
    if tokenizer == "bpe":
        make_bpe_tokenizer(folder, pre=pre)
    elif tokenizer == "spm":
        make_spm_tokenizer(folder, vocab_size=cfg["vocab_size"])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).float().eval()
    with torch.no_grad():  # norms away from 1 so a transposed/missing norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    _save(model, folder, fmt)
    return model


def make_gptj(folder: Path, fmt: str = "safetensors", seed: int = 0, **overrides):
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_bpe_tokenizer(folder, pre="gpt2")
    cfg = dict(vocab_size=352, n_positions=128, n_embd=64, n_layer=2, n_head=4, rotary_dim=8,
               initializer_range=0.1, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = GPTJForCausalLM(GPTJConfig(**cfg)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    _save(model, folder, fmt)
    return model


def hf_logits(model, ids) -> np.ndarray:
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def hf_state_dict(model) -> dict:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


# ---- legacy writers ---------------------------------------------------------------------------

def gpt2_token_bytes(folder: Path, n_vocab: int) -> list:
    """Raw bytes of each token of a tokenizer.json (byte-level chars mapped back to bytes), as
    convert-h5-to-ggml.py writes them; ids past the tokenizer are filled like padding."""
    from ggmlpy.convert.tokenizer_meta import bytes_to_unicode
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    tj = json.loads((Path(folder) / "tokenizer.json").read_text())
    ids = dict(tj["model"]["vocab"])
    ids.update({a["content"]: a["id"] for a in tj["added_tokens"]})
    out = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    for t, i in ids.items():
        out[i] = bytes(u2b[c] for c in t) if all(c in u2b for c in t) else t.encode()
    return out


GGML_FTYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9}
GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8}


def write_legacy_gptj(path: Path, model, token_bytes: list, wtype: str = "f32",
                      qnt_version: int = 2) -> dict:
    """ggml GPT-J .bin as examples/gpt-j/convert-h5-to-ggml.py + quantize write it. 2-D *.weight
    tensors get `wtype` (quantized with gguf.quants, whose blocks are ggml's), everything else f32.
    Returns {name: (type, raw bytes)} as written."""
    import gguf
    cfg = model.config
    sd = hf_state_dict(model)
    ftype = GGML_FTYPE[wtype] + (qnt_version * 1000 if wtype not in ("f32", "f16") else 0)
    written = {}
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 0x67676D6C))
        f.write(struct.pack("<7i", cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_head,
                            cfg.n_layer, cfg.rotary_dim or cfg.n_embd // cfg.n_head, ftype))
        f.write(struct.pack("<i", len(token_bytes)))
        for t in token_bytes:
            f.write(struct.pack("<I", len(t)))
            f.write(t)
        for name, data in sd.items():
            if name.endswith("attn.masked_bias") or name.endswith("attn.bias"):
                continue
            data = data.squeeze()
            cur = wtype if (data.ndim == 2 and name.endswith(".weight")) else "f32"
            if cur == "f32":
                raw = data.astype(np.float32).tobytes()
            elif cur == "f16":
                raw = data.astype(np.float16).tobytes()
            else:
                raw = gguf.quants.quantize(data.astype(np.float32),
                                           getattr(gguf.GGMLQuantizationType, cur.upper())).tobytes()
            nm = name.encode()
            f.write(struct.pack("<3i", data.ndim, len(nm), GGML_TYPE[cur]))
            f.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
            f.write(nm)
            f.write(raw)
            written[name] = (cur, raw)
    return written


def write_llama2c(path: Path, model) -> None:
    """llama2.c version 0 checkpoint (export.py legacy_export) from an HF Llama: Q/K rows turned
    back from HF's half-split order into Meta's interleaved order, as export.py does."""
    cfg = model.config
    sd = hf_state_dict(model)
    L, nh = cfg.num_hidden_layers, cfg.num_attention_heads
    nkv = cfg.num_key_value_heads
    shared = cfg.tie_word_embeddings or "lm_head.weight" not in sd

    def to_meta(w, n_head):  # HF (h, s, i) -> Meta (h, i, s)
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)
    lay = lambda k: [sd[f"model.layers.{i}.{k}"] for i in range(L)]  # noqa: E731
    hd = cfg.hidden_size // nh
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", cfg.hidden_size, cfg.intermediate_size, L, nh, nkv,
                            cfg.vocab_size if shared else -cfg.vocab_size,
                            cfg.max_position_embeddings))
        arrays = [sd["model.embed_tokens.weight"]]
        arrays += lay("input_layernorm.weight")
        arrays += [to_meta(w, nh) for w in lay("self_attn.q_proj.weight")]
        arrays += [to_meta(w, nkv) for w in lay("self_attn.k_proj.weight")]
        arrays += lay("self_attn.v_proj.weight") + lay("self_attn.o_proj.weight")
        arrays += lay("post_attention_layernorm.weight")
        arrays += lay("mlp.gate_proj.weight") + lay("mlp.down_proj.weight") + lay("mlp.up_proj.weight")
        arrays += [sd["model.norm.weight"]]
        freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2)[: hd // 2] / hd))
        ang = np.outer(np.arange(cfg.max_position_embeddings), freqs)
        arrays += [np.cos(ang), np.sin(ang)]
        if not shared:
            arrays += [sd["lm_head.weight"]]
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())


def write_llama2c_tokenizer(path: Path, sp_model: Path) -> None:
    """tokenizer.bin as llama2.c's tokenizer.py exports it."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    toks, scores = [], []
    for i in range(sp.vocab_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        toks.append(t.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(path, "wb") as f:
        f.write(struct.pack("<I", max(len(t) for t in toks)))
        for t, s in zip(toks, scores):
            f.write(struct.pack("<fI", s, len(t)))
            f.write(t)


# ---- numpy reference forward over a GGUF (checks the converted layout against HF) -------------

def gguf_tensors(path) -> tuple:
    """(metadata dict of scalars/strings, {name: float32 array in numpy shape})."""
    import gguf
    r = gguf.GGUFReader(str(path))
    meta = {}
    for k, f in r.fields.items():
        if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        v = f.parts[f.data[0]] if f.data else None
        if f.types and f.types[0] == gguf.GGUFValueType.STRING:
            meta[k] = bytes(v).decode()
        elif v is not None:
            meta[k] = v[0].item()
    ts = {}
    for t in r.tensors:
        ts[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(
            tuple(int(x) for x in reversed(t.shape))).astype(np.float32)
    return meta, ts


def _rope_interleaved(x, pos, n_rot, base):
    """x [T, n_head, head_dim]; rotate pairs (2i, 2i+1) of the first n_rot dims (GGUF "normal")."""
    x = x.copy()
    inv = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    ang = pos[:, None].astype(np.float64) * inv[None, :]          # [T, n_rot/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0:n_rot:2].astype(np.float64), x[..., 1:n_rot:2].astype(np.float64)
    x[..., 0:n_rot:2] = a * c - b * s
    x[..., 1:n_rot:2] = a * s + b * c
    return x


def _attention(q, k, v):
    T, nh, hd = q.shape
    rep = nh // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
    att = att + np.triu(np.full((T, T), -np.inf), 1)[None]
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return np.einsum("hts,shd->thd", att, v).reshape(T, nh * hd)


def llama_forward(path, ids) -> np.ndarray:
    meta, W = gguf_tensors(path)
    nh, nkv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    eps, base = meta["llama.attention.layer_norm_rms_epsilon"], meta["llama.rope.freq_base"]
    x = W["token_embd.weight"][ids].astype(np.float64)
    T, pos = len(ids), np.arange(len(ids))
    norm = lambda h, w: h / np.sqrt((h * h).mean(-1, keepdims=True) + eps) * w  # noqa: E731
    for i in range(meta["llama.block_count"]):
        b = f"blk.{i}."
        h = norm(x, W[b + "attn_norm.weight"])
        q = (h @ W[b + "attn_q.weight"].T).reshape(T, nh, -1)
        k = (h @ W[b + "attn_k.weight"].T).reshape(T, nkv, -1)
        v = (h @ W[b + "attn_v.weight"].T).reshape(T, nkv, -1)
        hd = q.shape[-1]
        q, k = _rope_interleaved(q, pos, hd, base), _rope_interleaved(k, pos, hd, base)
        x = x + _attention(q, k, v) @ W[b + "attn_output.weight"].T
        h = norm(x, W[b + "ffn_norm.weight"])
        g = h @ W[b + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ W[b + "ffn_up.weight"].T)) @ W[b + "ffn_down.weight"].T
    x = norm(x, W["output_norm.weight"])
    return x @ W.get("output.weight", W["token_embd.weight"]).T


def gptj_forward(path, ids) -> np.ndarray:
    meta, W = gguf_tensors(path)
    nh, n_rot = meta["gptj.attention.head_count"], meta["gptj.rope.dimension_count"]
    eps, base = meta["gptj.attention.layer_norm_epsilon"], meta["gptj.rope.freq_base"]
    x = W["token_embd.weight"][ids].astype(np.float64)
    T, pos = len(ids), np.arange(len(ids))

    def ln(h, w, b):
        mu = h.mean(-1, keepdims=True)
        var = ((h - mu) ** 2).mean(-1, keepdims=True)
        return (h - mu) / np.sqrt(var + eps) * w + b

    def gelu(a):
        return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
    for i in range(meta["gptj.block_count"]):
        b = f"blk.{i}."
        h = ln(x, W[b + "attn_norm.weight"], W[b + "attn_norm.bias"])
        q = (h @ W[b + "attn_q.weight"].T).reshape(T, nh, -1)
        k = (h @ W[b + "attn_k.weight"].T).reshape(T, nh, -1)
        v = (h @ W[b + "attn_v.weight"].T).reshape(T, nh, -1)
        q, k = _rope_interleaved(q, pos, n_rot, base), _rope_interleaved(k, pos, n_rot, base)
        attn = _attention(q, k, v) @ W[b + "attn_output.weight"].T
        mlp = gelu(h @ W[b + "ffn_up.weight"].T + W[b + "ffn_up.bias"]) @ W[b + "ffn_down.weight"].T \
            + W[b + "ffn_down.bias"]
        x = x + attn + mlp
    x = ln(x, W["output_norm.weight"], W["output_norm.bias"])
    return x @ W["output.weight"].T + W["output.bias"]


def rel_err(a, b) -> float:
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
