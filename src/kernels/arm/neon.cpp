// The NEON kernel table (arm64). Starts from the scalar table and replaces every weight type's
// vec_dot/gemm, the f32/f16/bf16 dots, the hot f32 helpers (activation helpers included) and the
// Q8_0/Q8_K activation quantizers. The file is compiled for plain armv8-a (runs on any arm64 CPU);
// the integer kernels exist twice (neon_int.inc): with sdot (vdotq_s32, armv8.2 dotprod) and with
// widening multiplies (vmull_s8 + vpadalq_s16), and the table picks one from getauxval at run time.
// Tested against scalar.cpp under qemu-aarch64 (tests/run_neon.sh), with and without dotprod.

// Everything below is plain armv8-a unless a region says otherwise, whatever -march CMake passes.
#pragma GCC target("arch=armv8-a")

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ggmlpy/cpu.h"
#include "kernels/kernel_util.h"
#include "kernels/kernels.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

// Per-block float formulas must round exactly like scalar.cpp (no fused multiply-add) so the
// integer kernels are bit-identical to the reference.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ggmlpy {
namespace {

constexpr int MAX_NRY = 4;  // activation rows per gemm tile (weight block reused across them)

// acc[i] += sum_{j<4} a[4i+j] * b[4i+j] without sdot: 8x8->16 bit products (|p| <= 2^14, no
// overflow), pairwise-added into the 32-bit lanes.
inline int32x4_t idot_widen(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

namespace nodp {
#define IDOT idot_widen
#include "neon_int.inc"
#undef IDOT
}  // namespace nodp

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
namespace dp {
#define IDOT vdotq_s32
#include "neon_int.inc"
#undef IDOT
}  // namespace dp
#pragma GCC pop_options

// ---- float weights (F32/F16/BF16) against f32 activations: 16 lanes of f32 FMA -------------
// Weight element kinds (fp16_t and bf16_t are both uint16_t, so the kind is explicit).
enum class FK { F32, F16, BF16 };
// Loads 8 weights as f32 (two float32x4); element i alone for the partial last block.
template <FK K>
inline void load8(const void* p, float32x4_t& a, float32x4_t& b) {
    if constexpr (K == FK::F32) {
        a = vld1q_f32((const float*)p);
        b = vld1q_f32((const float*)p + 4);
    } else if constexpr (K == FK::F16) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16((const uint16_t*)p));
        a = vcvt_f32_f16(vget_low_f16(h));
        b = vcvt_high_f32_f16(h);
    } else {  // bf16 = top half of an f32
        const uint16x8_t h = vld1q_u16((const uint16_t*)p);
        a = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        b = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    }
}
template <FK K>
inline float load1(const void* p, int64_t i) {
    if constexpr (K == FK::F32) return ((const float*)p)[i];
    else if constexpr (K == FK::F16) return fp16_to_fp32(((const uint16_t*)p)[i]);
    else return bf16_to_fp32(((const uint16_t*)p)[i]);
}
constexpr size_t elem_size(FK k) { return k == FK::F32 ? 4 : 2; }

template <FK K>
void vec_dot_float(int64_t n, float* s, const void* vx, const void* vy) {
    const char* x = (const char*)vx;
    const float* y = (const float*)vy;
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t a0, a1, a2, a3;
        load8<K>(x + i * elem_size(K), a0, a1);
        load8<K>(x + (i + 8) * elem_size(K), a2, a3);
        acc[0] = vfmaq_f32(acc[0], a0, vld1q_f32(y + i));
        acc[1] = vfmaq_f32(acc[1], a1, vld1q_f32(y + i + 4));
        acc[2] = vfmaq_f32(acc[2], a2, vld1q_f32(y + i + 8));
        acc[3] = vfmaq_f32(acc[3], a3, vld1q_f32(y + i + 12));
    }
    if (i < n) {
        // the partial last block, zero-filled: zeros padded past n leave the sum as it is, so the
        // causal attention product (whose reduced length is cut per tile of queries) gives a
        // query the same bits however the prompt was split into chunks
        float xt[16] = {0}, yt[16] = {0};
        for (int64_t j = 0; j < n - i; ++j) {
            xt[j] = load1<K>(vx, i + j);
            yt[j] = y[i + j];
        }
        for (int q = 0; q < 4; ++q) acc[q] = vfmaq_f32(acc[q], vld1q_f32(xt + 4 * q), vld1q_f32(yt + 4 * q));
    }
    *s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

