// Tensor helpers and the Context arena (include/ggmlpy/tensor.h). The context keeps tensors in a
// deque (stable addresses) and owns 64-byte aligned data for leaves it allocates; op results get
// their data from the graph allocator, never here.
#include "ggmlpy/tensor.h"

#include <cstdlib>
#include <cstring>

#include "ggmlpy/error.h"

namespace ggmlpy {

const char* op_name(Op op) {
    switch (op) {
        case Op::NONE: return "none";
        case Op::VIEW: return "view";
        case Op::RESHAPE: return "reshape";
        case Op::PERMUTE: return "permute";
        case Op::TRANSPOSE: return "transpose";
        case Op::CONT: return "cont";
        case Op::CPY: return "cpy";
        case Op::GET_ROWS: return "get_rows";
        case Op::MUL_MAT: return "mul_mat";
        case Op::ADD: return "add";
        case Op::MUL: return "mul";
        case Op::SCALE: return "scale";
        case Op::RMS_NORM: return "rms_norm";
        case Op::LAYER_NORM: return "layer_norm";
        case Op::ROPE: return "rope";
        case Op::SOFT_MAX: return "soft_max";
        case Op::SILU: return "silu";
        case Op::GELU: return "gelu";
        case Op::GELU_ERF: return "gelu_erf";
        case Op::SWIGLU: return "swiglu";
        case Op::FLASH_ATTN: return "flash_attn";
        case Op::MUL_MAT_T: return "mul_mat_t";
        case Op::RMS_NORM_BACK: return "rms_norm_back";
        case Op::LAYER_NORM_BACK: return "layer_norm_back";
        case Op::SOFT_MAX_BACK: return "soft_max_back";
        case Op::SILU_BACK: return "silu_back";
        case Op::GELU_BACK: return "gelu_back";
        case Op::DROPOUT: return "dropout";
        case Op::COUNT: break;
    }
    return "?";
}

size_t Tensor::element_size() const {
    const DTypeTraits& tr = dtype_traits(type);
    return tr.type_size / (size_t)tr.block_size;
}

size_t Tensor::row_bytes() const { return row_size(type, ne[0]); }

size_t Tensor::nbytes() const {
    for (int i = 0; i < MAX_DIMS; ++i)
        if (ne[i] == 0) return 0;
    const DTypeTraits& tr = dtype_traits(type);
    size_t n = (size_t)(ne[0] / tr.block_size) * tr.type_size;  // first row, dense
    for (int i = 1; i < MAX_DIMS; ++i) n += (size_t)(ne[i] - 1) * nb[i];
    return n;
}

bool Tensor::rows_contiguous() const {
    const DTypeTraits& tr = dtype_traits(type);
    return nb[0] == tr.type_size || ne[0] == 1;
}

bool Tensor::is_contiguous() const {
    const DTypeTraits& tr = dtype_traits(type);
    if (nb[0] != tr.type_size) return false;
    size_t expect = (size_t)(ne[0] / tr.block_size) * tr.type_size;
    for (int i = 1; i < MAX_DIMS; ++i) {
        if (ne[i] != 1 && nb[i] != expect) return false;
        expect *= (size_t)ne[i];
    }
    return true;
}

int Tensor::n_dims() const {
    for (int i = MAX_DIMS - 1; i > 0; --i)
        if (ne[i] > 1) return i + 1;
    return 1;
}

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (int i = 0; i < MAX_DIMS; ++i) {
        if (i) s += ", ";
        s += std::to_string(ne[i]);
    }
    s += "] ";
    const char* n = dtype_supported((int32_t)type) ? dtype_name(type) : "?";
    s += n;
    if (name[0]) {
        s += " '";
        s += name;
        s += "'";
    }
    return s;
}

Tensor* Tensor::set_name(const std::string& n) {
    std::strncpy(name, n.c_str(), MAX_NAME - 1);
    name[MAX_NAME - 1] = 0;
    return this;
}

