// x86 K-quant kernels (part of x86_impl.h, included by it inside ggmlpy::{anonymous}, after the
// small helpers): Q2_K..Q6_K weights against Q8_K activations, vec_dot and gemm tiles, 256-bit,
// with the including TU's integer primitives. Exact: the scalar table's integer super-block sums
// and its float combination per super-block, in block order. Not a standalone header.
#pragma once
// ---- K-quants (super-blocks of 256) against Q8_K ----------------------------------------------
// A weight super-block is read as 8 chunks of 32 unsigned quants (chunk k = elements 32k..32k+31,
// T::chunk), plus KSc: 16 int8 scales (one per 16 elements; Q4_K/Q5_K repeat each per-32 scale),
// and either 16 int16 mins (Q2_K/Q4_K/Q5_K: dot subtracts dm * sum(m * bsums)) or an offset
// T::off (Q3_K: 4, Q6_K: 32; q_signed = q - off, subtracted in int16 inside the dot).
struct KSc {
    __m128i sc8;
    __m256i mins;
    float d, dm;
};

// The 16 int16 scales as two vectors (scales 0..7 / 8..15, repeated in both 128-bit lanes), so
// each chunk's scales are one in-lane byte shuffle instead of a shuffle plus a widening.
struct KScales16 {
    __m256i lo, hi;
};
inline KScales16 widen_scales(__m128i sc8) {
    return {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
            _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_unpackhi_epi64(sc8, sc8)))};
}
// int16 scales of chunk k: lanes 0..7 sub-block 2k, lanes 8..15 sub-block 2k+1
inline __m256i scale_chunk16(const KScales16& s, int k) {
    const char a = (char)(4 * k & 15), c = (char)((4 * k + 2) & 15);  // byte offsets of words 2k, 2k+1 (mod 8)
    const __m256i m = _mm256_setr_epi8(a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1,
                                       c, c + 1, c, c + 1, c, c + 1, c, c + 1, c, c + 1, c, c + 1, c, c + 1, c, c + 1);
    return _mm256_shuffle_epi8(k < 4 ? s.lo : s.hi, m);
}
inline __m256i low_bits(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8((char)mask));
}
// Each byte's bits from.. moved to to.. and masked (mask: the bits at to..): one shift of the
// 16-bit lanes, one and. A shift right by s carries the upper byte's bits into bits >= 8 - s of the
// lower byte, a shift left its bits into bits < s of the upper byte: outside the mask whenever
// the field fits in a byte at both places. (One op fewer than low_bits, then a shift into place.)
inline __m256i move_bits(__m256i v, int from, int to, int mask) {
    const __m256i sh = from >= to ? _mm256_srli_epi16(v, from - to) : _mm256_slli_epi16(v, to - from);
    return _mm256_and_si256(sh, _mm256_set1_epi8((char)mask));
}

