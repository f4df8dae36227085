"""Every op of the tensor core against a float64 numpy reference, through the real graph + thread
pool path (ggmlpy._core.ops.Graph), at 1 and 2 threads, on random data with odd sizes and
non-contiguous inputs. Quantized weights are made and decoded by the `gguf` package (an
independent implementation); Llama 3 rope factors come from HF transformers.

Tolerances (max abs error unless noted), per op:
  exact copies / get_rows of dequantized rows ...... 0 (bit exact vs gguf dequantize)
  add, mul, scale, swiglu, silu, gelu, gelu_erf ..... 1e-6 relative (f32 rounding of one op)
  rms_norm, layer_norm ............................. 1e-5 (f32 output of a double reduction)
  soft_max ......................................... 1e-6
  rope ............................................. 2e-5 (f32 sin/cos of positions up to 4096);
                                                     5e-4 against HF's float32 Llama 3 inv_freq
  mul_mat f32/f16/bf16 weights ..................... 2e-5 * sqrt(K) * max|a| * max|b| (f32 accumulation)
  mul_mat q8_0 / q4_0 weights ...................... 1.5e-2 relative to the row norm product
                                                     (activations are quantized to q8_0)
  mul_mat, every quantized type (our quantizer) .... 3e-3 relative to the row norm product
  mul_mat_causal ................................... as mul_mat; masked scores exactly 0
"""
import numpy as np
import pytest

from ggmlpy import _core

ops = _core.ops
THREADS = [1, 2]
rng = np.random.default_rng(1234)


def rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run(g, outs, nth):
    return g.compute(outs, n_threads=nth)


def to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (numpy reference)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---- mul_mat -----------------------------------------------------------------------------------

@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("N", [1, 13])
def test_mul_mat_float_weights(nth, wtype, N):
    K, M = 67, 37
    w = rand(M, K)
    g = ops.Graph()
    if wtype == "f32":
        W, wref = g.input(w), w.astype(np.float64)
    elif wtype == "f16":
        w16 = w.astype(np.float16)
        W, wref = g.input(w16), w16.astype(np.float64)
    else:
        bits = to_bf16_bits(w)
        W, wref = g.input(bits, type="bf16", ne=[K, M]), bf16_to_f32(bits).astype(np.float64)
    x = rand(N, K)
    y, = run(g, [g.mul_mat(W, g.input(x))], nth)
    ref = x.astype(np.float64) @ wref.T
    y = y.reshape(N, M)  # outputs drop trailing size-1 dims (ne order), so N = 1 comes back 1-D
    assert np.abs(y - ref).max() <= 2e-5 * np.sqrt(K) * np.abs(w).max() * np.abs(x).max()


