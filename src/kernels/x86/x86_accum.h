// x86 attention P.V rows (part of x86_impl.h, included by it inside ggmlpy::{anonymous}): the
// AccumFn of F32, F16, Q8_0 and Q4_0 (kernels.h), 256-bit, with the scalar table's exact bits: the
// same mul then add per row, rows in order. Two 32-element blocks (8 vectors) of y stay in
// registers while every row passes, so a head of 64 dims is one pass over the rows.
// Not a standalone header.
#pragma once

// 8 int8 -> 8 f32
inline __m256 i8x8_to_ps(const int8_t* q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)q)));
}

// A block's 32 quants as 4 x 8 floats, element order.
struct AccQ8_0 {
    using B = block_q8_0;
    static void load(const B& b, __m256* v) {
        for (int k = 0; k < 4; ++k) v[k] = i8x8_to_ps(b.qs + 8 * k);
    }
};
struct AccQ4_0 {
    using B = block_q4_0;
    static void load(const B& b, __m256* v) {  // q[j] = low nibble of qs[j] - 8, q[j+16] = high - 8
        const __m128i raw = _mm_loadu_si128((const __m128i*)b.qs), m = _mm_set1_epi8(0x0F), e = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m), e);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m), e);
        v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)));
        v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)));
    }
};

template <typename A>
void accum_sym32(int64_t n, float* y, const void* x, size_t bx, int64_t nrx, const float* w) {
    using B = typename A::B;
    const int64_t nb = n / 32;
    for (int64_t b0 = 0; b0 < nb; b0 += 2) {
        const int nblk = nb - b0 >= 2 ? 2 : 1;
        __m256 acc[8];
        for (int k = 0; k < 4 * nblk; ++k) acc[k] = _mm256_loadu_ps(y + 32 * b0 + 8 * k);
        for (int64_t r = 0; r < nrx; ++r) {
            const B* xr = (const B*)((const char*)x + r * bx) + b0;
            for (int j = 0; j < nblk; ++j) {
                const __m256 c = _mm256_set1_ps(w[r] * h2f(xr[j].d));
                __m256 q[4];
                A::load(xr[j], q);
                for (int k = 0; k < 4; ++k) acc[4 * j + k] = _mm256_add_ps(acc[4 * j + k], _mm256_mul_ps(c, q[k]));
            }
        }
        for (int k = 0; k < 4 * nblk; ++k) _mm256_storeu_ps(y + 32 * b0 + 8 * k, acc[k]);
    }
}

// Float rows: 8 elements per vector, tails in scalar code with the same formula.
template <bool F16>
void accum_float(int64_t n, float* y, const void* x, size_t bx, int64_t nrx, const float* w) {
    const auto row = [&](int64_t r) { return (const char*)x + r * bx; };
    int64_t i0 = 0;
    for (; i0 + 32 <= n; i0 += 32) {
        __m256 acc[4];
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_loadu_ps(y + i0 + 8 * k);
        for (int64_t r = 0; r < nrx; ++r) {
            const __m256 c = _mm256_set1_ps(w[r]);
            for (int k = 0; k < 4; ++k) {
                const __m256 v = F16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)row(r) + i0 + 8 * k)))
                                     : _mm256_loadu_ps((const float*)row(r) + i0 + 8 * k);
                acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(c, v));
            }
        }
        for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + i0 + 8 * k, acc[k]);
    }
    for (int64_t r = 0; r < nrx && i0 < n; ++r)
        for (int64_t i = i0; i < n; ++i) {
            const float v = F16 ? h2f(((const uint16_t*)row(r))[i]) : ((const float*)row(r))[i];
            y[i] += w[r] * v;
        }
}
