// Shared x86 kernel bodies (256-bit vectors; K-quants in x86_kquants.h, row conversions in
// x86_convert.h, exp and the activation rows in x86_math.h, all included here), included by
// avx2.cpp and avx512.cpp: each TU first defines its integer primitives (below), then includes
// this file, so one body is compiled per ISA with that TU's flags. Everything here has internal
// linkage (anonymous namespace): no ODR mixing of AVX-512 code into the AVX2 build. Contract:
// every integer path returns the same bits as scalar.cpp (exact int32 dots, then the same float
// ops on the scales in the same order).
//
// The including TU provides, in namespace ggmlpy::{anonymous}:
//   __m256i mul_sum_us8(__m256i u, __m256i s);             // i32 lanes: sums of 4 u8*s8 (no overflow
//                                                          //   for u <= 63; AVX2 pairs saturate above)
//   __m256i mul_sum_us8_off(__m256i u, __m256i s, __m256i off);  // sum (u - off) * s, u, off <= 63
//   __m256i s8_prep_x(__m256i x);  __m256i s8_ycorr(__m256i y);
//   __m256i s8_dot(__m256i ycorr, __m256i xprep, __m256i y);  // sum of lanes = sum x*y, any int8
//   constexpr int kTileFX, kTileFY;  // float gemm tiles
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"
#include "quant/blocks.h"

// Same float semantics as scalar.cpp: a*b+c is two roundings (explicit _fmadd only where stated).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace ggmlpy {
namespace {

// ---- small helpers (own copies: shared inline helpers must not be compiled with these flags) ----
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

// lane i of the result = sum of the 8 lanes of v[i] (exact, int32)
inline __m256i reduce8_i32(const __m256i* v) {
    const __m256i a01 = _mm256_hadd_epi32(v[0], v[1]), a23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i a45 = _mm256_hadd_epi32(v[4], v[5]), a67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i b0 = _mm256_hadd_epi32(a01, a23), b1 = _mm256_hadd_epi32(a45, a67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20),
                            _mm256_permute2x128_si256(b0, b1, 0x31));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
// A load the compiler must keep in a register: GCC otherwise folds it into every instruction that
// uses the value and reads the same 32 bytes once per use (twice per block in the Sym dot).
inline __m256i load256_reg(const void* p) {
    __m256i v = load256(p);
    __asm__("" : "+x"(v));
    return v;
}

// Decode streams each weight row once from DRAM; the hardware prefetcher alone left the loads
// waiting (measured: compute and memory time added up instead of overlapping). So the kernels
// touch the lines kPrefetchBytes ahead of the bytes about to be used (past a row's end: the next
// row, the next thing read; a prefetch never faults). 2 KiB measured best of 1-4 KiB
// (bench_kernels, 256 MiB of q4_0 / q8_0 / q4_k, 2 threads).
constexpr int kPrefetchBytes = 2048;
inline void prefetch_ahead(const void* p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char*)p + kPrefetchBytes + o, _MM_HINT_T0);
}

// 16 packed bytes -> 32 nibbles: lanes 0..15 = low nibbles, 16..31 = high nibbles (element order
// of every 32-block type)
inline __m256i unpack_nibbles(const uint8_t* qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

// Two blocks' 16 packed bytes side by side, [a | c] -> lo = their low nibbles (elements 0..15 of
// each), hi = their high nibbles (elements 16..31)
inline void unpack_nibbles_pair(const uint8_t* qa, const uint8_t* qc, __m256i* lo, __m256i* hi) {
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)qa)),
                                              _mm_loadu_si128((const __m128i*)qc), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(q, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
}

// 32 bits (little-endian) -> 32 bytes, 0xFF where the bit is set
inline __m256i bytes_from_bits(const uint8_t* p) {
    uint32_t x;
    std::memcpy(&x, p, 4);
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                            0x0202020202020202, 0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

// unpack_nibbles_pair of two Q5_0 / Q5_1 blocks with bit 4 (from qh) put in: lo takes bits 0..15
// of each block's qh, hi bits 16..31. [a.qh x4 | c.qh x4], then per output byte a shuffle picks the
// qh byte holding its bit and a compare tests the bit.
template <typename B> inline void unpack_q5_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) {
    unpack_nibbles_pair(a.qs, c.qs, lo, hi);
    int32_t ha, hc;
    std::memcpy(&ha, a.qh, 4);
    std::memcpy(&hc, c.qh, 4);
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(ha)), _mm_set1_epi32(hc), 1);
    const __m256i bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe), all = _mm256_set1_epi64x(-1), b4 = _mm256_set1_epi8(0x10);
    const __m256i sl = _mm256_setr_epi64x(0, 0x0101010101010101, 0, 0x0101010101010101);
    const __m256i sh = _mm256_setr_epi64x(0x0202020202020202, 0x0303030303030303, 0x0202020202020202, 0x0303030303030303);
    const auto bits = [&](__m256i sel) {
        return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(h, sel), bit), all), b4);
    };
    *lo = _mm256_or_si256(*lo, bits(sl));
    *hi = _mm256_or_si256(*hi, bits(sh));
}

// ---- 32-element block types against Q8_0 ----------------------------------------------------
// Each trait gives the weight quants of one block as bytes: unsigned q (Sym/Affine kinds) or the
// raw int8 (S8 kind, q8_0). Sym: x = d*(q - off); Affine: x = d*q + m; S8: x = d*q.
enum class Kind32 { Sym, Affine, S8 };