struct TQ2_K {
    using B = block_q2_K;
    static constexpr int off = 0;  // has mins
    // e = 128h + 32j + l: (qs[32h + l] >> 2j) & 3
    static __m256i chunk(const B& b, int k) { return low_bits(load256(b.qs + 32 * (k >> 2)), 2 * (k & 3), 3); }
    static void scales(const B& b, KSc& o) {
        const __m128i sc = _mm_loadu_si128((const __m128i*)b.scales);
        o.sc8 = _mm_and_si128(sc, _mm_set1_epi8(0x0F));
        o.mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F)));
        o.d = h2f(b.d);
        o.dm = h2f(b.dmin);
    }
};
struct TQ3_K {
    using B = block_q3_K;
    static constexpr int off = 4;
    // e = 128h + 32j + l: ((qs[32h + l] >> 2j) & 3) + 4 * (hmask[l] bit 4h+j)
    static __m256i chunk(const B& b, int k) {
        const __m256i hb = move_bits(load256(b.hmask), k, 2, 4);
        return _mm256_or_si256(low_bits(load256(b.qs + 32 * (k >> 2)), 2 * (k & 3), 3), hb);
    }
    static void scales(const B& b, KSc& o) {
        // 16 signed 6-bit scales: low nibbles from bytes 0..7, high 2 bits from bytes 8..11
        uint32_t a[3];
        std::memcpy(a, b.scales, 12);
        const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
        const uint32_t u0 = (a[0] & m4) | (((a[2] >> 0) & m2) << 4);
        const uint32_t u1 = (a[1] & m4) | (((a[2] >> 2) & m2) << 4);
        const uint32_t u2 = ((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4);
        const uint32_t u3 = ((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4);
        o.sc8 = _mm_sub_epi8(_mm_setr_epi32((int)u0, (int)u1, (int)u2, (int)u3), _mm_set1_epi8(32));
        o.mins = _mm256_setzero_si256();
        o.d = h2f(b.d);
        o.dm = 0.0f;
    }
};
// Q4_K / Q5_K: 8 6-bit scales and 8 6-bit mins in 12 bytes s[0..11] -> bytes [sc0..7, m0..7]
// (sc j<4 = s[j] & 63, m j<4 = s[j+4] & 63; j>=4: low 4 bits from s[j+4] (sc: low, m: high
// nibble), top 2 bits from the top of s[j-4] (sc) / s[j] (m)), then each repeated twice (per 16
// elements). All in one vector: reads 16 bytes from s (the block's quants follow the 12).
inline void q4k_scales(const uint8_t* s, KSc& o) {
    const __m128i v = _mm_loadu_si128((const __m128i*)s);
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i lo4 = _mm_blend_epi32(a, _mm_srli_epi16(a, 4), 0x8);  // m4..7: the high nibbles
    const __m128i low = _mm_and_si128(lo4, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
    const __m128i top = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i scm = _mm_or_si128(low, _mm_and_si128(_mm_srli_epi16(top, 2), _mm_set1_epi8(0x30)));
    o.sc8 = _mm_shuffle_epi8(scm, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
    o.mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
}
// Q4_K and Q5_K share the scale layout and the d / dmin fields
template <typename B> inline void q45k_scales(const B& b, KSc& o) {
    q4k_scales(b.scales, o);
    o.d = h2f(b.d);
    o.dm = h2f(b.dmin);
}
struct TQ4_K {
    using B = block_q4_K;
    static constexpr int off = 0;
    // e = 64p + 32k + l: nibble k of qs[32p + l]
    static __m256i chunk(const B& b, int k) { return low_bits(load256(b.qs + 32 * (k >> 1)), 4 * (k & 1), 0x0F); }
    static void scales(const B& b, KSc& o) { q45k_scales(b, o); }
};
struct TQ5_K {
    using B = block_q5_K;
    static constexpr int off = 0;
    // as Q4_K plus 16 * (qh[l] bit k)
    static __m256i chunk(const B& b, int k) {
        const __m256i hb = move_bits(load256(b.qh), k, 4, 0x10);
        return _mm256_or_si256(low_bits(load256(b.qs + 32 * (k >> 1)), 4 * (k & 1), 0x0F), hb);
    }
    static void scales(const B& b, KSc& o) { q45k_scales(b, o); }
};
struct TQ6_K {
    using B = block_q6_K;
    static constexpr int off = 32;
    // e = 128h + 32j + l: nibble (j >> 1) of ql[64h + 32(j & 1) + l] | ((qh[32h + l] >> 2j) & 3) << 4
    static __m256i chunk(const B& b, int k) {
        const int h = k >> 2, j = k & 3;
        const __m256i lo = low_bits(load256(b.ql + 64 * h + 32 * (j & 1)), 4 * (j >> 1), 0x0F);
        const __m256i hi = _mm256_slli_epi16(low_bits(load256(b.qh + 32 * h), 2 * j, 3), 4);
        return _mm256_or_si256(lo, hi);
    }
    static void scales(const B& b, KSc& o) {
        o.sc8 = _mm_loadu_si128((const __m128i*)b.scales);
        o.mins = _mm256_setzero_si256();
        o.d = h2f(b.d);
        o.dm = 0.0f;
    }
};

// One chunk of 32: i32 lanes += sum over its two sub-blocks of sc * sum(q * y) (q unsigned; the
// offset of Q3_K / Q6_K is taken out per super-block, see ksb_sums). maddubs pairs stay below
// 2*63*128 (no saturation).
inline __m256i kchunk(__m256i acc, __m256i q, __m256i yq, __m256i sc16) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, yq), sc16));
}
// scalar.cpp's float combination of one super-block (mins types / offset types)
template <typename T> inline float kcombine(float d, float dm, float dy, int32_t isum, int32_t msum) {
    if constexpr (T::off == 0) return dy * (d * (float)isum - dm * (float)msum);
    else return (d * dy) * (float)isum;
}
template <typename T> inline __m256 kcombine_v(__m256 d, __m256 dm, __m256 dy, __m256i isum, __m256i msum) {
    if constexpr (T::off == 0)
        return _mm256_mul_ps(dy, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)),
                                               _mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum))));
    else return _mm256_mul_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(isum));
}

