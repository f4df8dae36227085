"""`ggmlpy quantize` / ggmlpy.quantize: the real SmolLM2-135M Q4_1 model requantized to q8_0, q4_0 and
q4_k_m (each once, module-scoped), checked with the `gguf` package (GGUFReader, numpy
gguf.quants.dequantize) and by greedy generation; a small synthetic f32 file checks the pure-type
path and the row fallbacks; bad type names, quantized input without the flag and truncated inputs fail
with named errors and leave no file behind.
"""
import importlib
import os

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize

import ggmlpy
from ggmlpy.cli import main as cli_main

qmod = importlib.import_module("ggmlpy.quantize")  # the module (ggmlpy.quantize is the function)

# Relative RMS error of each output tensor against the dequantized source, by output type. Measured
# on SmolLM2 (requantizing Q4_1): q8_0 0.0065, q6_k 0.018, q4_k 0.020, q5_0 0.052, q4_0 0.111.
REL_RMS_TOL = {QT.F32: 0.0, QT.Q8_0: 0.01, QT.Q6_K: 0.03, QT.Q4_K: 0.04, QT.Q5_0: 0.08, QT.Q4_0: 0.15}

# llama.cpp's Q4_K_M rule for 30 layers: layers < 30//8, >= 7*30//8, or (i - 3) % 3 == 2 get more bits.
MORE_BITS_30 = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29}


def _types(path):
    r = gguf.GGUFReader(path)
    return r, {t.name: QT(int(t.tensor_type)) for t in r.tensors}


def _rel_rms(ref, got):
    denom = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
    return float(np.sqrt(np.mean((ref.astype(np.float64) - got) ** 2))) / max(denom, 1e-30)


def _no_leftovers(folder, name):
    return [p for p in os.listdir(folder) if name in p]


@pytest.fixture(scope="module")
def outputs(smollm2_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("quantize")
    out = {}
    for t in ("q8_0", "q4_0"):  # through the CLI entry point
        out[t] = d / f"smol.{t}.gguf"
        assert cli_main(["quantize", str(smollm2_path), str(out[t]), t.upper(), "--allow-requantize",
                         "--no-progress"]) == 0
    out["q4_k_m"] = d / "smol.q4_k_m.gguf"  # through the Python API
    assert ggmlpy.quantize(smollm2_path, out["q4_k_m"], "q4_k_m", allow_requantize=True) == \
        str(out["q4_k_m"])
    return out


def _expected_q4_k_m(name, ndim):
    if ndim == 1:
        return QT.F32
    if name == "token_embd.weight":  # tied output: Q6_K wanted, rows of 576 -> Q8_0
        return QT.Q8_0
    layer = int(name.split(".")[1])
    if name.endswith("attn_v.weight"):
        return QT.Q8_0 if layer in MORE_BITS_30 else QT.Q5_0  # 576-wide rows fit neither K type
    if name.endswith("ffn_down.weight"):  # rows of 1536 = 6 * 256
        return QT.Q6_K if layer in MORE_BITS_30 else QT.Q4_K
    return QT.Q5_0  # q4_k wanted, rows of 576 -> q5_0 (llama.cpp's fallback)


def _expected(qtype, name, ndim):
    if qtype == "q4_k_m":
        return _expected_q4_k_m(name, ndim)
    if ndim == 1:
        return QT.F32
    if name == "token_embd.weight":  # tied output: Q6_K wanted, rows of 576 -> Q8_0 (as llama.cpp)
        return QT.Q8_0
    return QT[qtype.upper()]


def test_output_matches_source(outputs, smollm2_path):
    """All three outputs in one pass (each source tensor is dequantized once): metadata, tensor
    order, shapes, types per tensor, general.file_type, and values within REL_RMS_TOL."""
    src = gguf.GGUFReader(smollm2_path)
    dsts = {q: _types(p) for q, p in outputs.items()}
    ftypes = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}  # llama_ftype values
    for qtype, (dst, _) in dsts.items():
        assert [t.name for t in dst.tensors] == [t.name for t in src.tensors]
        assert int(dst.fields["general.file_type"].contents()) == ftypes[qtype]
        for key, f in src.fields.items():
            if key.startswith("GGUF.") or key == "general.file_type":
                continue
            assert key in dst.fields, key
            assert dst.fields[key].types == f.types, key
            assert dst.fields[key].contents() == f.contents(), key
    for i, s in enumerate(src.tensors):
        ref = dequantize(s.data, s.tensor_type)
        for qtype, (dst, types) in dsts.items():
            t = dst.tensors[i]
            assert list(t.shape) == list(s.shape), s.name
            want = _expected(qtype, s.name, len(s.shape))
            assert types[t.name] == want, (qtype, t.name, types[t.name], want)
            got = dequantize(t.data, t.tensor_type)
            assert got.shape == ref.shape
            err = _rel_rms(ref, got)
            assert err <= REL_RMS_TOL[want], (qtype, t.name, want, err)
            if s.tensor_type == t.tensor_type:  # same type: copied byte for byte
                assert np.array_equal(np.asarray(s.data), np.asarray(t.data)), t.name


