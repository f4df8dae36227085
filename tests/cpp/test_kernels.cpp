// Kernel tables vs the scalar reference (issue 3, acceptance 3). Loops over EVERY weight type the
// scalar table supports and EVERY table this CPU can run (available_kernels()), so a new type or
// table is covered without new test code. Runs natively and, for NEON, under qemu-aarch64
// (tests/run_neon.sh). The scalar table itself is checked against a float64 dot of the rows
// dequantized by quant.cpp (whose dequantizers are tested against gguf.quants.dequantize).
//
// Agreement required (bound = sum_i |x_i * y_i| in float64 over the dequantized rows,
// eps = FLT_EPSILON):
//  - integer paths (quantized weights), every table vs scalar: bit-exact. The per-block integer
//    dot is exact and every table combines the block scales with the scalar formula, summing
//    the blocks in the reference's order (kutil::tree8 for the 32-element types).
//  - float paths (f32/f16/bf16 weights): any-order f32 summation of n products:
//    |s - s_ref| <= (n + 4) * eps * bound.
//  - scalar vs float64 of the dequantized rows: the float paths as above; the integer paths
//    8 * (nb + 4) * eps * bound (nb blocks; the 8 covers the affine types' d*q and min parts,
//    each of which may exceed |x_i|).
//  - activation quantizers (from_float of Q8_0/Q8_K), fp16 row conversions, vec_scale_f32:
//    bit-exact. vec_mad_f32: fused vs unfused multiply-add: 2 ulp.
//  - activation helpers (exp / silu / gelu rows) vs libm: a few ulp, see test_activations.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "ggmlpy/cpu.h"
#include "ggmlpy/error.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

using namespace ggmlpy;

namespace {

std::mt19937 rng(12345);

// Activation-like or weight-like floats with a different character per block (scale spread,
// one-signed blocks so signed scales go negative, zero blocks, outliers), so all branches of the
// quantizers and all nibble/bit positions of the kernels see data.
std::vector<float> make_floats(int64_t n, int64_t block) {
    std::vector<float> v((size_t)n);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_int_distribution<int> mode_d(0, 7);
    std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        const int mode = mode_d(rng);
        const float scale = mode == 5 ? 1e-3f : (mode == 6 ? 50.0f : 1.0f);
        for (int64_t i = b0; i < std::min(n, b0 + block); ++i) {
            float x = nd(rng) * scale;
            if (mode == 1) x = std::fabs(x);            // all positive
            if (mode == 2) x = -std::fabs(x);           // all negative
            if (mode == 3) x = ud(rng);                 // uniform
            if (mode == 4 && (i % 17) == 3) x *= 30.0f; // outliers
            if (mode == 7) x = 0.0f;                    // zero block
            v[(size_t)i] = x;
        }
    }
    return v;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> out(row_size(t, (int64_t)x.size()) + 64, 0xAB);  // slack catches overruns
    quantize_row(t, x.data(), out.data(), (int64_t)x.size());
    return out;
}

std::vector<float> decode(DType t, const void* p, int64_t n) {
    std::vector<float> y((size_t)n);
    dequantize_row(t, p, y.data(), n);
    return y;
}

double abs_dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::fabs((double)a[i] * b[i]);
    return s;
}
double dot64(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += (double)a[i] * b[i];
    return s;
}

// Bit-exact matches among the comparisons, per "table/int|float" (reported, not required).
std::map<std::string, std::pair<int, int>> g_stats;

void check_close(const char* what, const std::string& table, DType t, int64_t n, double got,
                 double want, double tol) {
    auto& st = g_stats[table + (dtype_traits(t).quantized ? "/int" : "/float")];
    ++st.first;
    if (got == want) ++st.second;
    // integer paths of every table must reproduce the reference bits
    if (dtype_traits(t).quantized && table != "scalar-vs-f64") tol = 0;
    if (!(std::fabs(got - want) <= tol)) {
        ++test_failures();
        std::fprintf(stderr, "FAIL %s table=%s type=%s n=%lld: got %.9g want %.9g diff %.3g tol %.3g\n",
                     what, table.c_str(), dtype_name(t), (long long)n, got, want,
                     std::fabs(got - want), tol);
    }
}

