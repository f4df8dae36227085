// Forward functions of the backward ops (ops.h "Backward ops"), the input gradients used by
// training (src/training). Scalar C++ over f32 rows, sums in double like the forward norms;
// rows split over threads. MUL_MAT_T reads a frozen weight in its own type, a slice of blocks at
// a time, so no float copy of the matrix is ever made.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "compute/forward.h"
#include "core/op_params.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace ggmlpy {
namespace {

inline float at(const Tensor* t, const char* row, int64_t i) { return row_elem(t, row, i); }

inline const char* row_of(const Tensor* t, int64_t r) { return static_cast<const char*>(t->data) + row_offset(t, r); }
inline float* out_row(const Tensor* t, int64_t r) {
    return reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
}

// MUL_MAT_T work: slices of CB columns of a (whole blocks), each over all M rows in chunks of MB.
constexpr int64_t MB = 512;
constexpr size_t Q8_ROW = sizeof(block_q8_0);  // bytes per 32 values in q8_0

int64_t slice_cols(const Tensor* a) { return std::max<int64_t>(dtype_traits(a->type).block_size, 64); }

// A quantized weight takes the int8 path: its transposed tiles and d are quantized to q8_0 and
// dotted by the table's q8_0 gemm, as its forward matmul quantizes the activations. Float weights
// (f32, f16, bf16) stay in f32 throughout.
bool int8_path(const Tensor* t) {
    const Tensor* a = t->src[0];
    const TypeKernels& q8 = kernels().type[(int)DType::Q8_0];
    return dtype_traits(a->type).quantized && a->ne[1] % QK8_0 == 0 && q8.gemm_pack && q8.from_float &&
           q8.vec_dot_type == DType::Q8_0;
}

// int8 path: d's columns, quantized, packed for gemm_pack: per chunk of MB rows of a, panels of 8
// columns (q8_0_pack8), each PANEL bytes.
size_t panel_bytes(int64_t nm) { return (q8_0_pack8_size(nm) + 63) / 64 * 64; }

// Shared bytes (int8 path: d quantized, one q8_0 row of M values per column j) and per-thread
// floats (the dequantized chunk, its transpose, one gemm result, the sums; int8: + the tile in q8_0).
size_t shared_bytes(const Tensor* t) {
    if (!int8_path(t)) return 0;
    const int64_t M = t->src[0]->ne[1], N = t->src[1]->ne[1];
    const size_t q = (size_t)N * (size_t)(M / QK8_0) * Q8_ROW;           // quantized columns
    const size_t panels = (size_t)((M + MB - 1) / MB) * (size_t)((N + 7) / 8) * panel_bytes(MB);
    return (q + 63) / 64 * 64 + panels;
}
size_t mul_mat_t_scratch(const Tensor* t) {
    const int64_t cb = slice_cols(t->src[0]), n = t->ne[1];
    size_t f = (size_t)(2 * MB * cb + 2 * n * cb);
    if (int8_path(t)) f += (size_t)cb * (MB / QK8_0) * Q8_ROW / sizeof(float) + 1;
    return f;
}

}  // namespace

size_t mul_mat_t_work_size(const Tensor* t, int nth) {
    return shared_bytes(t) + 64 + (size_t)nth * mul_mat_t_scratch(t) * sizeof(float) + 64 * (size_t)nth;
}

