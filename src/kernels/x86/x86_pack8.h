// Prefill and batched-decode tiles of the 32-block types on packed activation panels (kernels.h,
// q8_0_pack8, gemm_pack): one weight row against up to 8 activation rows, vec_dot's exact bits.
// Included by x86_impl.h (same namespace; it has the block traits and helpers).
//
// Per group of 8 blocks b..b+7 the weight row is unpacked once into w[0..7], lane j (32 bits) of
// w[i] = quants 4i..4i+3 of block b+j, the order the panel holds each activation row's quants in.
// A row's 8 exact block dots are then group_udot / group_sdot (the TU's primitive: 8 multiply-adds
// summed vertically, lane j = block b+j), and the block products P_b follow scalar.cpp's formula.
// The 8 rows' P vectors go through one tree8_lanes per group (lane c = row c's tree8), the group
// sums are added in order, then the blocks past the last full group in block order: the
// kutil::tree8 order of the reference.
#pragma once

// The helpers below must inline into the tile: called out of line, the vectors they fill go
// through memory (GCC at -O2 left unpack_group out of line, 5% of a batched decode step).
#define PACK8_INLINE inline __attribute__((always_inline))

// 4x4 transpose of 32-bit lanes inside each 128-bit half: per half, lane j of t[i] = lane i of a[j]
PACK8_INLINE void transpose4_epi32(const __m256i* a, __m256i* t) {
    const __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    t[0] = _mm256_unpacklo_epi64(t0, t2);
    t[1] = _mm256_unpackhi_epi64(t0, t2);
    t[2] = _mm256_unpacklo_epi64(t1, t3);
    t[3] = _mm256_unpackhi_epi64(t1, t3);
}

// [16 bytes at p | 16 bytes at q]
PACK8_INLINE __m256i load_pair16(const void* p, const void* q) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)p)),
                                   _mm_loadu_si128((const __m128i*)q), 1);
}

// Weight group -> w[i], lane j = quants 4i..4i+3 of block x[j] (u8 for Sym / Affine, raw int8
// for S8). The 4-bit types: t[i] (the transposed packed bytes) lane j = bytes 4i..4i+3 of block
// j's 16, whose low nibbles are quants 4i.. and high nibbles quants 16+4i..; the 5-bit types add
// bit 4 from qh (byte i/2 of block j's qh holds the bits of quants 4i..4i+3).
template <typename T>
PACK8_INLINE void unpack_group(const typename T::B* x, __m256i* w) {
    if constexpr (T::kind == Kind32::S8) {
        __m256i a[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) a[k] = load_pair16(x[k].qs, x[k + 4].qs);
        transpose4_epi32(a, w);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) a[k] = load_pair16(x[k].qs + 16, x[k + 4].qs + 16);
        transpose4_epi32(a, w + 4);
    } else {
        __m256i a[4], t[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) a[k] = load_pair16(x[k].qs, x[k + 4].qs);
        transpose4_epi32(a, t);
        const __m256i m4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            w[i] = _mm256_and_si256(t[i], m4);
            w[i + 4] = _mm256_and_si256(_mm256_srli_epi16(t[i], 4), m4);
        }
        if constexpr (T::qmax > 15) {  // Q5_0 / Q5_1
            const auto qh = [&](int j) { int32_t v; std::memcpy(&v, x[j].qh, 4); return v; };
            const __m256i h = _mm256_setr_epi32(qh(0), qh(1), qh(2), qh(3), qh(4), qh(5), qh(6), qh(7));
            const __m256i lane_base = _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404,
                                                        0x08080808, 0x0C0C0C0C);
            const __m256i all = _mm256_set1_epi64x(-1), b4 = _mm256_set1_epi8(0x10);
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) {
                // byte t of each lane <- qh byte i/2; keep bit 4*(i%2)+t: OR in every other bit, test all set
                const __m256i sel = _mm256_add_epi32(lane_base, _mm256_set1_epi32(0x01010101 * (i >> 1)));
                const __m256i other = _mm256_set1_epi32((int)~(0x08040201u << (4 * (i & 1))));
                const __m256i hb = _mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(h, sel), other), all);
                w[i] = _mm256_or_si256(w[i], _mm256_and_si256(hb, b4));
            }
        }
    }
}

