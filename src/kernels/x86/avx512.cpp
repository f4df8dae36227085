// AVX-512 (F/BW/VL/VNNI/BF16) kernel table: the avx2 bodies of x86_impl.h compiled with VNNI
// primitives (vpdpbusd: u8 x s8 summed into i32 with no int16 saturation, so q8_0 weights use the
// x+128 trick) and larger gemm tiles (32 vector registers). Exactness as avx2.cpp: integer types
// and from_float equal the scalar table's bits; float weights within (n+4)*eps*sum|x_i*y_i|.
// Exception: q4_0/q4_1 vec_dot (decode) is its own kernel below: exact int32 dot per block, then
// d_x*d_y*isum accumulated in float lanes (scales of 16 blocks converted at once) and reduced
// once, so it matches the scalar table within float rounding, (n+4)*eps*sum|terms|, not bit for
// bit (tests/cpp/test_kernels.cpp float_order_vec_dot). Their gemm entries stay bit-exact.
#include <immintrin.h>

#include <type_traits>

#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

inline __m256i mul_sum_us8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
inline __m256i mul_sum_us8_acc(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
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
// gemm tiles: 16 pair lanes (two vectors) per tile
constexpr int kTile32X = 4, kTile32Y = 4;
constexpr int kTileKX = 4, kTileKY = 4;
constexpr int kTileFX = 4, kTileFY = 4;

}  // namespace
}  // namespace ggmlpy

#include "kernels/x86/x86_impl.h"

