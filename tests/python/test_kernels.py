"""Kernel tables against an independent reference (issue 3): for every table this CPU runs and every
weight type, rows quantized by llama.cpp (tests/data/quant-zoo.gguf) are multiplied with
random activations the way matmul does it (activations -> partner type, then vec_dot or gemm
tiles), and compared with a float64 product of the rows dequantized by the `gguf` package.

Tolerance (bound = |Y| @ |W|^T in float64, eps = float32 epsilon, nb blocks per row):
integer paths 8 * (nb + 4) * eps * bound; float paths (n + 4) * eps * bound. Between tables and
between gemm and vec_dot, integer paths must agree bit for bit."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

from ggmlpy import _core

EPS = float(np.finfo(np.float32).eps)
ROWS = 24  # weight rows per tensor: odd numbers of gemm tiles, and fast


@pytest.fixture(scope="module")
def zoo(data_dir):
    """{our type name: (rows bytes (ROWS, row_bytes) uint8, n)} from the zoo, one tensor per type,
    plus f32/f16/bf16 rows made from the zoo's f32 source."""
    reader = GGUFReader(str(data_dir / "quant-zoo.gguf"))
    out = {}
    for t in reader.tensors:
        if t.tensor_type == GT.F32:
            if t.name == "smollm2.blk0.ffn_down.f32":
                rows = np.ascontiguousarray(t.data[:ROWS], dtype=np.float32)
                out["f32"] = (rows.view(np.uint8), rows.shape[1])
                out["f16"] = (rows.astype(np.float16).view(np.uint8), rows.shape[1])
                out["bf16"] = (np.ascontiguousarray(quantize(rows, GT.BF16)).view(np.uint8), rows.shape[1])
            continue
        name = t.tensor_type.name.lower().replace("_k", "_K")
        if name not in out:
            out[name] = (np.ascontiguousarray(t.data[:ROWS]), int(t.shape[0]))
    return out


def gguf_type(name):
    return GT[name.upper()]


def decode_rows(type_name, data, nrows, n):
    """float64 (nrows, n) from raw rows, by the gguf package (q8_K by its plain layout)."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(nrows, -1)
    if type_name == "f32":
        return raw.view(np.float32).astype(np.float64)
    if type_name == "q8_K":  # block: f32 d, int8 qs[256], int16 bsums[16] (gguf cannot decode it)
        blocks = raw.reshape(nrows, -1, 292)
        d = blocks[:, :, :4].copy().view(np.float32)
        qs = blocks[:, :, 4:260].view(np.int8).astype(np.float64)
        bsums = blocks[:, :, 260:292].copy().view(np.int16)
        assert (bsums == qs.reshape(nrows, -1, 16, 16).sum(-1)).all()  # bsums are consistent
        return (qs * d.astype(np.float64)).reshape(nrows, n)
    return dequantize(raw, gguf_type(type_name)).astype(np.float64).reshape(nrows, n)


def test_every_type_is_covered(zoo):
    types = _core.kernel_types()
    assert set(types) == {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                          "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}
    assert set(types) <= set(zoo)


@pytest.mark.parametrize("table", _core.available_kernels())
@pytest.mark.parametrize("type_name", _core.kernel_types())
def test_table_matches_float64_reference(zoo, table, type_name):
    rows, n = zoo[type_name]
    nrows = rows.shape[0]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((11, n)).astype(np.float32)  # 11 rows: more than one gemm tile, ragged
    x[1] *= 20.0  # another activation scale
    w = np.ascontiguousarray(rows).reshape(-1)
    out, partner, ybytes = _core.kernel_matmul(table, type_name, w, n, x)
    out_g, partner_g, ybytes_g = _core.kernel_matmul(table, type_name, w, n, x, use_gemm=True)
    assert partner == partner_g and ybytes == ybytes_g
    assert partner == {"f32": "f32", "f16": "f32", "bf16": "f32", "q2_K": "q8_K", "q3_K": "q8_K",
                       "q4_K": "q8_K", "q5_K": "q8_K", "q6_K": "q8_K"}.get(type_name, "q8_0")

    W = decode_rows(type_name, rows.tobytes(), nrows, n)
    Y = decode_rows(partner, ybytes, x.shape[0], n)
    ref = Y @ W.T
    bound = np.abs(Y) @ np.abs(W).T
    quantized = type_name not in ("f32", "f16", "bf16")
    if quantized:
        nb = n // (256 if type_name.endswith("K") else 32)
        tol = 8 * (nb + 4) * EPS * bound
        np.testing.assert_array_equal(out_g, out)  # gemm tiles give vec_dot's bits
    else:
        tol = (n + 4) * EPS * bound
        assert (np.abs(out_g - out) <= tol).all()
    err = np.abs(out.astype(np.float64) - ref)
    assert (err <= tol).all(), f"{table}/{type_name}: max err {err.max():.3g}, tol {tol.min():.3g}"
    # the activation conversion is faithful: at most half a quantization step per element
    assert np.abs(Y - x).max() <= np.abs(x).max() / 127 * 0.5001 + 1e-30 or partner == "f32"


@pytest.mark.parametrize("type_name", _core.kernel_types())
def test_tables_agree_bit_for_bit_on_integer_paths(zoo, type_name):
    rows, n = zoo[type_name]
    x = np.random.default_rng(3).standard_normal((3, n)).astype(np.float32)
    w = np.ascontiguousarray(rows).reshape(-1)
    outs = {t: _core.kernel_matmul(t, type_name, w, n, x) for t in _core.available_kernels()}
    ref_out, _, ref_y = outs["scalar"]
    for t, (out, _, y) in outs.items():
        assert y == ref_y, f"{t}: activation conversion differs from the reference quantizer"
        if type_name not in ("f32", "f16", "bf16"):
            np.testing.assert_array_equal(out, ref_out, err_msg=t)


def test_kernel_matmul_bad_input():
    x = np.zeros((1, 32), np.float32)
    with pytest.raises(ValueError, match="no_such"):
        _core.kernel_matmul("no_such", "q4_0", np.zeros(18, np.uint8), 32, x)
    with pytest.raises(ValueError, match="row size"):
        _core.kernel_matmul("scalar", "q4_0", np.zeros(17, np.uint8), 32, x)
    with pytest.raises(ValueError):
        _core.kernel_matmul("scalar", "q4_0", np.zeros(18, np.uint8), 33, np.zeros((1, 33), np.float32))
    with pytest.raises(ValueError, match=r"\(m, 64\)"):
        _core.kernel_matmul("scalar", "q4_0", np.zeros(36, np.uint8), 64, x)
