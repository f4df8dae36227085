"""Legacy files -> GGUF: ggml GPT-J .bin and llama2.c .bin + tokenizer.bin, written here from HF
models by writers that follow the documented layouts (fixtures_convert.py). Checks: same tensors
as the HF->GGUF path, quantized blocks copied byte for byte, logits of a numpy forward over the
result vs HF, tokenizer metadata (exact with merges, marked approximate without), ensure_gguf's
cache, and bad input (truncated, old quantization version, missing tokenizer.bin).
"""
import logging
import os
import shutil
import struct

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT

from fixtures_convert import (gguf_tensors, gpt2_token_bytes, gptj_forward, hf_logits, llama_forward,
                              make_gptj, make_llama, rel_err, write_legacy_gptj, write_llama2c,
                              write_llama2c_tokenizer)
from ggmlpy.convert import convert_hf, convert_legacy, detect_format, ensure_gguf
from ggmlpy.convert.tokenizer_meta import APPROXIMATE_KEY

IDS = [0, 5, 9, 33, 100, 200, 7, 3, 250, 17, 64, 128]


def field(r, key):
    f = r.fields[key]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


@pytest.fixture(scope="module")
def gptj(tmp_path_factory):
    d = tmp_path_factory.mktemp("lgptj")
    model = make_gptj(d / "hf", rotary_dim=8)
    ref_gguf = convert_hf(str(d / "hf"), str(d / "ref.gguf"), "f32", progress=False)
    toks = gpt2_token_bytes(d / "hf", model.config.vocab_size)
    return d, model, ref_gguf, toks


def _bin_dir(base, name, tokenizer_json=None):
    d = base / name
    d.mkdir()
    if tokenizer_json is not None:
        shutil.copy(tokenizer_json, d / "tokenizer.json")
    return d


def test_gptj_f32_same_as_hf_path(gptj, tmp_path):
    d, model, ref_gguf, toks = gptj
    b = _bin_dir(tmp_path, "m", d / "hf" / "tokenizer.json") / "ggml-model-f32.bin"
    write_legacy_gptj(b, model, toks, "f32")
    assert detect_format(b) == "ggml-gptj"
    out = ensure_gguf(b, cache_dir=tmp_path / "cache")
    assert out.startswith(str(tmp_path / "cache")) and detect_format(out) == "gguf"
    _, Wr = gguf_tensors(ref_gguf)
    _, Wl = gguf_tensors(out)
    assert set(Wr) == set(Wl)
    for k in Wr:
        np.testing.assert_array_equal(Wl[k], Wr[k], err_msg=k)
    ref = hf_logits(model, IDS)
    got = gptj_forward(out, IDS)
    assert rel_err(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    r = gguf.GGUFReader(out)
    assert field(r, "general.architecture") == "gptj"
    assert field(r, "gptj.rope.dimension_count") == 8
    assert field(r, "gptj.feed_forward_length") == 4 * model.config.n_embd
    # exact tokenizer: tokens and merges equal the HF conversion's, not marked approximate
    rr = gguf.GGUFReader(ref_gguf)
    assert field(r, "tokenizer.ggml.tokens") == field(rr, "tokenizer.ggml.tokens")
    assert field(r, "tokenizer.ggml.merges") == field(rr, "tokenizer.ggml.merges")
    assert field(r, "tokenizer.ggml.token_type") == field(rr, "tokenizer.ggml.token_type")
    assert APPROXIMATE_KEY not in r.fields


def test_ensure_gguf_cache(gptj, tmp_path):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "f16")
    cache = tmp_path / "cache"
    out1 = ensure_gguf(b, cache_dir=cache)
    st = os.stat(out1)
    out2 = ensure_gguf(str(b), cache_dir=cache)
    assert out2 == out1 and os.stat(out2).st_mtime_ns == st.st_mtime_ns   # reused, not redone
    assert ensure_gguf(out1) == out1                                    # GGUF comes back as is
    write_legacy_gptj(b, model, toks, "f32")                            # new content -> new key
    os.utime(b, ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
    out3 = ensure_gguf(b, cache_dir=cache)
    assert out3 != out1
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(out1), os.path.basename(out3)])


