// Private helpers of src/quant: rounding as the format spec does it, fp-contract control, and the
// per-sub-block scale searches used by the K-quant reference quantizers (quant_search.cpp).
// Not a public header: only src/quant/*.cpp include it.
#pragma once
#include <cstdint>
#include <cstring>

// The dequantizers must round exactly as ggml / gguf-py do (separate multiply and add), so no
// fused multiply-add contraction in these files, whatever the global flags (-march=native, arm64).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ggmlpy {
namespace qdetail {

// Round to nearest, ties to even, via the 1.5 * 2^23 trick: valid for |f| <= 2^22. Out-of-range or
// NaN input gives a wrong but harmless integer (callers clamp), never undefined behaviour.
inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    std::memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Symmetric fit x[i] ~ scale * l[i], l in [-nmax, nmax): tries 19 inverse scales around
// -nmax / (signed absmax) and keeps the one maximising the weighted least-squares gain
// (sum w x l)^2 / (sum w l^2). w = qw if given, else x^2. Stores L[i] = l[i] + nmax; returns scale.
float fit_symmetric_scale(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Symmetric fit for Q3_K: start from round-to-nearest at -nmax / absmax, then up to 5 passes of
// coordinate descent moving single l[i] when that raises (sum w x l)^2 / (sum w l^2), w = x^2.
// Stores L[i] = l[i] + nmax; returns the least-squares scale.
float fit_symmetric_scale_cd(int n, int nmax, const float* x, int8_t* L);

// Affine fit x[i] ~ scale * L[i] - the_min, L in [0, nmax], the_min >= 0: scans nstep+1 inverse
// scales (rmin + rdelta*is + nmax) / (max - min), solves the weighted 2x2 least squares for
// scale and min at each, keeps the lowest weighted error (|e| if use_mad else e^2).
float fit_affine_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L,
                           float* the_min, float rmin, float rdelta, int nstep, bool use_mad);

}  // namespace qdetail
}  // namespace ggmlpy
