// Shared x86 kernel bodies (256-bit vectors; K-quants in x86_kquants.h, row conversions in
// x86_convert.h, both included here), included by avx2.cpp and avx512.cpp: each TU first
// defines its integer primitives (below), then includes this file, so one body is compiled per ISA
// with that TU's flags. Everything here has internal linkage (anonymous namespace): no ODR mixing
// of AVX-512 code into the AVX2 build. Contract: every integer path returns the same bits as
// scalar.cpp (exact int32 dots, then the same float ops on the scales in the same order).
//
// The including TU provides, in namespace ggmlpy::{anonymous}:
//   __m256i mul_sum_us8(__m256i u, __m256i s);             // i32 lanes: sums of 4 u8*s8 (no overflow
//   __m256i mul_sum_us8_acc(__m256i acc, __m256i u, __m256i s); //   for u <= 63; AVX2 pairs saturate above)
//   __m256i mul_sum_us8_off(__m256i u, __m256i s, __m256i off);  // sum (u - off) * s, u, off <= 63
//   __m256i s8_prep_x(__m256i x);  __m256i s8_ycorr(__m256i y);
//   __m256i s8_dot(__m256i ycorr, __m256i xprep, __m256i y);  // sum of lanes = sum x*y, any int8
//   constexpr int kTile32X, kTile32Y, kTileKX, kTileKY, kTileFX, kTileFY;  // gemm tiles
#pragma once
#include <immintrin.h>

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
};

template <typename T> inline float mval(const typename T::B& b) {
    if constexpr (T::kind == Kind32::Affine) return h2f(b.m);
    else return 0.0f;
}

// Per activation block: its quants, and the i32 lanes every pair needs (Sym: -off*sum(y) as the
// dot's start value; Affine: sum(y); S8: the primitive's correction).
struct Y32 {
    __m256i q, aux;
    float d;
};
template <typename T> inline Y32 load_y32(const block_q8_0& y) {
    Y32 r;
    r.q = load256_reg(y.qs);
    r.d = h2f(y.d);
    if constexpr (T::kind == Kind32::Sym)
        r.aux = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_slli_epi32(mul_sum_us8(_mm256_set1_epi8(1), r.q), T::off_shift));
    else if constexpr (T::kind == Kind32::Affine)
        r.aux = mul_sum_us8(_mm256_set1_epi8(1), r.q);
    else
        r.aux = s8_ycorr(r.q);
    return r;
}
// i32 lanes whose sum is the exact integer dot of one weight block with one activation block
template <typename T> inline __m256i dot32(__m256i xq, const Y32& y) {
    if constexpr (T::kind == Kind32::Sym) return mul_sum_us8_acc(y.aux, xq, y.q);
    else if constexpr (T::kind == Kind32::Affine) return mul_sum_us8(xq, y.q);
    else return s8_dot(y.aux, xq, y.q);
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
        if constexpr (T::kind == Kind32::Sym) idot -= sy[b] << T::off_shift;
        float P = (float)idot * (h2f(x[b].d) * dy[b]);
        if constexpr (T::kind == Kind32::Affine) P = P + (float)sy[b] * (mval<T>(x[b]) * dy[b]);
        sumf += P;
    }
    *s = sumf;
}