namespace ggmlpy {
namespace {

// 16 fp16 fields at p + OFF + j*ST (j = 0..15; ST, OFF even) -> 16 floats, reading only inside
// [p, p + 16*ST). Gathers are slow on some cores (Zen 4: ~20 cycles each), so: 128-byte windows
// (two loads), one two-table word permute (vpermt2w) per window, merged by lane masks.
// Window w starts at field first(w) (or ends at p + 16*ST) and takes the fields that fit.
constexpr int h16_start(int ST, int j) { return j * ST + 128 <= 16 * ST ? j * ST : 16 * ST - 128; }
constexpr int h16_end(int ST, int OFF, int j) {  // first field not in the window starting at field j
    int k = j;
    while (k < 16 && k * ST + OFF + 2 <= h16_start(ST, j) + 128) ++k;
    return k;
}
constexpr int h16_first(int ST, int OFF, int w) {
    int j = 0;
    for (int i = 0; i < w; ++i) j = h16_end(ST, OFF, j);
    return j;
}
constexpr int h16_count(int ST, int OFF) {
    int n = 0;
    for (int j = 0; j < 16; j = h16_end(ST, OFF, j)) ++n;
    return n;
}
template <int ST, int OFF>
struct H16 {
    static_assert(16 * ST >= 128 && ST % 2 == 0 && OFF % 2 == 0 && OFF + 2 <= ST, "layout");
    static constexpr int NW = h16_count(ST, OFF);
    __m512i idx[NW];
    __mmask32 m[NW];
    H16() {
        for (int w = 0; w < NW; ++w) {
            const int j0 = h16_first(ST, OFF, w), j1 = h16_end(ST, OFF, j0), st = h16_start(ST, j0);
            alignas(64) uint16_t lanes[32] = {};
            uint32_t mask = 0;
            for (int j = j0; j < j1; ++j) {
                lanes[j] = (uint16_t)((j * ST + OFF - st) / 2);
                mask |= 1u << j;
            }
            idx[w] = _mm512_load_si512(lanes);
            m[w] = (__mmask32)mask;
        }
    }
    template <int W> __m512i window(const char* p) const {
        constexpr int st = h16_start(ST, h16_first(ST, OFF, W));
        return _mm512_permutex2var_epi16(_mm512_loadu_si512(p + st), idx[W], _mm512_loadu_si512(p + st + 64));
    }
    template <int W> __m512i merge(__m512i r, const char* p) const {
        if constexpr (W == NW) return r;
        else return merge<W + 1>(_mm512_mask_mov_epi16(r, m[W], window<W>(p)), p);
    }
    __m512 load(const void* base) const {
        // (maskz forms: gcc 12 warns on the plain ones' undefined pass-through operand)
        const char* p = (const char*)base;
        return _mm512_maskz_cvtph_ps(0xFFFF, _mm512_maskz_extracti64x4_epi64(0xFF, merge<1>(window<0>(p), p), 0));
    }
};

// lane k = exact sum of the 8 i32 lanes of D[k], for |lane| <= 8191 (pair sums fit int16, so
// packs_epi32 never saturates; madd_epi16 with ones adds neighbours exactly)
inline __m256i reduce8_pack(const __m256i* D) {
    const __m256i one = _mm256_set1_epi16(1);
    const __m256i a0 = _mm256_madd_epi16(_mm256_packs_epi32(D[0], D[1]), one);
    const __m256i a1 = _mm256_madd_epi16(_mm256_packs_epi32(D[2], D[3]), one);
    const __m256i a2 = _mm256_madd_epi16(_mm256_packs_epi32(D[4], D[5]), one);
    const __m256i a3 = _mm256_madd_epi16(_mm256_packs_epi32(D[6], D[7]), one);
    const __m256i b0 = _mm256_madd_epi16(_mm256_packs_epi32(a0, a1), one);
    const __m256i b1 = _mm256_madd_epi16(_mm256_packs_epi32(a2, a3), one);
    return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
}
// Decode vec_dot for q4_0 (kAffine false: x = d*(q - 8)) and q4_1 (x = d*q + m) against q8_0.
// Per block: vpdpbusd gives 8 i32 lanes of q.y (|lane| <= 4*15*128) and of 8*sum(y) or sum(y);
// every 8 blocks the lanes are reduced exactly to one i32 per block (reduce8_pack), converted to
// float and multiplied by d_x*d_y (and m_x*d_y) of 16 blocks loaded at once (H16), accumulated in
// float lanes, reduced once at the end. So each block's integer sum is exact, but the float sum
// runs in another order than scalar.cpp: tolerance (n+4)*eps*sum|terms|, not the same bits.
template <bool kAffine>
void vec_dot_q4_zmm(int64_t n, float* s, const void* vx, const void* vy) {
    using B = typename std::conditional<kAffine, block_q4_1, block_q4_0>::type;
    const B* x = (const B*)vx;
    const block_q8_0* y = (const block_q8_0*)vy;
    const int64_t nb = n / 32;
    static const H16<sizeof(B), 0> hx;
    static const H16<sizeof(B), 2> hm;
    static const H16<sizeof(block_q8_0), 0> hy;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i sh = _mm256_setr_epi64x(0, 0, 4, 4);
    const __m256i cy = _mm256_set1_epi8(kAffine ? 1 : 8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        const __m512 dy = hy.load(y + b);
        const __m512 dd = _mm512_mul_ps(hx.load(x + b), dy);
        __m512 md = dd;
        if (kAffine) md = _mm512_mul_ps(hm.load(x + b), dy);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            __m256i D[8], S[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k) {
                const int64_t i = b + 8 * h + k;
                const __m256i xq = _mm256_and_si256(
                    _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)x[i].qs)), sh), m4);
                const __m256i yq = load256(y[i].qs);
                const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), xq, yq);
                const __m256i sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), cy, yq);
                if (kAffine) { D[k] = dot; S[k] = sy; }
                else D[k] = _mm256_sub_epi32(dot, sy);
            }
            const __m256 ddh = h == 0 ? _mm512_maskz_extractf32x8_ps(0xFF, dd, 0)
                                      : _mm512_maskz_extractf32x8_ps(0xFF, dd, 1);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_pack(D)), ddh, acc0);
            if (kAffine) {
                const __m256 mdh = h == 0 ? _mm512_maskz_extractf32x8_ps(0xFF, md, 0)
                                          : _mm512_maskz_extractf32x8_ps(0xFF, md, 1);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_pack(S)), mdh, acc1);
            }
        }
    }
    const __m256 a = _mm256_add_ps(acc0, acc1);
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(a, 0), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    float sumf = _mm_cvtss_f32(r);
    using T = typename std::conditional<kAffine, TQ4_1, TQ4_0>::type;
    for (; b < nb; ++b) {
        const __m256i yq = load256(y[b].qs);
        const float dyb = h2f(y[b].d);
        float P = (float)hsum_i32(dot32_once<T>(T::q(x[b]), yq)) * (h2f(x[b].d) * dyb);
        if (kAffine) P = P + (float)hsum_i32(mul_sum_us8(_mm256_set1_epi8(1), yq)) * (mval<T>(x[b]) * dyb);
        sumf += P;
    }
    *s = sumf;
}

}  // namespace

const KernelTable& avx512_kernels() {
    static const KernelTable t = [] {
        KernelTable k = scalar_kernels();
        k.name = "avx512";
        fill_x86_table(k);
        // decode q4_0/q4_1: the float-accumulating vec_dot (gemm stays the exact tiles)
        TypeKernels& q40 = k.type[(int)DType::Q4_0];
        TypeKernels& q41 = k.type[(int)DType::Q4_1];
        if (q40.vec_dot_type == DType::Q8_0) q40.vec_dot = vec_dot_q4_zmm<false>;
        if (q41.vec_dot_type == DType::Q8_0) q41.vec_dot = vec_dot_q4_zmm<true>;
        return k;
    }();
    return t;
}

}  // namespace ggmlpy
