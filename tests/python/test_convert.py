"""HF -> GGUF conversion (ggmlpy.convert.convert_hf) on tiny random-weight models built here with
transformers: tensor names/shapes/types/metadata read back with gguf.GGUFReader (acceptance 4),
tensor values vs HF's state dict (undoing the Q/K interleave), logits of a numpy forward pass over
the GGUF vs HF's logits, all --outtype values, checkpoint formats, tokenizer metadata, vocab-only,
and bad input (acceptance 6). Engine-level logits are in test_convert_engine.py.
"""
import json
import os

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT

from fixtures_convert import (gguf_tensors, gptj_forward, hf_logits, hf_state_dict, llama_forward,
                              make_gptj, make_llama, rel_err)
from ggmlpy.convert import convert_hf
from ggmlpy.convert.llama import interleaved_to_hf, hf_to_interleaved
from ggmlpy.convert.writer import Source, TensorPlan, write_gguf

IDS = [0, 5, 9, 33, 100, 200, 7, 3, 250, 17, 64, 128]

LLAMA_CONFIGS = {
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2),
    "mqa": dict(num_attention_heads=4, num_key_value_heads=1),
    "mha_tied": dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True),
    "untied_8h": dict(num_attention_heads=8, num_key_value_heads=4, rope_theta=50000.0),
}
GPTJ_CONFIGS = {
    "partial_rot": dict(n_head=4, rotary_dim=8),
    "full_rot": dict(n_head=4, rotary_dim=16),  # = head_dim
    "8h": dict(n_head=8, rotary_dim=4),
    "tied": dict(n_head=4, rotary_dim=8, tie_word_embeddings=True),
}


def files_in(d):
    return sorted(os.listdir(d))


def reader_types(path):
    r = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type, tuple(int(x) for x in reversed(t.shape))) for t in r.tensors}, r