struct TQ4_0 {
    using B = block_q4_0;
    static constexpr Kind32 kind = Kind32::Sym;
    static constexpr int off_shift = 3;  // off = 8
    static __m256i q(const B& b) { return unpack_nibbles(b.qs); }
    static constexpr int qmax = 15;  // largest weight quant: bounds the int16 sums
    static void q_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) { unpack_nibbles_pair(a.qs, c.qs, lo, hi); }
};
struct TQ5_0 {
    using B = block_q5_0;
    static constexpr Kind32 kind = Kind32::Sym;
    static constexpr int off_shift = 4;  // off = 16
    static __m256i q(const B& b) {
        const __m256i hb = _mm256_and_si256(bytes_from_bits(b.qh), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(unpack_nibbles(b.qs), hb);
    }
    static constexpr int qmax = 31;
    static void q_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) { unpack_q5_pair(a, c, lo, hi); }
};
struct TQ4_1 {
    using B = block_q4_1;
    static constexpr Kind32 kind = Kind32::Affine;
    static constexpr int off_shift = 0;
    static __m256i q(const B& b) { return unpack_nibbles(b.qs); }
    static constexpr int qmax = 15;  // largest weight quant: bounds the int16 sums
    static void q_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) { unpack_nibbles_pair(a.qs, c.qs, lo, hi); }
};
struct TQ5_1 {
    using B = block_q5_1;
    static constexpr Kind32 kind = Kind32::Affine;
    static constexpr int off_shift = 0;
    static __m256i q(const B& b) {
        const __m256i hb = _mm256_and_si256(bytes_from_bits(b.qh), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(unpack_nibbles(b.qs), hb);
    }
    static constexpr int qmax = 31;
    static void q_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) { unpack_q5_pair(a, c, lo, hi); }
};
struct TQ8_0 {
    using B = block_q8_0;
    static constexpr Kind32 kind = Kind32::S8;
    static constexpr int off_shift = 0;
    static __m256i q(const B& b) { return s8_prep_x(load256(b.qs)); }
    static constexpr int qmax = 127;
    // the raw int8 quants of two blocks in the pair layout: lo = [a 0..15 | c 0..15], hi = 16..31
    static void q_pair(const B& a, const B& c, __m256i* lo, __m256i* hi) {
        *lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)a.qs)),
                                      _mm_loadu_si128((const __m128i*)c.qs), 1);
        *hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)(a.qs + 16))),
                                      _mm_loadu_si128((const __m128i*)(c.qs + 16)), 1);
    }
};

template <typename T> inline float mval(const typename T::B& b) {
    if constexpr (T::kind == Kind32::Affine) return h2f(b.m);
    else return 0.0f;
}

// i32 lanes summing to the exact dot of one weight block with one activation block, for vec_dot
// (no per-activation precomputation): Sym: q.y - off*sum(y); Affine: q.y; S8: any-int8 dot.
template <typename T> inline __m256i dot32_once(__m256i xq, __m256i yq) {
    if constexpr (T::kind == Kind32::Sym) return mul_sum_us8_off(xq, yq, _mm256_set1_epi8(1 << T::off_shift));
    else if constexpr (T::kind == Kind32::Affine) return mul_sum_us8(xq, yq);
    else return s8_dot(s8_ycorr(yq), xq, yq);
}
// 8 fp16 fields (stride in bytes) -> 8 floats
inline __m256 load_h8(const uint8_t* p, size_t st) {
    const auto h = [&](int k) { uint16_t v; std::memcpy(&v, p + k * st, 2); return (int)v; };
    __m128i v = _mm_cvtsi32_si128(h(0));
    v = _mm_insert_epi16(v, h(1), 1);
    v = _mm_insert_epi16(v, h(2), 2);
    v = _mm_insert_epi16(v, h(3), 3);
    v = _mm_insert_epi16(v, h(4), 4);
    v = _mm_insert_epi16(v, h(5), 5);
    v = _mm_insert_epi16(v, h(6), 6);
    v = _mm_insert_epi16(v, h(7), 7);
    return _mm256_cvtph_ps(v);
}
// The same, packed 4 at a time in a 64-bit GPR: loads and shifts on the integer side. Faster in
// vec_dot_32_prep (+5%, whose vector ports are the busy ones); slower in the q8_0 vec_dot (-30%).
inline __m256 load_h8_gpr(const uint8_t* p, size_t st) {
    const auto h = [&](int k) { uint16_t v; std::memcpy(&v, p + k * st, 2); return (uint64_t)v; };
    const uint64_t lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
    const uint64_t hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
    return _mm256_cvtph_ps(_mm_insert_epi64(_mm_cvtsi64_si128((long long)lo), (long long)hi, 1));
}

// kutil::tree8 of 8 floats held in one vector (lane k = block k): ((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7)).
// hadd adds adjacent lanes (a+b == b+a bit for bit), so two hadds give each 128-bit half's tree.
inline float tree8_ps(__m256 p) {
    const __m256 h = _mm256_hadd_ps(p, p);   // [p0+p1, p2+p3, ., . | p4+p5, p6+p7, ., .]
    const __m256 q = _mm256_hadd_ps(h, h);   // [(p0+p1)+(p2+p3), ... | (p4+p5)+(p6+p7), ...]
    return _mm_cvtss_f32(_mm256_castps256_ps128(q)) + _mm_cvtss_f32(_mm256_extractf128_ps(q, 1));
}

