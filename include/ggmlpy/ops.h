// Op builders: each call checks shapes/types (throws ValueError naming the op and both shapes) and
// returns a new tensor in the context; nothing is computed until the graph runs (graph.h).
// Activations are f32. Shapes are ggml-ordered: ne[0] is the fastest dim (a row), so a PyTorch
// tensor [n_tokens, n_embd] is ne = {n_embd, n_tokens}.
#pragma once
#include <cstdint>
#include <vector>

#include "ggmlpy/tensor.h"

namespace ggmlpy {

// ---- views (no compute, share data; the result keeps the source alive) -----------------------
// offset in bytes; nb1.. are the byte strides of the view. Throws if the view leaves the source.
Tensor* view_1d(Context& ctx, Tensor* a, int64_t ne0, size_t offset);
Tensor* view_2d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset);
Tensor* view_3d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1,
                size_t nb2, size_t offset);
Tensor* view_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                size_t nb1, size_t nb2, size_t nb3, size_t offset);
// Same elements, new shape; a must be contiguous and the element counts equal.
Tensor* reshape(Context& ctx, Tensor* a, const std::vector<int64_t>& ne);
inline Tensor* reshape_2d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1) { return reshape(ctx, a, {ne0, ne1}); }
inline Tensor* reshape_3d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2) {
    return reshape(ctx, a, {ne0, ne1, ne2});
}
inline Tensor* reshape_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    return reshape(ctx, a, {ne0, ne1, ne2, ne3});
}
// ggml semantics: dim i of a becomes dim ax_i of the result (ax a permutation of 0..3).
// Example: [head_dim, n_head, n_tokens] -> permute(0, 2, 1, 3) -> [head_dim, n_tokens, n_head].
Tensor* permute(Context& ctx, Tensor* a, int ax0, int ax1, int ax2, int ax3);
Tensor* transpose(Context& ctx, Tensor* a);  // swaps dims 0 and 1

// ---- copies -------------------------------------------------------------------------------------
// Dense copy of a (any strides) in natural order, same type (f32/f16/bf16).
Tensor* cont(Context& ctx, Tensor* a);
// Writes src into the existing tensor or view dst (same element count; shapes may differ, the
// copy follows element order), converting between f32, f16 and bf16. Returns a view of dst that
// must be put in the graph (build_forward) before anything that reads dst: this is how K/V are
// written into the cache.
Tensor* cpy(Context& ctx, Tensor* src, Tensor* dst);
// New dense tensor of the given type (f32/f16/bf16) holding a converted.
Tensor* cast(Context& ctx, Tensor* a, DType type);

// ---- lookups and products -----------------------------------------------------------------------
// a: [n_embd, n_rows] of any supported type (quantized included); ids: I32 [n] -> f32 [n_embd, n].
// An id outside [0, n_rows) is a ValueError at compute time (checked before any thread runs).
Tensor* get_rows(Context& ctx, Tensor* a, Tensor* ids);
// a: weights [K, M, A2, A3] (any type with a matmul kernel, rows contiguous),
// b: activations f32 [K, N, B2, B3] (any strides), B2 % A2 == 0 and B3 % A3 == 0 (broadcast:
// b's batch i2 uses a's batch i2 / (B2 / A2), as grouped-query attention needs)
// -> f32 [M, N, B2, B3], out[m, n] = sum_k a[k, m] * b[k, n].
Tensor* mul_mat(Context& ctx, Tensor* a, Tensor* b);
// mul_mat of a causal attention, which skips the work the mask makes useless. Query i (column n of
// b and of the output) sees keys j <= n_past + i only.
//  - CausalSide::Rows: a's rows are the keys (scores = K^T Q). out[j, i] for j > n_past + i is
//    written as 0, mostly without being computed (a causal soft_max ignores those entries).
//  - CausalSide::K: the reduced dim is the keys (out = V^T P). b[j, i] must be 0 for
//    j > n_past + i, as a causal soft_max leaves it; those terms are skipped.
enum class CausalSide : int32_t { Rows = 1, K = 2 };
Tensor* mul_mat_causal(Context& ctx, Tensor* a, Tensor* b, CausalSide side, int64_t n_past);

// ---- elementwise (f32) --------------------------------------------------------------------------
// a + b, a * b; b is broadcast over a: each b.ne[i] must divide a.ne[i] (a bias row [n] over
// [n, n_tokens], for example). Result has a's shape; any strides.
Tensor* add(Context& ctx, Tensor* a, Tensor* b);
Tensor* mul(Context& ctx, Tensor* a, Tensor* b);
Tensor* scale(Context& ctx, Tensor* a, float s);
Tensor* silu(Context& ctx, Tensor* a);      // x * sigmoid(x)
Tensor* gelu(Context& ctx, Tensor* a);      // tanh approximation (GPT-J's gelu_new)
Tensor* gelu_erf(Context& ctx, Tensor* a);  // exact 0.5 x (1 + erf(x / sqrt 2))
Tensor* swiglu(Context& ctx, Tensor* a, Tensor* b);  // silu(a) * b, same shapes