@pytest.mark.parametrize("nth", THREADS)
def test_mul_mat_batched_broadcast_strided(nth):
    # GQA shape: 2 weight batches shared by 6 activation batches; activations permuted (strided)
    K, M, N = 24, 11, 5
    a = rand(2, M, K)
    b_full = rand(N, 6, K)             # numpy [N, 6, K] -> ne [K, 6, N]
    g = ops.Graph()
    B = g.permute(g.input(b_full), 0, 2, 1, 3)  # ne [K, N, 6] (non-contiguous)
    y, = run(g, [g.mul_mat(g.input(a), B)], nth)
    bt = b_full.transpose(1, 0, 2).astype(np.float64)  # [6, N, K]
    ref = np.einsum("hnk,hmk->hnm", bt, a.astype(np.float64)[np.arange(6) // 3])
    assert y.shape == (6, N, M)
    assert np.abs(y - ref).max() <= 2e-5 * np.sqrt(K) * 16


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_mul_mat_quantized_weights(nth, qtype):
    import gguf
    from gguf.quants import dequantize, quantize
    t = getattr(gguf.GGMLQuantizationType, qtype)
    K, M, N = 256, 70, 9   # several gemm tiles and thread chunks
    w = rand(M, K)
    raw = quantize(w, t)
    wref = dequantize(raw, t).astype(np.float64)
    x = rand(N, K)
    g = ops.Graph()
    y, = run(g, [g.mul_mat(g.input(raw, type=qtype.lower(), ne=[K, M]), g.input(x))], nth)
    ref = x.astype(np.float64) @ wref.T
    bound = 1.5e-2 * np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(wref, axis=1)[None, :]
    assert (np.abs(y - ref) <= bound).all()


ALL_QTYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("N", [1, 11])          # decode (the table's decode, or vec_dot) and prefill (gemm tiles + ragged edge)
@pytest.mark.parametrize("qtype", ALL_QTYPES)
def test_mul_mat_every_quantized_type(nth, N, qtype):
    """Every block type through mul_mat: the weights are quantized by our C++ quantizer, the
    reference decodes the same bytes with gguf.quants.dequantize and multiplies in float64. The
    only error left is the activations' quantization to q8_0 / q8_K (8 bits), so one bound holds
    for every type: 3e-3 of the product of the row norms (measured: at most 1.1e-3). M = 70 rows do not divide evenly into
    threads or gemm tiles."""
    import gguf
    from gguf.quants import dequantize
    t = getattr(gguf.GGMLQuantizationType, qtype.upper())
    K, M = 512, 70
    w = rand(M, K)
    raw = _core.quantize(w, qtype)
    wref = dequantize(np.asarray(raw), t).astype(np.float64)
    x = rand(N, K)
    g = ops.Graph()
    y, = run(g, [g.mul_mat(g.input(np.asarray(raw), type=qtype.lower(), ne=[K, M]), g.input(x))], nth)
    y = np.asarray(y).reshape(N, M)
    ref = x.astype(np.float64) @ wref.T
    bound = 3e-3 * np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(wref, axis=1)[None, :]
    assert (np.abs(y - ref) <= bound).all(), float((np.abs(y - ref) / bound).max())


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("qtype", ALL_QTYPES)
def test_mul_mat_decode_equals_prefill_bits(nth, qtype):
    """Decode (one activation row: the table's decode, reading two halves of the rows in lockstep,
    or vec_dot / vec_dot_prep with the row's prepared block data) and prefill (several rows: gemm tiles) follow
    one summation order, so each activation row's
    outputs are the same bits either way; also per batch of a 3-d activation (prep offsets)."""
    K = 768 if qtype.endswith("K") else 320  # 3 super-blocks; 10 blocks = a tree8 group + 2
    M, N, B = 37, 5, 2
    raw = np.asarray(_core.quantize(rand(M, K), qtype))
    x = rand(B, N, K)
    g = ops.Graph()
    W = g.input(raw, type=qtype.lower(), ne=[K, M])
    full, = run(g, [g.mul_mat(W, g.input(x))], nth)
    full = np.asarray(full).reshape(B, N, M)
    for b in range(B):
        for n in (0, N - 1):
            g1 = ops.Graph()
            one, = run(g1, [g1.mul_mat(g1.input(raw, type=qtype.lower(), ne=[K, M]), g1.input(x[b, n:n + 1]))], nth)
            assert np.array_equal(np.asarray(one).reshape(M).view(np.uint32), full[b, n].view(np.uint32))
    # decode of a batch (N = 1 per batch): the prepared rows are indexed per batch
    x1 = np.ascontiguousarray(x[:, :1, :])
    g2 = ops.Graph()
    dec, = run(g2, [g2.mul_mat(g2.input(raw, type=qtype.lower(), ne=[K, M]), g2.input(x1))], nth)
    assert np.array_equal(np.asarray(dec).reshape(B, M).view(np.uint32), full[:, 0].view(np.uint32))


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("K", [64, 72, 77, 576])
def test_mul_mat_float_decode_equals_prefill_bits(nth, wtype, K):
    """Float weights: one activation row (decode: DotF on two rows in lockstep) and many (the gemm
    tiles, whatever their shape) sum each output in one order, so a row's outputs have the same
    bits at any batch size (what eval_batch's batch invariance rests on). K covers an even and an
    odd number of 8-blocks and a tail."""
    M = 37
    w = rand(M, K)
    if wtype == "f16":
        raw = w.astype(np.float16)
    elif wtype == "bf16":
        raw = to_bf16_bits(w)
    else:
        raw = w
    x = rand(13, K)
    g = ops.Graph()
    full, = run(g, [g.mul_mat(g.input(raw, type=wtype, ne=[K, M]), g.input(x))], nth)
    full = np.asarray(full).reshape(13, M)
    for n in (0, 5, 12):
        for lo, hi in ((n, n + 1), (0, n + 1)):      # the row alone, and in a batch of another size
            g1 = ops.Graph()
            part, = run(g1, [g1.mul_mat(g1.input(raw, type=wtype, ne=[K, M]), g1.input(x[lo:hi]))], nth)
            part = np.asarray(part).reshape(hi - lo, M)
            assert np.array_equal(part[n - lo].view(np.uint32), full[n].view(np.uint32)), (lo, hi, n)


# ---- causal attention products (mul_mat_causal) ------------------------------------------------

def _weights(g, w, wtype):
    """w [M, K] -> (graph input holding w as wtype, float64 of what it holds; quantized types by
    our quantizer, decoded by gguf.quants.dequantize)"""
    if wtype == "f32":
        return g.input(w), w.astype(np.float64)
    if wtype == "f16":
        w16 = w.astype(np.float16)
        return g.input(w16), w16.astype(np.float64)
    import gguf
    from gguf.quants import dequantize
    raw = np.asarray(_core.quantize(w, wtype))
    ref = dequantize(raw, getattr(gguf.GGMLQuantizationType, wtype.upper())).astype(np.float64)
    return g.input(raw, type=wtype, ne=[w.shape[1], w.shape[0]]), ref


def _bound(wtype, x, wref):
    """the mul_mat tolerances above: f32 accumulation for float weights, the activations'
    8-bit quantization for quantized ones"""
    if wtype in ("f32", "f16"):
        return 2e-5 * np.sqrt(x.shape[1]) * np.abs(wref).max() * np.abs(x).max()
    return 3e-3 * np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(wref, axis=1)[None, :]


CAUSAL_CASES = [(1, 0), (1, 9), (13, 0), (13, 100)]  # (queries N, n_past): decode and prefill shapes


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_K"])
@pytest.mark.parametrize("N,n_past", CAUSAL_CASES)
def test_mul_mat_causal_rows(nth, wtype, N, n_past):
    """scores = K^T Q with query i seeing keys j <= n_past + i: the masked entries are 0, the
    others are the very bits of plain mul_mat (same kernels and tiles; only tiles with every entry
    masked are skipped) and match float64."""
    hd, M = 256, n_past + N + 21        # 21 keys past every query: whole masked tiles
    g = ops.Graph()
    W, wref = _weights(g, rand(M, hd), wtype)
    x = rand(N, hd)
    X = g.input(x)
    yc, yp = run(g, [g.mul_mat_causal(W, X, "rows", n_past), g.mul_mat(W, X)], nth)
    yc, yp = np.asarray(yc).reshape(N, M), np.asarray(yp).reshape(N, M)
    mask = np.arange(M)[None, :] > (n_past + np.arange(N))[:, None]
    assert (yc[mask] == 0).all()
    assert np.array_equal(yc[~mask].view(np.uint32), yp[~mask].view(np.uint32))
    err = np.abs(yc - x.astype(np.float64) @ wref.T)
    assert (err <= _bound(wtype, x, wref))[~mask].all()


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_K"])
@pytest.mark.parametrize("N,n_past", CAUSAL_CASES)
def test_mul_mat_causal_k(nth, wtype, N, n_past):
    """out = V^T P, the reduced dim being the keys, P a causal softmax output (0 past each query's
    keys, whose terms are skipped): matches float64 of the whole product. n_kv = 512 leaves
    keys past every query, so the cut reduction is exercised (to 256 for q4_K's super-blocks)."""
    n_kv, M = 512, 37
    g = ops.Graph()
    W, wref = _weights(g, rand(M, n_kv), wtype)
    pm = np.abs(rand(N, n_kv))
    pm[np.arange(n_kv)[None, :] > (n_past + np.arange(N))[:, None]] = 0.0
    y, = run(g, [g.mul_mat_causal(W, g.input(pm), "k", n_past)], nth)
    y = np.asarray(y).reshape(N, M)
    err = np.abs(y - pm.astype(np.float64) @ wref.T)
    assert (err <= _bound(wtype, pm, wref)).all()


def test_mul_mat_causal_bad_args():
    g = ops.Graph()
    a, b = g.input(rand(4, 8)), g.input(rand(3, 8))
    with pytest.raises(ValueError, match="side must be"):
        g.mul_mat_causal(a, b, "cols", 0)
    with pytest.raises(ValueError, match="n_past must be >= 0"):
        g.mul_mat_causal(a, b, "rows", -1)


# ---- get_rows ----------------------------------------------------------------------------------

@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "Q8_0", "Q4_1"])
def test_get_rows(nth, wtype):
    import gguf
    from gguf.quants import dequantize, quantize
    K, R = 64, 23
    w = rand(R, K)
    ids = np.array([5, 0, 22, 5, 17], dtype=np.int32)
    g = ops.Graph()
    if wtype == "f32":
        W, ref = g.input(w), w
    elif wtype == "f16":
        W, ref = g.input(w.astype(np.float16)), w.astype(np.float16).astype(np.float32)
    else:
        t = getattr(gguf.GGMLQuantizationType, wtype)
        raw = quantize(w, t)
        W, ref = g.input(raw, type=wtype.lower(), ne=[K, R]), dequantize(raw, t)
    y, = run(g, [g.get_rows(W, g.input(ids))], nth)
    assert np.array_equal(y, ref[ids])