// Block products as scalar.cpp (P_b = (float)idot * (dx*dy) [+ (float)isum(y) * (mx*dy) for
// Affine]), summed in kutil::tree8 order. 8 blocks per step: 8 exact dots reduced to one i32
// vector (lane = block), the scale products as vectors, the group's tree off the running sum's
// add chain (that chain, one add per block, was what bounded the kernel before).
template <typename T>
void vec_dot_32(int64_t n, float* s, const void* vx, const void* vy) {
    using B = typename T::B;
    const B* x = (const B*)vx;
    const block_q8_0* y = (const block_q8_0*)vy;
    const int64_t nb = n / 32;
    float sumf = 0.0f;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256i dots[8], sy[8];
        prefetch_ahead(x + b, 8 * sizeof(B));
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
            const __m256i yq = load256_reg(y[b + k].qs);
            dots[k] = dot32_once<T>(T::q(x[b + k]), yq);
            if constexpr (T::kind == Kind32::Affine) sy[k] = mul_sum_us8(_mm256_set1_epi8(1), yq);
        }
        const __m256 vdy = load_h8((const uint8_t*)&y[b].d, sizeof(block_q8_0));
        const __m256 vdx = load_h8((const uint8_t*)&x[b].d, sizeof(B));
        __m256 P = _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8_i32(dots)), _mm256_mul_ps(vdx, vdy));
        if constexpr (T::kind == Kind32::Affine) {
            const __m256 vmx = load_h8((const uint8_t*)&x[b].m, sizeof(B));
            P = _mm256_add_ps(P, _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8_i32(sy)), _mm256_mul_ps(vmx, vdy)));
        }
        sumf += tree8_ps(P);
    }
    for (; b < nb; ++b) {
        const __m256i yq = load256(y[b].qs);
        const float dy = h2f(y[b].d);
        float P = (float)hsum_i32(dot32_once<T>(T::q(x[b]), yq)) * (h2f(x[b].d) * dy);
        if constexpr (T::kind == Kind32::Affine)
            P = P + (float)hsum_i32(mul_sum_us8(_mm256_set1_epi8(1), yq)) * (mval<T>(x[b]) * dy);
        sumf += P;
    }
    *s = sumf;
}

// vec_dot_32 with the activation row's q8_0_prep data (Sym and Affine kinds): the activation
// scales come as f32 and the block sums as int32, and the quants come regrouped (kernels.h) so that
// one 256-bit vector holds two blocks: [block b+k | block b+k+4]. Per group of 8 blocks:
//   v[k] (i16) = maddubs(low nibbles, y lo halves) + maddubs(high nibbles, y hi halves):
//                lanes 0-7 = block k's sums of 4 products, lanes 8-15 = block k+4's;
//   two hadd levels and one madd with 1s then leave lane i = block i's exact dot, in order, with
//   no cross-lane shuffle (the old way was 8 madds, 7 hadds and 2 permutes per group).
// int16 range: |q*y| <= qmax*128, so 4 products fit for q <= 63, 8 for q <= 31 and 16 for q <= 15;
// the 5-bit types therefore widen to int32 one level earlier. Same products, same tree8 order:
// the exact bits of vec_dot. Sym: idot = q.y - off*sum(y); Affine: q.y and sum(y).
template <typename T>
void vec_dot_32_prep(int64_t n, float* s, const void* vx, const void* vy, const void* prep) {
    static_assert(T::kind != Kind32::S8, "q8_0 weights have no use for the block sums");
    using B = typename T::B;
    const B* x = (const B*)vx;
    const block_q8_0* y = (const block_q8_0*)vy;
    const int64_t nb = n / 32;
    const float* dy = (const float*)prep;
    const int32_t* sy = (const int32_t*)(dy + nb);
    const int8_t* yq = (const int8_t*)(sy + nb);
    const __m256i ones = _mm256_set1_epi16(1);
    float sumf = 0.0f;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256i v[4];
        prefetch_ahead(x + b, 8 * sizeof(B));
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            __m256i lo, hi;
            T::q_pair(x[b + k], x[b + k + 4], &lo, &hi);
            const int8_t* yk = yq + 32 * (b + 2 * k);
            v[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(yk)), _mm256_maddubs_epi16(hi, load256(yk + 32)));
        }
        const __m256i h01 = _mm256_hadd_epi16(v[0], v[1]), h23 = _mm256_hadd_epi16(v[2], v[3]);
        __m256i isum;  // lane i = block b+i's exact dot
        if constexpr (T::qmax <= 15) isum = _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), ones);
        else isum = _mm256_hadd_epi32(_mm256_madd_epi16(h01, ones), _mm256_madd_epi16(h23, ones));
        const __m256 vdy = _mm256_loadu_ps(dy + b);
        const __m256i vsy = _mm256_loadu_si256((const __m256i*)(sy + b));
        const __m256 vdx = load_h8_gpr((const uint8_t*)&x[b].d, sizeof(B));
        __m256 P;
        if constexpr (T::kind == Kind32::Sym) {
            const __m256i idot = _mm256_sub_epi32(isum, _mm256_slli_epi32(vsy, T::off_shift));
            P = _mm256_mul_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(vdx, vdy));
        } else {
            const __m256 vmx = load_h8_gpr((const uint8_t*)&x[b].m, sizeof(B));
            P = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(vdx, vdy)),
                              _mm256_mul_ps(_mm256_cvtepi32_ps(vsy), _mm256_mul_ps(vmx, vdy)));
        }
        sumf += tree8_ps(P);
    }
    for (; b < nb; ++b) {
        int32_t idot = hsum_i32(mul_sum_us8(T::q(x[b]), load256(y[b].qs)));
        // sy[b] may be negative: multiply (same bits) instead of shifting a negative value (UB)
        if constexpr (T::kind == Kind32::Sym) idot -= sy[b] * (1 << T::off_shift);
        float P = (float)idot * (h2f(x[b].d) * dy[b]);
        if constexpr (T::kind == Kind32::Affine) P = P + (float)sy[b] * (mval<T>(x[b]) * dy[b]);
        sumf += P;
    }
    *s = sumf;
}