@pytest.mark.parametrize("wtype,tol", [("f16", 5e-3), ("q8_0", 5e-2), ("q5_1", 0.15),
                                       ("q5_0", 0.15), ("q4_1", 0.3), ("q4_0", 0.3)])
def test_gptj_quantized_blocks_copied(gptj, tmp_path, wtype, tol):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    written = write_legacy_gptj(b, model, toks, wtype)
    out = convert_legacy(b, tmp_path / "o.gguf", progress=False)
    r = gguf.GGUFReader(out)
    by = {t.name: t for t in r.tensors}
    want = getattr(QT, wtype.upper())
    pairs = {"blk.1.attn_q.weight": "transformer.h.1.attn.q_proj.weight",
             "blk.0.ffn_down.weight": "transformer.h.0.mlp.fc_out.weight",
             "output.weight": "lm_head.weight", "token_embd.weight": "transformer.wte.weight"}
    for g, hf in pairs.items():
        assert by[g].tensor_type == want
        assert np.asarray(by[g].data).view(np.uint8).tobytes() == written[hf][1]
    assert by["blk.0.ffn_up.bias"].tensor_type == QT.F32
    assert by["blk.0.attn_norm.weight"].tensor_type == QT.F32
    ftype = {"f16": 1, "q8_0": 7, "q5_1": 9, "q5_0": 8, "q4_1": 3, "q4_0": 2}[wtype]
    assert field(r, "general.file_type") == ftype
    assert field(r, APPROXIMATE_KEY) is True    # no tokenizer beside the file
    got, ref = gptj_forward(out, IDS), hf_logits(model, IDS)
    assert rel_err(got, ref) < tol, rel_err(got, ref)


def test_gptj_requantize_with_outtype(gptj, tmp_path):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "f16")
    out = convert_legacy(b, tmp_path / "o.gguf", outtype="q8_0", progress=False)
    r = gguf.GGUFReader(out)
    assert {t.tensor_type for t in r.tensors if len(t.shape) == 2} == {QT.Q8_0}
    assert rel_err(gptj_forward(out, IDS), hf_logits(model, IDS)) < 5e-2


def test_gptj_tokenizer_approximate_or_exact(gptj, tmp_path, caplog):
    d, model, ref_gguf, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "f32")
    with caplog.at_level(logging.WARNING, logger="ggmlpy.convert"):
        out = convert_legacy(b, tmp_path / "a.gguf", progress=False)
    assert "approximate" in caplog.text
    r = gguf.GGUFReader(out)
    assert field(r, APPROXIMATE_KEY) is True
    assert "tokenizer.ggml.merges" not in r.fields
    rr = gguf.GGUFReader(ref_gguf)
    assert field(r, "tokenizer.ggml.tokens") == field(rr, "tokenizer.ggml.tokens")
    eot = field(rr, "tokenizer.ggml.tokens").index("<|endoftext|>")
    assert field(r, "tokenizer.ggml.eos_token_id") == eot
    # merges.txt given explicitly -> exact
    merges = field(rr, "tokenizer.ggml.merges")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    out = convert_legacy(b, tmp_path / "e.gguf", tokenizer=str(tmp_path / "merges.txt"),
                         progress=False)
    r = gguf.GGUFReader(out)
    assert field(r, "tokenizer.ggml.merges") == merges
    assert APPROXIMATE_KEY not in r.fields
    # a merges file from another vocabulary is rejected
    (tmp_path / "bad.txt").write_text("zq xw\n")
    with pytest.raises(ValueError, match=r"bad\.txt does not match"):
        convert_legacy(b, tmp_path / "x.gguf", tokenizer=str(tmp_path / "bad.txt"), progress=False)
    assert not (tmp_path / "x.gguf").exists()


def test_gptj_truncated(gptj, tmp_path):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "q8_0")
    data = b.read_bytes()
    b.write_bytes(data[:-500])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"lm_head\.bias.*truncated"):
        ensure_gguf(b, cache_dir=cache)
    assert os.listdir(cache) == []
    b.write_bytes(data[:40])  # inside the vocabulary
    with pytest.raises(ValueError, match=r"truncated while reading token"):
        ensure_gguf(b, cache_dir=cache)
    assert os.listdir(cache) == []


