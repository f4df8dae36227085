// The scalar kernel table: the complete reference every SIMD table is tested against. Each weight
// type T is dotted with its activation partner (vec_dot_type): Q8_0 for the 32-element block
// types, Q8_K for the K-quants, F32 for F32/F16/BF16. Each block is unpacked to its integer quants,
// the integer dot is exact (int32), and only the per-block scale combination is float; the
// 32-element types add their block products in the order kutil::tree8 states.
// Portable C++ only; no intrinsics. Speed is not a goal here, clarity and exactness are.
#include <cmath>
#include <cstring>

#include "kernels/kernel_util.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

// Keep a*b+c as two roundings on every target (arm64 would fuse them by default), so the
// reference gives the same bits on x86 and arm64.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ggmlpy {
namespace {

inline float h2f(fp16_t h) { return fp16_to_fp32(h); }

// ---- 32-element blocks against Q8_0 ---------------------------------------------------------
// Block unpackers: the integer quants q[0..32) of one weight block, element order.

// q4_0: q[j] = (qs[j] & 15) - 8, q[j+16] = (qs[j] >> 4) - 8; x = d * q
inline void unpack(const block_q4_0& b, int8_t* q) {
    for (int j = 0; j < 16; ++j) {
        q[j] = (int8_t)((b.qs[j] & 0xF) - 8);
        q[j + 16] = (int8_t)((b.qs[j] >> 4) - 8);
    }
}
// q4_1: q in [0, 16); x = d * q + m
inline void unpack(const block_q4_1& b, int8_t* q) {
    for (int j = 0; j < 16; ++j) {
        q[j] = (int8_t)(b.qs[j] & 0xF);
        q[j + 16] = (int8_t)(b.qs[j] >> 4);
    }
}
// q5_0: q = (nibble | bit_j(qh) << 4) - 16; x = d * q
inline void unpack(const block_q5_0& b, int8_t* q) {
    const uint32_t qh = kutil::load_qh(b.qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (int8_t)(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
        q[j + 16] = (int8_t)(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
    }
}
// q5_1: q = nibble | bit_j(qh) << 4 in [0, 32); x = d * q + m
inline void unpack(const block_q5_1& b, int8_t* q) {
    const uint32_t qh = kutil::load_qh(b.qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (int8_t)((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4));
        q[j + 16] = (int8_t)((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}
// q8_0: q = qs; x = d * q
inline void unpack(const block_q8_0& b, int8_t* q) { std::memcpy(q, b.qs, 32); }

inline int32_t idot32(const int8_t* a, const int8_t* b) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += (int32_t)a[j] * b[j];
    return s;
}
inline int32_t isum32(const int8_t* a) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += a[j];
    return s;
}

// Symmetric types (q4_0, q5_0, q8_0): P_b = (dx_b * dy_b) * sum_j qx_j * qy_j
template <typename Block>
inline float block_product_sym(const Block& x, const block_q8_0& y) {
    int8_t q[32];
    unpack(x, q);
    return (float)idot32(q, y.qs) * (h2f(x.d) * h2f(y.d));
}
// Affine types (q4_1, q5_1): P_b = (dx*dy) * sum_j qx_j*qy_j + (mx*dy) * sum_j qy_j
template <typename Block>
inline float block_product_affine(const Block& x, const block_q8_0& y) {
    int8_t q[32];
    unpack(x, q);
    const float dy = h2f(y.d);
    return (float)idot32(q, y.qs) * (h2f(x.d) * dy) + (float)isum32(y.qs) * (h2f(x.m) * dy);
}

// sum of P_b in the order kutil::tree8 states: groups of 8 as a tree, then the tail one by one
template <typename Block, float (*P)(const Block&, const block_q8_0&)>
void vec_dot_32(int64_t n, float* s, const void* vx, const void* vy) {
    const Block* x = (const Block*)vx;
    const block_q8_0* y = (const block_q8_0*)vy;
    const int64_t nb = n / 32, nb8 = nb / 8 * 8;
    float sumf = 0.0f, p[8];
    for (int64_t b = 0; b < nb8; b += 8) {
        for (int k = 0; k < 8; ++k) p[k] = P(x[b + k], y[b + k]);
        sumf += kutil::tree8(p);
    }
    for (int64_t b = nb8; b < nb; ++b) sumf += P(x[b], y[b]);
    *s = sumf;
}
template <typename Block>
void vec_dot_sym_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    vec_dot_32<Block, block_product_sym<Block>>(n, s, vx, vy);
}
template <typename Block>
void vec_dot_affine_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    vec_dot_32<Block, block_product_affine<Block>>(n, s, vx, vy);
}

// ---- K-quants (super-blocks of 256) against Q8_K --------------------------------------------
// Element e of a super-block lives in sub-block e/16 (q2_K, q3_K, q6_K) or e/32 (q4_K, q5_K).

// q2_K: e = 128h + 32j + 16k + l: q = (qs[32h + 16k + l] >> 2j) & 3; sub-block scales[e/16]
// (scale = low nibble, min = high nibble); x = d*sc*q - dmin*m
void vec_dot_q2_K(int64_t n, float* s, const void* vx, const void* vy) {
    const block_q2_K* x = (const block_q2_K*)vx;
    const block_q8_K* y = (const block_q8_K*)vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, msum = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const int sb = e0 / 16, h = e0 / 128, j = (e0 / 32) % 4, k = (e0 / 16) % 2;
            int32_t d = 0;
            for (int l = 0; l < 16; ++l)
                d += ((x[b].qs[32 * h + 16 * k + l] >> (2 * j)) & 3) * (int32_t)y[b].qs[e0 + l];
            isum += (x[b].scales[sb] & 0xF) * d;
            msum += (x[b].scales[sb] >> 4) * (int32_t)y[b].bsums[sb];
        }
        sumf += y[b].d * (h2f(x[b].d) * (float)isum - h2f(x[b].dmin) * (float)msum);
    }
    *s = sumf;
}