// Element counts to test for a type: odd block counts for block types, odd lengths for floats.
std::vector<int64_t> test_lengths(DType t) {
    const int64_t bs = dtype_traits(t).block_size;
    std::vector<int64_t> nbs = {1, 3, 7, 33};
    if (bs == 1) nbs = {1, 3, 7, 15, 33, 63, 257, 1031};
    // 18, 48: SmolLM2's 576 and 1536 rows; 541: more than a decode tile's chunk of 64 groups of 8
    // blocks (x86), plus a tail
    else if (bs == 32) nbs.insert(nbs.end(), {18, 48, 129, 541});
    std::vector<int64_t> out;
    for (int64_t nb : nbs) out.push_back(nb * bs);
    return out;
}

double tolerance(DType t, int64_t n, double bound) {
    const int64_t bs = dtype_traits(t).block_size;
    if (dtype_traits(t).quantized) return 8.0 * (double)(n / bs + 4) * FLT_EPSILON * bound + 1e-30;
    return (double)(n + 4) * FLT_EPSILON * bound + 1e-30;
}

// The weight types of the reference table: everything with a vec_dot.
std::vector<DType> weight_types() {
    std::vector<DType> v;
    for (int id = 0; id < DTYPE_TABLE_SIZE; ++id)
        if (scalar_kernels().type[id].vec_dot) v.push_back((DType)id);
    return v;
}

// 1) the reference itself: scalar vec_dot vs float64 dot of the dequantized rows
void test_scalar_vs_float64() {
    const KernelTable& ref = scalar_kernels();
    for (DType t : weight_types()) {
        const DType p = ref.type[(int)t].vec_dot_type;
        CHECK(ref.type[(int)p].from_float != nullptr);
        for (int64_t n : test_lengths(t)) {
            const auto xf = make_floats(n, dtype_traits(t).block_size);
            const auto yf = make_floats(n, 16);
            const auto xq = encode(t, xf);
            std::vector<uint8_t> yq(row_size(p, n));
            ref.type[(int)p].from_float(yf.data(), yq.data(), n);
            const auto xd = decode(t, xq.data(), n), yd = decode(p, yq.data(), n);
            float s = NAN;
            ref.type[(int)t].vec_dot(n, &s, xq.data(), yq.data());
            check_close("scalar-vs-f64", "scalar-vs-f64", t, n, s, dot64(xd, yd), tolerance(t, n, abs_dot(xd, yd)));
        }
    }
}