// Block products of one group of 8 blocks (b..b+7) of one weight row against one activation row:
// lo / hi are the row's quants in the pair layout (T::q_pair of blocks b+k, b+k+4), yk, dyb, syb
// the activation's prep data at block b, vdx / vmx the row's 8 scales / mins. Lane i = P(block
// b+i), vec_dot_32_prep's integer tree and formula, so its bits.
// Q8_0 weights (S8) take the same layout with the sign trick (|x| times y with x's sign): the
// int16 pairs reach 2*127*127, so each maddubs is widened to int32 at once; lane i of
// hadd32(hadd32(v0, v1), hadd32(v2, v3)) is again block b+i's exact dot. The block sums are unused.
template <typename T>
inline __m256 group_products(const __m256i* lo, const __m256i* hi, const int8_t* yk, const float* dyb,
                             const int32_t* syb, __m256 vdx, __m256 vmx) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i v[4], isum;  // isum lane i = block b+i's exact dot
    if constexpr (T::kind == Kind32::S8) {
        const auto dot = [&](__m256i xs, const int8_t* p) {
            return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(xs, xs), _mm256_sign_epi8(load256(p), xs)), ones);
        };
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) v[k] = _mm256_add_epi32(dot(lo[k], yk + 64 * k), dot(hi[k], yk + 64 * k + 32));
        isum = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    } else {
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k)
            v[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[k], load256(yk + 64 * k)),
                                    _mm256_maddubs_epi16(hi[k], load256(yk + 64 * k + 32)));
        const __m256i h01 = _mm256_hadd_epi16(v[0], v[1]), h23 = _mm256_hadd_epi16(v[2], v[3]);
        // int16 range: see vec_dot_32_prep
        if constexpr (T::qmax <= 15) isum = _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), ones);
        else isum = _mm256_hadd_epi32(_mm256_madd_epi16(h01, ones), _mm256_madd_epi16(h23, ones));
    }
    const __m256 vdy = _mm256_loadu_ps(dyb);
    if constexpr (T::kind == Kind32::S8) return _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(vdx, vdy));
    const __m256i vsy = _mm256_loadu_si256((const __m256i*)syb);
    if constexpr (T::kind == Kind32::Sym) {
        const __m256i idot = _mm256_sub_epi32(isum, _mm256_slli_epi32(vsy, T::off_shift));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(vdx, vdy));
    }
    return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(vdx, vdy)),
                         _mm256_mul_ps(_mm256_cvtepi32_ps(vsy), _mm256_mul_ps(vmx, vdy)));
}