def field(r, key):
    f = r.fields[key]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def llama_expected_names(n_layer, tied):
    names = {"token_embd.weight", "output_norm.weight"} | ({"output.weight"} if not tied else set())
    for i in range(n_layer):
        names |= {f"blk.{i}.{k}.weight" for k in ("attn_norm", "attn_q", "attn_k", "attn_v",
                                                  "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                                  "ffn_down")}
    return names


@pytest.fixture(scope="module")
def llama_models(tmp_path_factory):
    out = {}
    for name, cfg in LLAMA_CONFIGS.items():
        d = tmp_path_factory.mktemp(f"llama_{name}")
        out[name] = (d / "hf", make_llama(d / "hf", **cfg))
    return out


@pytest.fixture(scope="module")
def gptj_models(tmp_path_factory):
    out = {}
    for name, cfg in GPTJ_CONFIGS.items():
        d = tmp_path_factory.mktemp(f"gptj_{name}")
        out[name] = (d / "hf", make_gptj(d / "hf", **cfg))
    return out


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
def test_llama_f32(llama_models, tmp_path, name):
    folder, model = llama_models[name]
    cfg = model.config
    out = convert_hf(str(folder), str(tmp_path / "m.gguf"), "f32", progress=False)
    assert files_in(tmp_path) == ["m.gguf"]
    types, r = reader_types(out)
    tied = bool(cfg.tie_word_embeddings)
    assert set(types) == llama_expected_names(cfg.num_hidden_layers, tied)
    assert all(t == QT.F32 for t, _ in types.values())
    hd = cfg.hidden_size // cfg.num_attention_heads
    assert types["blk.0.attn_k.weight"][1] == (cfg.num_key_value_heads * hd, cfg.hidden_size)
    assert types["token_embd.weight"][1] == (cfg.vocab_size, cfg.hidden_size)
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.block_count") == cfg.num_hidden_layers
    assert field(r, "llama.embedding_length") == cfg.hidden_size
    assert field(r, "llama.feed_forward_length") == cfg.intermediate_size
    assert field(r, "llama.attention.head_count") == cfg.num_attention_heads
    assert field(r, "llama.attention.head_count_kv") == cfg.num_key_value_heads
    assert field(r, "llama.rope.dimension_count") == hd
    assert field(r, "llama.context_length") == cfg.max_position_embeddings
    assert field(r, "llama.rope.freq_base") == pytest.approx(LLAMA_CONFIGS[name].get("rope_theta", 10000.0))
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field(r, "general.file_type") == 0
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert len(field(r, "tokenizer.ggml.tokens")) == cfg.vocab_size

    # values: GGUF Q/K are the interleaved form of HF's rows; undo it and compare exactly
    meta, W = gguf_tensors(out)
    sd = hf_state_dict(model)
    for i in range(cfg.num_hidden_layers):
        q = W[f"blk.{i}.attn_q.weight"]
        k = W[f"blk.{i}.attn_k.weight"]
        np.testing.assert_array_equal(interleaved_to_hf(q, cfg.num_attention_heads),
                                      sd[f"model.layers.{i}.self_attn.q_proj.weight"])
        np.testing.assert_array_equal(interleaved_to_hf(k, cfg.num_key_value_heads),
                                      sd[f"model.layers.{i}.self_attn.k_proj.weight"])
        assert not np.array_equal(q, sd[f"model.layers.{i}.self_attn.q_proj.weight"])
        np.testing.assert_array_equal(W[f"blk.{i}.ffn_down.weight"],
                                      sd[f"model.layers.{i}.mlp.down_proj.weight"])
    np.testing.assert_array_equal(W["token_embd.weight"], sd["model.embed_tokens.weight"])

    # semantics: a forward pass with interleaved-pair rope over the GGUF matches HF
    ref = hf_logits(model, IDS)
    got = llama_forward(out, IDS)
    assert rel_err(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_permutation_roundtrip():
    w = np.arange(6 * 16 * 3, dtype=np.float32).reshape(6 * 16, 3)
    p = hf_to_interleaved(w, 6)
    np.testing.assert_array_equal(interleaved_to_hf(p, 6), w)
    # head 0, HF rows 0..7 (first halves) and 8..15 (second halves) alternate after the permute
    np.testing.assert_array_equal(p[0:4, 0], w[[0, 8, 1, 9], 0])


@pytest.mark.parametrize("name", list(GPTJ_CONFIGS))
def test_gptj_f32(gptj_models, tmp_path, name):
    folder, model = gptj_models[name]
    cfg = model.config
    out = convert_hf(str(folder), str(tmp_path / "g.gguf"), "f32", progress=False)
    types, r = reader_types(out)
    expect = {"token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight",
              "output.bias"}
    for i in range(cfg.n_layer):
        expect |= {f"blk.{i}.{k}" for k in (
            "attn_norm.weight", "attn_norm.bias", "attn_q.weight", "attn_k.weight", "attn_v.weight",
            "attn_output.weight", "ffn_up.weight", "ffn_up.bias", "ffn_down.weight", "ffn_down.bias")}
    assert set(types) == expect
    assert types["blk.1.ffn_up.weight"] == (QT.F32, (4 * cfg.n_embd, cfg.n_embd))
    assert types["output.bias"] == (QT.F32, (cfg.vocab_size,))
    assert field(r, "general.architecture") == "gptj"
    assert field(r, "gptj.rope.dimension_count") == (cfg.rotary_dim or cfg.n_embd // cfg.n_head)
    assert field(r, "gptj.attention.head_count") == cfg.n_head
    assert field(r, "gptj.block_count") == cfg.n_layer
    assert field(r, "gptj.feed_forward_length") == 4 * cfg.n_embd
    assert field(r, "gptj.context_length") == cfg.n_positions
    assert field(r, "gptj.attention.layer_norm_epsilon") == pytest.approx(cfg.layer_norm_epsilon)
    _, W = gguf_tensors(out)
    sd = hf_state_dict(model)
    np.testing.assert_array_equal(W["blk.0.attn_q.weight"], sd["transformer.h.0.attn.q_proj.weight"])
    np.testing.assert_array_equal(W["output.weight"], sd["lm_head.weight"])
    ref = hf_logits(model, IDS)
    got = gptj_forward(out, IDS)
    assert rel_err(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()


@pytest.mark.parametrize("fmt", ["sharded", "bin", "bin-sharded"])
def test_checkpoint_formats_match_safetensors(tmp_path, fmt):
    ref_model = make_llama(tmp_path / "st", seed=3)
    make_llama(tmp_path / fmt, fmt=fmt, seed=3)
    listing = os.listdir(tmp_path / fmt)
    if fmt == "sharded":
        assert "model.safetensors.index.json" in listing
    elif fmt == "bin":
        assert "pytorch_model.bin" in listing
    else:
        assert "pytorch_model.bin.index.json" in listing
    a = convert_hf(str(tmp_path / "st"), str(tmp_path / "a.gguf"), "f32", progress=False)
    b = convert_hf(str(tmp_path / fmt), str(tmp_path / "b.gguf"), "f32", progress=False)
    _, Wa = gguf_tensors(a)
    _, Wb = gguf_tensors(b)
    assert list(Wa) == list(Wb)
    for k in Wa:
        np.testing.assert_array_equal(Wa[k], Wb[k])
    assert rel_err(llama_forward(b, IDS), hf_logits(ref_model, IDS)) < 1e-4


@pytest.mark.parametrize("outtype,tol", [("f16", 5e-3), ("bf16", 3e-2), ("q8_0", 5e-2)])
def test_outtypes(llama_models, gptj_models, tmp_path, outtype, tol):
    want = {"f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0}[outtype]
    ftype = {"f16": 1, "bf16": 32, "q8_0": 7}[outtype]
    for arch, (folder, model) in (("llama", llama_models["gqa"]), ("gptj", gptj_models["partial_rot"])):
        out = convert_hf(str(folder), str(tmp_path / f"{arch}.gguf"), outtype, progress=False)
        types, r = reader_types(out)
        assert field(r, "general.file_type") == ftype
        if outtype == "q8_0":
            assert field(r, "general.quantization_version") == 2
        for name, (t, shape) in types.items():
            assert t == (QT.F32 if len(shape) == 1 else want), name
        # bytes equal to the gguf package's own encoding of the (permuted) HF tensor
        sd = hf_state_dict(model)
        if arch == "llama":
            hf_w = hf_to_interleaved(sd["model.layers.1.self_attn.k_proj.weight"],
                                     model.config.num_key_value_heads)
            gname = "blk.1.attn_k.weight"
        else:
            hf_w, gname = sd["transformer.h.1.mlp.fc_out.weight"], "blk.1.ffn_down.weight"
        t = next(x for x in r.tensors if x.name == gname)
        np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).ravel(),
                                      gguf.quants.quantize(hf_w, want).view(np.uint8).ravel())
        fwd = llama_forward if arch == "llama" else gptj_forward
        got, ref = fwd(out, IDS), hf_logits(model, IDS)
        assert rel_err(got, ref) < tol, (arch, rel_err(got, ref))


def test_q8_0_row_not_multiple_of_32_falls_back_to_f16(tmp_path):
    make_llama(tmp_path / "hf", hidden_size=48, intermediate_size=80, num_attention_heads=4,
               num_key_value_heads=2)
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "q.gguf"), "q8_0", progress=False)
    types, _ = reader_types(out)
    assert types["blk.0.ffn_down.weight"][0] == QT.F16      # row of 80
    assert types["blk.0.ffn_up.weight"][0] == QT.F16        # row of 48
    assert types["blk.0.attn_norm.weight"][0] == QT.F32


@pytest.mark.parametrize("pre", ["gpt2", "smollm", "llama-bpe"])
def test_bpe_tokenizer_metadata(tmp_path, pre):
    make_llama(tmp_path / "hf", pre=pre)
    tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    cfgp = tmp_path / "hf" / "tokenizer_config.json"
    tc = json.loads(cfgp.read_text())
    tc["chat_template"] = tmpl
    cfgp.write_text(json.dumps(tc))
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "t.gguf"), "f16", vocab_only=True,
                     progress=False)
    types, r = reader_types(out)
    assert types == {}
    tj = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())
    vocab = dict(tj["model"]["vocab"])
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 384
    for t, i in vocab.items():
        assert tokens[i] == t
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    assert field(r, "tokenizer.ggml.merges") == merges
    assert field(r, "tokenizer.ggml.pre") == pre
    ttypes = field(r, "tokenizer.ggml.token_type")
    for a in tj["added_tokens"]:
        assert ttypes[a["id"]] == 3
    assert ttypes[len(vocab)] == 5 and tokens[len(vocab)] == f"[PAD{len(vocab)}]"
    assert field(r, "tokenizer.ggml.bos_token_id") == vocab["<|endoftext|>"]
    assert field(r, "tokenizer.chat_template") == tmpl
    assert field(r, "llama.block_count") == 2


