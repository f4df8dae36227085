"""Quantized block types against independent references (issue 3, acceptance 1 and 2).

Dequantization must equal gguf-py's numpy `gguf.quants.dequantize` bit for bit, on random blocks and
on every tensor of the real SmolLM2 Q4_1 file and of the quant zoo (llama.cpp-quantized tensors
beside their f32 sources). Quantization must be no worse than llama.cpp's (RMSE against the source
within 1%), and for the zoo our bytes equal llama-quantize's. Q8_K has no gguf-py dequantizer; its
reference here is the format's one-line formula x = d * q written in numpy.
"""
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as GT  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize  # noqa: E402

from ggmlpy import _core  # noqa: E402

LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
KQUANTS = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
QUANTIZED = LEGACY + KQUANTS              # the weight types gguf-py can dequantize
ALL = ["f32", "f16", "bf16"] + QUANTIZED + ["q8_K"]

# byte offsets of the fp16 scale fields in each block (blocks.h); random blocks get sane values there
FP16_FIELDS = {
    "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
    "q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208],
}


def gt(name):
    return GT[name.upper()]


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


# ---- dtype traits --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_traits_match_gguf_constants(name):
    t = _core.dtype_traits(name)
    assert (t["block_size"], t["type_size"]) == GGML_QUANT_SIZES[gt(name)]
    assert t["id"] == int(gt(name))
    assert t["quantized"] == (name not in ("f32", "f16", "bf16"))
    assert _core.dtype_traits(int(gt(name)))["name"] == t["name"]
    assert _core.dtype_traits(name.upper())["id"] == t["id"]  # names are case-insensitive


def test_traits_cover_enum_and_errors():
    names = _core.dtype_names()
    for n in ALL + ["i8", "i16", "i32", "i64", "f64", "q8_1"]:
        assert n in names
    with pytest.raises(ValueError, match="q9_9"):
        _core.dtype_traits("q9_9")
    with pytest.raises(ValueError, match="33"):
        _core.dtype_traits(33)
    assert _core.row_size("q4_K", 512) == 2 * 144
    with pytest.raises(ValueError, match="q4_K.*256"):
        _core.row_size("q4_K", 100)


# ---- dequantization: random blocks ----------------------------------------------------------------