// 8 vectors of block products -> lane c = kutil::tree8 of P[c]'s lanes, for 8 dots at once: one
// transposed hadd tree (level 1 hadd(P0,P1).., level 2 hadd(H01,H23).. = [c's (p0+p1)+(p2+p3) |
// c's (p4+p5)+(p6+p7)]), then low + high half.
inline __m256 tree8_lanes(const __m256* P) {
    const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(P[0], P[1]), _mm256_hadd_ps(P[2], P[3]));
    const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(P[4], P[5]), _mm256_hadd_ps(P[6], P[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

#include "kernels/x86/x86_pack8.h"  // prefill / batched decode tiles on packed panels (same namespace)

// Decode of the 32-block types on one activation row's q8_0_prep data (kernels.h), up to 8
// weight rows at a time, vec_dot_32_prep's exact bits for every row. Lane r of the running sum is
// weight row r's: one tree8_lanes per group serves 8 rows (a single row's tree8 had cost a fifth
// of vec_dot_32_prep).
template <typename T>
struct GemmPrep32 {
    // Decode: weight rows rows[i] against one activation row's prep data, *out[i] = their dots
    // (null: no row). Slots 0..3 hold rows of one half of the range, 4..7 of the other (decode_32),
    // and rows i and i + 4 are read in lockstep, a group of 8 blocks of one then of the other: two
    // streams, each row in order. A row's block products are kept (in chunks of 64 groups), then
    // the 8 rows' sums come out of one tree8_lanes per group. The blocks past the last full group:
    // one product per row and block, added last in block order.
    static void decode_tile(int64_t n, const char* const* rows, float* const* out, const char* prep) {
        using B = typename T::B;
        const int64_t nb = n / 32, ng = nb / 8;
        const float* dy = (const float*)prep;
        const int32_t* sy = (const int32_t*)(dy + nb);
        const int8_t* yq = (const int8_t*)(sy + nb);
        const auto group = [&](const B* xr, int64_t g) {
            const int64_t b = 8 * g;
            prefetch_ahead(xr + b, 8 * sizeof(B));
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) T::q_pair(xr[b + k], xr[b + k + 4], &lo[k], &hi[k]);
            const __m256 vdx = load_h8_gpr((const uint8_t*)&xr[b].d, sizeof(B));
            __m256 vmx = _mm256_setzero_ps();
            if constexpr (T::kind == Kind32::Affine) vmx = load_h8_gpr((const uint8_t*)&xr[b].m, sizeof(B));
            return group_products<T>(lo, hi, yq + 32 * b, dy + b, sy + b, vdx, vmx);
        };
        alignas(32) float tail[7][8] = {};
        const auto tails = [&](const B* xr, int slot) {  // vec_dot_32_prep's formula
            for (int64_t b = 8 * ng; b < nb; ++b) {
                const __m256i yb = load256(yq + 32 * b);
                int32_t idot = hsum_i32(T::kind == Kind32::S8 ? dot32_once<T>(T::q(xr[b]), yb) : mul_sum_us8(T::q(xr[b]), yb));
                if constexpr (T::kind == Kind32::Sym) idot -= sy[b] * (1 << T::off_shift);
                float P = (float)idot * (h2f(xr[b].d) * dy[b]);
                if constexpr (T::kind == Kind32::Affine) P = P + (float)sy[b] * (mval<T>(xr[b]) * dy[b]);
                tail[b - 8 * ng][slot] = P;
            }
        };
        constexpr int64_t kChunk = 64;  // groups per chunk: 16 KiB of products, rows up to 16384
        alignas(32) __m256 prod[kChunk][8];
        __m256 acc = _mm256_setzero_ps();
        for (int64_t g0 = 0; g0 < ng || g0 == 0; g0 += kChunk) {  // once at least: the tails
            const int64_t g1 = ng - g0 < kChunk ? ng : g0 + kChunk;
            for (int r = 0; r < 8; ++r)
                if (!rows[r])
                    for (int64_t g = g0; g < g1; ++g) prod[g - g0][r] = _mm256_setzero_ps();
            for (int i = 0; i < 4; ++i) {
                const B* xa = (const B*)rows[i];
                const B* xb = (const B*)rows[i + 4];
                if (xa && xb)
                    for (int64_t g = g0; g < g1; ++g) {
                        prod[g - g0][i] = group(xa, g);
                        prod[g - g0][i + 4] = group(xb, g);
                    }
                else if (xa)  // (the second half is never the longer one)
                    for (int64_t g = g0; g < g1; ++g) prod[g - g0][i] = group(xa, g);
                if (g1 == ng) {  // the rows' last chunk: their tail blocks
                    if (xa) tails(xa, i);
                    if (xb) tails(xb, i + 4);
                }
            }
            for (int64_t g = g0; g < g1; ++g) acc = _mm256_add_ps(acc, tree8_lanes(prod[g - g0]));
        }
        for (int64_t b = 8 * ng; b < nb; ++b) acc = _mm256_add_ps(acc, _mm256_load_ps(tail[b - 8 * ng]));
        alignas(32) float o[8];
        _mm256_store_ps(o, acc);
        for (int r = 0; r < 8; ++r)
            if (out[r]) *out[r] = o[r];
    }
};

// DecodeFn of the 32-block types (prep: q8_0_prep data): rows [0, h) and [h, nrx), h = ceil(nrx / 2),
// are read in lockstep, 4 rows of each per decode_tile
template <typename T>
void decode_32(int64_t n, float* s, const void* vx, size_t bx, int64_t nrx, const void*, const void* prep) {
    const char* x = (const char*)vx;
    const int64_t h = (nrx + 1) / 2;
    for (int64_t r0 = 0; r0 < h; r0 += 4) {
        const char* rows[8] = {};
        float* out[8] = {};
        for (int i = 0; i < 4; ++i) {
            if (r0 + i < h) rows[i] = x + (r0 + i) * bx, out[i] = s + r0 + i;
            if (h + r0 + i < nrx) rows[i + 4] = x + (h + r0 + i) * bx, out[i + 4] = s + h + r0 + i;
        }
        GemmPrep32<T>::decode_tile(n, rows, out, (const char*)prep);
    }
}

#include "kernels/x86/x86_kquants.h"  // K-quants against Q8_K (same namespace)

// ---- float weights (F32 / F16 / BF16) against F32 activations ---------------------------------
struct WF32 {
    using E = float;
    static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
    static float one(const float* p) { return *p; }
};
struct WF16 {
    using E = uint16_t;
    static __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
    static float one(const uint16_t* p) { return h2f(*p); }
};
struct WBF16 {
    using E = uint16_t;
    static __m256 load8(const uint16_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
    }
    static float one(const uint16_t* p) {
        const uint32_t w = (uint32_t)*p << 16;
        float f;
        std::memcpy(&f, &w, 4);
        return f;
    }
};

// The horizontal sum the float gemm's hadd tree gives one accumulator a:
// ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)). DotF ends with it so that decode and gemm
// give the same bits.
inline float hsum_tree(__m256 a) {
    alignas(32) float f[8];
    _mm256_store_ps(f, a);
    return ((f[0] + f[1]) + (f[2] + f[3])) + ((f[4] + f[5]) + (f[6] + f[7]));
}

// A partial last block of a float row, n < 8 elements from p, as 8 floats (zeros past n).
template <typename W>
inline __m256 load_partial(const typename W::E* p, int64_t n) {
    alignas(32) float f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; j < n; ++j) f[j] = W::one(p + j);
    return _mm256_load_ps(f);
}