// out [K, N] = a^T d with a [K, M], d [M, N]. A work item is a slice of CB columns of a: for each
// chunk of MB rows it dequantizes a [MB, CB] tile (a's own blocks, never the whole matrix),
// transposes it so that each of the CB columns is a dense row of MB values, and lets a gemm kernel
// of the table dot those rows with the chunk of every column of d (f32, or both in q8_0 for a
// quantized a): sums [N, CB] += the tile's products; then row j of the sums is out[c0 .. c0 + CB, j].
void forward_mul_mat_t(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* d = t->src[1];
    const int64_t K = a->ne[0], M = a->ne[1], N = d->ne[1];
    const int64_t cb = slice_cols(a);
    const int64_t n_slices = (K + cb - 1) / cb;
    const DTypeTraits& tr = dtype_traits(a->type);
    const bool q8 = int8_path(t);
    const TypeKernels& gk = kernels().type[(int)(q8 ? DType::Q8_0 : DType::F32)];  // q8: gemm_pack
    const int rx = std::max(1, gk.gemm_rows_x), ry = std::max(1, gk.gemm_rows_y);
    const size_t qrow = (size_t)(M / QK8_0) * Q8_ROW;  // int8: bytes of one quantized column of d
    const int64_t n_groups = (N + 7) / 8;
    char* dq = p.wdata;
    char* panels = dq + ((size_t)N * qrow + 63) / 64 * 64;
    if (q8) {  // d quantized and packed once, by all threads; every slice reads all of it
        for (int64_t j = p.ith; j < N; j += p.nth)
            gk.from_float(reinterpret_cast<const float*>(row_of(d, j)), dq + (size_t)j * qrow, M);
        p.barrier();
        const int64_t n_chunks = (M + MB - 1) / MB;
        for (int64_t w = p.ith; w < n_chunks * n_groups; w += p.nth) {
            const int64_t ci = w / n_groups, gi = w % n_groups, m0 = ci * MB;
            const int nj = (int)std::min<int64_t>(8, N - gi * 8);
            q8_0_pack8(dq + (size_t)(gi * 8) * qrow + (size_t)(m0 / QK8_0) * Q8_ROW, qrow, nj,
                       panels + (size_t)w * panel_bytes(MB), std::min(MB, M - m0));
        }
        p.barrier();
    }
    char* mine = p.wdata + ((shared_bytes(t) + 63) / 64 * 64) + (size_t)p.ith * mul_mat_t_scratch(t) * sizeof(float);
    float* tile = reinterpret_cast<float*>(mine);
    float* tile_t = tile + MB * cb;
    float* prod = tile_t + MB * cb;  // [N, cb]
    float* sums = prod + N * cb;     // [N, cb]
    char* tile_q = reinterpret_cast<char*>(sums + N * cb);  // int8: [cb][MB / 32] q8_0 blocks
    for (int64_t s = p.ith; s < n_slices; s += p.nth) {
        const int64_t c0 = s * cb, nc = std::min(K, c0 + cb) - c0;
        const size_t byte0 = (size_t)(c0 / tr.block_size) * tr.type_size;
        std::fill(sums, sums + N * cb, 0.0f);
        for (int64_t m0 = 0; m0 < M; m0 += MB) {
            const int64_t nm = std::min(MB, M - m0);
            for (int64_t m = 0; m < nm; ++m)
                dequantize_row(a->type, static_cast<const char*>(a->data) + (size_t)(m0 + m) * a->nb[1] + byte0,
                               tile + m * cb, nc);
            for (int64_t c = 0; c < nc; ++c)
                for (int64_t m = 0; m < nm; ++m) tile_t[c * nm + m] = tile[m * cb + c];
            // prod[j * cb + c] = dot(column c of the tile, d[m0 .. m0 + nm, j])
            const void* x = tile_t;
            size_t bx = (size_t)nm * sizeof(float);
            const char* y = static_cast<const char*>(d->data) + (size_t)m0 * d->nb[0];
            const size_t by = d->nb[1];
            if (q8) {
                bx = (size_t)(nm / QK8_0) * Q8_ROW;
                for (int64_t c = 0; c < nc; ++c) gk.from_float(tile_t + c * nm, tile_q + (size_t)c * bx, nm);
                const int px = std::max(1, gk.gemm_pack_rows_x);
                for (int64_t gi = 0; gi < n_groups; ++gi) {
                    const int nj = (int)std::min<int64_t>(8, N - gi * 8);
                    const char* pan = panels + (size_t)((m0 / MB) * n_groups + gi) * panel_bytes(MB);
                    for (int64_t c = 0; c < nc; c += px) {
                        const int ncx = (int)std::min<int64_t>(px, nc - c);
                        gk.gemm_pack(nm, prod + gi * 8 * cb + c, (size_t)cb, tile_q + (size_t)c * bx, bx, ncx, pan, 0, nj);
                    }
                }
                for (int64_t i = 0; i < N * cb; ++i) sums[i] += prod[i];
                continue;
            }
            for (int64_t j0 = 0; j0 < N; j0 += ry) {
                const int nj = (int)std::min<int64_t>(ry, N - j0);
                for (int64_t c = 0; c < nc; c += rx) {
                    const int ncx = (int)std::min<int64_t>(rx, nc - c);
                    gk.gemm(nm, prod + j0 * cb + c, (size_t)cb, static_cast<const char*>(x) + (size_t)c * bx, bx, ncx,
                            y + (size_t)j0 * by, by, nj);
                }
            }
            for (int64_t i = 0; i < N * cb; ++i) sums[i] += prod[i];
        }
        for (int64_t j = 0; j < N; ++j) std::memcpy(out_row(t, j) + c0, sums + j * cb, (size_t)nc * sizeof(float));
    }
}