template <VecDotFn F>
void gemm_loop(int64_t n, float* s, size_t bs, const void* x, size_t bx, int nrx, const void* y,
               size_t by, int nry) {
    for (int c = 0; c < nry; ++c)
        for (int r = 0; r < nrx; ++r)
            F(n, s + c * bs + r, (const char*)x + r * bx, (const char*)y + c * by);
}

// ---- hot f32 helpers -------------------------------------------------------------------------
void vec_dot_f32(int64_t n, float* s, const float* x, const float* y) {
    vec_dot_float<FK::F32>(n, s, x, y);
}
void vec_mad_f32(int64_t n, float* y, const float* x, float v) {  // y += x * v (fused)
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), v));
    for (; i < n; ++i) y[i] = std::fma(x[i], v, y[i]);
}
void vec_scale_f32(int64_t n, float* y, float v) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), v));
    for (; i < n; ++i) y[i] *= v;
}
// FCVTL / FCVTN: exact widening; narrowing rounds to nearest even (FPCR default), like fp16.h
void fp16_to_fp32_row(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}
void fp32_to_fp16_row(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

// ---- activation helpers: exp and the rows built on it ------------------------------------------
// The algorithm of x86_math.h (which states it in full): x = n*ln2 + r, e^r by its degree-7
// Taylor polynomial (FMA, Horner), 2^n as two normal factors 2^(n>>1) * 2^(n - (n>>1)) so that
// subnormal results round correctly and large ones overflow to inf; inputs clamped to [-104, 89].
// NaN needs no select here: vmaxq / vminq return NaN when an input is NaN (x86's max does not), so
// it stays NaN through r and p. Same tolerances against libm (tests/cpp/test_kernels.cpp).
inline float32x4_t exp4(float32x4_t x) {
    const float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-104.0f)), vdupq_n_f32(89.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));  // xc - n * ln2_hi (exact product)
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));            // - n * (ln2 - ln2_hi)
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = vfmaq_f32(vdupq_n_f32(c), p, r);
    const int32x4_t ni = vcvtnq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}
// full vectors, then the last n % 4 elements through a padded vector (same function everywhere)
template <typename F> inline void map_rows4(int64_t n, float* y, const float* x, const float* g, F f) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f(vld1q_f32(x + i), g ? vld1q_f32(g + i) : vdupq_n_f32(0)));
    if (i == n) return;
    float tx[4] = {0, 0, 0, 0}, tg[4] = {0, 0, 0, 0};
    std::memcpy(tx, x + i, (size_t)(n - i) * sizeof(float));
    if (g) std::memcpy(tg, g + i, (size_t)(n - i) * sizeof(float));
    vst1q_f32(tx, f(vld1q_f32(tx), vld1q_f32(tg)));
    std::memcpy(y + i, tx, (size_t)(n - i) * sizeof(float));
}
double vec_exp_sum_f32(int64_t n, float* y, const float* x, float mx) {
    const float32x4_t vm = vdupq_n_f32(mx);
    float64x2_t s0 = vdupq_n_f64(0), s1 = vdupq_n_f64(0);  // double lanes, as the scalar sum
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(y + i, e);
        s0 = vaddq_f64(s0, vcvt_f64_f32(vget_low_f32(e)));
        s1 = vaddq_f64(s1, vcvt_high_f64_f32(e));
    }
    double sum = vaddvq_f64(vaddq_f64(s0, s1));
    if (i < n) {
        map_rows4(n - i, y + i, x + i, nullptr, [&](float32x4_t v, float32x4_t) { return exp4(vsubq_f32(v, vm)); });
        for (; i < n; ++i) sum += y[i];
    }
    return sum;
}
void vec_silu_f32(int64_t n, float* y, const float* x, const float* g) {  // x / (1 + e^-x) [* g]
    const auto silu = [](float32x4_t v) { return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(v)))); };
    if (g) map_rows4(n, y, x, g, [&](float32x4_t v, float32x4_t w) { return vmulq_f32(silu(v), w); });
    else map_rows4(n, y, x, nullptr, [&](float32x4_t v, float32x4_t) { return silu(v); });
}
void vec_gelu_f32(int64_t n, float* y, const float* x) {  // x / (1 + e^-2z), as x86_math.h
    map_rows4(n, y, x, nullptr, [](float32x4_t v, float32x4_t) {
        const float32x4_t z = vaddq_f32(v, vmulq_f32(vdupq_n_f32(0.044715f), vmulq_f32(v, vmulq_f32(v, v))));
        return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp4(vmulq_n_f32(z, -2.0f * 0.7978845608028654f))));
    });
}

