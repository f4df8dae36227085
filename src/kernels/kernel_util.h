// Small helpers shared by the kernel tables (scalar.cpp and the SIMD files): reading the packed
// scale fields of the K-quant blocks. Pure bit manipulation, no ISA code; the layouts are those of
// quant/blocks.h (bit-exact with GGUF/ggml).
#pragma once
#include <cstdint>
#include <cstring>

namespace ggmlpy {
namespace kutil {

// Q3_K: 16 signed 6-bit scales in 12 bytes. Scale i (sub-block of 16 elements i*16..i*16+15):
// low 4 bits = nibble (i & 8 ? high : low) of byte i % 8; high 2 bits = bits 2*(i/4)..+1 of byte
// 8 + i % 4. Stored with an offset of 32.
inline int q3k_scale(const uint8_t* scales, int i) {
    const int lo = (i < 8) ? (scales[i] & 0xF) : (scales[i - 8] >> 4);
    const int hi = (scales[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

// Q4_K / Q5_K: 8 unsigned 6-bit scales and 8 6-bit mins in 12 bytes. Sub-block j < 4: scale =
// low 6 bits of byte j, min = low 6 bits of byte j+4. j >= 4: low 4 bits from byte j+4 (scale: low
// nibble, min: high nibble), high 2 bits from the top bits of byte j-4 (scale) / byte j (min).
inline void q4k_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

// Float order of the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), part of the spec every
// table reproduces bit for bit: the per-block products P_b are summed in groups of 8 blocks, each
// group as the fixed tree ((P0+P1)+(P2+P3))+((P4+P5)+(P6+P7)), the group sums added in order, then
// the last nb % 8 blocks added one by one. Why: a plain running sum is one add-latency chain per
// block, which bounded the SIMD decode kernels; a group's tree is computed off that chain (8 lanes
// of one vector in vec_dot, 8 blocks of a pair-lane vector in gemm).
inline float tree8(const float* p) { return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])); }

// Q5_0 / Q5_1: the 32 fifth bits, little-endian (bit j = element j).
inline uint32_t load_qh(const uint8_t qh[4]) {
    uint32_t v;
    std::memcpy(&v, qh, 4);
    return v;
}

}  // namespace kutil
}  // namespace ggmlpy
