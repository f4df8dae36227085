// KernelTable: one function-pointer table per ISA (scalar, avx2, avx512, neon), chosen once at
// run time (dispatch.cpp; GGMLPY_ISA=scalar|avx2|avx512|neon forces one). Matmul never switches on
// the weight type: it asks type[T] which partner type activations are converted to
// (vec_dot_type), converts each activation row once with from_float, then calls vec_dot / gemm.
// scalar.cpp is the complete reference; every other table is tested against it
// (tests/cpp/test_kernels.cpp): for quantized weights vec_dot, gemm and the partner from_float
// must give the scalar table's exact bits (integer block dots, then the scalar's per-block float
// formula, blocks summed in the order kutil::tree8 states); float weights agree within
// (n + 4) * FLT_EPSILON * sum|x_i * y_i|.
// Activation rows passed to vec_dot/gemm are what the partner's from_float produces: Q8_0 quants
// lie in [-127, 127] (the x86 q8_0 x q8_0 dot uses |x| * sign(y, x), exact only without -128 in y);
// weight rows may hold any bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ggmlpy/dtype.h"

namespace ggmlpy {

// Convert n floats (n a multiple of the partner's block size) into a row of the partner type.
using FromFloatFn = void (*)(const float* x, void* y, int64_t n);
// *s = dot(x, y) over n elements; x: weight row of type T, y: activation row of vec_dot_type.
using VecDotFn = void (*)(int64_t n, float* s, const void* x, const void* y);
// Tile product: for r < nrx weight rows and c < nry activation rows
//   s[c * bs + r] = dot(x + r * bx, y + c * by)      (bx, by, bs: row strides in bytes / floats)
// Reuses each loaded weight block across the nry activation rows (prefill path).
using GemmFn = void (*)(int64_t n, float* s, size_t bs, const void* x, size_t bx, int nrx,
                        const void* y, size_t by, int nry);

// Decode of the 32-element types redoes, for every weight row, work that depends on the activation
// row alone (its block scales as f32, its block sums). q8_0_prep does it once per activation row;
// vec_dot_prep then gives vec_dot's exact bits from (x, y, prep). Layout of prep for n elements
// (nb = n / 32 blocks): float dy[nb] (each block's fp16 scale), int32 sy[nb] (sum of its quants),
// then int8 yq[32 * nb], the quants regrouped for pair-of-blocks SIMD: in each full group of 8
// blocks g..g+7, pair k = 0..3 (blocks g+k, g+k+4) takes 64 bytes: block g+k's quants 0..15, block
// g+k+4's 0..15, block g+k's 16..31, block g+k+4's 16..31 (blocks past the last full group: as is).
using VecDotPrepFn = void (*)(int64_t n, float* s, const void* x, const void* y, const void* prep);
size_t q8_0_prep_size(int64_t n);
void q8_0_prep(const void* y, void* prep, int64_t n);

// Prefill and batched decode of the 32-element types take their activation rows 8 at a time,
// packed into a panel that the tile reads front to back (q8_0_pack8; rows c >= nry are zeros).
// Why: a weight group of 8 blocks is unpacked once into 8 vectors whose 32-bit lane j holds 4
// quants of block j, and each activation row's group comes in the same order, so a row's 8 block
// dots are 8 multiply-adds summed vertically (lane j = block j), with no horizontal reduction per
// row (the old pair layout needed three hadds per row and group). Layout for n elements (nb = n / 32
// blocks, 320 bytes per block, q8_0_pack8_size(n) = 320 * nb bytes per panel):
// - each full group of 8 blocks g..g+7: 8 rows of 320 bytes, row c at (g + c) * 320: float dy[8]
//   (block g+j's scale), int32 sy[8] (the sum of its quants), then int8 q[8][32] with
//   q[i][4j..4j+3] = block g+j's quants 4i..4i+3;
// - each block b past the last full group, at b * 320: float dy[8], int32 sy[8] (lane c = row c),
//   then int8 q[8][32] (row c's 32 quants as they are).
size_t q8_0_pack8_size(int64_t n);
void q8_0_pack8(const void* y, size_t by, int nry, void* out, int64_t n);

// Decode: one activation row against nrx weight rows x + r * bx, s[r] = dot(row r, y) with
// vec_dot's exact bits (float weights: within vec_dot's tolerance); prep is y's q8_0_prep data
// where the partner is Q8_0, else unused. The kernel picks the order it reads the rows in: the x86
// tables read the two halves of the range in lockstep, two streams from memory, which one stream
// with the same prefetching did not match (bench_kernels, 256 MiB of weights, 2 threads).
using DecodeFn = void (*)(int64_t n, float* s, const void* x, size_t bx, int64_t nrx, const void* y,
                          const void* prep);

// Attention's P.V over a cache of this type (one row per cached position), for ny heads at once:
// for c < ny and k < n,  y_c[k] += sum over r = 0 .. nrx-1 (in that order) of w_c[r] * x_r[k]
// (y_c = y + c * by floats, w_c = w + c * bw floats, x_r = x + r * bx bytes), each term one fused
// multiply-add y = fma(coef, q, y): coef = w_c[r] for float rows, coef = w_c[r] * d (one f32
// multiply) for a block of scale d and quants q (Q8_0 q, Q4_0 nibble - 8). Fused, so every table
// gives the scalar table's exact bits (std::fma there).
using AccumFn = void (*)(int64_t n, float* y, size_t by, int ny, const void* x, size_t bx, int64_t nrx,
                         const float* w, size_t bw);

struct TypeKernels {
    DType vec_dot_type = DType::F32;  // partner type of the activations (Q8_0, Q8_K, F32, ...)
    VecDotFn vec_dot = nullptr;       // nullptr: type not supported as a matmul weight
    GemmFn gemm = nullptr;            // nullptr: matmul falls back to vec_dot
    int gemm_rows_x = 1;              // tile sizes the gemm is fastest with (max nrx, nry)
    int gemm_rows_y = 1;
    FromFloatFn from_float = nullptr; // quantize f32 -> this type (used when T is a partner type)
    VecDotPrepFn vec_dot_prep = nullptr;  // optional (Q8_0 partner only): vec_dot with q8_0_prep data
    // optional (Q8_0 partner only): the gemm with y = one q8_0_pack8 panel of nry <= 8 rows (by
    // unused), vec_dot's bits; at most gemm_pack_rows_x weight rows per call. Preferred over gemm.
    GemmFn gemm_pack = nullptr;
    int gemm_pack_rows_x = 1;
    // optional: mul_mat decodes (one activation row) through it, else vec_dot / vec_dot_prep per row
    DecodeFn decode = nullptr;
    // optional: rows of this type as attention's V (flash_attn); F32, F16, Q8_0, Q4_0
    AccumFn accum = nullptr;
    // optional: attention scores against a cache of this type, the GemmFn contract with vec_dot's
    // bits, for short rows (one head) and many weight rows (cached positions); else decode/vec_dot
    GemmFn attn_dot = nullptr;
};

struct KernelTable {
    const char* name = "";                 // "scalar", "avx2", "avx512", "neon"
    TypeKernels type[DTYPE_TABLE_SIZE];    // indexed by DType id
    // hot f32 helpers (n any length)
    void (*vec_dot_f32)(int64_t n, float* s, const float* x, const float* y) = nullptr;
    void (*vec_mad_f32)(int64_t n, float* y, const float* x, float v) = nullptr;  // y += x * v
    void (*vec_scale_f32)(int64_t n, float* y, float v) = nullptr;               // y *= v
    void (*fp16_to_fp32_row)(const uint16_t* x, float* y, int64_t n) = nullptr;
    void (*fp32_to_fp16_row)(const float* x, uint16_t* y, int64_t n) = nullptr;
    // activation helpers on f32 rows (y may be x): softmax's exponentials y = exp(x - mx),
    // returning their sum (in double); y = silu(x) [* g] = x / (1 + exp(-x)) [* g] (g may be null:
    // SILU, else SWIGLU); y = gelu(x), the tanh approximation GPT-J uses. The scalar table calls
    // libm; the SIMD tables use their own exp (tolerances in tests/cpp/test_kernels.cpp).
    double (*vec_exp_sum_f32)(int64_t n, float* y, const float* x, float mx) = nullptr;
    void (*vec_silu_f32)(int64_t n, float* y, const float* x, const float* g) = nullptr;
    void (*vec_gelu_f32)(int64_t n, float* y, const float* x) = nullptr;
};

// The table in use (first call picks it: GGMLPY_ISA if set, else the best the CPU runs).
const KernelTable& kernels();
// Table by name if compiled in and runnable on this CPU, else nullptr.
const KernelTable* find_kernels(const std::string& name);
// Names of the compiled-in tables this CPU can run, best last.
std::vector<std::string> available_kernels();
// Force a table (tests, GGMLPY_ISA); throws ValueError naming the ISA if unknown or unsupported.
void set_kernels(const std::string& name);

// Per-ISA table builders; each lives in its own translation unit.
const KernelTable& scalar_kernels();
#if defined(GGMLPY_ARCH_X86)
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
#endif
#if defined(GGMLPY_ARCH_ARM64)
const KernelTable& neon_kernels();
#endif

}  // namespace ggmlpy