// 2) every table: vec_dot, vec_dot_prep and gemm vs the scalar table on the same bytes
void test_table(const std::string& name) {
    const KernelTable& ref = scalar_kernels();
    const KernelTable* tab = find_kernels(name);
    CHECK(tab != nullptr);
    if (!tab) return;
    CHECK(name == tab->name);
    for (DType t : weight_types()) {
        const TypeKernels& rk = ref.type[(int)t];
        const TypeKernels& k = tab->type[(int)t];
        CHECK(k.vec_dot != nullptr);  // tables are complete (they start from the scalar entries)
        CHECK(k.vec_dot_type == rk.vec_dot_type);
        if (!k.vec_dot || k.vec_dot_type != rk.vec_dot_type) continue;
        const DType p = rk.vec_dot_type;
        for (int64_t n : test_lengths(t)) {
            // several weight rows and activation rows, with padded strides, for the gemm tiles and
            // decode (9: both of its halves hold more than one x86 tile's 4 rows, and one is odd)
            const int nrx = std::max({9, k.gemm_rows_x, k.gemm_pack_rows_x});
            const int nry = std::max({1, k.gemm_rows_y, k.gemm_pack ? 8 : 1});
            const size_t bx = row_size(t, n) + 64, by = row_size(p, n) + 32;
            std::vector<uint8_t> X(bx * nrx), Y(by * nry);
            std::vector<std::vector<float>> xd(nrx), yd(nry);
            for (int r = 0; r < nrx; ++r) {
                const auto xq = encode(t, make_floats(n, dtype_traits(t).block_size));
                std::memcpy(&X[r * bx], xq.data(), row_size(t, n));
                xd[r] = decode(t, &X[r * bx], n);
            }
            for (int c = 0; c < nry; ++c) {
                const auto yf = make_floats(n, 16);
                ref.type[(int)p].from_float(yf.data(), &Y[c * by], n);
                yd[c] = decode(p, &Y[c * by], n);
            }
            std::vector<float> sref((size_t)nrx * nry);
            for (int c = 0; c < nry; ++c)
                for (int r = 0; r < nrx; ++r) {
                    rk.vec_dot(n, &sref[c * nrx + r], &X[r * bx], &Y[c * by]);
                    float s = NAN;
                    k.vec_dot(n, &s, &X[r * bx], &Y[c * by]);
                    check_close("vec_dot", name, t, n, s, sref[c * nrx + r],
                                tolerance(t, n, abs_dot(xd[r], yd[c])));
                    if (k.vec_dot_prep) {  // decode with prepared activations: vec_dot's bits
                        CHECK(p == DType::Q8_0);
                        std::vector<uint8_t> prep(q8_0_prep_size(n));
                        q8_0_prep(&Y[c * by], prep.data(), n);
                        s = NAN;
                        k.vec_dot_prep(n, &s, &X[r * bx], &Y[c * by], prep.data());
                        check_close("vec_dot_prep", name, t, n, s, sref[c * nrx + r],
                                    tolerance(t, n, abs_dot(xd[r], yd[c])));
                    }
                }
            // every tile shape up to the table's maximum, output stride bs > nrx, NaN sentinels;
            // run(S, bs, tx, ty) calls the kernel on the first tx weight rows, ty activation rows
            const auto check_tiles = [&](const char* what, int mx, int my, const auto& run) {
                for (int ty = 1; ty <= std::max(1, my); ++ty)
                    for (int tx = 1; tx <= std::max(1, mx); ++tx) {
                        const size_t bs = (size_t)tx + 3;
                        std::vector<float> S(bs * ty, NAN);
                        run(S.data(), bs, tx, ty);
                        for (int c = 0; c < ty; ++c)
                            for (size_t r = 0; r < bs; ++r) {
                                if ((int)r >= tx) {
                                    CHECK(std::isnan(S[c * bs + r]));  // wrote outside its tile
                                    continue;
                                }
                                check_close(what, name, t, n, S[c * bs + r], sref[c * nrx + r],
                                            tolerance(t, n, abs_dot(xd[r], yd[c])));
                            }
                    }
            };
            if (k.gemm_pack) {  // prefill on a panel of the first ty rows (q8_0_pack8): vec_dot's bits
                CHECK(p == DType::Q8_0);
                std::vector<uint8_t> P(q8_0_pack8_size(n));
                check_tiles("gemm_pack", k.gemm_pack_rows_x, 8, [&](float* S, size_t bs, int tx, int ty) {
                    q8_0_pack8(Y.data(), by, ty, P.data(), n);
                    k.gemm_pack(n, S, bs, X.data(), bx, tx, P.data(), 0, ty);
                });
            }
            if (k.gemm) {
                check_tiles("gemm", k.gemm_rows_x, k.gemm_rows_y, [&](float* S, size_t bs, int tx, int ty) {
                    k.gemm(n, S, bs, X.data(), bx, tx, Y.data(), by, ty);
                });
            }
            if (k.decode) {  // every row count up to nrx against activation row 0 (ty = 1)
                std::vector<uint8_t> prep(q8_0_prep_size(n));
                if (p == DType::Q8_0) q8_0_prep(Y.data(), prep.data(), n);
                const void* pr = p == DType::Q8_0 ? prep.data() : nullptr;
                check_tiles("decode", nrx, 1, [&](float* S, size_t, int tx, int) {
                    k.decode(n, S, X.data(), bx, tx, Y.data(), pr);
                });
                float none = NAN;  // no rows (a chunk mul_mat's causal mask takes whole): no write
                k.decode(n, &none, X.data(), bx, 0, Y.data(), pr);
                CHECK(std::isnan(none));
            }
        }
    }
    // activation conversions: every partner type has one; every from_float a table overrides
    // must give the reference quantizer's bytes
    for (DType t : weight_types()) CHECK(tab->type[(int)ref.type[(int)t].vec_dot_type].from_float != nullptr);
    for (int id = 0; id < DTYPE_TABLE_SIZE; ++id) {
        const FromFloatFn f = tab->type[id].from_float;
        if (!f || f == ref.type[id].from_float) continue;
        const DType p = (DType)id;
        CHECK(ref.type[id].from_float != nullptr);
        if (!ref.type[id].from_float) continue;
        for (int64_t n : test_lengths(dtype_traits(p).block_size == 1 ? DType::Q8_K : p)) {
            const auto yf = make_floats(n, 16);
            std::vector<uint8_t> a(row_size(p, n)), b(row_size(p, n));
            ref.type[id].from_float(yf.data(), a.data(), n);
            f(yf.data(), b.data(), n);
            if (a != b) {
                ++test_failures();
                std::fprintf(stderr, "FAIL from_float table=%s type=%s n=%lld: differs from the reference\n",
                             name.c_str(), dtype_name(p), (long long)n);
            }
        }
    }
}