// Prefill of the Sym / Affine 32-block types on q8_0_prep rows (kernels.h, gemm_prep): one weight
// row against up to 8 activation rows. Per group of 8 blocks the weight pairs are unpacked once
// (8 registers) and reused for every activation row; each row c then runs vec_dot_32_prep's
// integer tree and block products, P_c (lane i = block b+i). The 8 rows' tree8 sums come out of
// one transposed hadd tree (level 1 hadd(P0,P1).., level 2 hadd(H01,H23).. = [row c's
// (p0+p1)+(p2+p3) | row c's (p4+p5)+(p6+p7)], then low + high half), so lane c of acc is row c's
// running sum, added group by group: vec_dot_32_prep's exact bits for every pair.
template <typename T>
struct GemmPrep32 {
    static_assert(T::kind != Kind32::S8, "q8_0 weights have no use for the block sums");
    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* prep, size_t bp) {
        static_assert(RX == 1 && RY >= 1 && RY <= 8, "one weight row, up to 8 activation rows");
        using B = typename T::B;
        const B* xr = (const B*)x;
        const int64_t nb = n / 32;
        const float* dy[RY];
        const int32_t* sy[RY];
        const int8_t* yq[RY];
        for (int c = 0; c < RY; ++c) {
            dy[c] = (const float*)(prep + c * bp);
            sy[c] = (const int32_t*)(dy[c] + nb);
            yq[c] = (const int8_t*)(sy[c] + nb);
        }
        const __m256i ones = _mm256_set1_epi16(1);
        __m256 acc = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) T::q_pair(xr[b + k], xr[b + k + 4], &lo[k], &hi[k]);
            const __m256 vdx = load_h8_gpr((const uint8_t*)&xr[b].d, sizeof(B));
            __m256 vmx = _mm256_setzero_ps();
            if constexpr (T::kind == Kind32::Affine) vmx = load_h8_gpr((const uint8_t*)&xr[b].m, sizeof(B));
            __m256 P[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) {
                if (c >= RY) {
                    P[c] = _mm256_setzero_ps();
                    continue;
                }
                const int8_t* yk = yq[c] + 32 * b;
                __m256i v[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; ++k)
                    v[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[k], load256(yk + 64 * k)),
                                            _mm256_maddubs_epi16(hi[k], load256(yk + 64 * k + 32)));
                const __m256i h01 = _mm256_hadd_epi16(v[0], v[1]), h23 = _mm256_hadd_epi16(v[2], v[3]);
                __m256i isum;  // lane i = block b+i's exact dot (int16 range: see vec_dot_32_prep)
                if constexpr (T::qmax <= 15) isum = _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), ones);
                else isum = _mm256_hadd_epi32(_mm256_madd_epi16(h01, ones), _mm256_madd_epi16(h23, ones));
                const __m256 vdy = _mm256_loadu_ps(dy[c] + b);
                const __m256i vsy = _mm256_loadu_si256((const __m256i*)(sy[c] + b));
                if constexpr (T::kind == Kind32::Sym) {
                    const __m256i idot = _mm256_sub_epi32(isum, _mm256_slli_epi32(vsy, T::off_shift));
                    P[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(vdx, vdy));
                } else {
                    P[c] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(vdx, vdy)),
                                         _mm256_mul_ps(_mm256_cvtepi32_ps(vsy), _mm256_mul_ps(vmx, vdy)));
                }
            }
            const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(P[0], P[1]), _mm256_hadd_ps(P[2], P[3]));
            const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(P[4], P[5]), _mm256_hadd_ps(P[6], P[7]));
            acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20),
                                                   _mm256_permute2f128_ps(q0, q1, 0x31)));
        }
        for (; b < nb; ++b) {  // past the last full group: the quants are as is, one block per step
            const __m256i xq = T::q(xr[b]);
            const float dx = h2f(xr[b].d);
            alignas(32) float pv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int c = 0; c < RY; ++c) {
                int32_t idot = hsum_i32(mul_sum_us8(xq, load256(yq[c] + 32 * b)));
                if constexpr (T::kind == Kind32::Sym) idot -= sy[c][b] << T::off_shift;
                float P = (float)idot * (dx * dy[c][b]);
                if constexpr (T::kind == Kind32::Affine) P = P + (float)sy[c][b] * (mval<T>(xr[b]) * dy[c][b]);
                pv[c] = P;
            }
            acc = _mm256_add_ps(acc, _mm256_load_ps(pv));
        }
        alignas(32) float out[8];
        _mm256_store_ps(out, acc);
        for (int c = 0; c < RY; ++c) s[c * bs] = out[c];
    }
};

// Lane maps of a tile: lane p = r*RY + c holds pair (r, c); ir[p] = r, ic[p] = c (0 past NP).
template <int RX, int RY> struct LaneMap {
    static constexpr int NP = RX * RY, NG = (NP + 7) / 8;
    __m256i ir[NG], ic[NG];
    LaneMap() {
        alignas(32) int a[NG * 8], c[NG * 8];
        for (int p = 0; p < NG * 8; ++p) {
            a[p] = p < NP ? p / RY : 0;
            c[p] = p < NP ? p % RY : 0;
        }
        for (int g = 0; g < NG; ++g) {
            ir[g] = _mm256_load_si256((const __m256i*)(a + 8 * g));
            ic[g] = _mm256_load_si256((const __m256i*)(c + 8 * g));
        }
    }
};
// up to 8 fp16 fields (one per row, rows `stride` bytes apart) -> 8 floats (0 past cnt)
template <int CNT> inline __m256 load_h_rows(const char* p, size_t stride) {
    alignas(16) uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < CNT; ++k) std::memcpy(&h[k], p + k * stride, 2);
    return _mm256_cvtph_ps(_mm_load_si128((const __m128i*)h));
}