def test_get_rows_bad_id():
    g = ops.Graph()
    y = g.get_rows(g.input(rand(4, 8)), g.input(np.array([1, 4], dtype=np.int32)))
    with pytest.raises(ValueError, match="get_rows: id 4"):
        g.compute([y])


# ---- elementwise -------------------------------------------------------------------------------

@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("op", ["add", "mul"])
def test_binary_broadcast_strided(nth, op):
    base = rand(3, 10, 7)
    a_np = base[:, ::2, :]                       # non-contiguous view [3, 5, 7]
    f = np.add if op == "add" else np.multiply
    for b_np in (rand(7), rand(5, 1), rand(1, 5, 7), rand(3, 5, 7)):
        g = ops.Graph()
        y, = run(g, [getattr(g, op)(g.input(a_np), g.input(b_np))], nth)
        ref = f(a_np.astype(np.float64), b_np.astype(np.float64))
        assert np.allclose(y, ref, rtol=1e-6, atol=1e-7)
    # b strided too (a transposed view)
    bt = rand(7, 5).T
    g = ops.Graph()
    y, = run(g, [getattr(g, op)(g.input(a_np), g.input(bt))], nth)
    assert np.allclose(y, f(a_np.astype(np.float64), bt), rtol=1e-6, atol=1e-7)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