// 3) hot f32 helpers of every table
void test_helpers(const std::string& name) {
    const KernelTable& ref = scalar_kernels();
    const KernelTable* tab = find_kernels(name);
    if (!tab) return;
    CHECK(tab->vec_dot_f32 && tab->vec_mad_f32 && tab->vec_scale_f32 && tab->fp16_to_fp32_row &&
          tab->fp32_to_fp16_row);
    for (int64_t n : {1, 3, 7, 15, 17, 33, 63, 255, 1029}) {
        const auto x = make_floats(n, 8), y = make_floats(n, 8);
        float s = NAN, sr = NAN;
        tab->vec_dot_f32(n, &s, x.data(), y.data());
        ref.vec_dot_f32(n, &sr, x.data(), y.data());
        check_close("vec_dot_f32", name, DType::F32, n, s, sr, tolerance(DType::F32, n, abs_dot(x, y)));

        std::vector<float> m1 = y, m2 = y;
        tab->vec_mad_f32(n, m1.data(), x.data(), 0.37f);
        ref.vec_mad_f32(n, m2.data(), x.data(), 0.37f);
        for (int64_t i = 0; i < n; ++i)
            CHECK(std::fabs(m1[i] - m2[i]) <= 2 * FLT_EPSILON * (std::fabs(y[i]) + std::fabs(x[i] * 0.37f)) + 1e-38f);

        std::vector<float> c1 = x, c2 = x;
        tab->vec_scale_f32(n, c1.data(), -1.7f);
        ref.vec_scale_f32(n, c2.data(), -1.7f);
        CHECK(c1 == c2);

        // fp16 both ways, bit exact; include halves' subnormal and overflow ranges
        std::vector<float> w(x);
        for (int64_t i = 0; i < n; ++i) {
            if (i % 5 == 1) w[i] *= 1e-6f;   // half subnormals
            if (i % 7 == 2) w[i] *= 3e4f;    // some overflow to inf
        }
        std::vector<uint16_t> h1(n), h2(n);
        tab->fp32_to_fp16_row(w.data(), h1.data(), n);
        ref.fp32_to_fp16_row(w.data(), h2.data(), n);
        CHECK(h1 == h2);
        std::vector<uint16_t> hs(n);
        for (int64_t i = 0; i < n; ++i) hs[i] = (uint16_t)(rng() & 0xFFFF);
        std::vector<float> f1(n), f2(n);
        tab->fp16_to_fp32_row(hs.data(), f1.data(), n);
        ref.fp16_to_fp32_row(hs.data(), f2.data(), n);
        for (int64_t i = 0; i < n; ++i)
            CHECK(std::memcmp(&f1[i], &f2[i], 4) == 0 || (std::isnan(f1[i]) && std::isnan(f2[i])));
    }
}