// Tile of RX weight rows x RY activation rows. Lane p = r*RY + c of a vector holds pair (r, c):
// the block products of 8 pairs at once, summed per pair in kutil::tree8 order (the tree over a
// group's 8 blocks is 7 vector adds), exactly as the reference.
template <typename T>
struct Gemm32 {
    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* y, size_t by) {
        using B = typename T::B;
        constexpr int NP = RX * RY, NG = (NP + 7) / 8;
        const LaneMap<RX, RY> lm;
        const int64_t nb = n / 32;
        // P[g]: lane p = the block product of pair p for block b
        const auto product = [&](int64_t b, __m256* P) __attribute__((always_inline)) {
            const B* xb = (const B*)x + b;
            const block_q8_0* yb = (const block_q8_0*)y + b;
            Y32 yy[RY];
            for (int c = 0; c < RY; ++c) yy[c] = load_y32<T>(*(const block_q8_0*)((const char*)yb + c * by));
            // isum[g]: lane p = exact dot of pair p. RY == 4: each row's 4 dots are folded at once
            // (hadd tree, few live registers); other shapes keep all dots, then reduce8.
            __m256i isum[NG];
            if constexpr (RY == 4) {
                __m256i part[2 * NG];
                for (int r = RX; r < 2 * NG; ++r) part[r] = _mm256_setzero_si256();
                for (int r = 0; r < RX; ++r) {
                    const __m256i xq = T::q(*(const B*)((const char*)xb + r * bx));
                    const __m256i d01 = _mm256_hadd_epi32(dot32<T>(xq, yy[0]), dot32<T>(xq, yy[1]));
                    const __m256i d23 = _mm256_hadd_epi32(dot32<T>(xq, yy[2]), dot32<T>(xq, yy[3]));
                    part[r] = _mm256_hadd_epi32(d01, d23);  // [c0..c3 low half | c0..c3 high half]
                }
                for (int g = 0; g < NG; ++g)
                    isum[g] = _mm256_add_epi32(_mm256_permute2x128_si256(part[2 * g], part[2 * g + 1], 0x20),
                                               _mm256_permute2x128_si256(part[2 * g], part[2 * g + 1], 0x31));
            } else {
                __m256i dots[NG * 8];
                for (int p = NP; p < NG * 8; ++p) dots[p] = _mm256_setzero_si256();
                for (int r = 0; r < RX; ++r) {
                    const __m256i xq = T::q(*(const B*)((const char*)xb + r * bx));
                    for (int c = 0; c < RY; ++c) dots[r * RY + c] = dot32<T>(xq, yy[c]);
                }
                for (int g = 0; g < NG; ++g) isum[g] = reduce8_i32(dots + 8 * g);
            }
            const __m256 vx = load_h_rows<RX>((const char*)&xb->d, bx);
            const __m256 vy = load_h_rows<RY>((const char*)&yb->d, by);
            __m256 vm = _mm256_setzero_ps(), vsy = _mm256_setzero_ps();
            if constexpr (T::kind == Kind32::Affine) {
                vm = load_h_rows<RX>((const char*)&xb->m, bx);
                __m256i t[8];
                for (int c = 0; c < 8; ++c) t[c] = c < RY ? yy[c].aux : _mm256_setzero_si256();
                vsy = _mm256_cvtepi32_ps(reduce8_i32(t));
            }
            for (int g = 0; g < NG; ++g) {
                const __m256 dy = _mm256_permutevar8x32_ps(vy, lm.ic[g]);
                const __m256 sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(vx, lm.ir[g]), dy);
                P[g] = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[g]), sc);
                if constexpr (T::kind == Kind32::Affine)
                    P[g] = _mm256_add_ps(P[g], _mm256_mul_ps(_mm256_permutevar8x32_ps(vsy, lm.ic[g]),
                                                             _mm256_mul_ps(_mm256_permutevar8x32_ps(vm, lm.ir[g]), dy)));
            }
        };
        // a += b lane-wise, for the NG vectors of a tile
        const auto add = [](__m256* a, const __m256* b) __attribute__((always_inline)) {
            for (int g = 0; g < NG; ++g) a[g] = _mm256_add_ps(a[g], b[g]);
        };
        __m256 acc[NG];
        for (int g = 0; g < NG; ++g) acc[g] = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256 lo[NG], hi[NG], t[NG], P[NG];
            product(b + 0, lo), product(b + 1, P), add(lo, P);  // P0+P1
            product(b + 2, t), product(b + 3, P), add(t, P);    // P2+P3
            add(lo, t);                                         // (P0+P1)+(P2+P3)
            product(b + 4, hi), product(b + 5, P), add(hi, P);  // P4+P5
            product(b + 6, t), product(b + 7, P), add(t, P);    // P6+P7
            add(hi, t);                                         // (P4+P5)+(P6+P7)
            add(lo, hi);
            add(acc, lo);
        }
        for (; b < nb; ++b) {
            __m256 P[NG];
            product(b, P);
            add(acc, P);
        }
        alignas(32) float out[NG * 8];
        for (int g = 0; g < NG; ++g) _mm256_store_ps(out + 8 * g, acc[g]);
        for (int r = 0; r < RX; ++r)
            for (int c = 0; c < RY; ++c) s[c * bs + r] = out[r * RY + c];
    }
};

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

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// vec_dot: f32 FMA into 4 independent accumulators (decode is bandwidth-bound; the exact-in-double
// variant was compute-bound on F16). Tolerance vs the double reference: (n+4)*eps*sum|x_i*y_i|.
template <typename W>
void vec_dot_fw(int64_t n, float* s, const void* vx, const void* vy) {
    const typename W::E* x = (const typename W::E*)vx;
    const float* y = (const float*)vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(W::load8(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(W::load8(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(W::load8(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(W::load8(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(W::load8(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) sum += W::one(x + i) * y[i];
    *s = sum;
}

// gemm: f32 FMA accumulation (prefill is compute-bound); tolerance vs the double reference
// (n+4)*eps*sum|x_i*y_i|, as vec_dot_fw
template <typename W>
struct GemmF {
    template <int RX, int RY>
    static void tile(int64_t n, float* s, size_t bs, const char* x, size_t bx, const char* y, size_t by) {
        __m256 acc[RX][RY];
        for (int r = 0; r < RX; ++r)
            for (int c = 0; c < RY; ++c) acc[r][c] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 yv[RY];
            for (int c = 0; c < RY; ++c) yv[c] = _mm256_loadu_ps((const float*)(y + c * by) + i);
            for (int r = 0; r < RX; ++r) {
                const __m256 xv = W::load8((const typename W::E*)(x + r * bx) + i);
                for (int c = 0; c < RY; ++c) acc[r][c] = _mm256_fmadd_ps(xv, yv[c], acc[r][c]);
            }
        }
        for (int r = 0; r < RX; ++r)
            for (int c = 0; c < RY; ++c) {
                float t = hsum_ps(acc[r][c]);
                const typename W::E* xr = (const typename W::E*)(x + r * bx);
                const float* yr = (const float*)(y + c * by);
                for (int64_t j = i; j < n; ++j) t += W::one(xr + j) * yr[j];
                s[c * bs + r] = t;
            }
    }
};

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

// ---- table ------------------------------------------------------------------------------------
// Overrides only entries whose partner type is the one these kernels expect (the scalar table
// decides vec_dot_type); anything else keeps the scalar entry.
template <VecDotFn VD, GemmFn GM>
void set_entry(KernelTable& t, DType w, DType partner, int gx, int gy) {
    TypeKernels& k = t.type[(int)w];
    if (k.vec_dot_type != partner) return;
    k.vec_dot = VD;
    k.gemm = GM;
    k.gemm_rows_x = gx;
    k.gemm_rows_y = gy;
}

inline void fill_x86_table(KernelTable& t) {
    constexpr int kGemmPrepX = 4;
    constexpr int A = kTile32X, Bt = kTile32Y, KX = kTileKX, KY = kTileKY, FX = kTileFX, FY = kTileFY;
    set_entry<vec_dot_32<TQ4_0>, gemm_driver<Gemm32<TQ4_0>, A, Bt>>(t, DType::Q4_0, DType::Q8_0, A, Bt);
    set_entry<vec_dot_32<TQ4_1>, gemm_driver<Gemm32<TQ4_1>, A, Bt>>(t, DType::Q4_1, DType::Q8_0, A, Bt);
    set_entry<vec_dot_32<TQ5_0>, gemm_driver<Gemm32<TQ5_0>, A, Bt>>(t, DType::Q5_0, DType::Q8_0, A, Bt);
    set_entry<vec_dot_32<TQ5_1>, gemm_driver<Gemm32<TQ5_1>, A, Bt>>(t, DType::Q5_1, DType::Q8_0, A, Bt);
    set_entry<vec_dot_32<TQ8_0>, gemm_driver<Gemm32<TQ8_0>, A, Bt>>(t, DType::Q8_0, DType::Q8_0, A, Bt);
    set_entry<vec_dot_K<TQ2_K>, gemm_driver<GemmK<TQ2_K>, KX, KY>>(t, DType::Q2_K, DType::Q8_K, KX, KY);
    set_entry<vec_dot_K<TQ3_K>, gemm_driver<GemmK<TQ3_K>, KX, KY>>(t, DType::Q3_K, DType::Q8_K, KX, KY);
    set_entry<vec_dot_K<TQ4_K>, gemm_driver<GemmK<TQ4_K>, KX, KY>>(t, DType::Q4_K, DType::Q8_K, KX, KY);
    set_entry<vec_dot_K<TQ5_K>, gemm_driver<GemmK<TQ5_K>, KX, KY>>(t, DType::Q5_K, DType::Q8_K, KX, KY);
    set_entry<vec_dot_K<TQ6_K>, gemm_driver<GemmK<TQ6_K>, KX, KY>>(t, DType::Q6_K, DType::Q8_K, KX, KY);
    set_entry<vec_dot_fw<WF32>, gemm_driver<GemmF<WF32>, FX, FY>>(t, DType::F32, DType::F32, FX, FY);
    set_entry<vec_dot_fw<WF16>, gemm_driver<GemmF<WF16>, FX, FY>>(t, DType::F16, DType::F32, FX, FY);
    set_entry<vec_dot_fw<WBF16>, gemm_driver<GemmF<WBF16>, FX, FY>>(t, DType::BF16, DType::F32, FX, FY);

    // decode with prepared activations, where the partner is Q8_0 (the prep layout's type)
    const auto set_prep = [&t](DType w, VecDotPrepFn f) {
        if (t.type[(int)w].vec_dot_type == DType::Q8_0) t.type[(int)w].vec_dot_prep = f;
    };
    set_prep(DType::Q4_0, vec_dot_32_prep<TQ4_0>);
    set_prep(DType::Q4_1, vec_dot_32_prep<TQ4_1>);
    set_prep(DType::Q5_0, vec_dot_32_prep<TQ5_0>);
    set_prep(DType::Q5_1, vec_dot_32_prep<TQ5_1>);
    // prefill on prepared activations: tiles of 1 weight row x 8 activation rows, the driver
    // covering up to kGemmPrepX weight rows per call
    const auto set_gemm_prep = [&t](DType w, GemmFn f) {
        TypeKernels& k = t.type[(int)w];
        if (k.vec_dot_type != DType::Q8_0) return;
        k.gemm_prep = f;
        k.gemm_prep_rows_x = kGemmPrepX;
        k.gemm_prep_rows_y = 8;
    };
    set_gemm_prep(DType::Q4_0, gemm_driver<GemmPrep32<TQ4_0>, 1, 8>);
    set_gemm_prep(DType::Q4_1, gemm_driver<GemmPrep32<TQ4_1>, 1, 8>);
    set_gemm_prep(DType::Q5_0, gemm_driver<GemmPrep32<TQ5_0>, 1, 8>);
    set_gemm_prep(DType::Q5_1, gemm_driver<GemmPrep32<TQ5_1>, 1, 8>);
    t.type[(int)DType::Q8_0].from_float = from_float_q8_0;
    t.type[(int)DType::Q8_K].from_float = from_float_q8_K;
    t.type[(int)DType::F16].from_float = from_float_f16;
    t.type[(int)DType::BF16].from_float = from_float_bf16;
    t.vec_dot_f32 = vec_dot_f32;
    t.vec_mad_f32 = vec_mad_f32;
    t.vec_scale_f32 = vec_scale_f32;
    t.fp16_to_fp32_row = fp16_to_fp32_row;
    t.fp32_to_fp16_row = fp32_to_fp16_row;
}

}  // namespace
}  // namespace ggmlpy
