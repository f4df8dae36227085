// AVX-512 (F/BW/VL/VNNI/BF16) kernel table: the avx2 bodies of x86_impl.h compiled with VNNI
// primitives (vpdpbusd: u8 x s8 summed into i32 with no int16 saturation, so q8_0 weights use the
// x+128 trick) and a larger float gemm tile (32 vector registers). Exactness as avx2.cpp: integer types
// and from_float equal the scalar table's bits; float weights within (n+4)*eps*sum|x_i*y_i|.
#include <immintrin.h>

#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

inline __m256i mul_sum_us8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
inline __m256i mul_sum_us8_off(__m256i u, __m256i s, __m256i off) {  // sum (u - off) * s
    return _mm256_sub_epi32(mul_sum_us8(u, s), mul_sum_us8(off, s));
}
// s8 x s8: (x + 128) is unsigned, so dot = dpbusd(x ^ 0x80, y) - 128 * sum(y); the correction
// (per activation block) is the accumulator's start value
inline __m256i s8_prep_x(__m256i x) { return _mm256_xor_si256(x, _mm256_set1_epi8((char)0x80)); }
inline __m256i s8_ycorr(__m256i y) {
    return _mm256_sub_epi32(_mm256_setzero_si256(),
                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), y));
}
inline __m256i s8_dot(__m256i corr, __m256i xp, __m256i y) { return _mm256_dpbusd_epi32(corr, xp, y); }
// Packed-panel tiles (x86_pack8.h): lane j = sum over i < 8 of the 4-byte dot of lane j of w[i]
// (u8) and y + 32 * i (s8), vpdpbusd in two chains (no int16 step, any QMAX)
template <int QMAX> inline __attribute__((always_inline)) __m256i group_udot(const __m256i* w, const int8_t* y) {
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        a = _mm256_dpbusd_epi32(a, w[i], _mm256_loadu_si256((const __m256i*)(y + 32 * i)));
        b = _mm256_dpbusd_epi32(b, w[i + 1], _mm256_loadu_si256((const __m256i*)(y + 32 * i + 32)));
    }
    return _mm256_add_epi32(a, b);
}
// any int8 weights: wp = w + 128 (u8), dot = dpbusd(wp, y) - 128 * sum(y), sy the block's sum(y)
inline __attribute__((always_inline)) __m256i group_sprep(__m256i w) { return _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)); }
inline __attribute__((always_inline)) __m256i group_sdot(const __m256i* wp, const __m256i*, const int8_t* y, __m256i sy) {
    __m256i a = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sy, 7)), b = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        a = _mm256_dpbusd_epi32(a, wp[i], _mm256_loadu_si256((const __m256i*)(y + 32 * i)));
        b = _mm256_dpbusd_epi32(b, wp[i + 1], _mm256_loadu_si256((const __m256i*)(y + 32 * i + 32)));
    }
    return _mm256_add_epi32(a, b);
}
// float gemm tile (32 vector registers: 24 accumulators (two per output), 3 activation vectors,
// 1 weight vector)
constexpr int kTileFX = 4, kTileFY = 3;

}  // namespace
}  // namespace ggmlpy

#include "kernels/x86/x86_impl.h"

namespace ggmlpy {

const KernelTable& avx512_kernels() {
    static const KernelTable t = [] {
        KernelTable k = scalar_kernels();
        k.name = "avx512";
        fill_x86_table(k);
        return k;
    }();
    return t;
}

}  // namespace ggmlpy