def test_spm_tokenizer_metadata(tmp_path):
    import sentencepiece as spm
    make_llama(tmp_path / "hf", tokenizer="spm", vocab_size=400)
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "s.gguf"), "f16", progress=False)
    _, r = reader_types(out)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "hf" / "tokenizer.model"))
    assert field(r, "tokenizer.ggml.model") == "llama"
    tokens = field(r, "tokenizer.ggml.tokens")
    scores = field(r, "tokenizer.ggml.scores")
    ttypes = field(r, "tokenizer.ggml.token_type")
    assert tokens == [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    np.testing.assert_allclose(scores, [sp.get_score(i) for i in range(sp.vocab_size())])
    assert ttypes[0] == 2 and ttypes[1] == 3 and ttypes[2] == 3
    assert all(ttypes[i] == 6 for i in range(sp.vocab_size()) if sp.is_byte(i))
    assert field(r, "tokenizer.ggml.bos_token_id") == 1
    assert field(r, "tokenizer.ggml.eos_token_id") == 2
    assert field(r, "tokenizer.ggml.add_bos_token") is True
    assert field(r, "tokenizer.ggml.add_space_prefix") is True


def test_vocab_only_without_weights(tmp_path):
    make_llama(tmp_path / "hf")
    for f in os.listdir(tmp_path / "hf"):
        if f.endswith(".safetensors"):
            os.unlink(tmp_path / "hf" / f)
    with pytest.raises(FileNotFoundError, match=r"no weights found.*--vocab-only"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "x.gguf"), "f32", progress=False)
    assert "x.gguf" not in os.listdir(tmp_path)
    out = convert_hf(str(tmp_path / "hf"), str(tmp_path / "v.gguf"), vocab_only=True, progress=False)
    _, r = reader_types(out)
    assert len(r.tensors) == 0 and len(field(r, "tokenizer.ggml.tokens")) == 384