@pytest.mark.parametrize("qtype", ["q8_0", "q4_k_m"])
def test_output_generates(outputs, qtype):
    with ggmlpy.Model(outputs[qtype], n_ctx=64, n_threads=2) as m:
        text = m.generate("The capital of France is", max_new_tokens=3, temperature=0)
    assert text.startswith(" Paris"), text


def _numpy_llama_last_logits(path, ids):
    """Independent float32 numpy forward pass of a GGUF llama (weights via gguf.quants.dequantize,
    one layer at a time): logits at the last position. GGUF Q/K rows are permuted for rope on
    adjacent pairs, so pairs (2i, 2i+1) rotate by pos * base^(-2i/hd)."""
    r = gguf.GGUFReader(path)
    T = {t.name: t for t in r.tensors}
    W = lambda k: dequantize(T[k].data, T[k].tensor_type).astype(np.float32)  # noqa: E731
    f = lambda k: r.fields[k].contents()  # noqa: E731
    H, KV = f("llama.attention.head_count"), f("llama.attention.head_count_kv")
    eps, base = f("llama.attention.layer_norm_rms_epsilon"), f("llama.rope.freq_base")
    x = W("token_embd.weight")[ids]
    n, D = x.shape
    hd = D // H
    ang = np.arange(n)[:, None] * base ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(ang)[:, None].astype(np.float32), np.sin(ang)[:, None].astype(np.float32)

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    def rope(q):
        a, b = q[..., 0::2], q[..., 1::2]
        o = np.empty_like(q)
        o[..., 0::2], o[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return o

    mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    for i in range(f("llama.block_count")):
        p = f"blk.{i}."
        h = rms(x, W(p + "attn_norm.weight"))
        q = rope((h @ W(p + "attn_q.weight").T).reshape(n, H, hd))
        k = np.repeat(rope((h @ W(p + "attn_k.weight").T).reshape(n, KV, hd)), H // KV, 1)
        v = np.repeat((h @ W(p + "attn_v.weight").T).reshape(n, KV, hd), H // KV, 1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", s, v).reshape(n, D) @ W(p + "attn_output.weight").T
        h = rms(x, W(p + "ffn_norm.weight"))
        g, u = h @ W(p + "ffn_gate.weight").T, h @ W(p + "ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ W(p + "ffn_down.weight").T
    out = "output.weight" if "output.weight" in T else "token_embd.weight"
    return rms(x[-1:], W("output_norm.weight"))[0] @ W(out).T


def test_q4_0_output_matches_numpy_reference(outputs):
    """Pure q4_0 requantized from Q4_1 loses " Paris" (the numpy reference on the same file ranks
    " approximately", " capital", " located" first), so this file is checked against that
    independent forward pass instead: our argmax is in the reference top-3, logits within 2.5
    (measured max 1.54; the Q4_1 original gives 0.69)."""
    with ggmlpy.Model(outputs["q4_0"], n_ctx=64, n_threads=2) as m:
        ids = m.tokenize("The capital of France is")
        ours = m.eval(ids)[-1]
    ref = _numpy_llama_last_logits(outputs["q4_0"], ids)
    assert int(np.argmax(ours)) in np.argsort(-ref)[:3]
    assert float(np.abs(ours - ref).max()) <= 2.5


def test_requantize_needs_flag(smollm2_path, tmp_path, capsys):
    out = tmp_path / "x.gguf"
    assert cli_main(["quantize", str(smollm2_path), str(out), "q4_0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "blk.0.ffn_down.weight" in err and "q4_1" in err and "--allow-requantize" in err
    with pytest.raises(ValueError, match=r"tensor blk\.0\.ffn_down\.weight .*\(q4_1\).*q4_0"):
        ggmlpy.quantize(smollm2_path, out, "q4_0")
    assert not out.exists() and not _no_leftovers(tmp_path, "x.gguf")


def test_bad_type_lists_valid_ones(smollm2_path, tmp_path, capsys):
    out = tmp_path / "x.gguf"
    assert cli_main(["quantize", str(smollm2_path), str(out), "q9_9"]) == 1
    err = capsys.readouterr().err
    assert "'q9_9'" in err
    for name in ("q4_0", "q8_0", "q4_k_m", "q5_k_m", "bf16", "q6_k"):
        assert name in err
    assert not out.exists()


@pytest.mark.parametrize("keep", [2000, 0.6])
def test_truncated_input_leaves_no_output(smollm2_path, tmp_path, keep):
    data = smollm2_path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)  # in the metadata / in the tensors
    bad = tmp_path / "short.gguf"
    bad.write_bytes(data[:n])
    out = tmp_path / "out.gguf"
    with pytest.raises(ggmlpy.GGUFError, match="short.gguf"):
        ggmlpy.quantize(bad, out, "q8_0", allow_requantize=True)
    assert not out.exists() and not _no_leftovers(tmp_path, "out.gguf")


def test_failure_while_writing_removes_temp(smollm2_path, tmp_path, monkeypatch):
    real = qmod._core
    calls = []

    class Failing:  # the real _core, except that quantize fails on its 5th call
        def __getattr__(self, k):
            return getattr(real, k)

        def quantize(self, x, t):
            calls.append(t)
            if len(calls) == 5:
                raise RuntimeError("simulated failure")
            return real.quantize(x, t)

    monkeypatch.setattr(qmod, "_core", Failing())
    out = tmp_path / "out.gguf"
    with pytest.raises(RuntimeError, match="simulated"):
        ggmlpy.quantize(smollm2_path, out, "q8_0", allow_requantize=True)
    assert len(calls) == 5
    assert not out.exists() and not _no_leftovers(tmp_path, "out.gguf")


def test_float_input_pure_types_and_fallbacks(tmp_path):
    """An f32/f16 file needs no flag. Rows of 256 take the K type, rows of 96 its fallback (q4_k ->
    q5_0, q6_k -> q8_0), rows of 40 fit no 32-block (f16); 1-D stays f32; output.weight wants q6_k
    (rows of 64 -> q8_0) while an untied token_embd keeps the base type; the data round-trips within
    the type's tolerance against the gguf package's numpy dequantizer."""
    rng = np.random.default_rng(0)
    tensors = {
        "token_embd.weight": rng.standard_normal((8, 256)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((8, 96)).astype(np.float16),
        "blk.0.ffn_up.weight": rng.standard_normal((4, 40)).astype(np.float32),
        "blk.0.ffn_down.weight": rng.standard_normal((16, 256)).astype(np.float32),
        "output.weight": rng.standard_normal((8, 64)).astype(np.float32),
    }
    src = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(src, "llama")
    w.add_block_count(1)
    w.add_string("general.name", "tiny")
    w.add_array("tokenizer.ggml.scores", [0.5, -1.0])
    for k, v in tensors.items():
        w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tol = {QT.Q4_K: 0.12, QT.Q5_0: 0.08, QT.Q6_K: 0.05, QT.Q8_0: 0.01, QT.F16: 1e-3, QT.F32: 0.0}
    expect = {"q4_k": (QT.Q4_K, QT.Q5_0), "q6_k": (QT.Q6_K, QT.Q8_0)}
    for name, (k256, k96) in expect.items():
        out = tmp_path / f"tiny.{name}.gguf"
        ggmlpy.quantize(src, out, name, log=lambda m: None)
        r, types = _types(out)
        assert types == {"token_embd.weight": k256, "blk.0.attn_norm.weight": QT.F32,
                         "blk.0.attn_q.weight": k96, "blk.0.ffn_up.weight": QT.F16,
                         "blk.0.ffn_down.weight": k256, "output.weight": QT.Q8_0}
        assert [t.name for t in r.tensors] == list(tensors)
        assert r.fields["tokenizer.ggml.scores"].contents() == [0.5, -1.0]
        assert r.fields["general.name"].contents() == "tiny"
        assert int(r.fields["general.file_type"].contents()) == {"q4_k": 14, "q6_k": 18}[name]
        for t in r.tensors:
            ref = tensors[t.name].astype(np.float32)
            got = dequantize(t.data, t.tensor_type)
            assert _rel_rms(ref, got) <= tol[types[t.name]], (name, t.name)