// One super-block's exact integer sums: i32 lanes of sum(sc * (q - off) * y) (acc) and of
// sum(m * bsums) (ms; zero for the offset types); sc gets its scales. The offset comes out through
// the activation's block sums, as in GemmK: sum sc*(q - off)*y = sum sc*q*y - off * sum sc*bsums.
template <typename T>
inline void ksb_sums(const typename T::B& xb, const block_q8_K& yb, KSc& sc, __m256i* acc, __m256i* ms) {
    prefetch_ahead(&xb, sizeof(xb));
    T::scales(xb, sc);
    const KScales16 s16 = widen_scales(sc.sc8);
    __m256i a = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) a = kchunk(a, T::chunk(xb, k), load256(yb.qs + 32 * k), scale_chunk16(s16, k));
    if constexpr (T::off != 0) {
        static_assert(T::off == 4 || T::off == 32, "off is a shift");
        const __m256i osum = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc.sc8), load256(yb.bsums));
        a = _mm256_sub_epi32(a, _mm256_slli_epi32(osum, T::off == 4 ? 2 : 5));
    }
    *acc = a;
    *ms = T::off == 0 ? _mm256_madd_epi16(sc.mins, load256(yb.bsums)) : _mm256_setzero_si256();
}

// Per super-block, the reference's float combination, added in block order. 8 super-blocks per
// step: their sums reduced to one vector (lane = super-block) and combined as vectors; a
// horizontal sum and a scalar combination per super-block had cost as much as its 8 chunks.
// R weight rows x[r] against one activation row, *s[r] = their dots: R = 1 is vec_dot; R = 2
// reads two rows in lockstep, a super-block of each in turn (decode_pairs), each with R = 1's ops.
template <typename T>
struct DotK {
    template <int R>
    static void rows(int64_t n, float* const* s, const char* const* vx, const void* vy) {
        using B = typename T::B;
        const block_q8_K* y = (const block_q8_K*)vy;
        const int64_t nsb = n / QK_K;
        float sumf[R];
        for (int r = 0; r < R; ++r) sumf[r] = 0.0f;
        int64_t b = 0;
        for (; b + 8 <= nsb; b += 8) {
            __m256i acc[R][8], ms[R][8];
            for (int j = 0; j < 8; ++j)
#pragma GCC unroll 2
                for (int r = 0; r < R; ++r) {
                    KSc sc;  // its d, dm unused: read below for all 8 at once
                    ksb_sums<T>(((const B*)vx[r])[b + j], y[b + j], sc, &acc[r][j], &ms[r][j]);
                }
            const auto dy = [&](int j) { return y[b + j].d; };
            const __m256 vdy = _mm256_setr_ps(dy(0), dy(1), dy(2), dy(3), dy(4), dy(5), dy(6), dy(7));
            for (int r = 0; r < R; ++r) {
                const B* x = (const B*)vx[r];
                const __m256 vd = load_h8((const uint8_t*)&x[b].d, sizeof(B));
                __m256 vdm = _mm256_setzero_ps();
                if constexpr (T::off == 0) vdm = load_h8((const uint8_t*)&x[b].dmin, sizeof(B));
                alignas(32) float p[8];
                _mm256_store_ps(p, kcombine_v<T>(vd, vdm, vdy, reduce8_i32(acc[r]), reduce8_i32(ms[r])));
                for (int j = 0; j < 8; ++j) sumf[r] += p[j];
            }
        }
        for (; b < nsb; ++b)
            for (int r = 0; r < R; ++r) {
                const B& xb = ((const B*)vx[r])[b];
                KSc sc;
                __m256i acc, ms;
                ksb_sums<T>(xb, y[b], sc, &acc, &ms);
                sumf[r] += kcombine<T>(sc.d, sc.dm, y[b].d, hsum_i32(acc), hsum_i32(ms));
            }
        for (int r = 0; r < R; ++r) *s[r] = sumf[r];
    }
};
template <typename T>
void vec_dot_K(int64_t n, float* s, const void* vx, const void* vy) {
    const char* x = (const char*)vx;
    DotK<T>::template rows<1>(n, &s, &x, vy);
}