bool same_shape(const Tensor* a, const Tensor* b) {
    for (int i = 0; i < MAX_DIMS; ++i)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

Context::Context(bool alloc_data) : alloc_data_(alloc_data) {}

Context::~Context() { clear(); }

void Context::clear() {
    for (void* p : blocks_) std::free(p);
    blocks_.clear();
    tensors_.clear();
    data_bytes_ = 0;
}

// Fills ne (missing dims 1) and dense strides; validates type and dims.
static void init_dense(Tensor& t, DType type, const int64_t* ne, int n, const char* what) {
    if (!dtype_supported((int32_t)type))
        throw ValueError(std::string(what) + ": unsupported type id " + std::to_string((int)type));
    if (n < 1 || n > MAX_DIMS)
        throw ValueError(std::string(what) + ": expected 1 to 4 dims, got " + std::to_string(n));
    t.type = type;
    for (int i = 0; i < MAX_DIMS; ++i) {
        t.ne[i] = i < n ? ne[i] : 1;
        if (t.ne[i] < 0) throw ValueError(std::string(what) + ": negative dim " + std::to_string(t.ne[i]));
    }
    const DTypeTraits& tr = dtype_traits(type);
    if (t.ne[0] % tr.block_size != 0)
        throw ValueError(std::string(what) + ": ne[0]=" + std::to_string(t.ne[0]) +
                         " is not a multiple of the " + tr.name + " block size " + std::to_string(tr.block_size));
    t.nb[0] = tr.type_size;
    t.nb[1] = (size_t)(t.ne[0] / tr.block_size) * tr.type_size;
    t.nb[2] = t.nb[1] * (size_t)t.ne[1];
    t.nb[3] = t.nb[2] * (size_t)t.ne[2];
}

Tensor* Context::new_tensor(DType type, const std::vector<int64_t>& ne) {
    Tensor t;
    init_dense(t, type, ne.data(), (int)ne.size(), "new_tensor");
    if (alloc_data_) {
        size_t n = t.nbytes();
        size_t alloc = (n + 63) / 64 * 64;
        if (alloc == 0) alloc = 64;
        void* p = std::aligned_alloc(64, alloc);
        if (!p) throw ValueError("new_tensor: cannot allocate " + std::to_string(alloc) + " bytes");
        std::memset(p, 0, alloc);
        blocks_.push_back(p);
        data_bytes_ += alloc;
        t.data = p;
    }
    tensors_.push_back(t);
    return &tensors_.back();
}

Tensor* Context::new_tensor_external(DType type, const std::vector<int64_t>& ne, const void* data) {
    Tensor t;
    init_dense(t, type, ne.data(), (int)ne.size(), "new_tensor_external");
    if (!data && t.nelements() > 0) throw ValueError("new_tensor_external: data is null");
    t.data = const_cast<void*>(data);
    tensors_.push_back(t);
    return &tensors_.back();
}

Tensor* Context::new_tensor_strided(DType type, const std::vector<int64_t>& ne,
                                    const std::vector<size_t>& nb, const void* data) {
    Tensor t;
    init_dense(t, type, ne.data(), (int)ne.size(), "new_tensor_strided");
    if (nb.size() != ne.size())
        throw ValueError("new_tensor_strided: " + std::to_string(ne.size()) + " dims but " +
                         std::to_string(nb.size()) + " strides");
    for (size_t i = 0; i < nb.size(); ++i) t.nb[i] = nb[i];
    // unused trailing dims: stride past the whole tensor (never stepped since ne = 1)
    for (size_t i = nb.size(); i < (size_t)MAX_DIMS; ++i) t.nb[i] = t.nb[i - 1] * (size_t)t.ne[i - 1];
    if (dtype_traits(type).quantized && t.nb[0] != dtype_traits(type).type_size)
        throw ValueError("new_tensor_strided: quantized rows must be dense");
    if (!data && t.nelements() > 0) throw ValueError("new_tensor_strided: data is null");
    t.data = const_cast<void*>(data);
    tensors_.push_back(t);
    return &tensors_.back();
}

Tensor* Context::new_node(DType type, const int64_t ne[MAX_DIMS]) {
    Tensor t;
    init_dense(t, type, ne, MAX_DIMS, "new_node");
    tensors_.push_back(t);
    return &tensors_.back();
}

}  // namespace ggmlpy
