"""GPT-J parity with HF transformers: tiny random-weight GPTJForCausalLM models (partial and full
rotary, different head counts, separate output with bias) written to GGUF with the `gguf` package
(names from gguf's own GPT-J tensor map). Error = max |ours - hf| / max |hf| over all rows.
Tolerances [measured]: f32 1e-4 [~4e-7], f16 weights 5e-3 [~3e-4], Q8_0 0.05 [~0.012]."""
import numpy as np
import pytest

import gguf_tiny as gt
from ggmlpy import _core

CONFIGS = {
    "partial_rotary": dict(rotary_dim=8),
    "full_rotary": dict(),
    "many_heads_odd_vocab": dict(heads=8, rotary_dim=4, vocab=301),
    "two_heads_3_layers": dict(heads=2, n_embd=96, rotary_dim=16, layers=3, n_inner=160),
}
IDS = [1, 5, 77, 200, 13, 9, 260, 3, 44, 100, 101, 7]


@pytest.fixture(scope="module", params=list(CONFIGS))
def tiny(request, tmp_path_factory):
    model = gt.make_gptj(seed=len(request.param), **CONFIGS[request.param])
    d = tmp_path_factory.mktemp(request.param)
    files = {t: gt.write_gptj_gguf(model, d / f"{t}.gguf", t) for t in ("f32", "f16", "q8_0")}
    return model, files, gt.hf_logits(model, IDS)


@pytest.mark.parametrize("outtype,tol", [("f32", 1e-4), ("f16", 5e-3), ("q8_0", 0.05)])
def test_logits_match_hf(tiny, outtype, tol):
    model, files, ref = tiny
    m = _core.Model(files[outtype], kv_type="f32", n_batch=5, n_threads=2)
    assert m.arch == "gptj"
    ours = m.eval(IDS, all_logits=True)
    assert gt.rel_err(ours, ref) < tol


def test_decode_and_greedy(tiny):
    model, files, ref = tiny
    m = _core.Model(files["f32"], kv_type="f32", n_threads=2)
    assert gt.rel_err(m.eval(IDS[:5]), ref[4]) < 1e-4
    for i in range(5, len(IDS)):
        assert gt.rel_err(m.eval([IDS[i]]), ref[i]) < 1e-4
    assert gt.our_greedy(m, IDS[:3], 12) == gt.hf_greedy(model, IDS[:3], 12)


def test_f16_kv_default(tiny):
    model, files, ref = tiny
    ours = _core.Model(files["f32"], n_threads=2).eval(IDS, all_logits=True)
    assert gt.rel_err(ours, ref) < 3e-3
