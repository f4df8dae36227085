// Forward functions of the row-wise elementwise ops: CONT / CPY (copy with f32/f16/bf16
// conversion, any strides; f32 rows into a quantized tensor's rows), ADD / MUL (b broadcast over
// a), SCALE, SILU, GELU, GELU_ERF, SWIGLU.
// Rows (i1, i2, i3) are split in contiguous blocks over threads; results are written through the
// output's own strides (dense except for CPY into a view). SILU, SWIGLU and GELU run on the kernel
// table's activation helpers (vectorized exp), strided rows through a dense copy.
#include <cmath>
#include <cstring>
#include <vector>

#include "compute/forward.h"
#include "core/op_params.h"
#include "kernels/kernels.h"
#include "quant/fp16.h"

namespace ggmlpy {
namespace {

// Float value of element i of a row of type t (f32/f16/bf16) with element stride s bytes.
inline float load(DType t, const char* p) {
    switch (t) {
        case DType::F16: return fp16_to_fp32(*reinterpret_cast<const uint16_t*>(p));
        case DType::BF16: return bf16_to_fp32(*reinterpret_cast<const uint16_t*>(p));
        default: return *reinterpret_cast<const float*>(p);
    }
}
inline void store(DType t, char* p, float v) {
    switch (t) {
        case DType::F16: *reinterpret_cast<uint16_t*>(p) = fp32_to_fp16(v); break;
        case DType::BF16: *reinterpret_cast<uint16_t*>(p) = fp32_to_bf16(v); break;
        default: *reinterpret_cast<float*>(p) = v; break;
    }
}

// n elements from (st, sp, ss stride) to (dt, dp, ds stride), converting.
void convert_row(DType st, const char* sp, size_t ss, DType dt, char* dp, size_t ds, int64_t n) {
    const size_t sz_s = st == DType::F32 ? 4 : 2, sz_d = dt == DType::F32 ? 4 : 2;
    if (ss == sz_s && ds == sz_d) {
        if (st == dt) { std::memcpy(dp, sp, (size_t)n * sz_s); return; }
        const KernelTable& k = kernels();
        if (st == DType::F32 && dt == DType::F16 && k.fp32_to_fp16_row) {
            k.fp32_to_fp16_row(reinterpret_cast<const float*>(sp), reinterpret_cast<uint16_t*>(dp), n);
            return;
        }
        if (st == DType::F16 && dt == DType::F32 && k.fp16_to_fp32_row) {
            k.fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(sp), reinterpret_cast<float*>(dp), n);
            return;
        }
    }
    for (int64_t i = 0; i < n; ++i) store(dt, dp + (size_t)i * ds, load(st, sp + (size_t)i * ss));
}

inline size_t elem_offset(const Tensor* t, int64_t j) {
    const int64_t i0 = j % t->ne[0];
    return (size_t)i0 * t->nb[0] + row_offset(t, j / t->ne[0]);
}

}  // namespace

void forward_dup(const Tensor* t, const ComputeParams& p) {
    const Tensor* s = t->src[0];
    const char* sd = static_cast<const char*>(s->data);
    char* dd = static_cast<char*>(t->data);
    if (dtype_traits(t->type).quantized) {  // f32 rows into block rows (a quantized KV cache)
        const FromFloatFn q = kernels().type[(int)t->type].from_float;
        int64_t r0, r1;
        split_rows(t->nrows(), p.ith, p.nth, r0, r1);
        for (int64_t r = r0; r < r1; ++r)
            q(reinterpret_cast<const float*>(sd + row_offset(s, r)), dd + row_offset(t, r), t->ne[0]);
        return;
    }
    if (same_shape(s, t)) {
        int64_t r0, r1;
        split_rows(t->nrows(), p.ith, p.nth, r0, r1);
        for (int64_t r = r0; r < r1; ++r)
            convert_row(s->type, sd + row_offset(s, r), s->nb[0], t->type, dd + row_offset(t, r), t->nb[0], t->ne[0]);
        return;
    }
    // shapes differ: copy in flat element order
    const int64_t n = t->nelements();
    int64_t j0, j1;
    split_rows(n, p.ith, p.nth, j0, j1);
    if (s->is_contiguous() && t->is_contiguous()) {
        const size_t es = s->nb[0], ed = t->nb[0];
        convert_row(s->type, sd + (size_t)j0 * es, es, t->type, dd + (size_t)j0 * ed, ed, j1 - j0);
        return;
    }
    for (int64_t j = j0; j < j1; ++j) store(t->type, dd + elem_offset(t, j), load(s->type, sd + elem_offset(s, j)));
}