// Float dot products in one summation order shared with GemmF (batch invariance: an output has
// the same bits whether one activation row (decode) or a tile of them (gemm) computes it): two
// accumulators per row taking alternate blocks of 8 (block b into accumulator b % 2), a partial
// last block zero-filled into its accumulator, then acc 0 + acc 1 and hsum_tree. Products of
// zeros leave a lane as it was, so padding a row with zeros (the causal attention product, whose
// reduced length is cut per tile of queries, see forward_mul_mat) gives the same bits. Two
// accumulators per row keep two FMA chains in flight per stream (decode is bandwidth-bound and
// reads two rows in lockstep). Tolerance vs the double reference: (n+4)*eps*sum|x_i*y_i|.
// rows<R>: R weight rows x[r] against y, *s[r] = their dots.
template <typename W>
struct DotF {
    template <int R>
    static void rows(int64_t n, float* const* s, const char* const* vx, const void* vy) {
        using E = typename W::E;
        const float* y = (const float*)vy;
        __m256 a[R][2];
        for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
#pragma GCC unroll 2
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int q = 0; q < 2; ++q)
                    a[r][q] = _mm256_fmadd_ps(W::load8((const E*)vx[r] + i + 8 * q), _mm256_loadu_ps(y + i + 8 * q), a[r][q]);
        }
        int q = 0;  // the accumulator of the next block
        if (i + 8 <= n) {
            for (int r = 0; r < R; ++r) a[r][0] = _mm256_fmadd_ps(W::load8((const E*)vx[r] + i), _mm256_loadu_ps(y + i), a[r][0]);
            i += 8;
            q = 1;
        }
        if (i < n) {
            const __m256 yv = load_partial<WF32>(y + i, n - i);
            for (int r = 0; r < R; ++r) a[r][q] = _mm256_fmadd_ps(load_partial<W>((const E*)vx[r] + i, n - i), yv, a[r][q]);
        }
        for (int r = 0; r < R; ++r) *s[r] = hsum_tree(_mm256_add_ps(a[r][0], a[r][1]));
    }
};
template <typename W>
void vec_dot_fw(int64_t n, float* s, const void* vx, const void* vy) {
    const char* x = (const char*)vx;
    DotF<W>::template rows<1>(n, &s, &x, vy);
}

// gemm: f32 FMA accumulation (prefill is compute-bound), each output summed in DotF's order:
// two accumulators per (row, column) on alternate blocks of 8, a zero-filled partial last block,
// their sum, and the hadd tree (which gives hsum_tree per accumulator). Tolerance as DotF.
template <typename W>
struct GemmF {
    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* y, size_t by) {
        // fully unrolled, so the accumulators stay in registers (left as loops, GCC -O2 kept them
        // on the stack: a load and a store around every FMA)
        __m256 acc[RX][RY][2];
#pragma GCC unroll 8
        for (int r = 0; r < RX; ++r)
#pragma GCC unroll 8
            for (int c = 0; c < RY; ++c) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
#pragma GCC unroll 2
            for (int q = 0; q < 2; ++q) {
                __m256 yv[RY];
#pragma GCC unroll 8
                for (int c = 0; c < RY; ++c) yv[c] = _mm256_loadu_ps((const float*)(y + c * by) + i + 8 * q);
#pragma GCC unroll 8
                for (int r = 0; r < RX; ++r) {
                    const __m256 xv = W::load8((const typename W::E*)(x + r * bx) + i + 8 * q);
#pragma GCC unroll 8
                    for (int c = 0; c < RY; ++c) acc[r][c][q] = _mm256_fmadd_ps(xv, yv[c], acc[r][c][q]);
                }
            }
        }
        int qn = 0;  // the accumulator of the next block
        if (i + 8 <= n) {
#pragma GCC unroll 8
            for (int r = 0; r < RX; ++r) {
                const __m256 xv = W::load8((const typename W::E*)(x + r * bx) + i);
#pragma GCC unroll 8
                for (int c = 0; c < RY; ++c)
                    acc[r][c][0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps((const float*)(y + c * by) + i), acc[r][c][0]);
            }
            i += 8;
            qn = 1;
        }
        if (i < n) {  // the partial last block, zero-filled (DotF's order)
            __m256 yv[RY];
            for (int c = 0; c < RY; ++c) yv[c] = load_partial<WF32>((const float*)(y + c * by) + i, n - i);
            for (int r = 0; r < RX; ++r) {
                const __m256 xv = load_partial<W>((const typename W::E*)(x + r * bx) + i, n - i);
                for (int c = 0; c < RY; ++c) acc[r][c][qn] = _mm256_fmadd_ps(xv, yv[c], acc[r][c][qn]);
            }
        }
        // horizontal sums of the RX*RY accumulator pairs, 8 per transposed hadd tree (lane p = pair p)
        constexpr int NP = RX * RY, NG = (NP + 7) / 8;
        alignas(32) float out[NG * 8];
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
            __m256 a[8];