// ---- activation quantizers, bit-exact with quantize_row_q8_0_ref / quantize_row_q8_K_ref ------
inline float absmax(const float* x, int n) {  // maxnm ignores NaN like std::fmax
    float32x4_t m = vdupq_n_f32(0);
    for (int j = 0; j < n; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    return vmaxnmvq_f32(m);
}
// 16 floats * scale -> int8 with the given rounding (vcvta: ties away = std::round; vcvtn: even)
template <bool TiesAway>
inline int8x16_t to_i8(const float* x, float scale) {
    int32x4_t q[4];
    for (int k = 0; k < 4; ++k) {
        const float32x4_t v = vmulq_n_f32(vld1q_f32(x + 4 * k), scale);
        q[k] = TiesAway ? vcvtaq_s32_f32(v) : vcvtnq_s32_f32(v);
    }
    const int16x8_t lo = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
    const int16x8_t hi = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
    return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
}
// q8_0: d = amax / 127, q = round(x / d)
void from_float_q8_0(const float* x, void* vy, int64_t n) {
    block_q8_0* y = (block_q8_0*)vy;
    for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
        const float d = absmax(x, QK8_0) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        vst1q_s8(y[b].qs, to_i8<true>(x, id));
        vst1q_s8(y[b].qs + 16, to_i8<true>(x + 16, id));
    }
}
// q8_K: scale from the signed value of largest magnitude (first one), q = nearest(-127/max * x),
// bsums = sums of 16
void from_float_q8_K(const float* x, void* vy, int64_t n) {
    block_q8_K* y = (block_q8_K*)vy;
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        const float amax = absmax(x, QK_K);
        if (!(amax > 0)) {
            std::memset(&y[b], 0, sizeof(block_q8_K));
            continue;
        }
        int j = 0;
        while (std::fabs(x[j]) != amax) ++j;
        const float iscale = -127.f / x[j];
        for (int k = 0; k < QK_K / 16; ++k) {
            const int8x16_t q = to_i8<false>(x + 16 * k, iscale);
            vst1q_s8(y[b].qs + 16 * k, q);
            y[b].bsums[k] = vaddlvq_s8(q);
        }
        y[b].d = 1 / iscale;
    }
}

template <VecDotFn F>
void set_float(KernelTable& t, DType w) {
    TypeKernels& k = t.type[(int)w];
    k.vec_dot = F;
    k.gemm = gemm_loop<F>;
    k.gemm_rows_x = 4;
    k.gemm_rows_y = 4;
}

KernelTable make_neon(bool dotprod) {
    KernelTable t = scalar_kernels();  // vec_dot_type and from_float of other types stay
    t.name = "neon";
    if (dotprod) dp::install_int_kernels(t);
    else nodp::install_int_kernels(t);
    set_float<vec_dot_float<FK::F32>>(t, DType::F32);
    set_float<vec_dot_float<FK::F16>>(t, DType::F16);
    set_float<vec_dot_float<FK::BF16>>(t, DType::BF16);
    t.type[(int)DType::Q8_0].from_float = from_float_q8_0;
    t.type[(int)DType::Q8_K].from_float = from_float_q8_K;
    t.vec_dot_f32 = vec_dot_f32;
    t.vec_mad_f32 = vec_mad_f32;
    t.vec_scale_f32 = vec_scale_f32;
    t.fp16_to_fp32_row = fp16_to_fp32_row;
    t.fp32_to_fp16_row = fp32_to_fp16_row;
    t.vec_exp_sum_f32 = vec_exp_sum_f32;
    t.vec_silu_f32 = vec_silu_f32;
    t.vec_gelu_f32 = vec_gelu_f32;
    return t;
}

}  // namespace

const KernelTable& neon_kernels() {
    static const KernelTable t = make_neon(cpu_features().dotprod);
    return t;
}

}  // namespace ggmlpy
