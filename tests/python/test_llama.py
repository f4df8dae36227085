"""Llama parity with HF transformers: tiny random-weight LlamaForCausalLM models (GQA, MQA, tied and
untied output, odd vocabulary and head sizes) written to GGUF with the `gguf` package (Q/K
permuted as llama.cpp's converter does), then our logits vs HF's float32 logits.

Error = max |ours - hf| / max |hf| over every row. Tolerances (measured values in brackets):
f32 weights + f32 KV 1e-4 [~1e-6]; f32 weights + f16 KV 3e-3 [~6e-4]; f16 weights 1e-2 [~2e-3];
Q8_0 weights (activations quantized to Q8_0 as well, like llama.cpp) 0.12 [~0.05] against HF
float and 0.08 [~0.04] against HF running on the gguf-dequantized Q8_0 weights.
"""
import numpy as np
import pytest
import torch

import gguf
import gguf_tiny as gt
from ggmlpy import _core

CONFIGS = {
    "gqa": dict(heads=4, kv_heads=2),
    "mqa": dict(heads=4, kv_heads=1),
    "mha_tied": dict(heads=4, kv_heads=4, tied=True),
    "odd": dict(vocab=333, hidden=40, heads=5, kv_heads=5, inter=72),
    "gqa_tied_odd_vocab": dict(vocab=397, hidden=96, heads=6, kv_heads=2, inter=160, layers=3, tied=True,
                               rope_theta=500000.0, eps=1e-6),
}
IDS = [1, 5, 77, 200, 13, 9, 260, 3, 44, 100, 101, 7, 18, 255]


@pytest.fixture(scope="module", params=list(CONFIGS))
def tiny(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    model = gt.make_llama(seed=len(request.param), **cfg)
    d = tmp_path_factory.mktemp(request.param)
    files = {t: gt.write_llama_gguf(model, d / f"{t}.gguf", t) for t in ("f32", "f16")}
    return request.param, model, files, gt.hf_logits(model, IDS)


def test_f32_logits_match_hf(tiny):
    name, model, files, ref = tiny
    m = _core.Model(files["f32"], kv_type="f32", n_batch=5, n_threads=2)  # 3 chunks
    assert m.arch == "llama" and m.n_vocab == model.config.vocab_size
    ours = m.eval(IDS, all_logits=True)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert gt.rel_err(ours, ref) < 1e-4
    assert m.n_past == len(IDS)


def test_decode_steps_match_hf(tiny):
    # a prompt, then one token at a time: each step's logits equal HF's row for that position
    name, model, files, ref = tiny
    m = _core.Model(files["f32"], kv_type="f32", n_threads=1)
    last = m.eval(IDS[:6])
    assert last.shape == (model.config.vocab_size,)
    assert gt.rel_err(last, ref[5]) < 1e-4
    for i in range(6, len(IDS)):
        step = m.eval([IDS[i]])
        assert gt.rel_err(step, ref[i]) < 1e-4, i
    m.reset()
    assert m.n_past == 0
    assert gt.rel_err(m.eval(np.array(IDS, dtype=np.int32), all_logits=True), ref) < 1e-4


def test_greedy_matches_hf(tiny):
    name, model, files, ref = tiny
    m = _core.Model(files["f32"], kv_type="f32")
    assert gt.our_greedy(m, IDS[:4], 16) == gt.hf_greedy(model, IDS[:4], 16)


def test_f16_kv_cache(tiny):
    name, model, files, ref = tiny
    m = _core.Model(files["f32"])  # default kv_type f16
    assert gt.rel_err(m.eval(IDS, all_logits=True), ref) < 3e-3


def _argmax_agrees_where_clear(ours, ref):
    # where HF's top-2 margin exceeds twice our largest logit error, the argmax must agree
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * np.max(np.abs(ours - ref))
    assert clear.sum() >= 1
    assert np.array_equal(ours.argmax(1)[clear], ref.argmax(1)[clear])


def test_f16_weights(tiny):
    name, model, files, ref = tiny
    ours = _core.Model(files["f16"], kv_type="f32", n_batch=4).eval(IDS, all_logits=True)
    err = gt.rel_err(ours, ref)
    assert err < 1e-2
    _argmax_agrees_where_clear(ours, ref)


# Q8_0 rows need a multiple of 32 elements: the configs whose sizes allow it
@pytest.mark.parametrize("name", [n for n, c in CONFIGS.items() if c.get("hidden", 64) % 32 == 0])
def test_q8_0_weights(name, tmp_path):
    model = gt.make_llama(seed=len(name), **CONFIGS[name])
    ref = gt.hf_logits(model, IDS)
    path = gt.write_llama_gguf(model, tmp_path / "q8_0.gguf", "q8_0")
    ours = _core.Model(path, kv_type="f32", n_batch=4).eval(IDS, all_logits=True)
    assert gt.rel_err(ours, ref) < 0.12
    _argmax_agrees_where_clear(ours, ref)
    # against HF on the dequantized weights only our activation quantization remains
    deq = gt.make_llama(seed=len(name), **CONFIGS[name])
    with torch.no_grad():
        for n, p in deq.named_parameters():
            if p.ndim == 2:
                q = gguf.quants.quantize(p.numpy(), gguf.GGMLQuantizationType.Q8_0)
                p.copy_(torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)))
    assert gt.rel_err(ours, gt.hf_logits(deq, IDS)) < 0.08


def test_threads_give_same_logits(tiny):
    name, model, files, ref = tiny
    m = _core.Model(files["f32"], kv_type="f32", n_threads=1)
    a = m.eval(IDS, all_logits=True)
    m.reset()
    m.n_threads = 2
    assert m.n_threads == 2
    b = m.eval(IDS, all_logits=True)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max())


def test_metadata_and_memory(tiny):
    name, model, files, ref = tiny
    m = _core.Model(files["f16"], n_ctx=64)
    assert m.n_ctx == 64
    assert m.metadata["general.architecture"] == "llama"
    assert int(m.metadata["llama.block_count"]) == model.config.num_hidden_layers
    mem = m.memory
    assert mem["mmapped"] and mem["weight_bytes"] > 0 and mem["file_bytes"] >= mem["weight_bytes"]
    # f16 K and V: 2 bytes * n_embd_kv * n_ctx * 2 * n_layer
    cfg = model.config
    n_embd_kv = cfg.hidden_size // cfg.num_attention_heads * cfg.num_key_value_heads
    assert mem["kv_bytes"] == 2 * 2 * n_embd_kv * 64 * cfg.num_hidden_layers
    m.close()
    assert m.closed
