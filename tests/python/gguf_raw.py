"""Byte-level GGUF writer for hostile-file tests: keys, strings and tensor offsets are written
exactly as given (invalid UTF-8, any alignment, tensors sharing bytes), which gguf-py refuses."""
import struct

U32, F32, STR, ARR, I32 = 4, 6, 8, 9, 5


def _s(b):
    b = b.encode("utf-8") if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def _value(t, v):
    if t == U32:
        return struct.pack("<I", v)
    if t == I32:
        return struct.pack("<i", v)
    if t == F32:
        return struct.pack("<f", v)
    if t == STR:
        return _s(v)
    et, items = v  # arrays: (element type, list)
    return struct.pack("<IQ", et, len(items)) + b"".join(_value(et, x) for x in items)


def gguf_bytes(kv, tensors, data=b"", alignment=32):
    """kv: [(key, type, value)]; tensors: [(name, ne tuple, type id, offset)]; data: the data
    section, placed at the first multiple of alignment after the tensor infos."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, t, v in kv:
        out += _s(k) + struct.pack("<I", t) + _value(t, v)
    for name, ne, ty, off in tensors:
        out += _s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", ty, off)
    out += b"\0" * (-len(out) % alignment)
    return out + data


def llama_bomb(n_layer=4096, n_embd=1024, n_ff=1024, n_vocab=260, ctx=4096):
    """A llama GGUF of ~4 MB declaring n_layer layers whose tensors all point at the same f16
    bytes: every size check passes, but the KV cache for ctx would need
    2 * n_layer * n_embd * ctx * 2 bytes (64 GiB by default)."""
    F16 = 1
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    tokens += ["\u2581t%d" % i for i in range(n_vocab - len(tokens))]
    kv = [("general.architecture", STR, "llama"), ("general.alignment", U32, 32),
          ("llama.context_length", U32, ctx), ("llama.embedding_length", U32, n_embd),
          ("llama.block_count", U32, n_layer), ("llama.feed_forward_length", U32, n_ff),
          ("llama.attention.head_count", U32, n_embd // 64), ("llama.attention.head_count_kv", U32, n_embd // 64),
          ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
          ("tokenizer.ggml.model", STR, "llama"), ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
          ("tokenizer.ggml.scores", ARR, (F32, [0.0] * n_vocab)),
          ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259))),
          ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2)]
    t = [("token_embd.weight", (n_embd, n_vocab), F16, 0), ("output_norm.weight", (n_embd,), F16, 0),
         ("output.weight", (n_embd, n_vocab), F16, 0)]
    for i in range(n_layer):
        b = f"blk.{i}."
        t += [(b + "attn_norm.weight", (n_embd,), F16, 0), (b + "ffn_norm.weight", (n_embd,), F16, 0)]
        t += [(b + n, (n_embd, n_embd), F16, 0) for n in ("attn_q.weight", "attn_k.weight", "attn_v.weight",
                                                             "attn_output.weight")]
        t += [(b + "ffn_gate.weight", (n_embd, n_ff), F16, 0), (b + "ffn_up.weight", (n_embd, n_ff), F16, 0),
              (b + "ffn_down.weight", (n_ff, n_embd), F16, 0)]
    data = bytes(2 * n_embd * max(n_embd, n_ff, n_vocab))
    return gguf_bytes(kv, t, data)
