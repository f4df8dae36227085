"""Tiny random-weight HF models written to GGUF with the `gguf` package, for parity tests.

The writer follows llama.cpp's converter conventions independently of our code: GGUF tensor
names from gguf.constants, Q/K rows of llama permuted for the interleaved rope (LlamaModel.permute
in convert_hf_to_gguf.py), numpy shapes written as-is (gguf reverses them into ne order), 1-D
tensors kept in f32, quantization by gguf.quants.quantize.
"""
import numpy as np
import gguf
import torch

TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
}


def spm_vocab(n_vocab):
    """A SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces."""
    assert n_vocab >= 260
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    i = 0
    while len(tokens) < n_vocab:
        tokens.append("\u2581" + "".join(chr(ord("a") + int(c)) for c in str(i)))
        types.append(1)
        i += 1
    scores = [0.0] * 259 + [-float(k) for k in range(n_vocab - 259)]
    return tokens, scores, types


def add_spm_vocab(w, n_vocab, model="llama"):
    tokens, scores, types = spm_vocab(n_vocab)
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def gpt2_byte_symbols():
    """GPT-2's byte -> printable symbol table (bytes_to_unicode), as byte-level BPE vocabularies use."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe_vocab(n_vocab, extra_pieces=()):
    """A byte-level BPE vocabulary: the 256 byte symbols, then extra_pieces (bytes; multi-byte
    tokens, possibly parts of UTF-8 characters), filled up with letter pairs; the last token is
    <|endoftext|> (control). Returns (tokens, types, merges); merges build each extra piece left to
    right, so the tokenizer can produce them."""
    sym = gpt2_byte_symbols()
    tokens = [sym[b] for b in range(256)]
    merges, seen = [], set(tokens)
    pieces = list(extra_pieces) + [bytes([a, b]) for a in b"abcdefghij" for b in b"abcdefghij"]
    for p in pieces:
        if len(tokens) >= n_vocab - 1:
            break
        text = "".join(sym[b] for b in p)
        if len(p) < 2 or text in seen:
            continue
        for k in range(2, len(p) + 1):   # every left prefix becomes a token, made by one merge
            left, right = "".join(sym[b] for b in p[:k - 1]), sym[p[k - 1]]
            if left + right not in seen and len(tokens) < n_vocab - 1:
                merges.append(left + " " + right)
                tokens.append(left + right)
                seen.add(left + right)
    types = [1] * len(tokens)
    while len(tokens) < n_vocab - 1:
        tokens.append(f"<|unused_{len(tokens)}|>")
        types.append(5)
    tokens.append("<|endoftext|>")
    types.append(3)
    return tokens, types, merges


def add_bpe_vocab(w, n_vocab, extra_pieces=()):
    tokens, types, merges = bpe_vocab(n_vocab, extra_pieces)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(n_vocab - 1)
    w.add_eos_token_id(n_vocab - 1)


def add_tensor(w, name, t, outtype):
    a = t.detach().to(torch.float32).numpy()
    if a.ndim == 1 or outtype == "f32":
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
    elif outtype == "f16":
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float16))
    else:
        q = gguf.quants.quantize(np.ascontiguousarray(a), TYPES[outtype])
        w.add_tensor(name, q, raw_dtype=TYPES[outtype])


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def randomize(model, seed, scale=0.15):
    """Weights larger than HF's 0.02 init so logits are peaked (greedy choices are not ties)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


# ---- Llama ------------------------------------------------------------------------------------

def make_llama(vocab=320, hidden=64, inter=96, layers=2, heads=4, kv_heads=2, tied=False,
               rope_theta=10000.0, eps=1e-5, max_pos=256, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, tie_word_embeddings=tied,
                      rope_theta=rope_theta, rms_norm_eps=eps, max_position_embeddings=max_pos,
                      bos_token_id=1, eos_token_id=2, attention_bias=False, mlp_bias=False)
    m = LlamaForCausalLM(cfg).eval()
    randomize(m, seed)
    if tied:
        m.tie_weights()
    return m


