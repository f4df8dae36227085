// Forward functions of the ops that reduce or mix along a row (ne[0]): RMS_NORM, LAYER_NORM,
// SOFT_MAX (scale + causal mask) and ROPE (interleaved or NeoX pairs, partial rotary dims,
// linear and per-dimension frequency scaling). Sums are accumulated in double; any input strides.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "compute/forward.h"
#include "core/op_params.h"
#include "ggmlpy/ops.h"
#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

inline float elem(const Tensor* t, const char* row, int64_t i) { return row_elem(t, row, i); }

}  // namespace

void forward_rms_norm(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* w = t->src[1];
    const float eps = param_f32(t, 0);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* x = static_cast<const char*>(a->data) + row_offset(a, r);
        float* y = reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
        double ss = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double v = elem(a, x, i);
            ss += v * v;
        }
        const float sc = (float)(1.0 / std::sqrt(ss / (double)n + (double)eps));
        if (w) {
            for (int64_t i = 0; i < n; ++i) y[i] = elem(a, x, i) * sc * elem(w, static_cast<const char*>(w->data), i);
        } else {
            for (int64_t i = 0; i < n; ++i) y[i] = elem(a, x, i) * sc;
        }
    }
}

void forward_layer_norm(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* w = t->src[1];
    const Tensor* b = t->src[2];
    const float eps = param_f32(t, 0);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* x = static_cast<const char*>(a->data) + row_offset(a, r);
        float* y = reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += elem(a, x, i);
        const double mean = sum / (double)n;
        double var = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double d = elem(a, x, i) - mean;
            var += d * d;
        }
        const double sc = 1.0 / std::sqrt(var / (double)n + (double)eps);
        for (int64_t i = 0; i < n; ++i) {
            float v = (float)((elem(a, x, i) - mean) * sc);
            if (w) v *= elem(w, static_cast<const char*>(w->data), i);
            if (b) v += elem(b, static_cast<const char*>(b->data), i);
            y[i] = v;
        }
    }
}

void forward_soft_max(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const float scale = param_f32(t, 0);
    const bool causal = t->op_params[1] != 0;
    const int64_t n_past = param_i64(t, 2);
    const int64_t n = t->ne[0];
    const KernelTable& k = kernels();
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t iq = r % t->ne[1];  // query row: position n_past + iq
        const char* x = static_cast<const char*>(a->data) + row_offset(a, r);
        float* y = reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
        const int64_t nv = causal ? std::min(n, n_past + iq + 1) : n;  // visible keys
        if (a->type == DType::F32 && a->nb[0] == 4) {
            if ((const void*)x != (const void*)y) std::memcpy(y, x, (size_t)nv * sizeof(float));
            k.vec_scale_f32(nv, y, scale);
        } else {
            for (int64_t i = 0; i < nv; ++i) y[i] = elem(a, x, i) * scale;
        }
        // row max in 4 independent chains (one chain is a max-latency bound)
        const float ninf = -std::numeric_limits<float>::infinity();
        float m4[4] = {ninf, ninf, ninf, ninf};
        int64_t i = 0;
        for (; i + 4 <= nv; i += 4)
            for (int j = 0; j < 4; ++j) m4[j] = std::max(m4[j], y[i + j]);
        for (; i < nv; ++i) m4[0] = std::max(m4[0], y[i]);
        const float mx = std::max(std::max(m4[0], m4[1]), std::max(m4[2], m4[3]));
        const double sum = k.vec_exp_sum_f32(nv, y, y, mx);  // y = exp(y - mx)
        const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
        k.vec_scale_f32(nv, y, inv);
        for (int64_t i = nv; i < n; ++i) y[i] = 0.0f;
    }
}

void forward_rope(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* pos = t->src[1];
    const Tensor* ff = t->src[2];
    const int n_rot = t->op_params[0];
    const bool neox = t->op_params[1] == (int32_t)RopeMode::NEOX;
    const int half = n_rot / 2;
    const double base = param_f32(t, 2), fscale = param_f32(t, 3);
    // inv_freq_i = base^(-2i/n_rot) / factor_i (factor_i from the tensor, or Llama 3 params)
    double inv_freq[MAX_ROPE_PAIRS];
    float l3[MAX_ROPE_PAIRS];
    const float* factors = ff ? static_cast<const float*>(ff->data) : nullptr;
    if (!factors && param_f32(t, 4) > 0.0f) {
        RopeParams rp;
        rp.n_rot = n_rot;
        rp.freq_base = (float)base;
        rp.llama3_factor = param_f32(t, 4);
        rp.llama3_low_freq_factor = param_f32(t, 5);
        rp.llama3_high_freq_factor = param_f32(t, 6);
        rp.llama3_original_ctx = t->op_params[7];
        llama3_freq_factors_into(rp, l3);
        factors = l3;
    }
    for (int i = 0; i < half; ++i) {
        inv_freq[i] = std::pow(base, -2.0 * i / n_rot);
        if (factors) inv_freq[i] /= factors[i];
    }
    const double dir = t->op_params[8] ? -1.0 : 1.0;  // rope_back rotates by -theta
    const int32_t* positions = static_cast<const int32_t*>(pos->data);
    const int64_t n = t->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    float cs[MAX_ROPE_PAIRS], sn[MAX_ROPE_PAIRS];
    int64_t cached_token = -1;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t tok = (r / t->ne[1]) % t->ne[2];
        if (tok != cached_token) {
            const double pp = (double)positions[tok] * fscale;
            for (int i = 0; i < half; ++i) {
                const double th = pp * inv_freq[i];
                cs[i] = (float)std::cos(th);
                sn[i] = (float)(dir * std::sin(th));
            }
            cached_token = tok;
        }
        const char* x = static_cast<const char*>(a->data) + row_offset(a, r);
        float* y = reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
        for (int i = 0; i < half; ++i) {
            const int64_t j0 = neox ? i : 2 * i;
            const int64_t j1 = neox ? i + half : 2 * i + 1;
            const float x0 = elem(a, x, j0), x1 = elem(a, x, j1);
            y[j0] = x0 * cs[i] - x1 * sn[i];
            y[j1] = x0 * sn[i] + x1 * cs[i];
        }
        for (int64_t i = n_rot; i < n; ++i) y[i] = elem(a, x, i);
    }
}

}  // namespace ggmlpy
