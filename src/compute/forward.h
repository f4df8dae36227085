// Internal interface between the graph executor (src/core/graph.cpp) and the forward functions of
// the ops (src/compute/*.cpp). forward(t, p) computes the rows of t that belong to thread p.ith of
// p.nth; it never throws (everything is validated at build time or in forward_validate).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ggmlpy/tensor.h"
#include "ggmlpy/threadpool.h"

namespace ggmlpy {

struct ComputeParams {
    int ith = 0, nth = 1;
    char* wdata = nullptr;               // shared scratch of forward_work_size bytes (64-aligned)
    size_t wsize = 0;
    ThreadPool* pool = nullptr;          // for an op that needs an internal barrier (nth > 1)
    std::atomic<int64_t>* chunk = nullptr;  // dynamic work counter, == nth when the op starts
    void barrier() const { if (nth > 1) pool->barrier(); }
};

// Scratch bytes t needs at nth threads (0 for most ops).
size_t forward_work_size(const Tensor* t, int nth);
// Single-threaded checks of input values before any thread runs (get_rows ids); throws ValueError.
void forward_validate(const Tensor* t);
// Dispatch on t->op.
void forward(const Tensor* t, const ComputeParams& p);

// Per-op entry points (one file per family).
void forward_dup(const Tensor* t, const ComputeParams& p);        // CONT, CPY
void forward_binary(const Tensor* t, const ComputeParams& p);     // ADD, MUL
void forward_unary(const Tensor* t, const ComputeParams& p);      // SCALE, SILU, GELU, GELU_ERF, SWIGLU
void forward_rms_norm(const Tensor* t, const ComputeParams& p);
void forward_layer_norm(const Tensor* t, const ComputeParams& p);
void forward_soft_max(const Tensor* t, const ComputeParams& p);
void forward_rope(const Tensor* t, const ComputeParams& p);
void forward_get_rows(const Tensor* t, const ComputeParams& p);
void forward_mul_mat(const Tensor* t, const ComputeParams& p);
size_t mul_mat_work_size(const Tensor* t, int nth);
void forward_flash_attn(const Tensor* t, const ComputeParams& p);
size_t flash_attn_work_size(const Tensor* t, int nth);
// backward ops (ops_backward.cpp)
void forward_mul_mat_t(const Tensor* t, const ComputeParams& p);
size_t mul_mat_t_work_size(const Tensor* t, int nth);
void forward_rms_norm_back(const Tensor* t, const ComputeParams& p);
void forward_layer_norm_back(const Tensor* t, const ComputeParams& p);
void forward_soft_max_back(const Tensor* t, const ComputeParams& p);
void forward_act_back(const Tensor* t, const ComputeParams& p);  // SILU_BACK, GELU_BACK
void forward_dropout(const Tensor* t, const ComputeParams& p);

// Row index r (over ne1*ne2*ne3) -> byte offset through strides nb.
inline size_t row_offset(const Tensor* t, int64_t r) {
    const int64_t i1 = r % t->ne[1];
    const int64_t i2 = (r / t->ne[1]) % t->ne[2];
    const int64_t i3 = r / (t->ne[1] * t->ne[2]);
    return (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3];
}

// Element i of an f32 row that starts at `row` (strided by nb[0]).
inline float row_elem(const Tensor* t, const char* row, int64_t i) {
    return *reinterpret_cast<const float*>(row + (size_t)i * t->nb[0]);
}

// Rows [r0, r1) of n rows for thread ith of nth (contiguous blocks).
inline void split_rows(int64_t n, int ith, int nth, int64_t& r0, int64_t& r1) {
    const int64_t per = (n + nth - 1) / nth;
    r0 = per * ith;
    r1 = r0 + per < n ? r0 + per : n;
    if (r0 > n) r0 = n;
}

}  // namespace ggmlpy
