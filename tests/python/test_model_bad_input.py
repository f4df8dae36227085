"""Bad input to _core.Model: each case raises the right exception with a message naming the
file, tensor, key or argument. Nothing crashes or hangs."""
import re

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


# ---- issue 15: memory bombs, unusable tensor types, argument errors ---------------------------

import json
import os
import subprocess
import sys
import textwrap

import ggmlpy

GiB = 2**30


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _load_in_subprocess(path, n_ctx=0, as_limit=None):
    """Model(path, n_ctx) in a fresh interpreter; returns (error text, seconds, peak RSS MiB).
    as_limit (bytes) caps the address space: a safety net, so a regression fails the test with
    an allocation error instead of paging the machine into the OOM killer."""
    code = textwrap.dedent(f"""
        import json, resource, time
        if {as_limit!r}:
            resource.setrlimit(resource.RLIMIT_AS, ({as_limit!r}, {as_limit!r}))
        from ggmlpy import Model
        t = time.perf_counter()
        try:
            Model({str(path)!r}, n_ctx={n_ctx}, n_threads=1)
            err = "loaded"
        except Exception as e:
            err = type(e).__name__ + ": " + str(e)
        dt = time.perf_counter() - t
        # VmHWM, not ru_maxrss: ru_maxrss survives exec and would count pytest's own peak
        hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        print(json.dumps([err, dt, hwm / 1024]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "GGMLPY_MEM_LIMIT"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_layer_bomb_rejected_fast(tmp_path):
    """4 MB of tensors shared by 4096 declared layers (a 64 GiB KV cache): rejected within 1 s
    and 200 MB, naming two tensors that share bytes."""
    import gguf_raw as gr
    p = tmp_path / "bomb.gguf"
    p.write_bytes(gr.llama_bomb())
    assert p.stat().st_size < 5_000_000
    err, dt, rss = _load_in_subprocess(p, as_limit=4 * GiB)
    assert err.startswith("GGUFError") and "bomb.gguf: tensors 'blk." in err and "overlap" in err, err
    assert dt < 1.0 and rss < 200, (dt, rss)


def test_huge_n_ctx_fails_from_real_memory(smollm2_path):
    """SmolLM2 with n_ctx = 10**6 needs a ~23 GB KV cache: MemoryError before anything is
    allocated, from the memory really available (no override), within 1 s and 200 MB."""
    avail = _mem_available()
    # on machines with room for it, an address-space limit is what must be respected instead
    as_limit = None if 0 < avail < 30e9 else 4 * GiB
    err, dt, rss = _load_in_subprocess(smollm2_path, n_ctx=10**6, as_limit=as_limit)
    assert err.startswith("MemoryError: n_ctx 1000000"), err
    assert "smaller n_ctx" in err
    needed, available = [int(x) for x in re.findall(r"(\d+) bytes \(", err)[:2]]
    assert needed > 23_000_000_000
    if as_limit is None:
        assert abs(available - avail) < 2 * GiB, (available, avail)   # MemAvailable, measured
    assert dt < 1.0 and rss < 200, (dt, rss)


def test_memory_limit_override(good, monkeypatch):
    monkeypatch.setenv("GGMLPY_MEM_LIMIT", str(64 * 2**20))
    with pytest.raises(MemoryError, match=r"n_ctx 1048576 .* needs \d+ bytes .* only 67108864 bytes "
                                          r"\(64 MiB\) are available.*smaller n_ctx"):
        _core.Model(good, n_ctx=2**20, n_threads=1)
    _core.Model(good, n_ctx=256, n_threads=1).close()   # a small context fits


def test_f64_norm_is_gguf_error(tiny, tmp_path, monkeypatch):
    import gguf
    real = gt.add_tensor

    def add(w, name, t, outtype):
        if name == "blk.1.ffn_norm.weight":
            return w.add_tensor(name, t.detach().double().numpy(), raw_dtype=gguf.GGMLQuantizationType.F64)
        return real(w, name, t, outtype)
    monkeypatch.setattr(gt, "add_tensor", add)
    p = gt.write_llama_gguf(tiny, tmp_path / "f64.gguf")
    with pytest.raises(GGUFError, match=r"f64\.gguf: tensor 'blk\.1\.ffn_norm\.weight' has type f64, "
                                        r"which cannot be converted"):
        _core.Model(p)


@pytest.fixture(scope="module")
def pymodel(good):
    m = ggmlpy.Model(good, n_ctx=64, n_threads=1)
    yield m
    m.close()


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda m: m.tokenize("a\udc80b"), ValueError, r"text .*surrogate"),
    (lambda m: m.tokenize(b"\xff"), ValueError, r"text.*UTF-8"),
    (lambda m: m.tokenize("a", add_bos="no"), TypeError, r"add_bos must be a bool"),
    (lambda m: m.tokenize(5), TypeError, r"text must be str"),
    (lambda m: m.generate("a", seed=2**63), ValueError, r"seed"),
    (lambda m: m.generate("a", top_k=2**31), ValueError, r"top_k"),
    (lambda m: m.generate("a", temperature="hot"), TypeError, r"temperature"),
    (lambda m: m.generate("a", stream="yes"), TypeError, r"stream"),
    (lambda m: m.generate([1, 2.5]), TypeError, r"prompt\[1\]"),
    (lambda m: m.detokenize([1.7]), TypeError, r"ids\[0\] = 1\.7"),
    (lambda m: m.detokenize([1.0]), TypeError, r"ids\[0\] = 1\.0"),
    (lambda m: m.detokenize([True]), TypeError, r"ids\[0\] = True"),
    (lambda m: m.detokenize("abc"), TypeError, r"ids must be a sequence"),
    (lambda m: m.detokenize([300]), ValueError, r"ids\[0\]: token id 300 .*\[0, 300\)"),
    (lambda m: m.token_to_piece(2.0), TypeError, r"id must be an int"),
    (lambda m: m.token_to_piece(-1), ValueError, r"id = -1"),
    (lambda m: m.eval([2**40]), ValueError, r"token id"),
    (lambda m: m.eval(np.array([1.0])), TypeError, r"dtype float64"),
    (lambda m: setattr(m, "n_threads", 2**31), ValueError, r"n_threads"),
    (lambda m: setattr(m, "n_threads", 1.5), TypeError, r"n_threads"),
])
def test_argument_errors_name_the_argument(pymodel, call, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        call(pymodel)
    assert "incompatible" not in str(e.value) and "Unable to cast" not in str(e.value)


def test_numpy_integer_ids_accepted(pymodel):
    ids = [np.int64(5), np.int32(7), 9]
    assert pymodel.detokenize(ids) == pymodel.detokenize([5, 7, 9])
    assert pymodel.token_to_piece(np.uint16(5)) == pymodel.token_to_piece(5)


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(n_ctx=2**31), ValueError, "n_ctx"), (dict(n_ctx=1.5), TypeError, "n_ctx"),
    (dict(n_batch=True), TypeError, "n_batch"), (dict(seed=2**64), ValueError, "seed"),
    (dict(use_mmap="no"), TypeError, "use_mmap"), (dict(kv_type=16), TypeError, "kv_type"),
    (dict(n_threads=-1), ValueError, "n_threads"),
])
def test_constructor_argument_errors(good, kw, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        ggmlpy.Model(good, **kw)
    assert "incompatible" not in str(e.value)


def test_quantize_argument_errors(good, tmp_path):
    from ggmlpy.quantize import quantize
    with pytest.raises(TypeError, match="type must be a str"):
        quantize(good, tmp_path / "o.gguf", 4)
    with pytest.raises(TypeError, match="allow_requantize"):
        quantize(good, tmp_path / "o.gguf", "q8_0", allow_requantize="yes")
    with pytest.raises(TypeError, match="output"):
        quantize(good, 3.5, "q8_0")