def random_blocks(name, nblocks, rng):
    """Random block bytes whose fp16 fields are finite (normal, subnormal, zero, negative)."""
    bs, ts = GGML_QUANT_SIZES[gt(name)]
    raw = rng.integers(0, 256, size=(nblocks, ts), dtype=np.uint8)
    if name in ("f16",):
        v = (rng.standard_normal(nblocks * ts // 2) * 4).astype(np.float16)
        return v.view(np.uint8).reshape(nblocks, ts)
    if name == "bf16":
        hi = raw.view(np.uint16) & np.uint16(0xFF7F)  # clear the top exponent bit: no inf/nan
        return hi.view(np.uint8).reshape(nblocks, ts)
    if name == "f32":
        return rng.standard_normal(nblocks).astype(np.float32).view(np.uint8).reshape(nblocks, ts)
    for off in FP16_FIELDS[name]:
        mag = np.exp2(rng.uniform(-26, 4, size=nblocks))  # includes fp16 subnormals and zero
        sign = rng.choice([-1.0, 1.0], size=nblocks)
        val = (sign * mag).astype(np.float16)
        val[rng.random(nblocks) < 0.05] = 0
        raw[:, off:off + 2] = val.view(np.uint8).reshape(nblocks, 2)
    return raw


@pytest.mark.parametrize("name", ["f32", "f16", "bf16"] + QUANTIZED)
def test_dequantize_random_blocks_bitexact(name):
    rng = np.random.default_rng(1234 + len(name))
    bs, _ = GGML_QUANT_SIZES[gt(name)]
    nrows, nblk = 7, 5  # odd counts
    raw = random_blocks(name, nrows * nblk, rng).reshape(nrows, -1)
    ref = gguf_dequantize(raw, gt(name)).reshape(nrows, nblk * bs)
    ours = _core.dequantize(raw, name, (nrows, nblk * bs))
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.array_equal(bits(ours), bits(ref))


def test_dequantize_q8_K_random_blocks():
    rng = np.random.default_rng(7)
    nb = 9
    raw = rng.integers(0, 256, size=(nb, 292), dtype=np.uint8)
    d = (rng.standard_normal(nb) * 1e-2).astype(np.float32)
    raw[:, 0:4] = d.view(np.uint8).reshape(nb, 4)
    qs = raw[:, 4:260].view(np.int8).astype(np.float32)
    expect = (d[:, None] * qs).reshape(-1)  # the format: x = d * q (bsums are a cache for dots)
    ours = _core.dequantize(raw, "q8_K", (nb * 256,))
    assert np.array_equal(bits(ours), bits(expect))


# ---- dequantization: every tensor of the real files ----------------------------------------------

def _zoo_path(data_dir):
    p = Path(data_dir) / "quant-zoo.gguf"
    assert p.is_file(), f"{p} missing"
    return p


def _check_file_tensors(path):
    reader = gguf.GGUFReader(str(path))
    seen = {}
    for t in reader.tensors:
        raw = np.asarray(t.data)
        shape = tuple(int(s) for s in reversed(t.shape))  # numpy order: (..., ne0)
        ref = gguf_dequantize(raw.view(np.uint8) if t.tensor_type not in (GT.F32, GT.F16) else raw,
                              t.tensor_type).reshape(shape)
        ours = _core.dequantize(raw.view(np.uint8).reshape(-1), int(t.tensor_type), shape)
        assert np.array_equal(bits(ours), bits(ref)), f"{path.name}: tensor {t.name} ({t.tensor_type.name})"
        seen[t.tensor_type.name] = seen.get(t.tensor_type.name, 0) + 1
    return seen


def test_dequantize_every_tensor_smollm2(smollm2_path):
    seen = _check_file_tensors(Path(smollm2_path))
    assert seen.get("Q4_1", 0) > 100 and "Q8_0" in seen and "F32" in seen


def test_dequantize_every_tensor_zoo(data_dir):
    seen = _check_file_tensors(_zoo_path(data_dir))
    for name in QUANTIZED:
        assert name.upper() in seen, f"zoo has no {name} tensor"


# ---- quantization against llama.cpp (the zoo) ----------------------------------------------------

def _zoo_pairs(data_dir):
    reader = gguf.GGUFReader(str(_zoo_path(data_dir)))
    by_name = {t.name: t for t in reader.tensors}
    pairs = []
    for t in reader.tensors:
        if t.tensor_type == GT.F32:
            continue
        src = by_name[t.name.rsplit(".", 1)[0] + ".f32"]
        pairs.append((t.name, t.tensor_type, np.array(src.data, dtype=np.float32),
                      np.asarray(t.data).view(np.uint8).reshape(-1)))
    return pairs


@pytest.fixture(scope="module")
def zoo_pairs(data_dir):
    return _zoo_pairs(data_dir)


def test_quantize_rmse_vs_llama_cpp(zoo_pairs, capsys):
    """Every type: our RMSE against the f32 source is at most 1% above llama.cpp's."""
    rows = []
    for name, qt, src, llama_bytes in zoo_pairs:
        ours_bytes = _core.quantize(src, qt.name)
        ours = _core.dequantize(ours_bytes, qt.name, src.shape)
        theirs = gguf_dequantize(llama_bytes, qt).reshape(src.shape)
        r_ours, r_llama = rmse(ours, src), rmse(theirs, src)
        rows.append((name, qt.name, r_llama, r_ours))
        assert r_ours <= 1.01 * r_llama, f"{name}: rmse {r_ours:.6g} vs llama.cpp {r_llama:.6g}"
    types = {qt for _, qt, _, _ in rows}
    assert types >= {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
    with capsys.disabled():
        print("\n  tensor                             type   rmse llama.cpp   rmse ours   ratio")
        for name, qt, rl, ro in rows:
            ratio = ro / rl if rl else float("nan")
            print(f"  {name:34s} {qt:5s}  {rl:14.6g}  {ro:10.6g}   {ratio:.4f}")


def test_quantize_bytes_equal_llama_cpp(zoo_pairs):
    """Without an imatrix llama-quantize runs the deterministic reference quantizers: the 32-blocks
    round to nearest from the block absmax (or min/max), the K-quants run a fixed scale search.
    Ours follow the same spec, so the bytes are identical for every type in the zoo."""
    for name, qt, src, llama_bytes in zoo_pairs:
        ours = _core.quantize(src, qt.name).reshape(-1)
        assert ours.size == llama_bytes.size
        nd = int(np.count_nonzero(ours != llama_bytes))
        assert nd == 0, f"{name}: {nd} of {ours.size} bytes differ from llama-quantize"


@pytest.mark.parametrize("name", LEGACY)
def test_quantize_legacy_equals_gguf_py(name):
    """gguf-py's numpy quantizers of the 32-blocks implement the same rounding independently."""
    rng = np.random.default_rng(99)
    x = (rng.standard_normal((13, 96)) * rng.uniform(0.01, 3, size=(13, 1))).astype(np.float32)
    x[3] = 0.0                      # all-zero rows: d = 0
    x[4, :32] = 0.25                # constant block
    ref = gguf_quantize(x, gt(name))
    ours = _core.quantize(x, name)
    assert np.array_equal(ours, ref)


# ---- round trips on random data ------------------------------------------------------------------

# RMSE / std of N(0,1) data after a round trip: bounds ~15% above the measured values
# (q4_0 0.086, q4_1 0.077, q5_0 0.042, q5_1 0.038, q8_0 0.0053, q2_K 0.298, q3_K 0.149,
#  q4_K 0.071, q5_K 0.036, q6_K 0.0177, q8_K 0.0069, f16 2.1e-4, bf16 1.7e-3)
RT_BOUND = {"q4_0": 0.10, "q4_1": 0.09, "q5_0": 0.05, "q5_1": 0.045, "q8_0": 0.0062,
            "q2_K": 0.34, "q3_K": 0.17, "q4_K": 0.082, "q5_K": 0.042, "q6_K": 0.021, "q8_K": 0.008,
            "f16": 2.4e-4, "bf16": 1.9e-3}


@pytest.mark.parametrize("name", list(RT_BOUND))
def test_round_trip_error_bounds(name):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 512)).astype(np.float32)
    q = _core.quantize(x, name)
    assert q.shape == (24, _core.row_size(name, 512))
    y = _core.dequantize(q, name, x.shape)
    rel = rmse(y, x) / float(np.std(x))
    assert rel < RT_BOUND[name], f"{name}: relative rmse {rel:.4g}"
    # zero rows stay exactly zero
    z = np.zeros((2, 512), np.float32)
    assert not np.any(_core.dequantize(_core.quantize(z, name), name, z.shape))


def test_more_bits_less_error():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    err = {n: rmse(_core.dequantize(_core.quantize(x, n), n, x.shape), x) for n in RT_BOUND}
    for chain in (["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_0"], ["q4_0", "q5_0", "q8_0"],
                  ["q4_1", "q5_1"], ["bf16", "f16"]):
        for a, b in zip(chain, chain[1:]):
            assert err[b] < err[a], f"{b} ({err[b]:.4g}) not better than {a} ({err[a]:.4g})"


@pytest.mark.parametrize("name", ["q8_0", "q8_K"])
def test_round_trip_8bit_elementwise(name):
    """8-bit symmetric types: every element is within half a step (d / 2) of the source."""
    rng = np.random.default_rng(11)
    bs = _core.dtype_traits(name)["block_size"]
    x = (rng.standard_normal((8, 4 * bs)) * 3).astype(np.float32)
    y = _core.dequantize(_core.quantize(x, name), name, x.shape)
    d = np.abs(x.reshape(-1, bs)).max(axis=1, keepdims=True) / 127
    # q8_0 rounds with the f32 d but stores it as fp16: |q| <= 127 steps of that rounding add up
    stored = d.astype(np.float16).astype(np.float32) if name == "q8_0" else d
    bound = d / 2 + 127 * np.abs(d - stored) + 1e-6 * d
    assert np.all(np.abs((y - x).reshape(-1, bs)) <= bound)


def test_q8_K_bsums_and_range():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 512)).astype(np.float32)
    q = _core.quantize(x, "q8_K").reshape(-1, 292)
    qs = q[:, 4:260].view(np.int8).astype(np.int32)
    bsums = q[:, 260:292].copy().view(np.int16).astype(np.int32)
    assert np.array_equal(bsums, qs.reshape(-1, 16, 16).sum(axis=2))
    assert qs.max() <= 127 and qs.min() >= -127
    # the element of largest magnitude maps to -127 * sign: d = -max / 127
    d = q[:, 0:4].copy().view(np.float32).reshape(-1)
    blk = x.reshape(-1, 256)
    idx = np.abs(blk).argmax(axis=1)
    np.testing.assert_allclose(d, -blk[np.arange(len(idx)), idx] / 127, rtol=1e-6)