template <typename T>
struct GemmPack32 {
    using B = typename T::B;

    // Block products of one activation row (its 320 panel bytes at pr) against the unpacked group:
    // lane j = P(block b+j). w: u8 quants (Sym / Affine) or group_sprep'd (S8, raw in wr).
    PACK8_INLINE static __m256 row_products(const __m256i* w, const __m256i* wr, const char* pr, __m256 vdx, __m256 vmx) {
        const __m256 dy = _mm256_loadu_ps((const float*)pr);
        const __m256i sy = _mm256_loadu_si256((const __m256i*)(pr + 32));
        const int8_t* yq = (const int8_t*)(pr + 64);
        if constexpr (T::kind == Kind32::S8) {
            return _mm256_mul_ps(_mm256_cvtepi32_ps(group_sdot(w, wr, yq, sy)), _mm256_mul_ps(vdx, dy));
        } else if constexpr (T::kind == Kind32::Sym) {
            const __m256i idot = _mm256_sub_epi32(group_udot<T::qmax>(w, yq), _mm256_slli_epi32(sy, T::off_shift));
            return _mm256_mul_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(vdx, dy));
        } else {
            return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(group_udot<T::qmax>(w, yq)), _mm256_mul_ps(vdx, dy)),
                                 _mm256_mul_ps(_mm256_cvtepi32_ps(sy), _mm256_mul_ps(vmx, dy)));
        }
    }

    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t, const char* panel, size_t) {
        static_assert(RX == 1 && RY >= 1 && RY <= 8, "one weight row, up to 8 activation rows");
        const B* xr = (const B*)x;
        const int64_t nb = n / 32, nfull = nb / 8 * 8;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nfull; b += 8) {
            const char* pg = panel + b * 320;
            __m256i w[8], wr[8];  // S8: wr the raw quants, w group_sprep's; else w only
            if constexpr (T::kind == Kind32::S8) {
                unpack_group<T>(xr + b, wr);
#pragma GCC unroll 8
                for (int i = 0; i < 8; ++i) w[i] = group_sprep(wr[i]);
            } else {
                unpack_group<T>(xr + b, w);
            }
            const __m256 vdx = load_h8_gpr((const uint8_t*)&xr[b].d, sizeof(B));
            __m256 vmx = _mm256_setzero_ps();
            if constexpr (T::kind == Kind32::Affine) vmx = load_h8_gpr((const uint8_t*)&xr[b].m, sizeof(B));
            __m256 P[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c)
                P[c] = c < RY ? row_products(w, wr, pg + 320 * c, vdx, vmx) : _mm256_setzero_ps();
            acc = _mm256_add_ps(acc, tree8_lanes(P));
        }
        for (int64_t b = nfull; b < nb; ++b) {  // lane c = row c: scalar.cpp's P_b for each row
            const char* pt = panel + b * 320;
            const __m256 dyv = _mm256_loadu_ps((const float*)pt);
            const __m256i syv = _mm256_loadu_si256((const __m256i*)(pt + 32));
            const __m256i xq = T::q(xr[b]);
            __m256i d[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) {
                const __m256i yb = load256(pt + 64 + 32 * c);
                d[c] = c >= RY ? _mm256_setzero_si256() : T::kind == Kind32::S8 ? dot32_once<T>(xq, yb) : mul_sum_us8(xq, yb);
            }
            __m256i idot = reduce8_i32(d);  // lane c = row c's exact dot
            if constexpr (T::kind == Kind32::Sym) idot = _mm256_sub_epi32(idot, _mm256_slli_epi32(syv, T::off_shift));
            __m256 P = _mm256_mul_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(_mm256_set1_ps(h2f(xr[b].d)), dyv));
            if constexpr (T::kind == Kind32::Affine)
                P = _mm256_add_ps(P, _mm256_mul_ps(_mm256_cvtepi32_ps(syv), _mm256_mul_ps(_mm256_set1_ps(mval<T>(xr[b])), dyv)));
            acc = _mm256_add_ps(acc, P);
        }
        alignas(32) float out[8];
        _mm256_store_ps(out, acc);
        for (int c = 0; c < RY; ++c) s[c * bs] = out[c];
    }
};
