"""Bad input to _core.Model: each case raises the right exception with a message naming the
file, tensor, key or argument. Nothing crashes or hangs."""
import numpy as np
import pytest
import torch

import gguf_tiny as gt
from ggmlpy import ContextFullError, GGUFError, _core


@pytest.fixture(scope="module")
def tiny():
    return gt.make_llama(vocab=300, hidden=64, inter=96, layers=2, heads=4, kv_heads=2)


@pytest.fixture(scope="module")
def good(tiny, tmp_path_factory):
    return gt.write_llama_gguf(tiny, tmp_path_factory.mktemp("good") / "good.gguf")


def test_missing_file(tmp_path):
    p = tmp_path / "absent.gguf"
    with pytest.raises(FileNotFoundError, match="absent.gguf"):
        _core.Model(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(GGUFError, match="empty.gguf.*empty"):
        _core.Model(p)


def test_not_gguf(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(GGUFError, match="model.bin.*not a GGUF file"):
        _core.Model(p)


@pytest.mark.parametrize("keep", [10, 24, 500, 5000])
def test_truncated_header(good, tmp_path, keep):
    p = tmp_path / "cut.gguf"
    p.write_bytes(good.read_bytes()[:keep])
    with pytest.raises(GGUFError, match="cut.gguf"):
        _core.Model(p)


def test_tensor_past_end(good, tmp_path):
    p = tmp_path / "short.gguf"
    p.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(GGUFError, match=r"short\.gguf: tensor '.*' .*past the end"):
        _core.Model(p)


def test_missing_tensor(tiny, tmp_path):
    p = gt.write_llama_gguf(tiny, tmp_path / "m.gguf", skip=("blk.1.ffn_up.weight",))
    with pytest.raises(GGUFError, match=r"m\.gguf: tensor 'blk\.1\.ffn_up\.weight' not found"):
        _core.Model(p)


def test_shape_disagrees_with_metadata(tiny, tmp_path):
    bad = torch.zeros(64, 64)  # attn_k of 2 KV heads must be [64 in, 32 out]
    p = gt.write_llama_gguf(tiny, tmp_path / "s.gguf", overrides={"blk.0.attn_k.weight": bad})
    with pytest.raises(GGUFError, match=r"'blk\.0\.attn_k\.weight' has shape \[64, 64\], expected \[64, 32\]"):
        _core.Model(p)


def test_unknown_architecture(tiny, tmp_path):
    p = gt.write_llama_gguf(tiny, tmp_path / "a.gguf", arch="mamba99")
    with pytest.raises(GGUFError, match=r"unknown architecture 'mamba99'.*llama, gptj"):
        _core.Model(p)


def test_unknown_tokenizer(tiny, tmp_path):
    p = gt.write_llama_gguf(tiny, tmp_path / "t.gguf", tokenizer_model="bert")
    with pytest.raises(GGUFError, match=r"t\.gguf: .*tokenizer\.ggml\.model.*'bert'.*llama, gpt2"):
        _core.Model(p)


def test_token_id_out_of_range(good):
    m = _core.Model(good, n_threads=2)
    with pytest.raises(ValueError, match=r"token id 300 at index 1 .*\[0, 300\)"):
        m.eval([1, 300])
    with pytest.raises(ValueError, match="token id -5"):
        m.eval(np.array([-5], dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        m.eval([2**40])
    assert m.n_past == 0  # nothing was appended


def test_bad_ids_argument(good):
    m = _core.Model(good, n_threads=2)
    with pytest.raises(ValueError, match="empty"):
        m.eval([])
    with pytest.raises(ValueError, match="integers"):
        m.eval(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="1-D"):
        m.eval(np.zeros((2, 2), dtype=np.int32))


def test_prompt_longer_than_context(good):
    m = _core.Model(good, n_ctx=16, n_threads=2)
    with pytest.raises(ContextFullError, match="n_ctx 16"):
        m.eval(list(range(3, 20)))
    assert m.n_past == 0
    m.eval(list(range(3, 15)))
    with pytest.raises(ContextFullError, match="12 tokens in the cache"):
        m.eval(list(range(3, 8)))
    m.reset()
    assert m.eval(list(range(3, 19))).shape == (300,)  # exactly full is fine


def test_bad_params(good):
    with pytest.raises(ValueError, match="kv_type"):
        _core.Model(good, kv_type="q4_0")
    with pytest.raises(ValueError, match="n_batch"):
        _core.Model(good, n_batch=0)
    with pytest.raises(ValueError, match="n_ctx"):
        _core.Model(good, n_ctx=-1)
    with pytest.raises(ValueError, match="n_threads"):
        _core.Model(good, n_threads=-2)


def test_use_after_close(good):
    m = _core.Model(good, n_threads=2)
    tok = m.tokenizer
    m.close()
    with pytest.raises(ValueError, match="closed"):
        m.eval([1])
    # the tokenizer handed out before close keeps working
    assert tok.n_vocab == 300
    assert tok.bos == 1 and tok.eos == 2
