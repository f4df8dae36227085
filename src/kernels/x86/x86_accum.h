// x86 attention kernels (part of x86_impl.h, included by it inside ggmlpy::{anonymous}); not a
// standalone header. Both give the scalar table's exact bits.
//  - AccumFn (P.V) of F32, F16, Q8_0 and Q4_0: 16 elements of up to 4 heads' y (8 vectors) stay in
//    registers while every row passes; each row's 16 values are converted once for those heads,
//    then one fused multiply-add per head and vector, as the scalar std::fma.
//  - attn_dot (K scores) of the 32-element types against Q8_0: 8 cached rows per step; their 8
//    exact block dots are reduced together (lane = row), so there is no per-row horizontal sum,
//    and each block's products (float)idot * (dx * dy) are summed in kutil::tree8 order as vec_dot.
#pragma once

// Cached rows are a cache row apart (every KV head's slice in between), a stride the hardware
// prefetchers did not follow: each row's first pass asks for the row kAttnAhead ahead (perf:
// SmolLM2 q8_0 decode at depth 2048 waited on the row loads).
constexpr int64_t kAttnAhead = 32;
template <typename B> constexpr size_t row_size_of(int64_t n) { return sizeof(B) * (size_t)(n / 32); }
inline void prefetch_row(const char* p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
    _mm_prefetch(p + bytes - 1, _MM_HINT_T0);
}

// ---- P.V --------------------------------------------------------------------------------------
// Half a block (16 elements, h = 0 or 1) as 2 x 8 floats, element order.
struct AccQ8_0 {
    using B = block_q8_0;
    static void load(const B& b, int h, __m256* v) {
        const __m128i q = _mm_loadu_si128((const __m128i*)(b.qs + 16 * h));
        v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(q, q)));
    }
};
struct AccQ4_0 {
    using B = block_q4_0;
    static void load(const B& b, int h, __m256* v) {  // elements 0..15: low nibbles - 8; 16..31: high - 8
        const __m128i raw = _mm_loadu_si128((const __m128i*)b.qs);
        const __m128i nib = _mm_and_si128(h ? _mm_srli_epi16(raw, 4) : raw, _mm_set1_epi8(0x0F));
        const __m128i q = _mm_sub_epi8(nib, _mm_set1_epi8(8));
        v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(q, q)));
    }
};

// NC heads (c0 .. c0+NC-1), 16 elements at e0: y_c[e0..e0+16) += sum_r (w_c[r] * d_r) * v_r, where
// load(r, v, d) gives row r's 16 values and scale (d = 1 for float rows: w * 1 is w exactly).
template <int NC, typename Load>
inline __attribute__((always_inline)) void accum16(float* y, size_t by, int c0, int64_t e0, int64_t nrx, const float* w,
                                                   size_t bw, Load load) {
    __m256 acc[NC][2];  // fully unrolled below, so it lives in registers
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
        acc[c][0] = _mm256_loadu_ps(y + (c0 + c) * by + e0);
        acc[c][1] = _mm256_loadu_ps(y + (c0 + c) * by + e0 + 8);
    }
    const float* wc = w + c0 * bw;
    for (int64_t r = 0; r < nrx; ++r) {
        __m256 v[2];
        float d;
        load(r, v, d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; ++c) {
            const __m256 coef = _mm256_set1_ps(wc[c * bw + r] * d);
            acc[c][0] = _mm256_fmadd_ps(coef, v[0], acc[c][0]);
            acc[c][1] = _mm256_fmadd_ps(coef, v[1], acc[c][1]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(y + (c0 + c) * by + e0, acc[c][0]);
        _mm256_storeu_ps(y + (c0 + c) * by + e0 + 8, acc[c][1]);
    }
}

// Every head in groups of up to 4, every 16 elements; tails (float rows only) in scalar std::fma.
template <typename Load>
inline void accum_heads(int64_t n16, float* y, size_t by, int ny, int64_t nrx, const float* w, size_t bw, Load load) {
    for (int c0 = 0; c0 < ny; c0 += 4)
        for (int64_t e0 = 0; e0 < n16; e0 += 16) {
            const auto ld = [&](int64_t r, __m256* v, float& d) { load(r, e0, v, d); };
            switch (ny - c0) {
                case 1: accum16<1>(y, by, c0, e0, nrx, w, bw, ld); break;
                case 2: accum16<2>(y, by, c0, e0, nrx, w, bw, ld); break;
                case 3: accum16<3>(y, by, c0, e0, nrx, w, bw, ld); break;
                default: accum16<4>(y, by, c0, e0, nrx, w, bw, ld); break;
            }
        }
}

template <typename A>
void accum_sym32(int64_t n, float* y, size_t by, int ny, const void* x, size_t bx, int64_t nrx, const float* w,
                 size_t bw) {
    using B = typename A::B;
    accum_heads(n, y, by, ny, nrx, w, bw, [&](int64_t r, int64_t e0, __m256* v, float& d) {
        const B& b = ((const B*)((const char*)x + r * bx))[e0 / 32];
        if (e0 == 0) prefetch_row((const char*)x + (r + kAttnAhead) * bx, row_size_of<B>(n));
        A::load(b, (int)(e0 / 16) & 1, v);
        d = h2f(b.d);
    });
}

template <bool F16>
void accum_float(int64_t n, float* y, size_t by, int ny, const void* x, size_t bx, int64_t nrx, const float* w,
                 size_t bw) {
    const auto row = [&](int64_t r) { return (const char*)x + r * bx; };
    const int64_t n16 = n / 16 * 16;
    accum_heads(n16, y, by, ny, nrx, w, bw, [&](int64_t r, int64_t e0, __m256* v, float& d) {
        for (int k = 0; k < 2; ++k)
            v[k] = F16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)row(r) + e0 + 8 * k)))
                       : _mm256_loadu_ps((const float*)row(r) + e0 + 8 * k);
        d = 1.0f;
    });
    for (int c = 0; c < ny; ++c)
        for (int64_t r = 0; r < nrx; ++r)
            for (int64_t k = n16; k < n; ++k) {
                const float xv = F16 ? h2f(((const uint16_t*)row(r))[k]) : ((const float*)row(r))[k];
                y[c * by + k] = std::fma(w[c * bw + r], xv, y[c * by + k]);
            }
}