// q3_K: e = 128h + 32j + 16k + l: q = ((qs[32h + 16k + l] >> 2j) & 3) - (hmask[16k + l] bit
// (4h + j) ? 0 : 4), in [-4, 4); 6-bit signed scale of sub-block e/16; x = d*sc*q
void vec_dot_q3_K(int64_t n, float* s, const void* vx, const void* vy) {
    const block_q3_K* x = (const block_q3_K*)vx;
    const block_q8_K* y = (const block_q8_K*)vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const int sb = e0 / 16, h = e0 / 128, j = (e0 / 32) % 4, k = (e0 / 16) % 2;
            int32_t d = 0;
            for (int l = 0; l < 16; ++l) {
                const int lo = (x[b].qs[32 * h + 16 * k + l] >> (2 * j)) & 3;
                const int hb = (x[b].hmask[16 * k + l] >> (4 * h + j)) & 1;
                d += (lo - (hb ? 0 : 4)) * (int32_t)y[b].qs[e0 + l];
            }
            isum += kutil::q3k_scale(x[b].scales, sb) * d;
        }
        sumf += (h2f(x[b].d) * y[b].d) * (float)isum;
    }
    *s = sumf;
}

// q4_K: e = 64p + 32k + l: q = nibble k of qs[32p + l] in [0, 16); 6-bit scale/min of sub-block
// e/32; x = d*sc*q - dmin*m
void vec_dot_q4_K(int64_t n, float* s, const void* vx, const void* vy) {
    const block_q4_K* x = (const block_q4_K*)vx;
    const block_q8_K* y = (const block_q8_K*)vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 8; ++sb) {
            const int p = sb / 2, k = sb % 2;
            int sc, m;
            kutil::q4k_scale_min(x[b].scales, sb, &sc, &m);
            int32_t d = 0;
            for (int l = 0; l < 32; ++l)
                d += ((x[b].qs[32 * p + l] >> (4 * k)) & 0xF) * (int32_t)y[b].qs[32 * sb + l];
            isum += sc * d;
            msum += m * ((int32_t)y[b].bsums[2 * sb] + y[b].bsums[2 * sb + 1]);
        }
        sumf += y[b].d * (h2f(x[b].d) * (float)isum - h2f(x[b].dmin) * (float)msum);
    }
    *s = sumf;
}

