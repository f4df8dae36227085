"""Writes the seed corpus in tests/data/fuzz/corpus/<target>/: a few tiny valid inputs per target, so
the fuzzers start from files that get past the magic and the header checks. Rerun after changing
it (`python tests/fuzz/make_corpus.py`); the output is deterministic and committed.

gguf/       GGUFs written with the `gguf` package: SPM and BPE vocabularies, every metadata type,
            tensors of several types, a v2 header, alignment 64.
tokenizer/  byte 0 picks one of fuzz_tokenizer.cpp's tokenizers, byte 1 the flags, then text.
legacy/     byte 0 picks the reader of fuzz_legacy.py (0 GPT-J .bin, 1 llama2.c .bin,
            2 llama2.c tokenizer.bin with byte 1 as the vocabulary size), then the file.
"""
import struct
import tempfile
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "data" / "fuzz" / "corpus"


def gguf_bytes(build, alignment=None) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        if alignment:
            w.add_custom_alignment(alignment)
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def spm_vocab(w):
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    for p in ["\u2581", "h", "e", "l", "o", "\u2581h", "ll", "he", "\u2581he", "llo", "\u2581hello"]:
        tokens.append(p)
        types.append(1)
    tokens.append("<|im_start|>")
    types.append(3)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(k) for k in range(len(tokens) - 259)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)


def bpe_vocab(w, pre):
    b2u = {}
    n = 0
    for b in range(256):
        ok = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
        b2u[b] = chr(b) if ok else chr(256 + n)
        n += 0 if ok else 1
    tokens = [b2u[b] for b in range(256)] + ["he", "ll", "hell", "hello", "\u0120w", "or", "\u0120wor"]
    tokens += ["<|endoftext|>", "<|im_start|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    w.add_token_merges(["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or"])
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 2)


def tensors(w, rng):
    w.add_tensor("t.f32", rng.standard_normal((2, 3)).astype(np.float32))
    w.add_tensor("t.f16", rng.standard_normal((4,)).astype(np.float16))
    for qt in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1):
        a = rng.standard_normal((2, 32)).astype(np.float32)
        w.add_tensor(f"t.{qt.name.lower()}", gguf.quants.quantize(a, qt), raw_dtype=qt)


def all_types(w):
    w.add_uint8("k.u8", 200)
    w.add_int8("k.i8", -100)
    w.add_uint16("k.u16", 60000)
    w.add_int16("k.i16", -30000)
    w.add_uint32("k.u32", 4000000000)
    w.add_int32("k.i32", -2000000000)
    w.add_float32("k.f32", 1.5)
    w.add_bool("k.bool", True)
    w.add_uint64("k.u64", 1 << 40)
    w.add_int64("k.i64", -(1 << 40))
    w.add_float64("k.f64", -2.25)
    w.add_string("k.str", "\u2581hi")
    w.add_array("k.strs", ["a", "", "bc"])
    w.add_array("k.f32s", [0.5, -1.0])
    w.add_array("k.i32s", [1, -3, 6])
    w.add_array("k.nested", [[7], [8, 9]])


def main():
    rng = np.random.default_rng(0)
    gg = {
        "spm_vocab.gguf": gguf_bytes(spm_vocab),
        "bpe_gpt2_tensors.gguf": gguf_bytes(lambda w: (bpe_vocab(w, "gpt2"), tensors(w, rng))),
        "bpe_llama3.gguf": gguf_bytes(lambda w: bpe_vocab(w, "llama-bpe")),
        "all_types_align64.gguf": gguf_bytes(lambda w: (all_types(w), tensors(w, rng)), alignment=64),
    }
    v2 = bytearray(gg["all_types_align64.gguf"])
    v2[4:8] = struct.pack("<I", 2)  # v2 has the v3 layout (64-bit counts)
    gg["all_types_v2.gguf"] = bytes(v2)

    tok = {}  # selectors: 0-3 BPE (gpt2, smollm, llama-bpe, qwen2), 4 greedy, 5 SPM, 6 SPM unk-only
    text = "hello world 123 1234567 na\u00efve caf\u00e9 \u65e5\u672c <|eot|><user> xy\n\n\t  end".encode()
    for sel in range(7):
        for flags in (0, 3):
            tok[f"sel{sel}_flags{flags}.txt"] = bytes([sel, flags]) + text

    legacy = {"gptj.bin": b"\x00" + gptj_bin(), "llama2c.bin": b"\x01" + llama2c_bin(),
              "tokenizer.bin": b"\x02" + bytes([5]) + tokenizer_bin()}

    for target, files in (("gguf", gg), ("tokenizer", tok), ("legacy", legacy)):
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
            print(f"{d / name}: {len(data)} bytes")


def gptj_bin() -> bytes:
    """ggml GPT-J .bin: magic, 7 hparams, vocabulary, then tensors (n_dims, name length, type,
    dims, name, data), f32 and q8_0 (quantization version 2 in ftype)."""
    n_vocab, n_embd = 4, 32
    out = struct.pack("<I7i", 0x67676D6C, n_vocab, 8, n_embd, 4, 1, 8, 2000 + 7)
    out += struct.pack("<i", n_vocab)
    for t in (b"a", b"b", b" c", b"<|endoftext|>"):
        out += struct.pack("<I", len(t)) + t
    q = gguf.quants.quantize(np.ones((n_vocab, n_embd), np.float32), gguf.GGMLQuantizationType.Q8_0)
    for name, ne, ttype, data in (("transformer.wte.weight", (n_embd, n_vocab), 8, q.tobytes()),
                                  ("transformer.ln_f.weight", (n_embd,), 0,
                                   np.ones(n_embd, np.float32).tobytes())):
        nb = name.encode()
        out += struct.pack(f"<3i{len(ne)}i", len(ne), len(nb), ttype, *ne) + nb + data
    return out


def llama2c_bin() -> bytes:
    """llama2.c version 0: 7 i32 (dim 4, hidden 8, 1 layer, 2 heads, 2 kv heads, vocab 5, seq 2),
    then exactly as many f32 as the header implies (shared classifier)."""
    dim, hidden, layers, heads, vocab, seq = 4, 8, 1, 2, 5, 2
    head = dim // heads
    n = vocab * dim + layers * (dim + 4 * dim * dim + dim + 3 * hidden * dim) + dim + 2 * seq * head // 2
    return struct.pack("<7i", dim, hidden, layers, heads, heads, vocab, seq) + \
        np.linspace(-1, 1, n, dtype=np.float32).tobytes()


def tokenizer_bin() -> bytes:
    out = struct.pack("<i", 6)
    for score, t in ((0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n"), (-1.0, b" a"), (-2.0, b"<0x0A>")):
        out += struct.pack("<fi", score, len(t)) + t
    return out


if __name__ == "__main__":
    main()
