// AVX2 (+FMA, F16C) kernel table: a copy of the scalar table with every weight type's vec_dot and
// prefill tiles (gemm_prep for the 32-block types, gemm for the others), the Q8_0 / Q8_K / F16 /
// BF16 from_float and the f32 helpers replaced by 256-bit code (bodies in x86_impl.h). Integer
// types and from_float give the scalar table's exact bits. Float weights (vec_dot and gemm)
// accumulate in f32 FMA: |s - scalar| <= (n+4)*eps*sum|x_i*y_i|.
#include <immintrin.h>

#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

// u8 x s8 products summed by 4 into i32 lanes via maddubs (pairs saturate at int16: callers keep
// u <= 63, so |pair| <= 16128)
inline __m256i mul_sum_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
inline __m256i mul_sum_us8_off(__m256i u, __m256i s, __m256i off) {  // sum (u - off) * s
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(off, s)),
                             _mm256_set1_epi16(1));
}
// s8 x s8 (q8_0 weights): sign trick, |x| (u8) times y with x's sign, summed by maddubs pairs.
// Exact when y != -128 (pairs stay <= 2*128*127 < 32767): activation partners come from
// from_float, which clamps Q8_0 quants to [-127, 127] (kernels.h states the contract).
inline __m256i s8_prep_x(__m256i x) { return x; }
inline __m256i s8_ycorr(__m256i) { return _mm256_setzero_si256(); }
inline __m256i s8_dot(__m256i, __m256i x, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)),
                             _mm256_set1_epi16(1));
}
// Packed-panel tiles (x86_pack8.h): lane j of the result = sum over i < 8 of the dot of the 4
// bytes of lane j of w[i] (u8 <= QMAX) and of y + 32 * i (s8). maddubs pairs summed in int16 as
// long as they cannot overflow: 8 vectors for QMAX <= 15 (16 products <= 15 * 128 each), 4 for
// QMAX <= 31, then one madd with 1s widens each pair of int16 to the lane's int32.
template <int QMAX> inline __attribute__((always_inline)) __m256i group_udot(const __m256i* w, const int8_t* y) {
    static_assert(QMAX <= 31, "int16 sums of 4 maddubs vectors");
    const auto m = [&](int i) { return _mm256_maddubs_epi16(w[i], _mm256_loadu_si256((const __m256i*)(y + 32 * i))); };
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(m(0), m(1)), _mm256_add_epi16(m(2), m(3)));
    const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(m(4), m(5)), _mm256_add_epi16(m(6), m(7)));
    if constexpr (QMAX <= 15) return _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones);
    return _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
}
// The same for any int8 weights w (q8_0) and y in [-127, 127]: the sign trick, wp = |w| (u8)
// times y with w's sign; a pair reaches 2 * 128 * 127, so each maddubs is widened at once.
inline __attribute__((always_inline)) __m256i group_sprep(__m256i w) { return _mm256_abs_epi8(w); }
inline __attribute__((always_inline)) __m256i group_sdot(const __m256i* wp, const __m256i* w, const int8_t* y, __m256i /*sy*/) {
    const __m256i ones = _mm256_set1_epi16(1);
    const auto m = [&](int i) {
        const __m256i yi = _mm256_loadu_si256((const __m256i*)(y + 32 * i));
        return _mm256_madd_epi16(_mm256_maddubs_epi16(wp[i], _mm256_sign_epi8(yi, w[i])), ones);
    };
    return _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(m(0), m(1)), _mm256_add_epi32(m(2), m(3))),
                            _mm256_add_epi32(_mm256_add_epi32(m(4), m(5)), _mm256_add_epi32(m(6), m(7))));
}
// float gemm tile (16 ymm registers: 12 accumulators (two per output), 3 activation vectors,
// 1 weight vector)
constexpr int kTileFX = 2, kTileFY = 3;

}  // namespace
}  // namespace ggmlpy

#include "kernels/x86/x86_impl.h"

namespace ggmlpy {

const KernelTable& avx2_kernels() {
    static const KernelTable t = [] {
        KernelTable k = scalar_kernels();
        k.name = "avx2";
        fill_x86_table(k);
        return k;
    }();
    return t;
}

}  // namespace ggmlpy