#pragma GCC unroll 8
            for (int q = 0; q < 8; ++q) {
                const int p = 8 * g + q;
                a[q] = p < NP ? _mm256_add_ps(acc[p / RY][p % RY][0], acc[p / RY][p % RY][1]) : _mm256_setzero_ps();
            }
            const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
            _mm256_store_ps(out + 8 * g, _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20),
                                                       _mm256_permute2f128_ps(h0, h1, 0x31)));
        }
        for (int r = 0; r < RX; ++r)
            for (int c = 0; c < RY; ++c) s[c * bs + r] = out[r * RY + c];
    }
};

// DecodeFn of the types whose D has rows<1> (vec_dot) and rows<2> (two rows in lockstep): rows
// [0, h) and [h, nrx), h = ceil(nrx / 2), read in pairs (i, h + i), two streams from memory
template <typename D>
void decode_pairs(int64_t n, float* s, const void* vx, size_t bx, int64_t nrx, const void* y, const void*) {
    const char* x = (const char*)vx;
    const int64_t h = (nrx + 1) / 2;
    for (int64_t i = 0; i < nrx - h; ++i) {
        const char* xr[2] = {x + i * bx, x + (h + i) * bx};
        float* sr[2] = {s + i, s + h + i};
        D::template rows<2>(n, sr, xr, y);
    }
    if (nrx % 2) {  // the middle row
        const char* xr = x + (h - 1) * bx;
        float* sr = s + h - 1;
        D::template rows<1>(n, &sr, &xr, y);
    }
}

// ---- gemm driver: cover nrx x nry with tiles of at most TX x TY -------------------------------
template <typename Impl, int RX, int RY>
inline void call_tile(int rx, int ry, int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* y,
                      size_t by) {
    if constexpr (RY > 1) {
        if (ry < RY) return call_tile<Impl, RX, RY - 1>(rx, ry, n, s, bs, x, bx, y, by);
    }
    if constexpr (RX > 1) {
        if (rx < RX) return call_tile<Impl, RX - 1, RY>(rx, ry, n, s, bs, x, bx, y, by);
    }
    Impl::template tile<RX, RY>(n, s, bs, x, bx, y, by);
}
template <typename Impl, int TX, int TY>
void gemm_driver(int64_t n, float* s, size_t bs, const void* vx, size_t bx, int nrx, const void* vy, size_t by,
                 int nry) {
    const char* x = (const char*)vx;
    const char* y = (const char*)vy;
    for (int c0 = 0; c0 < nry; c0 += TY) {
        const int ry = nry - c0 < TY ? nry - c0 : TY;
        for (int r0 = 0; r0 < nrx; r0 += TX) {
            const int rx = nrx - r0 < TX ? nrx - r0 : TX;
            call_tile<Impl, TX, TY>(rx, ry, n, s + (size_t)c0 * bs + r0, bs, x + (size_t)r0 * bx, bx,
                                    y + (size_t)c0 * by, by);
        }
    }
}

#include "kernels/x86/x86_convert.h"  // from_float and fp16 rows (same namespace)

// ---- hot f32 helpers --------------------------------------------------------------------------
void vec_dot_f32(int64_t n, float* s, const float* x, const float* y) { vec_dot_fw<WF32>(n, s, x, y); }
// y += x*v as mul then add (two roundings, same bits as the reference)
void vec_mad_f32(int64_t n, float* y, const float* x, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vv)));
    for (; i < n; ++i) y[i] += x[i] * v;
}
void vec_scale_f32(int64_t n, float* y, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vv));
    for (; i < n; ++i) y[i] *= v;
}

#include "kernels/x86/x86_math.h"  // exp, softmax / silu / gelu rows (same namespace)
#include "kernels/x86/x86_accum.h"  // attention's P.V rows (same namespace)

// ---- table ------------------------------------------------------------------------------------
// Overrides only entries whose partner type is the one these kernels expect (the scalar table
// decides vec_dot_type); anything else keeps the scalar entry.
template <VecDotFn VD, GemmFn GM, DecodeFn DEC = nullptr>
void set_entry(KernelTable& t, DType w, DType partner, int gx, int gy) {
    TypeKernels& k = t.type[(int)w];
    if (k.vec_dot_type != partner) return;
    k.vec_dot = VD;
    k.decode = DEC;
    k.gemm = GM;
    k.gemm_rows_x = gx;
    k.gemm_rows_y = gy;
}

