// Reference (scalar) quantizers and dequantizers for every block type: these functions are the
// format spec, bit-exact with GGUF/ggml (dequantize equals gguf.quants.dequantize). They work on
// rows: n elements = n / block_size blocks. SIMD lives in src/kernels, never here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ggmlpy/dtype.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

namespace ggmlpy {

// y[0..n) = dequantized row of type t (F32/F16/BF16/Q*). Throws ValueError for unsupported t.
void dequantize_row(DType t, const void* x, float* y, int64_t n);
// Whether dequantize_row knows type t (probed with one block of zero bytes).
bool can_dequantize(DType t);
// Quantize one row of n floats into type t (n a multiple of the block size). For K-quants this
// searches per-sub-block scales/mins (not plain round-to-nearest). imatrix-free.
void quantize_row(DType t, const float* x, void* y, int64_t n);
// Quantize nrows rows of n_per_row floats; returns bytes written. Rows are independent.
size_t quantize_rows(DType t, const float* x, void* y, int64_t nrows, int64_t n_per_row);

// Per-type reference functions (k = element count, a multiple of the block size).
void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k);
void quantize_row_q4_1_ref(const float* x, block_q4_1* y, int64_t k);
void quantize_row_q5_0_ref(const float* x, block_q5_0* y, int64_t k);
void quantize_row_q5_1_ref(const float* x, block_q5_1* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k);
void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t k);
void quantize_row_q2_K_ref(const float* x, block_q2_K* y, int64_t k);
void quantize_row_q3_K_ref(const float* x, block_q3_K* y, int64_t k);
void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t k);
void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t k);

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k);
void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t k);
void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t k);
void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t k);
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k);
void dequantize_row_q8_K(const block_q8_K* x, float* y, int64_t k);
void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t k);
void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t k);
void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t k);
void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t k);
void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t k);

}  // namespace ggmlpy
