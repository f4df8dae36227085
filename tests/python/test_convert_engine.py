"""Converted files through our engine (ggmlpy._core.Model) vs HF transformers (issue 5 acceptance
1-2): tiny random Llama (GQA, MQA, tied, untied) and GPT-J (partial/full rotary, head counts, tied)
models, checkpoint formats, --outtype tolerances, legacy GPT-J .bin and llama2.c via ensure_gguf,
and the tokenizer built from the converted metadata vs the HF tokenizer it came from.
Tolerances (relative to the largest |logit|): f32 1e-4 (f32 KV cache), f16 1e-2, q8_0 5e-2
(weights and, in the engine, activations are quantized to 8 bits).
"""
import shutil

import numpy as np
import pytest

from fixtures_convert import (CORPUS, gpt2_token_bytes, hf_logits, make_gptj, make_llama, rel_err,
                              write_legacy_gptj, write_llama2c, write_llama2c_tokenizer)
from ggmlpy import _core
from ggmlpy.convert import convert_hf, ensure_gguf

IDS = [0, 5, 9, 33, 100, 200, 7, 3, 250, 17, 64, 128]
N_THREADS = 2

LLAMA = {"gqa": dict(num_key_value_heads=2), "mqa": dict(num_key_value_heads=1),
         "tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
         "untied_8h": dict(num_attention_heads=8, num_key_value_heads=4)}
GPTJ = {"partial_rot": dict(rotary_dim=8), "full_rot": dict(rotary_dim=16),
        "8h": dict(n_head=8, rotary_dim=4), "tied": dict(rotary_dim=8, tie_word_embeddings=True)}


def engine_logits(path, ids, kv_type="f32"):
    m = _core.Model(str(path), n_ctx=64, n_threads=N_THREADS, kv_type=kv_type)
    out = np.array(m.eval(ids, all_logits=True))
    m.close()
    return out


def greedy_engine(path, prompt, n):
    m = _core.Model(str(path), n_ctx=64, n_threads=N_THREADS, kv_type="f32")
    lg = np.array(m.eval(prompt))
    out = []
    for _ in range(n):
        t = int(lg.argmax())
        out.append(t)
        lg = np.array(m.eval([t]))
    m.close()
    return out


def greedy_hf(model, prompt, n):
    import torch
    with torch.no_grad():
        g = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False,
                           min_new_tokens=n, pad_token_id=0)
    return g[0, len(prompt):].tolist()


def check_f32(path, model):
    ref = hf_logits(model, IDS)
    got = engine_logits(path, IDS)
    assert rel_err(got, ref) < 1e-4, rel_err(got, ref)
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    assert greedy_engine(path, IDS[:4], 8) == greedy_hf(model, IDS[:4], 8)


@pytest.mark.parametrize("name", list(LLAMA))
def test_llama_engine_f32(tmp_path, name):
    model = make_llama(tmp_path / "hf", **LLAMA[name])
    check_f32(convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), "f32", progress=False), model)


@pytest.mark.parametrize("name", list(GPTJ))
def test_gptj_engine_f32(tmp_path, name):
    model = make_gptj(tmp_path / "hf", **GPTJ[name])
    check_f32(convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), "f32", progress=False), model)


@pytest.mark.parametrize("fmt", ["sharded", "bin", "bin-sharded"])
def test_formats_engine(tmp_path, fmt):
    model = make_gptj(tmp_path / "hf", fmt=fmt, rotary_dim=8)
    check_f32(convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), "f32", progress=False), model)


@pytest.mark.parametrize("arch", ["llama", "gptj"])
@pytest.mark.parametrize("outtype,tol", [("f16", 1e-2), ("bf16", 4e-2), ("q8_0", 5e-2)])
def test_outtype_engine(tmp_path, arch, outtype, tol):
    model = make_llama(tmp_path / "hf") if arch == "llama" else make_gptj(tmp_path / "hf")
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), outtype, progress=False)
    got, ref = engine_logits(out, IDS, kv_type="f16"), hf_logits(model, IDS)
    assert rel_err(got, ref) < tol, rel_err(got, ref)


def test_legacy_gptj_engine(tmp_path):
    model = make_gptj(tmp_path / "hf", rotary_dim=8)
    gg = convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), "f32", progress=False)
    (tmp_path / "legacy").mkdir()
    b = tmp_path / "legacy" / "ggml-model.bin"
    write_legacy_gptj(b, model, gpt2_token_bytes(tmp_path / "hf", model.config.vocab_size), "f32")
    shutil.copy(tmp_path / "hf" / "tokenizer.json", tmp_path / "legacy" / "tokenizer.json")
    lg = ensure_gguf(b, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(engine_logits(lg, IDS), engine_logits(gg, IDS))
    check_f32(lg, model)
    b8 = tmp_path / "legacy" / "ggml-model-q8_0.bin"
    write_legacy_gptj(b8, model, gpt2_token_bytes(tmp_path / "hf", model.config.vocab_size), "q8_0")
    got = engine_logits(ensure_gguf(b8, cache_dir=tmp_path / "cache"), IDS, kv_type="f16")
    assert rel_err(got, hf_logits(model, IDS)) < 5e-2


def test_llama2c_engine(tmp_path):
    model = make_llama(tmp_path / "hf", tokenizer="spm", vocab_size=400, num_key_value_heads=2)
    gg = convert_hf(str(tmp_path / "hf"), str(tmp_path / "m.gguf"), "f32", progress=False)
    (tmp_path / "l2c").mkdir()
    write_llama2c(tmp_path / "l2c" / "model.bin", model)
    write_llama2c_tokenizer(tmp_path / "l2c" / "tokenizer.bin", tmp_path / "hf" / "tokenizer.model")
    lg = ensure_gguf(tmp_path / "l2c" / "model.bin", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(engine_logits(lg, IDS), engine_logits(gg, IDS))
    check_f32(lg, model)


@pytest.mark.parametrize("pre", ["gpt2", "smollm", "llama-bpe", "spm"])
def test_converted_tokenizer_matches_hf(tmp_path, pre):
    from transformers import AutoTokenizer
    if pre == "spm":
        make_llama(tmp_path / "hf", tokenizer="spm", vocab_size=400)
    else:
        make_llama(tmp_path / "hf", pre=pre)
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "t.gguf"), vocab_only=True, progress=False)
    tok = _core.Tokenizer.from_gguf(out)
    if pre == "spm":  # the reference is sentencepiece itself (HF's converted fast tokenizer in
        import sentencepiece  # transformers 5 drops the dummy prefix)
        sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "hf" / "tokenizer.model"))
        encode = sp.encode
    else:
        encode = AutoTokenizer.from_pretrained(str(tmp_path / "hf")).encode
        encode = (lambda f: lambda t: f(t, add_special_tokens=False))(encode)
    texts = sorted(set(CORPUS)) + ["Hello  world 12345", " leading space", "x\n\n\ny"]
    for text in texts:
        assert list(tok.encode(text, add_bos=False)) == encode(text), text
