// Tensors and the Context (arena) that owns their metadata. A tensor is a typed, strided view of
// up to 4 dims: ne[i] elements and nb[i] bytes of stride per dim, ne[0] fastest (a row). Leaf
// tensors hold data (allocated in the context, or external memory such as mmap'd weights); op
// results get their data only when a graph is computed (graph.h), from a reusable buffer.
// Views (view_*, reshape, permute, transpose) share their source's data: view_src + view_offs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "ggmlpy/dtype.h"

namespace ggmlpy {

constexpr int MAX_DIMS = 4;
constexpr int MAX_SRC = 4;
constexpr int MAX_OP_PARAMS = 16;  // int32 words of per-op parameters
constexpr int MAX_NAME = 64;

enum class Op : int32_t {
    NONE = 0,   // leaf
    VIEW, RESHAPE, PERMUTE, TRANSPOSE,  // no compute: share the source's data
    CONT, CPY, GET_ROWS, MUL_MAT, ADD, MUL, SCALE, RMS_NORM, LAYER_NORM, ROPE, SOFT_MAX,
    SILU, GELU, GELU_ERF, SWIGLU, FLASH_ATTN,
    // backward ops (training, ops.h "Backward ops")
    MUL_MAT_T, RMS_NORM_BACK, LAYER_NORM_BACK, SOFT_MAX_BACK, SILU_BACK, GELU_BACK, DROPOUT,
    COUNT
};
const char* op_name(Op op);

struct Tensor {
    DType type = DType::F32;
    int64_t ne[MAX_DIMS] = {1, 1, 1, 1};  // elements per dim
    size_t nb[MAX_DIMS] = {0, 0, 0, 0};   // bytes per step in each dim (nb[0] = type size)

    Op op = Op::NONE;
    int32_t op_params[MAX_OP_PARAMS] = {};
    Tensor* src[MAX_SRC] = {nullptr, nullptr, nullptr, nullptr};

    Tensor* view_src = nullptr;  // the tensor whose data this one views (never itself a view)
    size_t view_offs = 0;        // byte offset into view_src's data

    void* data = nullptr;        // leaf: set at creation; op result: set by the graph allocator
    bool is_output = false;      // keep its memory after compute (roots of build_forward are)
    char name[MAX_NAME] = {};

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
    // bytes spanned from the first to one past the last element (strided views included)
    size_t nbytes() const;
    size_t element_size() const;      // bytes per block / block size (plain types: bytes)
    size_t row_bytes() const;         // bytes of one row of ne[0] elements, densely packed
    bool is_contiguous() const;       // dense in the natural order
    bool rows_contiguous() const;     // nb[0] == type size (each row dense; rows may be strided)
    bool is_view() const { return view_src != nullptr; }
    int n_dims() const;               // 1..4: index of the last dim with ne > 1, plus one
    std::string shape_str() const;    // "[4096, 32, 1, 1] f32"
    Tensor* set_name(const std::string& n);
    template <typename T> T* ptr() const { return static_cast<T*>(data); }
    // address of element (i0, i1, i2, i3) for plain (non-block) types; i0 in elements
    void* at(int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) const {
        return (char*)data + i0 * nb[0] + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
    }
    const Tensor* base() const { return view_src ? view_src : this; }
};

bool same_shape(const Tensor* a, const Tensor* b);

// Owns tensor metadata (stable addresses) and, when alloc_data, the data of leaf tensors made with
// new_tensor (64-byte aligned, zero-filled). Op results never get data here. Not thread-safe.
class Context {
public:
    explicit Context(bool alloc_data = true);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    // Leaf of the given shape (1 to 4 dims; missing dims are 1). Data allocated iff alloc_data.
    // Throws ValueError for an unsupported type, a negative dim, or ne[0] not a multiple of the
    // block size.
    Tensor* new_tensor(DType type, const std::vector<int64_t>& ne);
    Tensor* new_tensor_1d(DType type, int64_t ne0) { return new_tensor(type, {ne0}); }
    Tensor* new_tensor_2d(DType type, int64_t ne0, int64_t ne1) { return new_tensor(type, {ne0, ne1}); }
    Tensor* new_tensor_3d(DType type, int64_t ne0, int64_t ne1, int64_t ne2) {
        return new_tensor(type, {ne0, ne1, ne2});
    }
    Tensor* new_tensor_4d(DType type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
        return new_tensor(type, {ne0, ne1, ne2, ne3});
    }
    // Leaf over memory owned by the caller (mmap'd weights, a KV buffer): dense layout, not copied,
    // must outlive every graph that uses it. Never written through unless used as a cpy target.
    Tensor* new_tensor_external(DType type, const std::vector<int64_t>& ne, const void* data);
    // Leaf with explicit strides over external memory (numpy arrays with their own strides).
    Tensor* new_tensor_strided(DType type, const std::vector<int64_t>& ne,
                               const std::vector<size_t>& nb, const void* data);

    // Metadata only, for op builders: a tensor with no data and no op yet.
    Tensor* new_node(DType type, const int64_t ne[MAX_DIMS]);

    size_t n_tensors() const { return tensors_.size(); }
    size_t data_bytes() const { return data_bytes_; }  // bytes of leaf data owned
    // Forget all tensors and free owned data (pointers from before become invalid).
    void clear();

private:
    bool alloc_data_;
    std::deque<Tensor> tensors_;
    std::vector<void*> blocks_;  // aligned allocations, freed in clear() / the destructor
    size_t data_bytes_ = 0;
};

}  // namespace ggmlpy