// ---- normalization over rows (ne[0]) --------------------------------------------------------------
// x / sqrt(mean(x^2) + eps), then * weight if given (weight f32 [ne0], broadcast over rows).
Tensor* rms_norm(Context& ctx, Tensor* a, float eps, Tensor* weight = nullptr);
// (x - mean) / sqrt(var + eps), then * weight and + bias if given (each f32 [ne0]).
Tensor* layer_norm(Context& ctx, Tensor* a, float eps, Tensor* weight = nullptr, Tensor* bias = nullptr);

// ---- rotary position embedding ------------------------------------------------------------------
enum class RopeMode : int32_t {
    NORM = 0,  // interleaved pairs (x[2i], x[2i+1]): GPT-J, and Llama as stored in GGUF files
    NEOX = 2,  // half split (x[i], x[i + n_rot/2]): HF rotate_half, GPT-NeoX
};
struct RopeParams {
    int n_rot = 0;              // rotated dims (even, <= head_dim); the rest pass through
    RopeMode mode = RopeMode::NORM;
    float freq_base = 10000.0f; // theta_i = p * freq_scale * freq_base^(-2i / n_rot) / factor_i
    float freq_scale = 1.0f;    // linear scaling: 1 / factor
    // Llama 3 per-dimension factors, used when llama3_factor > 0 and no freq_factors tensor is given
    float llama3_factor = 0.0f;
    float llama3_low_freq_factor = 1.0f;
    float llama3_high_freq_factor = 4.0f;
    int llama3_original_ctx = 8192;
};
// Per-dimension divisors factor_i (n_rot / 2 values) of Llama 3 scaling, as HF computes them.
std::vector<float> llama3_freq_factors(const RopeParams& p);
// a: f32 [head_dim, n_head, n_tokens, 1] (any strides); pos: I32 [n_tokens], the position of each
// token; freq_factors: optional f32 [n_rot / 2] divisors (the GGUF rope_freqs tensor).
// -> f32 of a's shape (dense).
Tensor* rope(Context& ctx, Tensor* a, Tensor* pos, const RopeParams& p, Tensor* freq_factors = nullptr);

// ---- softmax over rows --------------------------------------------------------------------------
// a: f32 [n_kv, n_q, n_head, ...]; y = softmax(scale * a) per row. causal: query row i (dim 1)
// sits at position n_past + i and sees keys 0 .. n_past + i only (the others get probability 0).
Tensor* soft_max(Context& ctx, Tensor* a, float scale = 1.0f, bool causal = false, int64_t n_past = 0);

// ---- fused attention ----------------------------------------------------------------------------
// Causal softmax(scale * K^T q) V for every query and head, without an n_kv x n score matrix
// (keys in tiles, the softmax merged across tiles). q: f32 [hd, n_head, n] (rows dense, any
// strides); k, v: [hd, n_kv, n_head_kv] views of a cache with one row per position (f32, f16,
// q8_0 or q4_0; rows dense, hd a multiple of the type's block), n_kv = n_past + n, n_head a
// multiple of n_head_kv (query head h reads KV head h / (n_head / n_head_kv)). Query i sits at
// position n_past + i and sees keys 0 .. n_past + i. -> f32 [hd, n_head, n].
// Each query's result depends on its own row and keys only (never on n or the thread count).
Tensor* flash_attn(Context& ctx, Tensor* q, Tensor* k, Tensor* v, float scale, int64_t n_past);

// ---- Backward ops (training: src/training) ------------------------------------------------
// The input gradients of the forward ops above; every one is f32 and threaded by rows.

// a^T d: a [K, M] any type with a dequantizer (a frozen weight, read in place from its blocks),
// d f32 [M, N] -> [K, N]: out[:, j] = sum_m a[:, m] d[m, j]. The input gradient of mul_mat(a, x).
Tensor* mul_mat_t(Context& ctx, Tensor* a, Tensor* d);
// dx of y = rms_norm(x, eps) (no weight: multiply dy by it first). x, dy [n, rows] -> [n, rows].
Tensor* rms_norm_back(Context& ctx, Tensor* x, Tensor* dy, float eps);
// dx of y = layer_norm(x, eps) (no weight or bias).
Tensor* layer_norm_back(Context& ctx, Tensor* x, Tensor* dy, float eps);
// ds of p = soft_max(s * scale, masked): scale * p * (dp - sum(p * dp)) per row (masked p are 0).
Tensor* soft_max_back(Context& ctx, Tensor* p, Tensor* dp, float scale);
// dy * silu'(x) and dy * gelu'(x) (gelu: the tanh approximation).
Tensor* silu_back(Context& ctx, Tensor* x, Tensor* dy);
Tensor* gelu_back(Context& ctx, Tensor* x, Tensor* dy);
// Inverted dropout: y = x / (1 - p) where keep(seed, i), else 0, for element i of x in its dense
// order (i = i0 + ne0 * (i1 + ne1 * i2 ...)); keep is a hash of (seed, i), so the same seed and
// shape give the same mask on any thread count: the backward is the same op on the gradient.
Tensor* dropout(Context& ctx, Tensor* x, float p, int64_t seed);
// dx of y = rope(x, pos, p, freq_factors): the rotation by -theta.
Tensor* rope_back(Context& ctx, Tensor* dy, Tensor* pos, const RopeParams& p, Tensor* freq_factors = nullptr);

}  // namespace ggmlpy
