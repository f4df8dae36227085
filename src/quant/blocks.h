// Quantization block structs, byte-compatible with GGUF/ggml (sizes are static_asserted).
// A row of n elements of type T is n / block_size consecutive blocks. fp16 fields are raw
// IEEE half bits (uint16_t); see fp16.h for conversion. Dequantization formulas live in
// quant.cpp's *_ref functions, which are the spec.
#pragma once
#include <cstdint>

namespace ggmlpy {

using fp16_t = uint16_t;  // IEEE binary16 bits
using bf16_t = uint16_t;  // bfloat16 bits (upper half of an f32)

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32;
constexpr int QK_K = 256;        // super-block size of the K-quants
constexpr int K_SCALE_SIZE = 12; // packed 6-bit scales/mins of Q4_K / Q5_K

// x = d * (q - 8); qs[j] low nibble = element j, high nibble = element j + 16
struct block_q4_0 { fp16_t d; uint8_t qs[QK4_0 / 2]; };
// x = d * q + m
struct block_q4_1 { fp16_t d; fp16_t m; uint8_t qs[QK4_1 / 2]; };
// x = d * (q - 16); q = nibble | (bit j of qh) << 4
struct block_q5_0 { fp16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
// x = d * q + m
struct block_q5_1 { fp16_t d; fp16_t m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
// x = d * q
struct block_q8_0 { fp16_t d; int8_t qs[QK8_0]; };
// activation partner of q4_1/q5_1 in ggml (s = d * sum(qs)); kept for completeness
struct block_q8_1 { fp16_t d; fp16_t s; int8_t qs[32]; };
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

// 16 sub-blocks of 16; scales[i] = 4-bit scale | 4-bit min << 4; x = d*sc*q - dmin*m
struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; fp16_t d; fp16_t dmin; };
// 16 sub-blocks of 16; 2 low bits in qs, high bit in hmask; 6-bit scales packed in 12 bytes
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; fp16_t d; };
// 8 sub-blocks of 32; 6-bit scales and mins packed in 12 bytes; x = d*sc*q - dmin*m
struct block_q4_K { fp16_t d; fp16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
// as q4_K plus a fifth bit per element in qh
struct block_q5_K { fp16_t d; fp16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
// 16 sub-blocks of 16; 4 low bits in ql, 2 high bits in qh; int8 scales; x = d*sc*(q - 32)
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; fp16_t d; };
// activation partner of the K-quants: f32 scale, int8 values, bsums = sums of each 16 values
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

}  // namespace ggmlpy