UNARY = {
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": _gelu_tanh,
    "gelu_erf": _gelu_erf,
}


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(nth, op):
    x = rand(6, 33, scale=3.0)
    for arr in (x, x.T):                          # contiguous and strided
        g = ops.Graph()
        y, = run(g, [getattr(g, op)(g.input(arr))], nth)
        ref = UNARY[op](arr.astype(np.float64))
        assert np.allclose(y, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nth", THREADS)
def test_scale_and_swiglu(nth):
    a, b = rand(5, 29, scale=3.0), rand(5, 29)
    g = ops.Graph()
    s, w = run(g, [g.scale(g.input(a.T), 0.37), g.swiglu(g.input(a), g.input(b))], nth)
    assert np.allclose(s, a.T.astype(np.float64) * 0.37, rtol=1e-6, atol=0)
    a64 = a.astype(np.float64)
    assert np.allclose(w, a64 / (1 + np.exp(-a64)) * b, rtol=1e-6, atol=1e-6)


# ---- norms and softmax -------------------------------------------------------------------------

@pytest.mark.parametrize("nth", THREADS)
def test_rms_norm(nth):
    x = rand(2, 9, 45, scale=2.0)
    w = rand(45)
    eps = 1e-5
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + eps)
    g = ops.Graph()
    X = g.input(x)
    y0, y1 = run(g, [g.rms_norm(X, eps), g.rms_norm(g.permute(X, 0, 2, 1, 3), eps, weight=g.input(w))], nth)
    assert np.abs(y0 - ref).max() <= 1e-5
    assert np.abs(y1 - (ref * w).transpose(1, 0, 2)).max() <= 1e-5 * 4