// 3b) attention kernels. accum (P.V): every table's bits equal the scalar table's (the same fused
// multiply-add per row, rows in order); the scalar table against float64 of the dequantized rows
// within (nrx + 4) * eps * (sum_r |w_r x_r[k]| + |y[k]|) per element. attn_dot (K scores): every
// table's s equal vec_dot of the scalar table, bit for bit. Rows a cache row apart (bx larger than a
// row, unaligned), row counts across the 8-row step, 1 to 8 heads, heads of 32 to 256 dims.
void test_attention_kernels(const std::string& name) {
    const KernelTable& ref = scalar_kernels();
    const KernelTable* tab = find_kernels(name);
    if (!tab) return;
    for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
        const TypeKernels& k = tab->type[(int)t];
        CHECK(k.accum != nullptr);
        if (!k.accum) continue;
        for (int64_t n : {32, 64, 96, 128, 256})
            for (int64_t nrx : {1, 2, 7, 9, 33}) {
                const size_t row = row_size(t, n), bx = row * 3 + 4;  // a cache row of 3 heads, unaligned
                std::vector<uint8_t> X(bx * (size_t)nrx + 64, 0);
                std::vector<std::vector<float>> xd;
                for (int64_t r = 0; r < nrx; ++r) {
                    const auto e = encode(t, make_floats(n, 32));
                    std::memcpy(&X[r * bx], e.data(), row);
                    xd.push_back(decode(t, &X[r * bx], n));
                }
                for (int ny : {1, 3, 8}) {
                    const size_t bw = (size_t)nrx + 3, by = (size_t)n + 5;
                    std::vector<float> w(bw * ny);
                    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
                    for (auto& v : w) v = ud(rng);
                    const auto y0 = make_floats((int64_t)(by * ny), 32);
                    std::vector<float> a = y0, b = y0;
                    k.accum(n, a.data(), by, ny, X.data(), bx, nrx, w.data(), bw);
                    ref.type[(int)t].accum(n, b.data(), by, ny, X.data(), bx, nrx, w.data(), bw);
                    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) {
                        ++test_failures();
                        std::fprintf(stderr, "FAIL accum table=%s type=%s n=%lld nrx=%lld ny=%d: differs from the scalar table\n",
                                     name.c_str(), dtype_name(t), (long long)n, (long long)nrx, ny);
                    }
                    if (name != "scalar") continue;
                    for (int c = 0; c < ny; ++c)
                        for (int64_t i = 0; i < n; ++i) {
                            const double y = y0[c * by + i];
                            double exact = y, bound = std::fabs(y);
                            for (int64_t r = 0; r < nrx; ++r) {
                                exact += (double)w[c * bw + r] * xd[r][i];
                                bound += std::fabs((double)w[c * bw + r] * xd[r][i]);
                            }
                            if (std::fabs(b[c * by + i] - exact) > (nrx + 4) * FLT_EPSILON * bound + 1e-30) {
                                ++test_failures();
                                std::fprintf(stderr, "FAIL accum scalar type=%s n=%lld nrx=%lld [%d][%lld]: %g vs float64 %g\n",
                                             dtype_name(t), (long long)n, (long long)nrx, c, (long long)i, b[c * by + i], exact);
                                c = ny;
                                break;
                            }
                        }
                }
                if (!k.attn_dot) continue;
                const DType p = k.vec_dot_type;
                const size_t by = row_size(p, n) + 8;
                for (int ny : {1, 3, 8}) {
                    std::vector<uint8_t> Y(by * ny + 64, 0);
                    for (int c = 0; c < ny; ++c) {
                        const auto e = encode(p, make_floats(n, 32));
                        std::memcpy(&Y[c * by], e.data(), row_size(p, n));
                    }
                    const size_t bs = (size_t)nrx + 2;
                    std::vector<float> S(bs * ny, -7.0f);
                    k.attn_dot(n, S.data(), bs, X.data(), bx, (int)nrx, Y.data(), by, ny);
                    for (int c = 0; c < ny; ++c) {
                        for (int64_t r = 0; r < nrx; ++r) {
                            float sr = NAN;
                            ref.type[(int)t].vec_dot(n, &sr, &X[r * bx], &Y[c * by]);
                            if (std::memcmp(&sr, &S[c * bs + r], 4) != 0) {
                                ++test_failures();
                                std::fprintf(stderr, "FAIL attn_dot table=%s type=%s n=%lld nrx=%lld [%d][%lld]: %g vs vec_dot %g\n",
                                             name.c_str(), dtype_name(t), (long long)n, (long long)nrx, c, (long long)r,
                                             S[c * bs + r], sr);
                            }
                        }
                        CHECK(S[c * bs + nrx] == -7.0f);  // nothing written past nrx
                    }
                }
            }
    }
}