void forward_binary(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* b = t->src[1];
    const bool is_add = t->op == Op::ADD;
    const int64_t ne0 = t->ne[0], bne0 = b->ne[0];
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
        const char* ar = static_cast<const char*>(a->data) + row_offset(a, r);
        const char* br = static_cast<const char*>(b->data) + (size_t)(i1 % b->ne[1]) * b->nb[1] +
                         (size_t)(i2 % b->ne[2]) * b->nb[2] + (size_t)(i3 % b->ne[3]) * b->nb[3];
        float* y = reinterpret_cast<float*>(static_cast<char*>(t->data) + row_offset(t, r));
        if (a->nb[0] == 4 && b->nb[0] == 4 && t->nb[0] == 4) {
            const float* x = reinterpret_cast<const float*>(ar);
            const float* z = reinterpret_cast<const float*>(br);
            for (int64_t i0 = 0; i0 < ne0; i0 += bne0) {
                if (is_add)
                    for (int64_t k = 0; k < bne0; ++k) y[i0 + k] = x[i0 + k] + z[k];
                else
                    for (int64_t k = 0; k < bne0; ++k) y[i0 + k] = x[i0 + k] * z[k];
            }
        } else {
            for (int64_t i0 = 0; i0 < ne0; ++i0) {
                const float x = *reinterpret_cast<const float*>(ar + (size_t)i0 * a->nb[0]);
                const float z = *reinterpret_cast<const float*>(br + (size_t)(i0 % bne0) * b->nb[0]);
                *reinterpret_cast<float*>(reinterpret_cast<char*>(y) + (size_t)i0 * t->nb[0]) = is_add ? x + z : x * z;
            }
        }
    }
}

void forward_unary(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* b = t->src[1];  // SWIGLU only
    const int64_t ne0 = t->ne[0];
    const float s = t->op == Op::SCALE ? param_f32(t, 0) : 0.0f;
    const KernelTable& k = kernels();
    int64_t r0, r1;
    split_rows(t->nrows(), p.ith, p.nth, r0, r1);
    // strided rows are gathered here first: the kernel-table helpers take dense rows
    std::vector<float> tmp;
    for (int64_t r = r0; r < r1; ++r) {
        const char* ar = static_cast<const char*>(a->data) + row_offset(a, r);
        const char* br = b ? static_cast<const char*>(b->data) + row_offset(b, r) : nullptr;
        char* yr = static_cast<char*>(t->data) + row_offset(t, r);
        const size_t sa = a->nb[0], sb = b ? b->nb[0] : 0, sy = t->nb[0];
        auto X = [&](int64_t i) { return *reinterpret_cast<const float*>(ar + (size_t)i * sa); };
        auto Y = [&](int64_t i) -> float& { return *reinterpret_cast<float*>(yr + (size_t)i * sy); };
        switch (t->op) {
            case Op::SCALE:
                for (int64_t i = 0; i < ne0; ++i) Y(i) = X(i) * s;
                break;
            case Op::SILU:
            case Op::SWIGLU:
            case Op::GELU: {
                const bool dense = sa == 4 && sy == 4 && (!b || sb == 4);
                const float *x = reinterpret_cast<const float*>(ar), *g = reinterpret_cast<const float*>(br);
                float* y = reinterpret_cast<float*>(yr);
                if (!dense) {
                    tmp.resize((size_t)ne0 * 2);
                    for (int64_t i = 0; i < ne0; ++i) tmp[i] = X(i);
                    for (int64_t i = 0; b && i < ne0; ++i) tmp[ne0 + i] = *reinterpret_cast<const float*>(br + (size_t)i * sb);
                    x = y = tmp.data();
                    g = b ? tmp.data() + ne0 : nullptr;
                }
                if (t->op == Op::GELU) k.vec_gelu_f32(ne0, y, x);
                else k.vec_silu_f32(ne0, y, x, g);
                if (!dense)
                    for (int64_t i = 0; i < ne0; ++i) Y(i) = tmp[i];
                break;
            }
            case Op::GELU_ERF:
                for (int64_t i = 0; i < ne0; ++i) {
                    const float x = X(i);
                    Y(i) = 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
                }
                break;
            default:
                break;
        }
    }
}

}  // namespace ggmlpy