def test_kquant_search_beats_round_to_nearest():
    """The K-quant scale search must beat plain min/max round-to-nearest per 32-element sub-block
    with the same 4-bit levels (what Q4_K would store without a search)."""
    rng = np.random.default_rng(21)
    x = (rng.standard_normal((16, 256)) * np.exp(rng.standard_normal((16, 1)))).astype(np.float32)
    sub = x.reshape(-1, 32)
    lo = np.minimum(sub.min(axis=1, keepdims=True), 0)
    d = (sub.max(axis=1, keepdims=True) - lo) / 15
    naive = (np.clip(np.round((sub - lo) / d), 0, 15) * d + lo).reshape(x.shape)
    ours = _core.dequantize(_core.quantize(x, "q4_K"), "q4_K", x.shape)
    assert rmse(ours, x) < 0.97 * rmse(naive, x)


# ---- bad input -----------------------------------------------------------------------------------

def test_bad_input_raises_value_error():
    x = np.ones((2, 100), np.float32)
    with pytest.raises(ValueError, match="q4_0.*32"):
        _core.quantize(x, "q4_0")
    with pytest.raises(ValueError, match="nope"):
        _core.quantize(np.ones((1, 32), np.float32), "nope")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _core.quantize(np.ones((2, 2, 32), np.float32), "q8_0")
    with pytest.raises(ValueError, match="needs 36 bytes, got 35"):
        _core.dequantize(np.zeros(35, np.uint8), "q4_0", (64,))
    with pytest.raises(ValueError, match="q8_1.*not supported"):
        _core.dequantize(np.zeros(36, np.uint8), "q8_1", (32,))
    with pytest.raises(ValueError, match="q6_K.*256"):
        _core.dequantize(np.zeros(210, np.uint8), "q6_K", (255,))
