"""The backward ops (ops.h "Backward ops", used by LoRA training) against PyTorch autograd: for
each op, the vector-Jacobian product of the forward op with a random upstream gradient, through
the real graph + thread pool path at 1 and 2 threads. mul_mat_t (W^T d read from W's own blocks)
against the `gguf` package's dequantizer of the same bytes, for every weight type.

Tolerances (max abs error): norms, softmax, activations, rope 2e-5 relative to max |reference|;
mul_mat_t 1e-5 * sqrt(M) * max|w| * max|d| (f32 sums of M products)."""
import numpy as np
import pytest

from ggmlpy import _core

torch = pytest.importorskip("torch")
ops = _core.ops
THREADS = [1, 2]
rng = np.random.default_rng(7)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def vjp(fn, x, dy):
    """d(sum(fn(x) * dy))/dx by torch autograd in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (fn(xt) * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    return xt.grad.numpy()


def close(got, ref, tol=2e-5):
    assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max()), np.abs(got - ref).max()


@pytest.mark.parametrize("nth", THREADS)
def test_norms(nth):
    x, dy = rand(7, 96), rand(7, 96)
    g = ops.Graph()
    r, l = g.compute([g.rms_norm_back(g.input(x), g.input(dy), 1e-5),
                      g.layer_norm_back(g.input(x), g.input(dy), 1e-5)], n_threads=nth)
    close(r, vjp(lambda t: t / torch.sqrt((t * t).mean(-1, keepdim=True) + 1e-5), x, dy))
    close(l, vjp(lambda t: torch.nn.functional.layer_norm(t, (96,), eps=1e-5), x, dy))


@pytest.mark.parametrize("nth", THREADS)
def test_soft_max_back(nth):
    s, dp = rand(3, 5, 40), rand(3, 5, 40)
    scale = 0.3
    p = torch.softmax(torch.tensor(s, dtype=torch.float64) * scale, -1).numpy().astype(np.float32)
    g = ops.Graph()
    got, = g.compute([g.soft_max_back(g.input(p), g.input(dp), scale)], n_threads=nth)
    close(got, vjp(lambda t: torch.softmax(t * scale, -1), s, dp))


@pytest.mark.parametrize("nth", THREADS)
def test_activations(nth):
    x, dy = rand(9, 33) * 3, rand(9, 33)
    g = ops.Graph()
    si, ge = g.compute([g.silu_back(g.input(x), g.input(dy)), g.gelu_back(g.input(x), g.input(dy))], n_threads=nth)
    close(si, vjp(torch.nn.functional.silu, x, dy))
    close(ge, vjp(lambda t: torch.nn.functional.gelu(t, approximate="tanh"), x, dy))


@pytest.mark.parametrize("nth", THREADS)
def test_rope_back_inverts_rope(nth):
    """rope is a rotation per pair, so its vjp is the rotation by -theta: rope_back(rope(x)) == x,
    and <rope(x), dy> == <x, rope_back(dy)>."""
    x, dy = rand(5, 4, 64), rand(5, 4, 64)   # [T, heads, head_dim]
    pos = np.arange(5, dtype=np.int32) * 7
    g = ops.Graph()
    fx = g.rope(g.input(x), g.input(pos), 48)
    back, y, bdy = g.compute([g.rope_back(fx, g.input(pos), 48), fx, g.rope_back(g.input(dy), g.input(pos), 48)],
                             n_threads=nth)
    close(back, x)
    assert abs(float((y * dy).sum()) - float((x * bdy).sum())) < 1e-3


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K",
                                   "q5_K", "q6_K"])
def test_mul_mat_t_every_type(nth, wtype):
    import gguf
    from gguf.quants import dequantize
    K, M, N = 512, 550, 13   # several column slices, a full and a partial row chunk, odd token count
    w = rand(M, K)
    if wtype == "f32":
        raw, wref = w, w.astype(np.float64)
    elif wtype == "f16":
        raw = w.astype(np.float16)
        wref = raw.astype(np.float64)
    else:  # our quantizer makes the bytes, gguf's dequantizer reads them
        raw = np.asarray(_core.quantize(w, wtype))
        wref = dequantize(raw, getattr(gguf.GGMLQuantizationType, wtype.upper())).astype(np.float64)
    d = rand(N, M)
    g = ops.Graph()
    a = g.input(raw, type=wtype.lower(), ne=[K, M]) if wtype not in ("f32", "f16") else g.input(raw)
    got, = g.compute([g.mul_mat_t(a, g.input(d))], n_threads=nth)
    ref = d.astype(np.float64) @ wref          # [N, K]: row j = sum_m d[j, m] w[m, :]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5 * np.sqrt(M) * np.abs(wref).max() * np.abs(d).max()


@pytest.mark.parametrize("nth", THREADS)
@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q8_0", "q4_K", "q6_K"])
def test_mul_mat_t_int8_path(nth, wtype):
    """M a multiple of 32: a quantized weight takes the int8 path (tiles and d in q8_0, as its
    forward quantizes the activations). Bound: 1.2e-2 of the product of the norms of d's row and
    w's column (measured at most 3e-3)."""
    import gguf
    from gguf.quants import dequantize
    K, M, N = 512, 544, 21   # a full and a partial chunk of 512 rows, 3 panels of 8 columns
    raw = np.asarray(_core.quantize(rand(M, K), wtype))
    wref = dequantize(raw, getattr(gguf.GGMLQuantizationType, wtype.upper())).astype(np.float64)
    d = rand(N, M)
    g = ops.Graph()
    got, = g.compute([g.mul_mat_t(g.input(raw, type=wtype, ne=[K, M]), g.input(d))], n_threads=nth)
    ref = d.astype(np.float64) @ wref
    bound = np.linalg.norm(d, axis=1)[:, None] * np.linalg.norm(wref, axis=0)[None, :]
    ratio = np.abs(got - ref) / bound
    assert ratio.max() <= 1.2e-2, ratio.max()


def test_mul_mat_t_errors():
    g = ops.Graph()
    with pytest.raises(ValueError, match=r"mul_mat_t: .*a.ne\[1\] must equal d.ne\[0\]"):
        g.mul_mat_t(g.input(rand(4, 8)), g.input(rand(3, 5)))
    with pytest.raises(ValueError, match="soft_max_back: .*shapes must match"):
        g.soft_max_back(g.input(rand(4, 8)), g.input(rand(4, 9)), 1.0)