// q5_K: as q4_K plus a fifth bit: q = nibble | (qh[l] bit (2p + k)) << 4, in [0, 32)
void vec_dot_q5_K(int64_t n, float* s, const void* vx, const void* vy) {
    const block_q5_K* x = (const block_q5_K*)vx;
    const block_q8_K* y = (const block_q8_K*)vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 8; ++sb) {
            const int p = sb / 2, k = sb % 2;
            int sc, m;
            kutil::q4k_scale_min(x[b].scales, sb, &sc, &m);
            int32_t d = 0;
            for (int l = 0; l < 32; ++l) {
                const int q = ((x[b].qs[32 * p + l] >> (4 * k)) & 0xF) | (((x[b].qh[l] >> sb) & 1) << 4);
                d += q * (int32_t)y[b].qs[32 * sb + l];
            }
            isum += sc * d;
            msum += m * ((int32_t)y[b].bsums[2 * sb] + y[b].bsums[2 * sb + 1]);
        }
        sumf += y[b].d * (h2f(x[b].d) * (float)isum - h2f(x[b].dmin) * (float)msum);
    }
    *s = sumf;
}

// q6_K: e = 128h + 32k + l: q = (nibble (k >> 1) of ql[64h + 32(k & 1) + l]
// | ((qh[32h + l] >> 2k) & 3) << 4) - 32, in [-32, 32); int8 scale of sub-block e/16; x = d*sc*q
void vec_dot_q6_K(int64_t n, float* s, const void* vx, const void* vy) {
    const block_q6_K* x = (const block_q6_K*)vx;
    const block_q8_K* y = (const block_q8_K*)vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const int h = e0 / 128, k = (e0 / 32) % 4, l0 = e0 % 32;
            int32_t d = 0;
            for (int l = l0; l < l0 + 16; ++l) {
                const int lo = (x[b].ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
                const int hi = (x[b].qh[32 * h + l] >> (2 * k)) & 3;
                d += ((lo | (hi << 4)) - 32) * (int32_t)y[b].qs[128 * h + 32 * k + l];
            }
            isum += x[b].scales[e0 / 16] * d;
        }
        sumf += (h2f(x[b].d) * y[b].d) * (float)isum;
    }
    *s = sumf;
}

// ---- float weights against F32 activations (double accumulation) ----------------------------
void vec_dot_f32_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const float* x = (const float*)vx;
    const float* y = (const float*)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += (double)x[i] * y[i];
    *s = (float)sum;
}
void vec_dot_f16_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const fp16_t* x = (const fp16_t*)vx;
    const float* y = (const float*)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += (double)fp16_to_fp32(x[i]) * y[i];
    *s = (float)sum;
}
void vec_dot_bf16_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const bf16_t* x = (const bf16_t*)vx;
    const float* y = (const float*)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += (double)bf16_to_fp32(x[i]) * y[i];
    *s = (float)sum;
}

// Reference gemm: the tile as nrx * nry independent dot products (SIMD tables block it).
template <VecDotFn F>
void gemm_loop(int64_t n, float* s, size_t bs, const void* x, size_t bx, int nrx, const void* y,
               size_t by, int nry) {
    for (int c = 0; c < nry; ++c)
        for (int r = 0; r < nrx; ++r)
            F(n, s + c * bs + r, (const char*)x + r * bx, (const char*)y + c * by);
}

// ---- from_float (f32 row -> type row) -------------------------------------------------------
void from_float_f32(const float* x, void* y, int64_t n) { std::memcpy(y, x, (size_t)n * sizeof(float)); }
void from_float_f16(const float* x, void* y, int64_t n) {
    fp16_t* o = (fp16_t*)y;
    for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_fp16(x[i]);
}
void from_float_bf16(const float* x, void* y, int64_t n) {
    bf16_t* o = (bf16_t*)y;
    for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_bf16(x[i]);
}
template <typename Block, void (*Q)(const float*, Block*, int64_t)>
void from_float_ref(const float* x, void* y, int64_t n) { Q(x, (Block*)y, n); }

// ---- hot f32 helpers ------------------------------------------------------------------------
void vec_dot_f32(int64_t n, float* s, const float* x, const float* y) { vec_dot_f32_f32(n, s, x, y); }
void vec_mad_f32(int64_t n, float* y, const float* x, float v) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i] * v;
}
void vec_scale_f32(int64_t n, float* y, float v) {
    for (int64_t i = 0; i < n; ++i) y[i] *= v;
}

