// x86 row conversions (part of x86_impl.h, included by it inside ggmlpy::{anonymous}): f32 rows
// to Q8_0 / Q8_K / F16 / BF16 and F16 to f32, 256-bit, giving the same bytes as the scalar
// reference (quantize_row_q8_0_ref / _q8_K_ref, fp32_to_fp16, fp32_to_bf16, fp16_to_fp32)
// including ties, NaN, inf and subnormals. Not a standalone header.
#pragma once

// ---- from_float: activation rows to Q8_0 / Q8_K / F16 / BF16 (bytes equal the reference) -------

// std::round (half away from zero) for every float: trunc, then +-1 where |frac| >= 0.5
inline __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 absf = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 ge = _mm256_cmp_ps(absf, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(ge, _mm256_or_ps(sign, _mm256_set1_ps(1.0f))));
}
// 4 x 8 int32 -> 32 int8 in order (saturating)
inline __m256i pack_i32_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// quantize_row_q8_0_ref: d = amax/127 (fmax ignores NaN), q = round(x/d) clamped to +-127, NaN -> 0
void from_float_q8_0(const float* x, void* vy, int64_t n) {
    block_q8_0* y = (block_q8_0*)vy;
    const __m256 absmask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; ++b, x += 32) {
        __m256 v[4];
        __m256 am = _mm256_setzero_ps();
        for (int k = 0; k < 4; ++k) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            am = _mm256_max_ps(_mm256_andnot_ps(absmask, v[k]), am);  // NaN lanes keep am
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            const __m256 t = _mm256_mul_ps(v[k], vid);
            __m256 r = round_away(t);
            r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.f)), _mm256_set1_ps(127.f));
            r = _mm256_andnot_ps(_mm256_cmp_ps(t, t, _CMP_UNORD_Q), r);
            q[k] = _mm256_cvttps_epi32(r);
        }
        _mm256_storeu_si256((__m256i*)y[b].qs, pack_i32_i8(q[0], q[1], q[2], q[3]));
    }
}

// quantize_row_q8_K_ref: max = first element of largest |x|; iscale = -127/max;
// q = nearest_int(iscale*x) (round half even) clamped to [-128, 127]; d = 1/iscale; bsums per 16
void from_float_q8_K(const float* x, void* vy, int64_t n) {
    block_q8_K* y = (block_q8_K*)vy;
    const __m256 absmask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        __m256 am = _mm256_setzero_ps();
        for (int k = 0; k < 32; ++k) am = _mm256_max_ps(_mm256_andnot_ps(absmask, _mm256_loadu_ps(x + 8 * k)), am);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (!amax) {
            std::memset(&y[b], 0, sizeof(block_q8_K));
            continue;
        }
        float max = 0.0f;
        const __m256 vam = _mm256_set1_ps(amax);
        for (int k = 0; k < 32; ++k) {
            const int mask = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(absmask, _mm256_loadu_ps(x + 8 * k)), vam, _CMP_EQ_OQ));
            if (mask) {
                max = x[8 * k + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 vis = _mm256_set1_ps(iscale);
        for (int k = 0; k < 8; ++k) {
            __m256i q[4];
            for (int j = 0; j < 4; ++j) {
                const __m256 t = _mm256_mul_ps(vis, _mm256_loadu_ps(x + 32 * k + 8 * j));
                const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(t, t, _CMP_UNORD_Q));
                q[j] = _mm256_andnot_si256(nan, _mm256_cvtps_epi32(t));  // round half even
            }
            _mm256_storeu_si256((__m256i*)(y[b].qs + 32 * k), pack_i32_i8(q[0], q[1], q[2], q[3]));
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += y[b].qs[16 * j + l];
            y[b].bsums[j] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

// fp32 -> fp16, round to nearest even (F16C); NaN -> sign | 0x7e00 like fp32_to_fp16
inline __m128i f32_to_f16_8(__m256 v) {
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i nm = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m128i nm16 = _mm_packs_epi32(_mm256_castsi256_si128(nm), _mm256_extracti128_si256(nm, 1));
    const __m128i fixed = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16((short)0x8000)), _mm_set1_epi16(0x7e00));
    return _mm_blendv_epi8(h, fixed, nm16);
}
void fp32_to_fp16_row(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i*)(y + i), f32_to_f16_8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        alignas(16) uint16_t o[8];
        for (int64_t j = i; j < n; ++j) t[j - i] = x[j];
        _mm_store_si128((__m128i*)o, f32_to_f16_8(_mm256_load_ps(t)));
        for (int64_t j = i; j < n; ++j) y[j] = o[j - i];
    }
}
// fp16 -> fp32 exact (F16C); NaN payloads kept without setting the quiet bit, like fp16_to_fp32
inline __m256 f16_to_f32_8(__m128i h) {
    const __m256 f = _mm256_cvtph_ps(h);
    const __m256i w = _mm256_cvtepu16_epi32(h);
    const __m256i e = _mm256_and_si256(w, _mm256_set1_epi32(0x7c00));
    const __m256i mant = _mm256_and_si256(w, _mm256_set1_epi32(0x3ff));
    const __m256i isnan = _mm256_andnot_si256(_mm256_cmpeq_epi32(mant, _mm256_setzero_si256()),
                                              _mm256_cmpeq_epi32(e, _mm256_set1_epi32(0x7c00)));
    const __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16),
                        _mm256_set1_epi32(0x7f800000)),
        _mm256_slli_epi32(mant, 13));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(isnan));
}
void fp16_to_fp32_row(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f16_to_f32_8(_mm_loadu_si128((const __m128i*)(x + i))));
    if (i < n) {
        alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        alignas(32) float o[8];
        for (int64_t j = i; j < n; ++j) t[j - i] = x[j];
        _mm256_store_ps(o, f16_to_f32_8(_mm_load_si128((const __m128i*)t)));
        for (int64_t j = i; j < n; ++j) y[j] = o[j - i];
    }
}
void from_float_f16(const float* x, void* y, int64_t n) { fp32_to_fp16_row(x, (uint16_t*)y, n); }

// fp32 -> bf16 round to nearest even; NaN -> (bits >> 16) | 0x40 (integer ops, like fp32_to_bf16)
inline __m128i f32_to_bf16_8(__m256 v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    const __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)),
                                             _mm256_set1_epi32(0x7f800000));
    const __m256i o = _mm256_blendv_epi8(r, q, isnan);
    const __m256i p = _mm256_packus_epi32(o, o);  // values < 65536: exact
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}
void from_float_bf16(const float* vx, void* vy, int64_t n) {
    uint16_t* y = (uint16_t*)vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i*)(y + i), f32_to_bf16_8(_mm256_loadu_ps(vx + i)));
    if (i < n) {
        alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        alignas(16) uint16_t o[8];
        for (int64_t j = i; j < n; ++j) t[j - i] = vx[j];
        _mm_store_si128((__m128i*)o, f32_to_bf16_8(_mm256_load_ps(t)));
        for (int64_t j = i; j < n; ++j) y[j] = o[j - i];
    }
}