def test_gptj_old_quantization_version_rejected(gptj, tmp_path):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "q4_0", qnt_version=1)
    with pytest.raises(ValueError, match=r"Q4_0 from ggml quantization version 1"):
        convert_legacy(b, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_gptj_missing_tensor(gptj, tmp_path):
    d, model, _, toks = gptj
    b = _bin_dir(tmp_path, "m") / "model.bin"
    write_legacy_gptj(b, model, toks, "f32")
    # drop the last tensor record (lm_head.bias): cut the file where its header starts
    data = b.read_bytes()
    name = b"lm_head.bias"
    cut = data.rindex(name) - 4 - 12  # dims (1 int) + n_dims/name_len/ttype
    b.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"missing tensor.*output\.bias"):
        convert_legacy(b, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


# ---- llama2.c ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shared,nkv", [(False, 2), (True, 4), (False, 1)])
def test_llama2c_same_as_hf_path(tmp_path, shared, nkv):
    model = make_llama(tmp_path / "hf", tokenizer="spm", vocab_size=400, num_key_value_heads=nkv,
                       tie_word_embeddings=shared, rms_norm_eps=1e-5)
    ref_gguf = convert_hf(str(tmp_path / "hf"), str(tmp_path / "ref.gguf"), "f32", progress=False)
    (tmp_path / "l2c").mkdir()
    b = tmp_path / "l2c" / "stories.bin"
    write_llama2c(b, model)
    write_llama2c_tokenizer(tmp_path / "l2c" / "tokenizer.bin", tmp_path / "hf" / "tokenizer.model")
    assert detect_format(b) == "llama2c"
    out = ensure_gguf(b, cache_dir=tmp_path / "cache")
    _, Wr = gguf_tensors(ref_gguf)
    _, Wl = gguf_tensors(out)
    assert set(Wr) == set(Wl) and ("output.weight" in Wl) == (not shared)
    for k in Wr:  # includes the Q/K rows: llama2.c's order is already GGUF's interleaved order
        np.testing.assert_array_equal(Wl[k], Wr[k], err_msg=k)
    ref = hf_logits(model, IDS)
    got = llama_forward(out, IDS)
    assert rel_err(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    r, rr = gguf.GGUFReader(out), gguf.GGUFReader(ref_gguf)
    for key in ("llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.rope.dimension_count", "llama.context_length", "tokenizer.ggml.model",
                "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"):
        assert field(r, key) == field(rr, key), key
    np.testing.assert_allclose(field(r, "tokenizer.ggml.scores"), field(rr, "tokenizer.ggml.scores"))


def test_llama2c_bad_input(tmp_path):
    model = make_llama(tmp_path / "hf", tokenizer="spm", vocab_size=400)
    (tmp_path / "l2c").mkdir()
    b = tmp_path / "l2c" / "model.bin"
    write_llama2c(b, model)
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.bin"):
        ensure_gguf(b, cache_dir=tmp_path / "cache")
    write_llama2c_tokenizer(tmp_path / "l2c" / "tokenizer.bin", tmp_path / "hf" / "tokenizer.model")
    data = b.read_bytes()
    b.write_bytes(data[:-64])
    with pytest.raises(ValueError, match=r"model\.bin.*implies \d+ bytes \(truncated\)"):
        convert_legacy(b, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()
    b.write_bytes(data)
    tb = tmp_path / "l2c" / "tokenizer.bin"
    tb.write_bytes(tb.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"tokenizer\.bin.*(truncated|past the end)"):
        convert_legacy(b, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_detect_format_rejects_other_files(tmp_path):
    p = tmp_path / "junk.bin"
    p.write_bytes(struct.pack("<7i", 5, 3, 1, 1, 1, 1, 1) + b"x" * 10)
    with pytest.raises(ValueError, match=r"junk\.bin.*not a GGUF"):
        detect_format(p)
    p.write_bytes(b"tjgg" + b"\0" * 64)
    with pytest.raises(ValueError, match="GGJT"):
        ensure_gguf(p, cache_dir=tmp_path / "c")