// ---- attention's P.V (AccumFn): y_c += sum_r w_c[r] * row r, rows in order, fused ------------
template <typename Row, float (*Load)(Row)>
void accum_float(int64_t n, float* y, size_t by, int ny, const void* x, size_t bx, int64_t nrx, const float* w,
                 size_t bw) {
    for (int c = 0; c < ny; ++c)
        for (int64_t r = 0; r < nrx; ++r) {
            const Row* xr = (const Row*)((const char*)x + r * bx);
            for (int64_t k = 0; k < n; ++k) y[c * by + k] = std::fma(w[c * bw + r], Load(xr[k]), y[c * by + k]);
        }
}
inline float load_f32(float v) { return v; }
template <typename Block>
void accum_sym32(int64_t n, float* y, size_t by, int ny, const void* x, size_t bx, int64_t nrx, const float* w,
                 size_t bw) {
    int8_t q[32];
    for (int c = 0; c < ny; ++c)
        for (int64_t r = 0; r < nrx; ++r) {
            const Block* xr = (const Block*)((const char*)x + r * bx);
            for (int64_t b = 0; b < n / 32; ++b) {
                unpack(xr[b], q);
                const float coef = w[c * bw + r] * h2f(xr[b].d);
                float* yb = y + c * by + 32 * b;
                for (int k = 0; k < 32; ++k) yb[k] = std::fma(coef, (float)q[k], yb[k]);
            }
        }
}
void fp16_to_fp32_row(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}
void fp32_to_fp16_row(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

// ---- activation helpers: libm, the formulas of the models' reference code -------------------
double vec_exp_sum_f32(int64_t n, float* y, const float* x, float mx) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const float e = std::exp(x[i] - mx);
        y[i] = e;
        sum += e;
    }
    return sum;
}
void vec_silu_f32(int64_t n, float* y, const float* x, const float* g) {
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i] / (1.0f + std::exp(-x[i]));
        y[i] = g ? v * g[i] : v;
    }
}
void vec_gelu_f32(int64_t n, float* y, const float* x) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
    }
}

template <VecDotFn F>
void set_weight(KernelTable& t, DType w, DType partner) {
    TypeKernels& k = t.type[(int)w];
    k.vec_dot_type = partner;
    k.vec_dot = F;
    k.gemm = gemm_loop<F>;
    k.gemm_rows_x = 4;
    k.gemm_rows_y = 4;
}