# ---- bad input: an exception naming the problem, and nothing left in the output folder -------

def _assert_clean(d):
    assert [f for f in os.listdir(d) if f.endswith((".gguf", ".tmp"))] == []


def test_folder_without_config(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "out").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "out" / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path / "out")


def test_unsupported_architecture(tmp_path):
    make_llama(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    cfg["model_type"] = "bert"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unsupported architecture.*BertForMaskedLM"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path)


def _rewrite_safetensors(folder, edit):
    from safetensors.numpy import load_file, save_file
    p = folder / "model.safetensors"
    sd = load_file(str(p))
    edit(sd)
    save_file(sd, str(p), metadata={"format": "pt"})


def test_missing_tensor(tmp_path):
    make_llama(tmp_path / "hf")
    _rewrite_safetensors(tmp_path / "hf", lambda sd: sd.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor.*blk\.1\.ffn_up\.weight"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path)


def test_mismatched_tensor(tmp_path):
    make_llama(tmp_path / "hf")

    def edit(sd):
        sd["model.layers.0.self_attn.k_proj.weight"] = np.zeros((48, 64), np.float32)
    _rewrite_safetensors(tmp_path / "hf", edit)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight.*\[48, 64\].*\[32, 64\]"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path)


def test_unexpected_tensor(tmp_path):
    make_gptj(tmp_path / "hf")

    def edit(sd):
        sd["transformer.h.0.attn.extra.weight"] = np.zeros((4, 4), np.float32)
    _rewrite_safetensors(tmp_path / "hf", edit)
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn\.extra\.weight"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path)


def test_truncated_checkpoint(tmp_path):
    make_llama(tmp_path / "hf")
    p = tmp_path / "hf" / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated"):
        convert_hf(str(tmp_path / "hf"), str(tmp_path / "o.gguf"), "f32", progress=False)
    _assert_clean(tmp_path)


def test_failure_while_writing_removes_temp_file(tmp_path):
    def boom():
        raise RuntimeError("disk on fire")
    plans = [TensorPlan("a.weight", (4, 32), QT.F32, lambda: Source(np.ones((4, 32), np.float32))),
             TensorPlan("b.weight", (4, 32), QT.F32, boom)]
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_gguf(tmp_path / "o.gguf", "llama", lambda w: None, plans, progress=False)
    assert os.listdir(tmp_path) == []
    plans[1] = TensorPlan("b.weight", (4, 32), QT.F32, lambda: Source(np.ones((4, 31), np.float32)))
    with pytest.raises(ValueError, match=r"b\.weight.*\(4, 31\).*\(4, 32\)"):
        write_gguf(tmp_path / "o.gguf", "llama", lambda w: None, plans, progress=False)
    assert os.listdir(tmp_path) == []


def test_cli_convert(tmp_path, capsys):
    import argparse
    from ggmlpy.convert.cli import add_subparser
    make_gptj(tmp_path / "hf")
    p = argparse.ArgumentParser()
    add_subparser(p.add_subparsers(dest="command"))
    args = p.parse_args(["convert", str(tmp_path / "hf"), "-o", str(tmp_path / "c.gguf"),
                         "--outtype", "q8_0", "--no-progress"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c.gguf")
    types, _ = reader_types(tmp_path / "c.gguf")
    assert types["blk.0.attn_q.weight"][0] == QT.Q8_0
    args = p.parse_args(["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "d.gguf")])
    with pytest.raises(FileNotFoundError, match="nope"):     # the main CLI prints it in one line
        args.func(args)
    assert not (tmp_path / "d.gguf").exists()


def test_torch_bin_reader(tmp_path):
    """The .bin reader reads storages lazily from the zip: values equal torch.load's (incl. bf16
    and non-contiguous tensors); a pickle naming any other global is refused; truncation raises."""
    import pickle
    import torch
    from ggmlpy.convert.hf import _TorchFile
    sd = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16),
          "c": torch.randn(4, 6)[:, 1:4].t(), "d": torch.randn(8, 2).half()}
    p = tmp_path / "pytorch_model.bin"
    torch.save(sd, p)
    f = _TorchFile(p)
    for k, v in sd.items():
        src = f.load(k)
        want = v.contiguous().view(torch.int16).numpy().view(np.uint16) if v.dtype == torch.bfloat16 \
            else v.contiguous().numpy()
        assert src.bf16 == (v.dtype == torch.bfloat16)
        np.testing.assert_array_equal(src.array, want, err_msg=k)

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))
    torch.save({"a": torch.zeros(2)}, p)
    import zipfile
    with zipfile.ZipFile(p) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    entries[pkl] = pickle.dumps({"a": Evil()}, protocol=2)
    with zipfile.ZipFile(p, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*not allowed"):
        _TorchFile(p)
    torch.save(sd, p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: cannot read"):
        _TorchFile(p)


def test_gpt2_vocab_json_and_merges_txt(tmp_path):
    """GPT-J repos ship vocab.json + merges.txt (+ added_tokens.json) without tokenizer.json: the
    metadata must equal what the tokenizer.json path gives."""
    make_gptj(tmp_path / "hf")
    a = convert_hf(str(tmp_path / "hf"), str(tmp_path / "a.gguf"), vocab_only=True, progress=False)
    tj = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())
    special = {t["content"]: t["id"] for t in tj["added_tokens"]}
    vocab = {t: i for t, i in tj["model"]["vocab"].items() if t not in special}
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "hf" / "added_tokens.json").write_text(json.dumps(special))
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    (tmp_path / "hf" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    os.unlink(tmp_path / "hf" / "tokenizer.json")
    tc_path = tmp_path / "hf" / "tokenizer_config.json"  # as transformers 4 wrote it
    tc = json.loads(tc_path.read_text())
    tc["added_tokens_decoder"] = {str(i): {"content": t, "special": True} for t, i in special.items()}
    tc_path.write_text(json.dumps(tc))
    b = convert_hf(str(tmp_path / "hf"), str(tmp_path / "b.gguf"), vocab_only=True, progress=False)
    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.pre",
                "tokenizer.ggml.eos_token_id"):
        assert field(ra, key) == field(rb, key), key
    # special tokens: CONTROL from tokenizer_config.json's added_tokens_decoder
    assert field(ra, "tokenizer.ggml.token_type") == field(rb, "tokenizer.ggml.token_type")
    assert field(rb, "tokenizer.ggml.token_type")[special["<|im_start|>"]] == 3
    # without that file only <|endoftext|> is known to be special, the others are user-defined
    os.unlink(tmp_path / "hf" / "tokenizer_config.json")
    c = convert_hf(str(tmp_path / "hf"), str(tmp_path / "c.gguf"), vocab_only=True, progress=False)
    tc = field(gguf.GGUFReader(c), "tokenizer.ggml.token_type")
    assert tc[special["<|endoftext|>"]] == 3 and tc[special["<|im_start|>"]] == 4