@pytest.mark.parametrize("nth", THREADS)
def test_layer_norm(nth):
    x = rand(7, 51, scale=2.0) + 3.0
    w, b = rand(51), rand(51)
    eps = 1e-5
    x64 = x.astype(np.float64)
    n = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + eps)
    g = ops.Graph()
    X = g.input(x)
    y0, y1, y2 = run(g, [g.layer_norm(X, eps), g.layer_norm(X, eps, weight=g.input(w), bias=g.input(b)),
                         g.layer_norm(g.input(x[::2]), eps, weight=g.input(w))], nth)
    assert np.abs(y0 - n).max() <= 1e-5
    assert np.abs(y1 - (n * w + b)).max() <= 1e-5 * 4
    assert np.abs(y2 - n[::2] * w).max() <= 1e-5 * 4


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("causal,n_past", [(False, 0), (True, 0), (True, 4)])
def test_soft_max(nth, causal, n_past):
    n_q, n_head = 5, 3
    n_kv = n_past + n_q + (0 if causal else 6)
    x = rand(n_head, n_q, n_kv, scale=4.0)
    scale = 0.125
    z = x.astype(np.float64) * scale
    if causal:
        mask = np.arange(n_kv)[None, :] > (n_past + np.arange(n_q))[:, None]
        z = np.where(mask[None], -np.inf, z)
    e = np.exp(z - z.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    g = ops.Graph()
    y, = run(g, [g.soft_max(g.input(x), scale=scale, causal=causal, n_past=n_past)], nth)
    assert np.abs(y - ref).max() <= 1e-6
    if causal:
        assert (y[:, mask] == 0).all()


# ---- rope --------------------------------------------------------------------------------------

def rotate_half(x):  # HF Llama/NeoX
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rotate_every_two(x):  # HF GPT-J
    x1, x2 = x[..., ::2], x[..., 1::2]
    return np.stack((-x2, x1), axis=-1).reshape(x.shape)


def rope_ref(x, pos, n_rot, mode, base, freq_scale=1.0, inv_freq=None):
    """x: [n_tokens, n_head, head_dim] float64, HF formulas on the first n_rot dims."""
    if inv_freq is None:
        inv_freq = 1.0 / base ** (np.arange(0, n_rot, 2) / n_rot)
    ang = (pos[:, None] * freq_scale) * inv_freq[None, :]          # [T, n_rot/2]
    if mode == "neox":
        emb = np.concatenate([ang, ang], -1)
        rot = x[..., :n_rot] * np.cos(emb)[:, None] + rotate_half(x[..., :n_rot]) * np.sin(emb)[:, None]
    else:
        emb = np.repeat(ang, 2, axis=-1)
        rot = x[..., :n_rot] * np.cos(emb)[:, None] + rotate_every_two(x[..., :n_rot]) * np.sin(emb)[:, None]
    return np.concatenate([rot, x[..., n_rot:]], -1)


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("mode", ["norm", "neox"])
@pytest.mark.parametrize("n_rot,freq_scale", [(24, 1.0), (16, 0.25)])
def test_rope(nth, mode, n_rot, freq_scale):
    T, H, D = 6, 3, 24
    x = rand(T, H, D)
    pos = np.array([0, 1, 7, 100, 2047, 4000], dtype=np.int32)
    base = 10000.0
    ref = rope_ref(x.astype(np.float64), pos.astype(np.float64), n_rot, mode, base, freq_scale)
    g = ops.Graph()
    P = g.input(pos)
    y0, y1 = run(g, [g.rope(g.input(x), P, n_rot, mode=mode, freq_base=base, freq_scale=freq_scale),
                     # the same data as a strided view: heads and tokens permuted twice
                     g.rope(g.permute(g.input(np.ascontiguousarray(x.transpose(1, 0, 2))), 0, 2, 1, 3), P, n_rot,
                            mode=mode, freq_base=base, freq_scale=freq_scale)], nth)
    assert np.abs(y0 - ref).max() <= 2e-5
    assert np.abs(y1 - ref).max() <= 2e-5


@pytest.mark.parametrize("nth", THREADS)
def test_rope_llama3_factors(nth):
    import transformers.modeling_rope_utils as ru
    from transformers import LlamaConfig
    D = 64
    rp = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=8192)
    cfg = LlamaConfig(hidden_size=2 * D, num_attention_heads=2, max_position_embeddings=131072, rope_parameters=rp)
    inv_hf, _ = ru.ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    inv_hf = inv_hf.double().numpy()
    plain = 1.0 / 500000.0 ** (np.arange(0, D, 2) / D)
    ours = np.array(ops.llama3_freq_factors(D, 500000.0, 8.0, 1.0, 4.0, 8192))
    assert np.allclose(plain / ours, inv_hf, rtol=1e-5)

    T = 4
    x = rand(T, 2, D)
    pos = np.array([3, 50, 900, 3000], dtype=np.int32)
    ref = rope_ref(x.astype(np.float64), pos.astype(np.float64), D, "norm", 500000.0, inv_freq=inv_hf)
    g = ops.Graph()
    X, P = g.input(x), g.input(pos)
    kw = dict(mode="norm", freq_base=500000.0)
    y_params, y_tensor = run(g, [
        g.rope(X, P, D, llama3_factor=8.0, llama3_low_freq_factor=1.0, llama3_high_freq_factor=4.0,
               llama3_original_ctx=8192, **kw),
        g.rope(X, P, D, freq_factors=g.input((plain / inv_hf).astype(np.float32)), **kw)], nth)
    # HF's inv_freq is float32: angles up to 3000 rad carry ~3000 * 6e-8 rad of rounding
    assert np.abs(y_params - ref).max() <= 5e-4
    assert np.abs(y_tensor - ref).max() <= 5e-4