// dx = r * (dy - xhat * mean(dy * xhat)), r = 1 / sqrt(mean(x^2) + eps), xhat = x * r.
void forward_rms_norm_back(const Tensor* t, const ComputeParams& p) {
    const Tensor* x = t->src[0];
    const Tensor* dy = t->src[1];
    const double eps = param_f32(t, 0);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* xr = row_of(x, r);
        const char* gr = row_of(dy, r);
        double ss = 0.0, sxg = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double v = at(x, xr, i);
            ss += v * v;
            sxg += v * at(dy, gr, i);
        }
        const double rs = 1.0 / std::sqrt(ss / (double)n + eps);
        const double c = sxg * rs * rs / (double)n;  // mean(dy * xhat) * r
        float* y = out_row(t, r);
        for (int64_t i = 0; i < n; ++i) y[i] = (float)(rs * (at(dy, gr, i) - at(x, xr, i) * c));
    }
}

// dx = (dy - mean(dy) - xhat * mean(dy * xhat)) / sigma, xhat = (x - mu) / sigma.
void forward_layer_norm_back(const Tensor* t, const ComputeParams& p) {
    const Tensor* x = t->src[0];
    const Tensor* dy = t->src[1];
    const double eps = param_f32(t, 0);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* xr = row_of(x, r);
        const char* gr = row_of(dy, r);
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += at(x, xr, i);
        const double mu = sum / (double)n;
        double var = 0.0, sg = 0.0, sxg = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double c = at(x, xr, i) - mu, g = at(dy, gr, i);
            var += c * c;
            sg += g;
            sxg += c * g;
        }
        const double inv = 1.0 / std::sqrt(var / (double)n + eps);
        const double mg = sg / (double)n, mxg = sxg * inv / (double)n;  // mean(dy), mean(dy * xhat)
        float* y = out_row(t, r);
        for (int64_t i = 0; i < n; ++i)
            y[i] = (float)(inv * (at(dy, gr, i) - mg - (at(x, xr, i) - mu) * inv * mxg));
    }
}

// ds = scale * p * (dp - sum(p * dp)).
void forward_soft_max_back(const Tensor* t, const ComputeParams& p) {
    const Tensor* pr = t->src[0];
    const Tensor* dp = t->src[1];
    const float scale = param_f32(t, 0);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* pp = row_of(pr, r);
        const char* gp = row_of(dp, r);
        double dot = 0.0;
        for (int64_t i = 0; i < n; ++i) dot += (double)at(pr, pp, i) * at(dp, gp, i);
        float* y = out_row(t, r);
        for (int64_t i = 0; i < n; ++i) y[i] = (float)(scale * at(pr, pp, i) * (at(dp, gp, i) - dot));
    }
}

// dy * f'(x): silu' = s (1 + x (1 - s)), s = sigmoid(x); gelu (tanh form) with u = c (x + k x^3):
// 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 k x^2).
void forward_act_back(const Tensor* t, const ComputeParams& p) {
    const Tensor* x = t->src[0];
    const Tensor* dy = t->src[1];
    const bool silu = t->op == Op::SILU_BACK;
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* xr = row_of(x, r);
        const char* gr = row_of(dy, r);
        float* y = out_row(t, r);
        for (int64_t i = 0; i < n; ++i) {
            const double v = at(x, xr, i), g = at(dy, gr, i);
            double f;
            if (silu) {
                const double s = 1.0 / (1.0 + std::exp(-v));
                f = s * (1.0 + v * (1.0 - s));
            } else {
                const double c = 0.7978845608028654, k = 0.044715;
                const double th = std::tanh(c * (v + k * v * v * v));
                f = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * c * (1.0 + 3.0 * k * v * v);
            }
            y[i] = (float)(g * f);
        }
    }
}

// keep element i when the top 24 bits of splitmix64(seed + i) are >= p * 2^24
void forward_dropout(const Tensor* t, const ComputeParams& p) {
    const Tensor* x = t->src[0];
    const float prob = param_f32(t, 0);
    const uint64_t seed = (uint64_t)param_i64(t, 2);
    const uint32_t cut = (uint32_t)((double)prob * 16777216.0);
    const float keep_scale = 1.0f / (1.0f - prob);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* xr = row_of(x, r);
        float* y = out_row(t, r);
        for (int64_t i = 0; i < n; ++i) {
            uint64_t z = seed + (uint64_t)(r * n + i) * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            y[i] = (uint32_t)(z >> 40) >= cut ? at(x, xr, i) * keep_scale : 0.0f;
        }
    }
}

}  // namespace ggmlpy
