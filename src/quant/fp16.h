// Scalar IEEE half <-> float and bfloat16 <-> float conversion (bit exact, round to nearest even).
// SIMD tables convert whole rows with F16C / NEON instead; these are the reference.
#pragma once
#include <cstdint>
#include <cstring>

namespace ggmlpy {

inline float fp32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t fp32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }

// half -> float: exact for every half value, including subnormals, inf and nan.
inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return fp32_from_bits(sign | 0x7f800000u | (mant << 13));  // inf / nan
    if (exp == 0) {
        if (mant == 0) return fp32_from_bits(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

// float -> half, round to nearest even; overflow gives inf, nan stays nan.
inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520: inf
    if (ax < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
        // the magic add aligns the mantissa so the FPU's round-to-nearest-even does the rounding
        const float v = fp32_from_bits(ax) + 0.5f;
        return (uint16_t)(sign | (fp32_to_bits(v) - 0x3f000000u));
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    uint32_t r = ax + 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round
    return (uint16_t)(sign | (r >> 13));
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits((uint32_t)h << 16); }

// float -> bfloat16, round to nearest even; nan stays nan (quiet).
inline uint16_t fp32_to_bf16(float f) {
    uint32_t x = fp32_to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace ggmlpy