# ---- copies ------------------------------------------------------------------------------------

@pytest.mark.parametrize("nth", THREADS)
def test_cpy_into_cache_view(nth):
    # write K of 3 tokens [3, n_embd=10] as f16 at token slot 2 of a cache [8, 10]
    cache = np.zeros((8, 10), dtype=np.float16)
    k = rand(3, 10)
    g = ops.Graph()
    C = g.input(cache)
    dst = g.view(C, [10 * 3], [], offset=2 * 10 * 2)
    out, = run(g, [g.cpy(g.input(k), dst)], nth)
    assert np.array_equal(cache[2:5], k.astype(np.float16))       # written in place
    assert (cache[:2] == 0).all() and (cache[5:] == 0).all()
    assert np.array_equal(out, k.astype(np.float16).reshape(-1))
    # V transposed into the cache: [n_embd, n_ctx] layout, columns 1..3
    vcache = np.zeros((10, 8), dtype=np.float32)
    v = rand(3, 10)
    g = ops.Graph()
    Vc = g.input(vcache)
    dst = g.view(Vc, [3, 10], [8 * 4], offset=1 * 4)
    run(g, [g.cpy(g.transpose(g.input(v)), dst)], nth)
    assert np.array_equal(vcache[:, 1:4], v.T)


@pytest.mark.parametrize("nth", THREADS)
def test_cast_and_cont(nth):
    x = rand(4, 13, scale=100.0)
    g = ops.Graph()
    X = g.input(x)
    h, b, c, back = run(g, [g.cast(X, "f16"), g.cast(X, "bf16"), g.cont(g.transpose(X)),
                            g.cast(g.input(x.astype(np.float16)), "f32")], nth)
    assert h.dtype == np.float16 and np.array_equal(h, x.astype(np.float16))
    assert np.array_equal(b, to_bf16_bits(x))
    assert np.array_equal(c, np.ascontiguousarray(x.T))
    assert np.array_equal(back, x.astype(np.float16).astype(np.float32))