// 4) activation helpers (softmax exponentials, silu / swiglu, gelu) of every table vs the scalar
// table's libm, on normal inputs and on the extremes: under- and overflow edges, +-inf, NaN.
// Where the reference is finite, |got - ref| <= ulps * eps * |ref| + abs_x * eps * |x| + tiny
// (tiny = 2^-148: subnormal results); NaN / inf must match exactly. Prints the worst error seen.
std::vector<float> activation_inputs(int64_t n, float spread) {
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, FLT_MIN, 1.0f, -1.0f, -87.3f, -87.7f,
                                    -100.0f, -103.9f, -104.5f, -200.0f, 88.5f, 88.72f, 88.8f, 200.0f,
                                    INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, -9.5f, -30.0f, 12.0f};
    std::normal_distribution<float> nd(0.0f, spread);
    std::vector<float> x((size_t)n);
    for (int64_t i = 0; i < n; ++i) x[i] = (i % 7 == 3) ? special[(i / 7) % (sizeof(special) / sizeof(float))] : nd(rng);
    return x;
}

struct WorstErr {
    double ulps = 0;  // worst |got - ref| / (eps * |ref|) among normal references
    bool ok(float got, float ref, float x, double ulps, double abs_x) {
        if (std::isnan(ref)) return std::isnan(got);
        if (std::isinf(ref)) return got == ref;
        const double d = std::fabs((double)got - ref), tiny = std::ldexp(1.0, -148);
        if (std::fabs(ref) >= FLT_MIN && abs_x == 0) this->ulps = std::max(this->ulps, d / (FLT_EPSILON * std::fabs(ref)));
        const double xterm = abs_x > 0 ? abs_x * FLT_EPSILON * std::fabs((double)x) : 0.0;  // x may be inf
        return d <= ulps * FLT_EPSILON * std::fabs(ref) + xterm + tiny;
    }
};

