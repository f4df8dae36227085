// Row dispatchers over the reference (de)quantizers: dequantize_row / quantize_row / quantize_rows
// for F32, F16, BF16 and every quantized block type (quant.h). They validate the type and the row
// length (a multiple of the block size) and throw ggmlpy::ValueError naming both; no SIMD here.
#include <cstring>
#include <string>

#include "ggmlpy/error.h"
#include "quant/quant.h"
#include "quant/quant_internal.h"

namespace ggmlpy {
namespace {

void check_row(DType t, int64_t n, const char* what) {
    const DTypeTraits& tr = dtype_traits(t);  // throws for unknown ids
    if (n < 0 || n % tr.block_size != 0)
        throw ValueError(std::string(what) + ": row of " + std::to_string(n) +
                         " elements is not a multiple of the " + tr.name + " block size " +
                         std::to_string(tr.block_size));
}

[[noreturn]] void unsupported(DType t, const char* what) {
    throw ValueError(std::string(what) + ": type " + dtype_name(t) + " is not supported");
}

}  // namespace

void dequantize_row(DType t, const void* x, float* y, int64_t n) {
    check_row(t, n, "dequantize_row");
    switch (t) {
        case DType::F32: std::memcpy(y, x, (size_t)n * sizeof(float)); return;
        case DType::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
            return;
        }
        case DType::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
            return;
        }
        case DType::Q4_0: dequantize_row_q4_0(static_cast<const block_q4_0*>(x), y, n); return;
        case DType::Q4_1: dequantize_row_q4_1(static_cast<const block_q4_1*>(x), y, n); return;
        case DType::Q5_0: dequantize_row_q5_0(static_cast<const block_q5_0*>(x), y, n); return;
        case DType::Q5_1: dequantize_row_q5_1(static_cast<const block_q5_1*>(x), y, n); return;
        case DType::Q8_0: dequantize_row_q8_0(static_cast<const block_q8_0*>(x), y, n); return;
        case DType::Q8_K: dequantize_row_q8_K(static_cast<const block_q8_K*>(x), y, n); return;
        case DType::Q2_K: dequantize_row_q2_K(static_cast<const block_q2_K*>(x), y, n); return;
        case DType::Q3_K: dequantize_row_q3_K(static_cast<const block_q3_K*>(x), y, n); return;
        case DType::Q4_K: dequantize_row_q4_K(static_cast<const block_q4_K*>(x), y, n); return;
        case DType::Q5_K: dequantize_row_q5_K(static_cast<const block_q5_K*>(x), y, n); return;
        case DType::Q6_K: dequantize_row_q6_K(static_cast<const block_q6_K*>(x), y, n); return;
        default: unsupported(t, "dequantize_row");
    }
}

void quantize_row(DType t, const float* x, void* y, int64_t n) {
    check_row(t, n, "quantize_row");
    switch (t) {
        case DType::F32: std::memcpy(y, x, (size_t)n * sizeof(float)); return;
        case DType::F16: {
            uint16_t* h = static_cast<uint16_t*>(y);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
            return;
        }
        case DType::BF16: {
            uint16_t* h = static_cast<uint16_t*>(y);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(x[i]);
            return;
        }
        case DType::Q4_0: quantize_row_q4_0_ref(x, static_cast<block_q4_0*>(y), n); return;
        case DType::Q4_1: quantize_row_q4_1_ref(x, static_cast<block_q4_1*>(y), n); return;
        case DType::Q5_0: quantize_row_q5_0_ref(x, static_cast<block_q5_0*>(y), n); return;
        case DType::Q5_1: quantize_row_q5_1_ref(x, static_cast<block_q5_1*>(y), n); return;
        case DType::Q8_0: quantize_row_q8_0_ref(x, static_cast<block_q8_0*>(y), n); return;
        case DType::Q8_K: quantize_row_q8_K_ref(x, static_cast<block_q8_K*>(y), n); return;
        case DType::Q2_K: quantize_row_q2_K_ref(x, static_cast<block_q2_K*>(y), n); return;
        case DType::Q3_K: quantize_row_q3_K_ref(x, static_cast<block_q3_K*>(y), n); return;
        case DType::Q4_K: quantize_row_q4_K_ref(x, static_cast<block_q4_K*>(y), n); return;
        case DType::Q5_K: quantize_row_q5_K_ref(x, static_cast<block_q5_K*>(y), n); return;
        case DType::Q6_K: quantize_row_q6_K_ref(x, static_cast<block_q6_K*>(y), n); return;
        default: unsupported(t, "quantize_row");
    }
}

size_t quantize_rows(DType t, const float* x, void* y, int64_t nrows, int64_t n_per_row) {
    check_row(t, n_per_row, "quantize_rows");
    if (nrows < 0) throw ValueError("quantize_rows: negative row count " + std::to_string(nrows));
    const size_t rs = row_size(t, n_per_row);
    char* out = static_cast<char*>(y);
    for (int64_t r = 0; r < nrows; ++r) quantize_row(t, x + r * n_per_row, out + (size_t)r * rs, n_per_row);
    return (size_t)nrows * rs;
}

// One block of zero bytes decoded as a probe (quant.h).
bool can_dequantize(DType t) {
    static const uint8_t zeros[1024] = {};
    float out[1024];
    const DTypeTraits& tr = dtype_traits(t);
    if (tr.type_size > sizeof zeros || tr.block_size > 1024) return false;
    try {
        dequantize_row(t, zeros, out, tr.block_size);
        return true;
    } catch (const ValueError&) {
        return false;
    }
}

}  // namespace ggmlpy