inline void fill_x86_table(KernelTable& t) {
    constexpr int kGemmPackX = 4;
    // K-quant tiles: 1 weight row x 8 activation rows, the driver covering kGemmKX rows per call
    constexpr int kGemmKX = 4, FX = kTileFX, FY = kTileFY;
    // the 32-block types prefill with gemm_pack (below), so they have no gemm
    set_entry<vec_dot_32<TQ4_0>, nullptr>(t, DType::Q4_0, DType::Q8_0, 1, 1);
    set_entry<vec_dot_32<TQ4_1>, nullptr>(t, DType::Q4_1, DType::Q8_0, 1, 1);
    set_entry<vec_dot_32<TQ5_0>, nullptr>(t, DType::Q5_0, DType::Q8_0, 1, 1);
    set_entry<vec_dot_32<TQ5_1>, nullptr>(t, DType::Q5_1, DType::Q8_0, 1, 1);
    set_entry<vec_dot_32<TQ8_0>, nullptr>(t, DType::Q8_0, DType::Q8_0, 1, 1);
    set_entry<vec_dot_K<TQ2_K>, gemm_driver<GemmK<TQ2_K>, 1, 8>, decode_pairs<DotK<TQ2_K>>>(t, DType::Q2_K, DType::Q8_K, kGemmKX, 8);
    set_entry<vec_dot_K<TQ3_K>, gemm_driver<GemmK<TQ3_K>, 1, 8>, decode_pairs<DotK<TQ3_K>>>(t, DType::Q3_K, DType::Q8_K, kGemmKX, 8);
    set_entry<vec_dot_K<TQ4_K>, gemm_driver<GemmK<TQ4_K>, 1, 8>, decode_pairs<DotK<TQ4_K>>>(t, DType::Q4_K, DType::Q8_K, kGemmKX, 8);
    set_entry<vec_dot_K<TQ5_K>, gemm_driver<GemmK<TQ5_K>, 1, 8>, decode_pairs<DotK<TQ5_K>>>(t, DType::Q5_K, DType::Q8_K, kGemmKX, 8);
    set_entry<vec_dot_K<TQ6_K>, gemm_driver<GemmK<TQ6_K>, 1, 8>, decode_pairs<DotK<TQ6_K>>>(t, DType::Q6_K, DType::Q8_K, kGemmKX, 8);
    set_entry<vec_dot_fw<WF32>, gemm_driver<GemmF<WF32>, FX, FY>, decode_pairs<DotF<WF32>>>(t, DType::F32, DType::F32, FX, FY);
    set_entry<vec_dot_fw<WF16>, gemm_driver<GemmF<WF16>, FX, FY>, decode_pairs<DotF<WF16>>>(t, DType::F16, DType::F32, FX, FY);
    set_entry<vec_dot_fw<WBF16>, gemm_driver<GemmF<WBF16>, FX, FY>, decode_pairs<DotF<WBF16>>>(t, DType::BF16, DType::F32, FX, FY);

    // decode with prepared activations, where the partner is Q8_0 (the prep layout's type)
    const auto set_prep = [&t](DType w, VecDotPrepFn f) {
        if (t.type[(int)w].vec_dot_type == DType::Q8_0) t.type[(int)w].vec_dot_prep = f;
    };
    set_prep(DType::Q4_0, vec_dot_32_prep<TQ4_0>);
    set_prep(DType::Q4_1, vec_dot_32_prep<TQ4_1>);
    set_prep(DType::Q5_0, vec_dot_32_prep<TQ5_0>);
    set_prep(DType::Q5_1, vec_dot_32_prep<TQ5_1>);
    // prefill / batched decode on packed panels: tiles of 1 weight row x 8 activation rows, the
    // driver covering up to kGemmPackX weight rows per call; decode: decode_32
    const auto set_gemm_pack = [&t](DType w, GemmFn f, DecodeFn dec) {
        TypeKernels& k = t.type[(int)w];
        if (k.vec_dot_type != DType::Q8_0) return;
        k.gemm_pack = f;
        k.gemm_pack_rows_x = kGemmPackX;
        k.decode = dec;
    };
    set_gemm_pack(DType::Q4_0, gemm_driver<GemmPack32<TQ4_0>, 1, 8>, decode_32<TQ4_0>);
    set_gemm_pack(DType::Q4_1, gemm_driver<GemmPack32<TQ4_1>, 1, 8>, decode_32<TQ4_1>);
    set_gemm_pack(DType::Q5_0, gemm_driver<GemmPack32<TQ5_0>, 1, 8>, decode_32<TQ5_0>);
    set_gemm_pack(DType::Q5_1, gemm_driver<GemmPack32<TQ5_1>, 1, 8>, decode_32<TQ5_1>);
    set_gemm_pack(DType::Q8_0, gemm_driver<GemmPack32<TQ8_0>, 1, 8>, decode_32<TQ8_0>);
    t.type[(int)DType::Q8_0].from_float = from_float_q8_0;
    t.type[(int)DType::Q8_K].from_float = from_float_q8_K;
    t.type[(int)DType::F16].from_float = from_float_f16;
    t.type[(int)DType::BF16].from_float = from_float_bf16;
    t.type[(int)DType::F32].accum = accum_float<false>;
    t.type[(int)DType::F16].accum = accum_float<true>;
    t.type[(int)DType::Q8_0].accum = accum_sym32<AccQ8_0>;
    t.type[(int)DType::Q4_0].accum = accum_sym32<AccQ4_0>;
    if (t.type[(int)DType::Q8_0].vec_dot_type == DType::Q8_0) t.type[(int)DType::Q8_0].attn_dot = attn_dot_32<TQ8_0>;
    if (t.type[(int)DType::Q4_0].vec_dot_type == DType::Q8_0) t.type[(int)DType::Q4_0].attn_dot = attn_dot_32<TQ4_0>;
    t.vec_dot_f32 = vec_dot_f32;
    t.vec_mad_f32 = vec_mad_f32;
    t.vec_scale_f32 = vec_scale_f32;
    t.fp16_to_fp32_row = fp16_to_fp32_row;
    t.fp32_to_fp16_row = fp32_to_fp16_row;
    t.vec_exp_sum_f32 = vec_exp_sum_f32;
    t.vec_silu_f32 = vec_silu_f32;
    t.vec_gelu_f32 = vec_gelu_f32;
}

}  // namespace
}  // namespace ggmlpy