void test_activations(const std::string& name) {
    const KernelTable& ref = scalar_kernels();
    const KernelTable* tab = find_kernels(name);
    if (!tab) return;
    CHECK(tab->vec_exp_sum_f32 && tab->vec_silu_f32 && tab->vec_gelu_f32);
    WorstErr ee, es, eg;
    int bad = 0;
    for (int64_t n : {1, 3, 7, 8, 9, 15, 17, 33, 255, 1029})
        for (float spread : {0.5f, 4.0f, 40.0f}) {
            const auto x = activation_inputs(n, spread), g = make_floats(n, 8);
            std::vector<float> a(n), b(n);
            // exp: raw (mx = 0, every edge) and softmax-like (mx = the row's finite max)
            float fmax = -INFINITY;
            for (float v : x) if (std::isfinite(v)) fmax = std::max(fmax, v);
            for (float mx : {0.0f, fmax}) {
                const double s = tab->vec_exp_sum_f32(n, a.data(), x.data(), mx);
                const double sr = ref.vec_exp_sum_f32(n, b.data(), x.data(), mx);
                for (int64_t i = 0; i < n; ++i) bad += !ee.ok(a[i], b[i], x[i], 2, 0);
                const bool s_ok = std::isnan(sr) ? std::isnan(s) : std::isinf(sr) ? s == sr
                                                 : std::fabs(s - sr) <= 2 * FLT_EPSILON * sr + 1e-40;
                bad += !s_ok;
            }
            for (const float* gp : {(const float*)nullptr, g.data()}) {  // silu, swiglu
                tab->vec_silu_f32(n, a.data(), x.data(), gp);
                ref.vec_silu_f32(n, b.data(), x.data(), gp);
                for (int64_t i = 0; i < n; ++i) bad += !es.ok(a[i], b[i], x[i], gp ? 5 : 4, 0);
            }
            // in place (y == x), as the ops may call them
            std::vector<float> c = x;
            tab->vec_silu_f32(n, c.data(), c.data(), nullptr);
            tab->vec_silu_f32(n, a.data(), x.data(), nullptr);
            bad += std::memcmp(a.data(), c.data(), n * sizeof(float)) != 0;
            // gelu: the reference's 0.5x(1 + tanh z) loses up to ~eps*|x| where 1 + tanh cancels
            tab->vec_gelu_f32(n, a.data(), x.data());
            ref.vec_gelu_f32(n, b.data(), x.data());
            for (int64_t i = 0; i < n; ++i) {
                const bool ok = eg.ok(a[i], b[i], x[i], 4, 2);
                if (!ok && bad < 10)
                    std::fprintf(stderr, "gelu table=%s x=%g got=%g ref=%g\n", name.c_str(), x[i], a[i], b[i]);
                bad += !ok;
            }
        }
    if (bad) {
        test_failures() += bad;
        std::fprintf(stderr, "FAIL activation helpers table=%s: %d values out of tolerance\n", name.c_str(), bad);
    }
    std::printf("activations %-7s worst error vs libm: exp %.2f ulp, silu %.2f ulp\n", name.c_str(), ee.ulps, es.ulps);
}

void test_dispatch() {
    const auto names = available_kernels();
    CHECK(!names.empty() && names.front() == "scalar");
    CHECK_THROWS(set_kernels("no_such_isa"), ValueError);
    CHECK(find_kernels("no_such_isa") == nullptr);
    for (const char* isa : {"scalar", "avx2", "avx512", "neon"}) {
        bool listed = false;
        for (const auto& s : names) listed |= (s == isa);
        if (listed) {
            set_kernels(isa);
            CHECK(std::string(kernels().name) == isa);
        } else {
            CHECK_THROWS(set_kernels(isa), ValueError);  // unknown here or CPU lacks it
        }
    }
    // the default pick is the best listed table
    set_kernels(names.back());
    std::printf("tables:");
    for (const auto& s : names) std::printf(" %s", s.c_str());
    std::printf("  (cpu:");
    for (const auto& f : cpu_feature_names()) std::printf(" %s", f.c_str());
    std::printf(")\n");
}

}  // namespace

int main() {
    test_dispatch();
    test_scalar_vs_float64();
    for (const auto& name : available_kernels()) {
        test_table(name);
        test_helpers(name);
        test_attention_kernels(name);
        test_activations(name);
    }
    for (const auto& kv : g_stats)
        std::printf("%-22s %6d comparisons, %6d bit-exact with the reference\n", kv.first.c_str(),
                    kv.second.first, kv.second.second);
    return test_exit_code("test_kernels");
}