def llama_permute(w, n_head):
    """HF (half-split rope) rows -> interleaved-pair rows, as llama.cpp's converter does."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def write_llama_gguf(model, path, outtype="f32", arch="llama", skip=(), overrides=None,
                     tokenizer_model="llama", bpe_pieces=None):
    """Write an HF LlamaForCausalLM as a llama GGUF. skip: tensor names to leave out;
    overrides: {gguf tensor name: torch tensor} replacing what is written (bad-shape tests);
    bpe_pieces: write a byte-level BPE vocabulary (bpe_vocab) with these extra pieces instead of SPM."""
    cfg = model.config
    overrides = overrides or {}
    w = gguf.GGUFWriter(str(path), arch)
    if arch != "llama":  # the keys keep the llama prefix; only general.architecture changes
        w.arch = "llama"
    hd = cfg.hidden_size // cfg.num_attention_heads
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    w.add_rope_freq_base(float(theta))
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0 if outtype == "f32" else 1 if outtype == "f16" else 7)
    if bpe_pieces is not None:
        add_bpe_vocab(w, cfg.vocab_size, bpe_pieces)
    else:
        add_spm_vocab(w, cfg.vocab_size, tokenizer_model)

    sd = model.state_dict()
    tensors = {"token_embd.weight": sd["model.embed_tokens.weight"],
               "output_norm.weight": sd["model.norm.weight"]}
    if not cfg.tie_word_embeddings:
        tensors["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        tensors[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        tensors[b + "attn_q.weight"] = llama_permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        tensors[b + "attn_k.weight"] = llama_permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        tensors[b + "attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
        tensors[b + "attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        tensors[b + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        tensors[b + "ffn_gate.weight"] = sd[p + "mlp.gate_proj.weight"]
        tensors[b + "ffn_up.weight"] = sd[p + "mlp.up_proj.weight"]
        tensors[b + "ffn_down.weight"] = sd[p + "mlp.down_proj.weight"]
    tensors.update(overrides)
    for name, t in tensors.items():
        if name not in skip:
            add_tensor(w, name, t, outtype)
    write(w)
    return path


# ---- GPT-J --------------------------------------------------------------------------------------

def make_gptj(vocab=300, n_embd=64, layers=2, heads=4, rotary_dim=None, n_inner=None, n_pos=256, seed=0):
    from transformers import GPTJConfig, GPTJForCausalLM
    torch.manual_seed(seed)
    rotary_dim = rotary_dim or n_embd // heads  # full rotary when not given
    n_inner = n_inner or 4 * n_embd
    cfg = GPTJConfig(vocab_size=vocab, n_embd=n_embd, n_layer=layers, n_head=heads,
                     rotary_dim=rotary_dim, n_inner=n_inner, n_positions=n_pos,
                     bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    m = GPTJForCausalLM(cfg).eval()
    randomize(m, seed, scale=0.1)
    return m


def write_gptj_gguf(model, path, outtype="f32"):
    cfg = model.config
    hd = cfg.n_embd // cfg.n_head
    n_rot = cfg.rotary_dim if cfg.rotary_dim is not None else hd
    n_ff = cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd
    w = gguf.GGUFWriter(str(path), "gptj")
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_rope_dimension_count(n_rot)
    w.add_vocab_size(cfg.vocab_size)
    add_spm_vocab(w, cfg.vocab_size)
    # HF names -> GGUF names through gguf's own mapping for GPT-J
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPTJ, cfg.n_layer)
    for hf_name, t in model.state_dict().items():
        if hf_name.endswith(".attn.bias") or hf_name.endswith(".masked_bias"):
            continue  # causal-mask buffers in older transformers
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        add_tensor(w, name, t, outtype)
    write(w)
    return path


# ---- comparisons --------------------------------------------------------------------------------

def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def rel_err(ours, ref):
    """max |ours - ref| / max |ref| over all rows."""
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def hf_greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


def our_greedy(m, ids, n):
    m.reset()
    logits = m.eval(ids)
    out = []
    for _ in range(n):
        t = int(np.argmax(logits))
        out.append(t)
        logits = m.eval([t])
    return out