def test_chain_uses_small_buffer():
    # 40 chained ops on a 1 MB activation: intermediates are freed, so the buffer stays a few MB
    x = rand(256, 1024)
    one = rand(1024)
    g = ops.Graph()
    cur = g.input(x)
    ref = x.astype(np.float64)
    for _ in range(40):
        cur = g.add(cur, g.input(one))
        ref = ref + one
    y, = g.compute([cur], n_threads=2)
    assert np.allclose(y, ref, rtol=1e-5, atol=1e-4)
    assert g.activation_bytes <= 3 * x.nbytes


# ---- bad input: ValueError naming the op, interpreter survives ----------------------------------

def _bad_cases():
    f = lambda *s: rand(*s)  # noqa: E731
    return {
        "mul_mat": lambda g: g.mul_mat(g.input(f(3, 8)), g.input(f(2, 9))),
        "mul_mat type": lambda g: g.mul_mat(g.input(f(3, 8)), g.input(f(2, 8).astype(np.float16))),
        "mul_mat batch": lambda g: g.mul_mat(g.input(f(2, 3, 8)), g.input(f(3, 2, 8))),
        "get_rows": lambda g: g.get_rows(g.input(f(3, 8)), g.input(f(2))),
        "get_rows type": lambda g: g.get_rows(g.input(np.zeros((3, 8), np.int32)), g.input(np.zeros(2, np.int32))),
        "add": lambda g: g.add(g.input(f(3, 8)), g.input(f(3))),
        "mul": lambda g: g.mul(g.input(f(3, 8)), g.input(f(5, 8))),
        "scale": lambda g: g.scale(g.input(f(3, 8).astype(np.float16)), 2.0),
        "silu": lambda g: g.silu(g.input(np.zeros(4, np.int32))),
        "gelu": lambda g: g.gelu(g.input(f(4).astype(np.float16))),
        "gelu_erf": lambda g: g.gelu_erf(g.input(np.zeros(4, np.int32))),
        "swiglu": lambda g: g.swiglu(g.input(f(3, 8)), g.input(f(3, 7))),
        "rms_norm": lambda g: g.rms_norm(g.input(f(3, 8)), 1e-5, weight=g.input(f(7))),
        "layer_norm": lambda g: g.layer_norm(g.input(f(3, 8)), 1e-5, bias=g.input(f(9))),
        "rope": lambda g: g.rope(g.input(f(2, 3, 8)), g.input(np.zeros(3, np.int32)), 8),
        "rope n_rot": lambda g: g.rope(g.input(f(2, 3, 8)), g.input(np.zeros(2, np.int32)), 10),
        "rope mode": lambda g: g.rope(g.input(f(2, 3, 8)), g.input(np.zeros(2, np.int32)), 8, mode="xx"),
        "soft_max": lambda g: g.soft_max(g.input(np.zeros((2, 3), np.int32))),
        "cpy": lambda g: g.cpy(g.input(f(3, 8)), g.input(np.zeros((3, 7), np.float16))),
        "cast": lambda g: g.cast(g.input(f(3, 8)), "q4_0"),
        "cont": lambda g: g.cont(g.input(np.zeros(4, np.int32))),
        "reshape": lambda g: g.reshape(g.input(f(3, 8)), [5, 5]),
        "permute": lambda g: g.permute(g.input(f(3, 8)), 0, 0, 1, 2),
        "view": lambda g: g.view(g.input(f(3, 8)), [30], []),
    }


@pytest.mark.parametrize("name", sorted(_bad_cases()))
def test_bad_shape_or_type_raises(name):
    g = ops.Graph()
    op = name.split()[0]
    with pytest.raises(ValueError, match=op):
        _bad_cases()[name](g)
    # the interpreter and the module still work
    y, = g.compute([g.scale(g.input(np.ones(3, np.float32)), 2.0)])
    assert (y == 2).all()


def test_shapes_named_in_error():
    g = ops.Graph()
    with pytest.raises(ValueError) as e:
        g.mul_mat(g.input(rand(3, 8)), g.input(rand(2, 9)))
    assert "[8, 3, 1, 1]" in str(e.value) and "[9, 2, 1, 1]" in str(e.value)