KernelTable make_scalar() {
    KernelTable t;
    t.name = "scalar";
    set_weight<vec_dot_f32_f32>(t, DType::F32, DType::F32);
    set_weight<vec_dot_f16_f32>(t, DType::F16, DType::F32);
    set_weight<vec_dot_bf16_f32>(t, DType::BF16, DType::F32);
    set_weight<vec_dot_sym_q8_0<block_q4_0>>(t, DType::Q4_0, DType::Q8_0);
    set_weight<vec_dot_affine_q8_0<block_q4_1>>(t, DType::Q4_1, DType::Q8_0);
    set_weight<vec_dot_sym_q8_0<block_q5_0>>(t, DType::Q5_0, DType::Q8_0);
    set_weight<vec_dot_affine_q8_0<block_q5_1>>(t, DType::Q5_1, DType::Q8_0);
    set_weight<vec_dot_sym_q8_0<block_q8_0>>(t, DType::Q8_0, DType::Q8_0);
    set_weight<vec_dot_q2_K>(t, DType::Q2_K, DType::Q8_K);
    set_weight<vec_dot_q3_K>(t, DType::Q3_K, DType::Q8_K);
    set_weight<vec_dot_q4_K>(t, DType::Q4_K, DType::Q8_K);
    set_weight<vec_dot_q5_K>(t, DType::Q5_K, DType::Q8_K);
    set_weight<vec_dot_q6_K>(t, DType::Q6_K, DType::Q8_K);

    auto ff = [&](DType d, FromFloatFn f) { t.type[(int)d].from_float = f; };
    ff(DType::F32, from_float_f32);
    ff(DType::F16, from_float_f16);
    ff(DType::BF16, from_float_bf16);
    ff(DType::Q8_0, from_float_ref<block_q8_0, quantize_row_q8_0_ref>);
    ff(DType::Q8_K, from_float_ref<block_q8_K, quantize_row_q8_K_ref>);
    ff(DType::Q4_0, from_float_ref<block_q4_0, quantize_row_q4_0_ref>);
    ff(DType::Q4_1, from_float_ref<block_q4_1, quantize_row_q4_1_ref>);
    ff(DType::Q5_0, from_float_ref<block_q5_0, quantize_row_q5_0_ref>);
    ff(DType::Q5_1, from_float_ref<block_q5_1, quantize_row_q5_1_ref>);
    ff(DType::Q2_K, from_float_ref<block_q2_K, quantize_row_q2_K_ref>);
    ff(DType::Q3_K, from_float_ref<block_q3_K, quantize_row_q3_K_ref>);
    ff(DType::Q4_K, from_float_ref<block_q4_K, quantize_row_q4_K_ref>);
    ff(DType::Q5_K, from_float_ref<block_q5_K, quantize_row_q5_K_ref>);
    ff(DType::Q6_K, from_float_ref<block_q6_K, quantize_row_q6_K_ref>);

    t.type[(int)DType::F32].accum = accum_float<float, load_f32>;
    t.type[(int)DType::F16].accum = accum_float<fp16_t, h2f>;
    t.type[(int)DType::Q8_0].accum = accum_sym32<block_q8_0>;
    t.type[(int)DType::Q4_0].accum = accum_sym32<block_q4_0>;

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

size_t q8_0_prep_size(int64_t n) { return (size_t)(n / 32) * (sizeof(float) + sizeof(int32_t) + 32); }

void q8_0_prep(const void* vy, void* prep, int64_t n) {
    const block_q8_0* y = (const block_q8_0*)vy;
    const int64_t nb = n / 32;
    float* dy = (float*)prep;
    int32_t* sy = (int32_t*)(dy + nb);
    int8_t* yq = (int8_t*)(sy + nb);
    const int64_t nfull = nb / 8 * 8;  // blocks in full groups of 8
    for (int64_t b = 0; b < nb; ++b) {
        dy[b] = h2f(y[b].d);
        sy[b] = isum32(y[b].qs);
        if (b >= nfull) std::memcpy(yq + 32 * b, y[b].qs, 32);  // past the last full group: as is
    }
    for (int64_t g = 0; g < nfull; g += 8)  // regroup full groups: pair k = blocks g+k, g+k+4
        for (int k = 0; k < 4; ++k) {
            int8_t* o = yq + 32 * (g + 2 * k);
            std::memcpy(o, y[g + k].qs, 16);
            std::memcpy(o + 16, y[g + k + 4].qs, 16);
            std::memcpy(o + 32, y[g + k].qs + 16, 16);
            std::memcpy(o + 48, y[g + k + 4].qs + 16, 16);
        }
}

size_t q8_0_pack8_size(int64_t n) { return (size_t)(n / 32) * 320; }

void q8_0_pack8(const void* vy, size_t by, int nry, void* out, int64_t n) {
    const int64_t nb = n / 32, nfull = nb / 8 * 8;
    uint8_t* o = (uint8_t*)out;
    std::memset(o, 0, q8_0_pack8_size(n));  // rows past nry: scale 0, sum 0, quants 0
    const auto blk = [&](int c, int64_t b) { return (const block_q8_0*)((const uint8_t*)vy + c * by) + b; };
    for (int64_t g = 0; g < nfull; g += 8)  // groups: row c's 320 bytes at g * 320 + c * 320
        for (int c = 0; c < nry; ++c) {
            uint8_t* p = o + (g + c) * 320;
            for (int j = 0; j < 8; ++j) {
                const block_q8_0* y = blk(c, g + j);
                const float d = h2f(y->d);
                const int32_t sum = isum32(y->qs);
                std::memcpy(p + 4 * j, &d, 4);
                std::memcpy(p + 32 + 4 * j, &sum, 4);
                for (int i = 0; i < 8; ++i) std::memcpy(p + 64 + 32 * i + 4 * j, y->qs + 4 * i, 4);
            }
        }
    for (int64_t b = nfull; b < nb; ++b) {  // tail blocks: 320 bytes each at b * 320
        uint8_t* p = o + b * 320;
        for (int c = 0; c < nry; ++c) {
            const block_q8_0* y = blk(c, b);
            const float d = h2f(y->d);
            const int32_t sum = isum32(y->qs);
            std::memcpy(p + 4 * c, &d, 4);
            std::memcpy(p + 32 + 4 * c, &sum, 4);
            std::memcpy(p + 64 + 32 * c, y->qs, 32);
        }
    }
}

const KernelTable& scalar_kernels() {
    static const KernelTable t = make_scalar();
    return t;
}

}  // namespace ggmlpy
