// x86 tables (avx2, avx512) vs the scalar table, stricter than test_kernels: for quantized weights
// vec_dot and gemm must give the scalar table's exact bits (integer dots, same float order), also
// on random raw blocks (every byte value, q8 activations holding -128) and on tiles larger than
// the table's gemm_rows (several tiles plus ragged edges); from_float (Q8_0, Q8_K, F16, BF16) must
// give the same bytes, including ties, NaN, inf and subnormals; vec_mad/vec_scale exact.
// Float weights report the largest relative difference and check it against (n+4)*eps.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

using namespace ggmlpy;

namespace {

std::mt19937 rng(777);

std::vector<float> rand_floats(int64_t n, float scale) {
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = nd(rng);
    return v;
}

uint16_t rand_half(float lo, float hi) {
    std::uniform_real_distribution<float> ud(lo, hi);
    float v = ud(rng);
    if (rng() & 1) v = -v;
    return fp32_to_fp16(v);
}

// A row of random bytes with the fp16 / f32 scale fields replaced by finite values, so every
// quant bit pattern (q8 -128, all nibbles, all scale bits) is exercised. As an activation row
// (partner = true) Q8_0 quants keep to from_float's range [-127, 127] (kernels.h: the x86 q8_0
// dot relies on it); Q8_K activations may hold -128 (its from_float produces it).
std::vector<uint8_t> rand_row(DType t, int64_t n, bool partner = false) {
    const size_t rs = row_size(t, n);
    std::vector<uint8_t> v(rs);
    for (auto& b : v) b = (uint8_t)rng();
    const int64_t nb = n / dtype_traits(t).block_size;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t* p = v.data() + i * dtype_traits(t).type_size;
        switch (t) {
            case DType::Q4_0: ((block_q4_0*)p)->d = rand_half(1e-3f, 1.0f); break;
            case DType::Q5_0: ((block_q5_0*)p)->d = rand_half(1e-3f, 1.0f); break;
            case DType::Q8_0: {
                block_q8_0* b = (block_q8_0*)p;
                b->d = rand_half(1e-3f, 1.0f);
                if (partner)
                    for (auto& q : b->qs) q = q == -128 ? -127 : q;
                break;
            }
            case DType::Q4_1: ((block_q4_1*)p)->d = rand_half(1e-3f, 1.0f); ((block_q4_1*)p)->m = rand_half(0, 2); break;
            case DType::Q5_1: ((block_q5_1*)p)->d = rand_half(1e-3f, 1.0f); ((block_q5_1*)p)->m = rand_half(0, 2); break;
            case DType::Q2_K: ((block_q2_K*)p)->d = rand_half(1e-3f, 1.0f); ((block_q2_K*)p)->dmin = rand_half(0, 1); break;
            case DType::Q3_K: ((block_q3_K*)p)->d = rand_half(1e-3f, 1.0f); break;
            case DType::Q4_K: ((block_q4_K*)p)->d = rand_half(1e-3f, 1.0f); ((block_q4_K*)p)->dmin = rand_half(0, 1); break;
            case DType::Q5_K: ((block_q5_K*)p)->d = rand_half(1e-3f, 1.0f); ((block_q5_K*)p)->dmin = rand_half(0, 1); break;
            case DType::Q6_K: ((block_q6_K*)p)->d = rand_half(1e-3f, 1.0f); break;
            case DType::Q8_K: {
                block_q8_K* b = (block_q8_K*)p;
                b->d = std::ldexp((float)(rng() % 1000 + 1), -10);
                for (int j = 0; j < 16; ++j) {
                    int s = 0;
                    for (int l = 0; l < 16; ++l) s += b->qs[16 * j + l];
                    b->bsums[j] = (int16_t)s;
                }
                break;
            }
            default: break;
        }
    }
    return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

int g_fail_report = 0;
void expect_same(const char* what, const char* tab, DType t, int64_t n, float got, float want) {
    if (same_bits(got, want)) return;
    ++test_failures();
    if (g_fail_report++ < 20)
        std::fprintf(stderr, "FAIL %s %s %s n=%lld: got %.9g want %.9g\n", what, tab, dtype_name(t),
                     (long long)n, got, want);
}

void test_weights(const KernelTable& tab) {
    const KernelTable& ref = scalar_kernels();
    double worst_float = 0;
    for (int id = 0; id < DTYPE_TABLE_SIZE; ++id) {
        const TypeKernels& rk = ref.type[id];
        const TypeKernels& k = tab.type[id];
        if (!rk.vec_dot) continue;
        const DType t = (DType)id, p = rk.vec_dot_type;
        CHECK(k.vec_dot_type == p);
        const bool quantized = dtype_traits(t).quantized;
        const int64_t bs = dtype_traits(t).block_size;
        const std::vector<int64_t> counts = bs == 1 ? std::vector<int64_t>{5, 8, 16, 37, 256, 1000}
                                                    : std::vector<int64_t>{1, 2, 7, 8, 9, 17};
        for (int64_t nb : counts) {
            const int64_t n = nb * bs;
            for (int mode = 0; mode < (quantized ? 2 : 1); ++mode) {
                // more rows than one tile: several tiles and a ragged edge
                const int nrx = 2 * std::max({8, k.gemm_rows_x, k.gemm_pack_rows_x}) + 1;
                const int nry = 2 * std::max({1, k.gemm_rows_y, k.gemm_pack ? 8 : 1}) + 1;
                const size_t bx = row_size(t, n) + 16, by = row_size(p, n) + 16;
                std::vector<uint8_t> X(bx * nrx), Y(by * nry);
                for (int r = 0; r < nrx; ++r) {
                    if (mode == 0) quantize_row(t, rand_floats(n, 1.0f).data(), &X[r * bx], n);
                    else { auto v = rand_row(t, n); std::memcpy(&X[r * bx], v.data(), v.size()); }
                }
                for (int c = 0; c < nry; ++c) {
                    if (mode == 0) ref.type[(int)p].from_float(rand_floats(n, 1.0f).data(), &Y[c * by], n);
                    else { auto v = rand_row(p, n, true); std::memcpy(&Y[c * by], v.data(), v.size()); }
                }
                std::vector<float> S((size_t)nrx * nry), R((size_t)nrx * nry);
                for (int c = 0; c < nry; ++c)
                    for (int r = 0; r < nrx; ++r) {
                        rk.vec_dot(n, &R[c * nrx + r], &X[r * bx], &Y[c * by]);
                        float s;
                        k.vec_dot(n, &s, &X[r * bx], &Y[c * by]);
                        if (quantized) {
                            expect_same("vec_dot", tab.name, t, n, s, R[c * nrx + r]);
                            if (k.vec_dot_prep) {  // prepared activations, also on raw random rows
                                std::vector<uint8_t> prep(q8_0_prep_size(n));
                                q8_0_prep(&Y[c * by], prep.data(), n);
                                k.vec_dot_prep(n, &s, &X[r * bx], &Y[c * by], prep.data());
                                expect_same("vec_dot_prep", tab.name, t, n, s, R[c * nrx + r]);
                            }
                        } else {
                            double bound = 0;
                            std::vector<float> xd(n);
                            dequantize_row(t, &X[r * bx], xd.data(), n);
                            for (int64_t i = 0; i < n; ++i) bound += std::fabs((double)xd[i] * ((float*)&Y[c * by])[i]);
                            const double d = std::fabs((double)s - R[c * nrx + r]);
                            CHECK(d <= (n + 4) * FLT_EPSILON * bound + 1e-30);
                            if (bound > 0) worst_float = std::max(worst_float, d / bound);
                        }
                    }
                if (k.gemm_pack) {  // the whole block, panel by panel (the last one partial)
                    CHECK(p == DType::Q8_0);
                    std::vector<uint8_t> P(q8_0_pack8_size(n));
                    std::fill(S.begin(), S.end(), NAN);
                    for (int c0 = 0; c0 < nry; c0 += 8) {
                        const int ty = std::min(8, nry - c0);
                        q8_0_pack8(&Y[c0 * by], by, ty, P.data(), n);
                        k.gemm_pack(n, &S[c0 * nrx], nrx, X.data(), bx, nrx, P.data(), 0, ty);
                    }
                    for (size_t i = 0; i < S.size(); ++i) expect_same("gemm_pack", tab.name, t, n, S[i], R[i]);
                }
                if (k.decode)  // each activation row alone against all weight rows (both halves, odd)
                    for (int c = 0; c < nry; ++c) {
                        std::vector<uint8_t> prep(q8_0_prep_size(n));
                        if (p == DType::Q8_0) q8_0_prep(&Y[c * by], prep.data(), n);
                        std::fill(S.begin(), S.end(), NAN);
                        k.decode(n, S.data(), X.data(), bx, nrx, &Y[c * by], p == DType::Q8_0 ? prep.data() : nullptr);
                        for (int r = 0; r < nrx; ++r) {
                            if (quantized) expect_same("decode", tab.name, t, n, S[r], R[c * nrx + r]);
                            else CHECK(std::fabs(S[r] - R[c * nrx + r]) <= (n + 4) * FLT_EPSILON * (std::fabs(R[c * nrx + r]) + 1) * 64);
                        }
                        CHECK(std::isnan(S[nrx]));
                    }
                if (!k.gemm) continue;
                // the whole block in one call (the gemm splits it into tiles)
                k.gemm(n, S.data(), nrx, X.data(), bx, nrx, Y.data(), by, nry);
                for (size_t i = 0; i < S.size(); ++i) {
                    if (quantized) expect_same("gemm", tab.name, t, n, S[i], R[i]);
                    else CHECK(std::fabs(S[i] - R[i]) <= (n + 4) * FLT_EPSILON * (std::fabs(R[i]) + 1) * 64);
                }
            }
        }
    }
    std::printf("%s: float weights, largest |diff| / sum|x*y| = %.3g\n", tab.name, worst_float);
}

void test_from_float(const KernelTable& tab) {
    const KernelTable& ref = scalar_kernels();
    for (DType p : {DType::Q8_0, DType::Q8_K, DType::F16, DType::BF16}) {
        if (!ref.type[(int)p].from_float) continue;
        const int64_t bs = dtype_traits(p).block_size == 1 ? 1 : dtype_traits(p).block_size;
        for (int variant = 0; variant < 6; ++variant) {
            const int64_t n = bs == 1 ? 37 + variant * 11 : bs * (1 + variant);
            std::vector<float> x = rand_floats(n, variant == 2 ? 1e-6f : 3.0f);
            if (variant == 3)  // exact halves after scaling: ties of round / nearest-even
                for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * (float)((int)(rng() % 255) - 127);
            if (variant == 4) {  // equal |max| of both signs (first one wins), zeros
                for (int64_t i = 0; i < n; ++i) x[i] = (i % 3 == 0) ? 0.0f : x[i];
                x[n / 2] = 9.0f;
                x[n / 2 - 1] = -9.0f;
            }
            if (variant == 5 && bs == 1) {  // specials for the float conversions
                const float sp[] = {INFINITY, -INFINITY, NAN, -NAN, 1e-45f, -3e-39f, 65519.f, 65520.f, 1e30f};
                for (int64_t i = 0; i < 9; ++i) x[i * 3] = sp[i];
            }
            if (variant == 5 && bs > 1)
                for (int64_t i = 0; i < bs; ++i) x[i] = 0.0f;  // an all-zero block
            const size_t rs = row_size(p, n);
            std::vector<uint8_t> a(rs, 0x11), b(rs, 0x22);
            ref.type[(int)p].from_float(x.data(), a.data(), n);
            tab.type[(int)p].from_float(x.data(), b.data(), n);
            if (a != b) {
                ++test_failures();
                std::fprintf(stderr, "FAIL from_float %s %s variant %d n=%lld\n", tab.name, dtype_name(p), variant,
                             (long long)n);
            }
        }
    }
    // f32 helpers that are exact elementwise
    for (int64_t n : {1, 9, 31, 100}) {
        const auto x = rand_floats(n, 2.0f), y = rand_floats(n, 2.0f);
        std::vector<float> a = y, b = y;
        ref.vec_mad_f32(n, a.data(), x.data(), 0.3f);
        tab.vec_mad_f32(n, b.data(), x.data(), 0.3f);
        CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
        a = y, b = y;
        ref.vec_scale_f32(n, a.data(), 1.3f);
        tab.vec_scale_f32(n, b.data(), 1.3f);
        CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
        std::vector<uint16_t> h(n);
        for (auto& v : h) v = (uint16_t)rng();
        std::vector<float> f1(n), f2(n);
        ref.fp16_to_fp32_row(h.data(), f1.data(), n);
        tab.fp16_to_fp32_row(h.data(), f2.data(), n);
        CHECK(std::memcmp(f1.data(), f2.data(), n * 4) == 0);
    }
}

}  // namespace

int main() {
    int ran = 0;
    for (const auto& name : available_kernels()) {
        if (name != "avx2" && name != "avx512") continue;
        const KernelTable* tab = find_kernels(name);
        CHECK(tab != nullptr);
        if (!tab) continue;
        test_weights(*tab);
        test_from_float(*tab);
        ++ran;
    }
    std::printf("x86 tables tested: %d\n", ran);
#if defined(GGMLPY_ARCH_X86)
    CHECK(ran > 0);  // every x86-64 CI machine runs at least the avx2 table
#endif
    return test_exit_code("test_x86_kernels");
}