// ---- K scores ---------------------------------------------------------------------------------
// GemmFn for T (Sym or S8 kind) against Q8_0 rows: s[c * bs + r] = vec_dot(x_r, y_c).
template <typename T>
void attn_dot_32(int64_t n, float* s, size_t bs, const void* vx, size_t bx, int nrx, const void* vy, size_t by, int nry) {
    static_assert(T::kind != Kind32::Affine, "the affine types' y-sum term is not here");
    using B = typename T::B;
    const int64_t nb = n / 32;
    for (int r0 = 0; r0 < nrx; r0 += 8) {
        const int nr = nrx - r0 < 8 ? nrx - r0 : 8;
        const B* xr[8];
        for (int k = 0; k < 8; ++k) xr[k] = (const B*)((const char*)vx + (size_t)(r0 + (k < nr ? k : nr - 1)) * bx);
        for (int k = 0; k < 8; ++k) prefetch_row((const char*)vx + (size_t)(r0 + kAttnAhead + k) * bx, sizeof(B) * (size_t)nb);
        // the 8 rows' block scales, once for every y row (heads share them)
        constexpr int64_t kMaxHeld = 16;
        __m256 dxs[kMaxHeld];
        const auto dx_of = [&](int64_t b) {
            return _mm256_setr_ps(h2f(xr[0][b].d), h2f(xr[1][b].d), h2f(xr[2][b].d), h2f(xr[3][b].d),
                                  h2f(xr[4][b].d), h2f(xr[5][b].d), h2f(xr[6][b].d), h2f(xr[7][b].d));
        };
        for (int64_t b = 0; b < nb && b < kMaxHeld; ++b) dxs[b] = dx_of(b);
        for (int c = 0; c < nry; ++c) {
            const block_q8_0* y = (const block_q8_0*)((const char*)vy + (size_t)c * by);
            // P_b for the 8 rows: (float)idot * (dx * dy), lane k = row k
            const auto P = [&](int64_t b) {
                const __m256i yq = load256(y[b].qs);
                __m256i d[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; ++k) d[k] = dot32_once<T>(T::q(xr[k][b]), yq);
                const __m256 dx = b < kMaxHeld ? dxs[b] : dx_of(b);
                return _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8_i32(d)), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y[b].d))));
            };
            __m256 sum = _mm256_setzero_ps();
            int64_t b = 0;
            for (; b + 8 <= nb; b += 8) {
                const __m256 t = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(P(b), P(b + 1)), _mm256_add_ps(P(b + 2), P(b + 3))),
                                               _mm256_add_ps(_mm256_add_ps(P(b + 4), P(b + 5)), _mm256_add_ps(P(b + 6), P(b + 7))));
                sum = _mm256_add_ps(sum, t);
            }
            for (; b < nb; ++b) sum = _mm256_add_ps(sum, P(b));
            float out[8];
            _mm256_storeu_ps(out, sum);
            std::memcpy(s + (size_t)c * bs + r0, out, sizeof(float) * (size_t)nr);
        }
    }
}
