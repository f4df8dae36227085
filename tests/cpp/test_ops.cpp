// Ops against naive double-precision loops written here (not the forward code), at 1 and 2
// threads: mul_mat (f32 / f16 weights, GQA broadcast, strided activations), rope in both layouts
// with n_rot < head_dim, causal soft_max, rms_norm with weight, and cpy f32 -> f16 into a view.
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/graph.h"
#include "ggmlpy/ops.h"
#include "quant/fp16.h"

using namespace ggmlpy;

static std::mt19937 rng(42);
static void fill(Tensor* t, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    float* p = t->ptr<float>();
    for (int64_t i = 0; i < t->nelements(); ++i) p[i] = d(rng);
}
static float getf(const Tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0) {
    return *static_cast<const float*>(t->at(i0, i1, i2));
}

static void test_mul_mat(int nth, ThreadPool& pool, bool f16) {
    const int64_t K = 45, M = 19, N = 7;
    Context ctx;
    Tensor* a32 = ctx.new_tensor(DType::F32, {K, M, 2});
    fill(a32);
    Tensor* a = a32;
    if (f16) {
        a = ctx.new_tensor(DType::F16, {K, M, 2});
        for (int64_t i = 0; i < a32->nelements(); ++i) {
            a->ptr<uint16_t>()[i] = fp32_to_fp16(a32->ptr<float>()[i]);
            a32->ptr<float>()[i] = fp16_to_fp32(a->ptr<uint16_t>()[i]);  // reference uses the rounded values
        }
    }
    Tensor* bsrc = ctx.new_tensor(DType::F32, {K, 4, N});  // [K, heads, tokens]
    fill(bsrc);
    Context g(false);
    Tensor* b = permute(g, bsrc, 0, 2, 1, 3);  // [K, N, 4]: strided, 4 heads over 2 weight batches
    Tensor* y = mul_mat(g, a, b);
    Graph gr;
    build_forward(gr, y);
    compute(gr, pool, nth);
    CHECK(y->ne[0] == M && y->ne[1] == N && y->ne[2] == 4);
    double worst = 0;
    for (int64_t h = 0; h < 4; ++h)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = 0; m < M; ++m) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) s += (double)getf(a32, k, m, h / 2) * getf(bsrc, k, h, n);
                worst = std::fmax(worst, std::fabs(s - getf(y, m, n, h)));
            }
    CHECK(worst < 1e-4);
    CHECK_THROWS(mul_mat(g, a, bsrc), ValueError);  // b.ne[2] = 7 is not a multiple of a.ne[2] = 2
}

static void test_rope(int nth, ThreadPool& pool, RopeMode mode) {
    const int64_t D = 12, H = 3, T = 4;
    const int n_rot = 8;
    Context ctx;
    Tensor* x = ctx.new_tensor(DType::F32, {D, H, T});
    fill(x);
    Tensor* pos = ctx.new_tensor(DType::I32, {T});
    const int32_t ps[T] = {0, 3, 10, 500};
    for (int i = 0; i < T; ++i) pos->ptr<int32_t>()[i] = ps[i];
    Context g(false);
    RopeParams rp;
    rp.n_rot = n_rot;
    rp.mode = mode;
    rp.freq_base = 1000.0f;
    Tensor* y = rope(g, x, pos, rp);
    Graph gr;
    build_forward(gr, y);
    compute(gr, pool, nth);
    double worst = 0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < D; ++i) {
                double ref;
                if (i >= n_rot) {
                    ref = getf(x, i, h, t);
                } else {
                    // pair partner and frequency index of dim i in each layout
                    const int64_t pair = mode == RopeMode::NEOX ? i % (n_rot / 2) : i / 2;
                    const bool first = mode == RopeMode::NEOX ? i < n_rot / 2 : i % 2 == 0;
                    const int64_t other = mode == RopeMode::NEOX ? (first ? i + n_rot / 2 : i - n_rot / 2) : (first ? i + 1 : i - 1);
                    const double th = ps[t] * std::pow(1000.0, -2.0 * pair / n_rot);
                    const double xi = getf(x, i, h, t), xo = getf(x, other, h, t);
                    ref = first ? xi * std::cos(th) - xo * std::sin(th) : xo * std::sin(th) + xi * std::cos(th);
                }
                worst = std::fmax(worst, std::fabs(ref - getf(y, i, h, t)));
            }
    CHECK(worst < 2e-5);
}

static void test_softmax_norm_cpy(int nth, ThreadPool& pool) {
    const int64_t n_kv = 9, n_q = 3, n_past = 6;
    Context ctx;
    Tensor* s = ctx.new_tensor(DType::F32, {n_kv, n_q, 2});
    fill(s, 3.0f);
    Tensor* w = ctx.new_tensor(DType::F32, {n_kv});
    fill(w);
    Tensor* cache = ctx.new_tensor(DType::F16, {n_kv, 10});
    Context g(false);
    Tensor* p = soft_max(g, s, 0.5f, true, n_past);
    Tensor* r = rms_norm(g, s, 1e-6f, w);
    Tensor* c = cpy(g, s, view_2d(g, cache, n_kv, n_q * 2, cache->nb[1], 2 * cache->nb[1]));
    Graph gr;
    build_forward(gr, c);
    build_forward(gr, p);
    build_forward(gr, r);
    compute(gr, pool, nth);
    for (int64_t h = 0; h < 2; ++h)
        for (int64_t q = 0; q < n_q; ++q) {
            double mx = -1e30, sum = 0, ss = 0;
            const int64_t vis = n_past + q + 1;
            for (int64_t k = 0; k < vis; ++k) mx = std::fmax(mx, 0.5 * getf(s, k, q, h));
            for (int64_t k = 0; k < vis; ++k) sum += std::exp(0.5 * getf(s, k, q, h) - mx);
            for (int64_t k = 0; k < n_kv; ++k) {
                const double ref = k < vis ? std::exp(0.5 * getf(s, k, q, h) - mx) / sum : 0.0;
                CHECK_NEAR(getf(p, k, q, h), ref, 1e-6);
                ss += (double)getf(s, k, q, h) * getf(s, k, q, h);
            }
            for (int64_t k = 0; k < n_kv; ++k) {
                CHECK_NEAR(getf(r, k, q, h), getf(s, k, q, h) / std::sqrt(ss / n_kv + 1e-6) * getf(w, k), 1e-5);
                const uint16_t hb = *static_cast<const uint16_t*>(cache->at(k, 2 + h * n_q + q));
                CHECK(hb == fp32_to_fp16(getf(s, k, q, h)));
            }
        }
    for (int64_t k = 0; k < n_kv; ++k) CHECK(*static_cast<const uint16_t*>(cache->at(k, 0)) == 0);
}

int main() {
    ThreadPool pool(2);
    for (int nth : {1, 2}) {
        test_mul_mat(nth, pool, false);
        test_mul_mat(nth, pool, true);
        test_rope(nth, pool, RopeMode::NORM);
        test_rope(nth, pool, RopeMode::NEOX);
        test_softmax_norm_cpy(nth, pool);
    }
    return test_exit_code("test_ops");
}
