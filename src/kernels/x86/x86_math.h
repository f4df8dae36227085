// x86 activation helpers (part of x86_impl.h, included by it inside ggmlpy::{anonymous}): a
// vector exp and the row functions built on it (softmax's exponentials, SiLU / SwiGLU, GELU).
// 256-bit with FMA; the AVX-512 TU compiles the same code. Not a standalone header.
//
// Accuracy against libm (the scalar table), checked by tests/cpp/test_kernels.cpp over normal,
// extreme and special inputs: exp within 2 ulp where the result is normal (measured max: 1 ulp),
// subnormal results within 2^-148; silu / gelu within 4 ulp of their value (plus a few times
// FLT_EPSILON * |x| for gelu, where the reference's 1 + tanh cancels).
#pragma once

// exp of 8 floats. x = n*ln2 + r with n = round(x / ln2), |r| <= ln2/2 (ln2 split in two parts, so
// r is exact to ~1e-9 for |n| <= 150); e^r by its Taylor polynomial of degree 7 (truncation below
// 6e-9 relative, under float rounding), in Horner form with FMA. 2^n is applied as two factors
// 2^(n>>1) * 2^(n - (n>>1)), each a normal float built from its exponent bits, so the last
// multiply rounds subnormal results correctly and overflows to +inf on its own. Inputs are clamped
// to [-104, 89] (e^-104 is below half the smallest subnormal, e^89 above FLT_MAX): -inf gives 0,
// +inf gives +inf; NaN is passed through.
inline __m256 exp8_ps(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);  // ln2 high part: 9 bits, n*hi exact
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);       // ln2 - high part
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);  // both in [-75, 65]
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    const __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// Rows of any length: full vectors, then the last n % 8 elements through a padded vector (the
// same function for every element, so a value does not depend on its position in the row).
template <typename F> inline void map_rows8(int64_t n, float* y, const float* x, const float* g, F f) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i), g ? _mm256_loadu_ps(g + i) : __m256{}));
    if (i == n) return;
    alignas(32) float tx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tg[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(tx, x + i, (size_t)(n - i) * sizeof(float));
    if (g) std::memcpy(tg, g + i, (size_t)(n - i) * sizeof(float));
    _mm256_store_ps(tx, f(_mm256_load_ps(tx), _mm256_load_ps(tg)));
    std::memcpy(y + i, tx, (size_t)(n - i) * sizeof(float));
}

// y = exp(x - mx), returns sum(y): 8 float lanes widened to 2 x 4 double lanes per step (a float
// sum of 10^5 terms would lose ~4 digits)
double vec_exp_sum_f32(int64_t n, float* y, const float* x, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    alignas(32) double l[4];
    _mm256_store_pd(l, _mm256_add_pd(s0, s1));
    double sum = (l[0] + l[1]) + (l[2] + l[3]);
    if (i < n) {
        map_rows8(n - i, y + i, x + i, nullptr, [&](__m256 v, __m256) { return exp8_ps(_mm256_sub_ps(v, vm)); });
        for (; i < n; ++i) sum += y[i];
    }
    return sum;
}

// silu(x) [* g] = x / (1 + e^-x) [* g]; for x < -89, e^-x = inf and the quotient is -0
void vec_silu_f32(int64_t n, float* y, const float* x, const float* g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const auto silu = [&](__m256 v) {
        return _mm256_div_ps(v, _mm256_add_ps(one, exp8_ps(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    };
    if (g) map_rows8(n, y, x, g, [&](__m256 v, __m256 w) { return _mm256_mul_ps(silu(v), w); });
    else map_rows8(n, y, x, nullptr, [&](__m256 v, __m256) { return silu(v); });
}

// gelu(x) = 0.5 x (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3); 1 + tanh(z) = 2 / (1 + e^-2z),
// so gelu(x) = x / (1 + e^-2z): one exp and one divide, and no cancellation for negative x
void vec_gelu_f32(int64_t n, float* y, const float* x) {
    const __m256 one = _mm256_set1_ps(1.0f), k = _mm256_set1_ps(-2.0f * 0.7978845608028654f);
    const __m256 c3 = _mm256_set1_ps(0.044715f);
    map_rows8(n, y, x, nullptr, [&](__m256 v, __m256) {
        const __m256 z = _mm256_add_ps(v, _mm256_mul_ps(c3, _mm256_mul_ps(v, _mm256_mul_ps(v, v))));
        return _mm256_div_ps(v, _mm256_add_ps(one, exp8_ps(_mm256_mul_ps(k, z))));
    });
}
