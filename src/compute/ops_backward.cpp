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

inline size_t row_offset(const Tensor* t, int64_t r) {
    const int64_t i1 = r % t->ne[1];
    const int64_t i2 = (r / t->ne[1]) % t->ne[2];
    const int64_t i3 = r / (t->ne[1] * t->ne[2]);
    return (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3];
}

inline float at(const Tensor* t, const char* row, int64_t i) {
    return *reinterpret_cast<const float*>(row + (size_t)i * t->nb[0]);
}

inline const char* row_of(const Tensor* t, int64_t r) { return static_cast<const char*>(t->data) + row_offset(t, r); }
inline float* out_row(const Tensor* t, int64_t r) {
    return reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
}

// Columns of a [K, M] handed to one thread: whole blocks, at most this many elements per slice.
constexpr int64_t SLICE = 512;

int64_t slice_cols(const Tensor* a) {
    const int64_t bs = dtype_traits(a->type).block_size;
    return std::max<int64_t>(bs, SLICE / bs * bs);
}

}  // namespace

size_t mul_mat_t_work_size(const Tensor* t, int nth) {
    return (size_t)nth * (size_t)slice_cols(t->src[0]) * sizeof(float);
}

// out [K, N] = a^T d with a [K, M], d [M, N]: each thread owns slices of the K columns (whole
// blocks); for every row m of a it dequantizes its slice once and adds slice * d[m, j] into each
// output column j. Columns are taken from a shared counter, so threads stay busy.
void forward_mul_mat_t(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* d = t->src[1];
    const int64_t K = a->ne[0], M = a->ne[1], N = d->ne[1];
    const int64_t cols = slice_cols(a);
    const int64_t n_slices = (K + cols - 1) / cols;
    const DTypeTraits& tr = dtype_traits(a->type);
    const KernelTable& kt = kernels();
    float* buf = reinterpret_cast<float*>(p.wdata) + (size_t)p.ith * (size_t)cols;
    for (int64_t s = p.ith; s < n_slices; s += p.nth) {
        const int64_t c0 = s * cols, c1 = std::min(K, c0 + cols), nc = c1 - c0;
        for (int64_t j = 0; j < N; ++j) std::memset(out_row(t, j) + c0, 0, (size_t)nc * sizeof(float));
        const size_t byte0 = (size_t)(c0 / tr.block_size) * tr.type_size;
        for (int64_t m = 0; m < M; ++m) {
            dequantize_row(a->type, static_cast<const char*>(a->data) + (size_t)m * a->nb[1] + byte0, buf, nc);
            for (int64_t j = 0; j < N; ++j) {
                const float g = *reinterpret_cast<const float*>(row_of(d, j) + (size_t)m * d->nb[0]);
                if (g != 0.0f) kt.vec_mad_f32(nc, out_row(t, j) + c0, buf, g);
            }
        }
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

}  // namespace ggmlpy