// Tile of one weight row x up to 8 activation rows (lane c of the vectors = activation row c).
// Per super-block, each chunk of weight quants is unpacked once and multiplied into the 8 rows'
// i32 accumulators: maddubs, madd with the chunk's scales, add (3 ops per row and chunk). The
// offset of Q3_K / Q6_K is taken out through the activation's bsums instead of per chunk:
//   sum_j sc_j * sum((q - off) * y) = sum_j sc_j * sum(q * y) - off * sum_j sc_j * bsums_j
// (exact integers either way; maddubs pairs stay <= 2*63*128). The 8 rows' sums are reduced to
// one vector each (lane = row) and combined as the reference does, added in block order.
template <typename T>
struct GemmK {
    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* y, size_t by) {
        static_assert(RX == 1 && RY >= 1 && RY <= 8, "one weight row, up to 8 activation rows");
        using B = typename T::B;
        const B* xr = (const B*)x;
        const block_q8_K* yr[RY];
        for (int c = 0; c < RY; ++c) yr[c] = (const block_q8_K*)(y + c * by);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < n / QK_K; ++b) {
            const B& xb = xr[b];
            KSc sc;
            T::scales(xb, sc);
            const KScales16 s16 = widen_scales(sc.sc8);
            // the super-block's 8 chunks and their scales, unpacked once (L1), then per row
            alignas(32) __m256i xq[8], sk[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k) {
                xq[k] = T::chunk(xb, k);
                sk[k] = scale_chunk16(s16, k);
            }
            __m256i is[8], ms[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) {
                is[c] = ms[c] = _mm256_setzero_si256();
                if (c >= RY) continue;
                __m256i a = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int k = 0; k < 8; ++k)
                    a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(xq[k], load256(yr[c][b].qs + 32 * k)), sk[k]));
                is[c] = a;
            }
            // mins types: sum(m * bsums); offset types: sum(sc * bsums), times off below
            const __m256i w16 = T::off == 0 ? sc.mins : _mm256_cvtepi8_epi16(sc.sc8);
            for (int c = 0; c < RY; ++c) ms[c] = _mm256_madd_epi16(w16, load256(yr[c][b].bsums));
            __m256i isum = reduce8_i32(is);
            const __m256i msum = reduce8_i32(ms);
            if constexpr (T::off != 0) {
                static_assert(T::off == 4 || T::off == 32, "off is a shift");
                isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(msum, T::off == 4 ? 2 : 5));
            }
            alignas(32) float dy[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int c = 0; c < RY; ++c) dy[c] = yr[c][b].d;
            acc = _mm256_add_ps(acc, kcombine_v<T>(_mm256_set1_ps(sc.d), _mm256_set1_ps(sc.dm), _mm256_load_ps(dy),
                                                   isum, msum));
        }
        alignas(32) float out[8];
        _mm256_store_ps(out, acc);
        for (int c = 0; c < RY; ++c) s[c * bs] = out[c];
    }
};
