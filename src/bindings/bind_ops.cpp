// Bindings for the tensor core: ggmlpy._core.ops.Graph builds a graph over numpy arrays (wrapped
// without copies, any positive strides) with one method per op, and compute(outputs, n_threads)
// runs it through the real graph allocator and the shared thread pool, GIL released, returning
// numpy copies of the outputs. Shapes are numpy order (slowest first); ne is their reverse.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <unordered_set>

#include "bindings.h"
#include "ggmlpy/error.h"
#include "ggmlpy/graph.h"
#include "ggmlpy/ops.h"
#include "ggmlpy/threadpool.h"

namespace ggmlpy_bind {
namespace {

using namespace ggmlpy;

struct PyGraph {
    Context ctx{false};
    std::vector<py::object> keep;               // arrays whose memory tensors point into
    std::unordered_set<const Tensor*> readonly; // inputs wrapped from read-only arrays
    ComputeBuffer buf;
};

struct PyTensor {
    std::shared_ptr<PyGraph> g;
    Tensor* t;
};

DType dtype_of_array(const py::array& a, const std::string& type) {
    if (!type.empty()) return dtype_from_name(type);
    const char k = a.dtype().kind();
    const size_t sz = (size_t)a.itemsize();
    if (k == 'f' && sz == 4) return DType::F32;
    if (k == 'f' && sz == 2) return DType::F16;
    if (k == 'i' && sz == 4) return DType::I32;
    throw ValueError("input: unsupported numpy dtype " + std::string(py::str(a.dtype())) +
                     " (float32, float16, int32, or raw uint8/uint16 with type='q4_0', 'bf16', ...)");
}

std::vector<int64_t> ne_of(const PyTensor& x) {
    return std::vector<int64_t>(x.t->ne, x.t->ne + MAX_DIMS);
}

Tensor* T(const std::shared_ptr<PyGraph>& g, const PyTensor& x, const char* op) {
    if (x.g != g) throw ValueError(std::string(op) + ": tensor belongs to another Graph");
    return x.t;
}
Tensor* T_opt(const std::shared_ptr<PyGraph>& g, const std::optional<PyTensor>& x, const char* op) {
    return x ? T(g, *x, op) : nullptr;
}

PyTensor input(const std::shared_ptr<PyGraph>& g, py::array arr, const std::string& type,
               std::optional<std::vector<int64_t>> ne_opt) {
    const DType dt = dtype_of_array(arr, type);
    const DTypeTraits& tr = dtype_traits(dt);
    const int nd = (int)arr.ndim();
    Tensor* t;
    if (ne_opt) {  // raw bytes in the layout of dt (quantized weights, bf16 bits)
        const std::vector<int64_t>& ne = *ne_opt;
        if (!(arr.flags() & py::array::c_style))
            throw ValueError("input: raw " + std::string(tr.name) + " data must be a C-contiguous array");
        int64_t rows = 1;
        for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
        if (ne.empty() || ne.size() > 4 || ne[0] % tr.block_size != 0)
            throw ValueError("input: bad ne for type " + std::string(tr.name));
        const size_t need = row_size(dt, ne[0]) * (size_t)rows;
        if ((size_t)arr.nbytes() != need)
            throw ValueError("input: " + std::to_string(arr.nbytes()) + " bytes given, " + std::string(tr.name) +
                             " ne needs " + std::to_string(need));
        t = g->ctx.new_tensor_external(dt, ne, arr.data());
    } else {
        if (nd < 1 || nd > 4) throw ValueError("input: arrays must have 1 to 4 dims, got " + std::to_string(nd));
        if (tr.quantized || tr.type_size != (size_t)arr.itemsize())
            throw ValueError("input: type " + std::string(tr.name) + " needs ne= and raw bytes");
        std::vector<int64_t> ne(nd);
        std::vector<size_t> nb(nd);
        for (int i = 0; i < nd; ++i) {
            ne[i] = arr.shape(nd - 1 - i);
            const py::ssize_t s = arr.strides(nd - 1 - i);
            if (s < 0 || s % arr.itemsize() != 0)
                throw ValueError("input: negative or unaligned numpy strides are not supported");
            nb[i] = (size_t)s;
        }
        if (nb[0] == 0 && ne[0] > 1) throw ValueError("input: zero stride in the last axis is not supported");
        t = g->ctx.new_tensor_strided(dt, ne, nb, arr.data());
    }
    g->keep.push_back(arr);
    if (!arr.writeable()) g->readonly.insert(t);
    return PyTensor{g, t};
}

py::array to_numpy(const Tensor* t) {
    std::vector<py::ssize_t> shape, strides;
    const int nd = t->n_dims();
    for (int i = nd - 1; i >= 0; --i) {
        shape.push_back(t->ne[i]);
        strides.push_back((py::ssize_t)t->nb[i]);
    }
    py::dtype dt;
    switch (t->type) {
        case DType::F32: dt = py::dtype::of<float>(); break;
        case DType::F16: dt = py::dtype("float16"); break;
        case DType::BF16: dt = py::dtype::of<uint16_t>(); break;
        case DType::I32: dt = py::dtype::of<int32_t>(); break;
        default: throw ValueError("compute: cannot return a " + t->shape_str() + " as a numpy array");
    }
    return py::array(dt, shape, strides, t->data);  // no base object: pybind11 copies
}

py::list compute_graph(const std::shared_ptr<PyGraph>& g, const std::vector<PyTensor>& outs, int n_threads) {
    Graph graph;
    for (const PyTensor& o : outs) {
        Tensor* t = T(g, o, "compute");
        if (t->op == Op::CPY && t->src[1] && g->readonly.count(t->src[1]->base()))
            throw ValueError("cpy: the destination array is read-only");
        graph.build_forward(t);
    }
    {
        py::gil_scoped_release nogil;
        compute(graph, default_thread_pool(), n_threads, &g->buf);
    }
    py::list res;
    for (const PyTensor& o : outs) res.append(to_numpy(o.t));
    return res;
}

}  // namespace

void register_ops(py::module_& m) {
    py::module_ ops = m.def_submodule("ops", "tensor core: build a graph over numpy arrays and compute it");
    py::class_<PyTensor>(ops, "Tensor")
        .def_property_readonly("ne", &ne_of)
        .def_property_readonly("nb", [](const PyTensor& x) { return std::vector<size_t>(x.t->nb, x.t->nb + 4); })
        .def_property_readonly("type", [](const PyTensor& x) { return std::string(dtype_name(x.t->type)); })
        .def_property_readonly("op", [](const PyTensor& x) { return std::string(op_name(x.t->op)); })
        .def_property_readonly("shape", [](const PyTensor& x) {
            std::vector<int64_t> s;
            for (int i = x.t->n_dims() - 1; i >= 0; --i) s.push_back(x.t->ne[i]);
            return s;
        })
        .def("__repr__", [](const PyTensor& x) { return "<ggmlpy Tensor " + std::string(op_name(x.t->op)) + " " + x.t->shape_str() + ">"; });

    using G = std::shared_ptr<PyGraph>;
    py::class_<PyGraph, G>(ops, "Graph")
        .def(py::init([] { return std::make_shared<PyGraph>(); }))
        .def("input", &input, py::arg("array"), py::arg("type") = "", py::arg("ne") = py::none(),
             "Wrap a numpy array (no copy). type/ne: raw bytes of a quantized or bf16 tensor.")
        .def("view", [](const G& g, const PyTensor& a, std::vector<int64_t> ne, std::vector<size_t> nb, size_t offset) {
                 Tensor* x = T(g, a, "view");
                 if (ne.empty() || ne.size() > 4 || nb.size() + 1 != ne.size())
                     throw ValueError("view: give 1-4 dims ne and len(ne)-1 byte strides nb");
                 Tensor* r;
                 switch (ne.size()) {
                     case 1: r = view_1d(g->ctx, x, ne[0], offset); break;
                     case 2: r = view_2d(g->ctx, x, ne[0], ne[1], nb[0], offset); break;
                     case 3: r = view_3d(g->ctx, x, ne[0], ne[1], ne[2], nb[0], nb[1], offset); break;
                     default: r = view_4d(g->ctx, x, ne[0], ne[1], ne[2], ne[3], nb[0], nb[1], nb[2], offset); break;
                 }
                 return PyTensor{g, r};
             }, py::arg("a"), py::arg("ne"), py::arg("nb"), py::arg("offset") = 0)
        .def("reshape", [](const G& g, const PyTensor& a, std::vector<int64_t> ne) { return PyTensor{g, reshape(g->ctx, T(g, a, "reshape"), ne)}; })
        .def("permute", [](const G& g, const PyTensor& a, int a0, int a1, int a2, int a3) {
            return PyTensor{g, permute(g->ctx, T(g, a, "permute"), a0, a1, a2, a3)}; })
        .def("transpose", [](const G& g, const PyTensor& a) { return PyTensor{g, transpose(g->ctx, T(g, a, "transpose"))}; })
        .def("cont", [](const G& g, const PyTensor& a) { return PyTensor{g, cont(g->ctx, T(g, a, "cont"))}; })
        .def("cpy", [](const G& g, const PyTensor& s, const PyTensor& d) {
            return PyTensor{g, cpy(g->ctx, T(g, s, "cpy"), T(g, d, "cpy"))}; })
        .def("cast", [](const G& g, const PyTensor& a, const std::string& type) {
            return PyTensor{g, cast(g->ctx, T(g, a, "cast"), dtype_from_name(type))}; })
        .def("get_rows", [](const G& g, const PyTensor& a, const PyTensor& ids) {
            return PyTensor{g, get_rows(g->ctx, T(g, a, "get_rows"), T(g, ids, "get_rows"))}; })
        .def("mul_mat", [](const G& g, const PyTensor& a, const PyTensor& b) {
            return PyTensor{g, mul_mat(g->ctx, T(g, a, "mul_mat"), T(g, b, "mul_mat"))}; })
        .def("mul_mat_causal", [](const G& g, const PyTensor& a, const PyTensor& b, const std::string& side, int64_t n_past) {
                 if (side != "rows" && side != "k")
                     throw ValueError("mul_mat_causal: side must be 'rows' or 'k', got '" + side + "'");
                 const CausalSide cs = side == "rows" ? CausalSide::Rows : CausalSide::K;
                 return PyTensor{g, mul_mat_causal(g->ctx, T(g, a, "mul_mat_causal"), T(g, b, "mul_mat_causal"), cs, n_past)};
             }, py::arg("a"), py::arg("b"), py::arg("side"), py::arg("n_past") = 0,
             "mul_mat of a causal attention: side 'rows' (a's rows are keys; masked outputs are 0) or 'k' "
             "(the reduced dim is keys; b must be 0 where masked, those terms are skipped)")
        .def("add", [](const G& g, const PyTensor& a, const PyTensor& b) { return PyTensor{g, add(g->ctx, T(g, a, "add"), T(g, b, "add"))}; })
        .def("mul", [](const G& g, const PyTensor& a, const PyTensor& b) { return PyTensor{g, mul(g->ctx, T(g, a, "mul"), T(g, b, "mul"))}; })
        .def("scale", [](const G& g, const PyTensor& a, float s) { return PyTensor{g, scale(g->ctx, T(g, a, "scale"), s)}; })
        .def("silu", [](const G& g, const PyTensor& a) { return PyTensor{g, silu(g->ctx, T(g, a, "silu"))}; })
        .def("gelu", [](const G& g, const PyTensor& a) { return PyTensor{g, gelu(g->ctx, T(g, a, "gelu"))}; })
        .def("gelu_erf", [](const G& g, const PyTensor& a) { return PyTensor{g, gelu_erf(g->ctx, T(g, a, "gelu_erf"))}; })
        .def("swiglu", [](const G& g, const PyTensor& a, const PyTensor& b) {
            return PyTensor{g, swiglu(g->ctx, T(g, a, "swiglu"), T(g, b, "swiglu"))}; })
        .def("rms_norm", [](const G& g, const PyTensor& a, float eps, std::optional<PyTensor> w) {
                 return PyTensor{g, rms_norm(g->ctx, T(g, a, "rms_norm"), eps, T_opt(g, w, "rms_norm"))};
             }, py::arg("a"), py::arg("eps"), py::arg("weight") = py::none())
        .def("layer_norm", [](const G& g, const PyTensor& a, float eps, std::optional<PyTensor> w, std::optional<PyTensor> b) {
                 return PyTensor{g, layer_norm(g->ctx, T(g, a, "layer_norm"), eps, T_opt(g, w, "layer_norm"), T_opt(g, b, "layer_norm"))};
             }, py::arg("a"), py::arg("eps"), py::arg("weight") = py::none(), py::arg("bias") = py::none())
        .def("rope", [](const G& g, const PyTensor& a, const PyTensor& pos, int n_rot, const std::string& mode, float freq_base,
                        float freq_scale, std::optional<PyTensor> freq_factors, float llama3_factor, float low, float high, int orig_ctx) {
                 RopeParams p;
                 p.n_rot = n_rot;
                 if (mode == "norm") p.mode = RopeMode::NORM;
                 else if (mode == "neox") p.mode = RopeMode::NEOX;
                 else throw ValueError("rope: mode must be 'norm' (interleaved pairs) or 'neox' (half split), got '" + mode + "'");
                 p.freq_base = freq_base;
                 p.freq_scale = freq_scale;
                 p.llama3_factor = llama3_factor;
                 p.llama3_low_freq_factor = low;
                 p.llama3_high_freq_factor = high;
                 p.llama3_original_ctx = orig_ctx;
                 return PyTensor{g, rope(g->ctx, T(g, a, "rope"), T(g, pos, "rope"), p, T_opt(g, freq_factors, "rope"))};
             }, py::arg("a"), py::arg("pos"), py::arg("n_rot"), py::arg("mode") = "norm", py::arg("freq_base") = 10000.0f,
             py::arg("freq_scale") = 1.0f, py::arg("freq_factors") = py::none(), py::arg("llama3_factor") = 0.0f,
             py::arg("llama3_low_freq_factor") = 1.0f, py::arg("llama3_high_freq_factor") = 4.0f,
             py::arg("llama3_original_ctx") = 8192)
        .def("soft_max", [](const G& g, const PyTensor& a, float s, bool causal, int64_t n_past) {
                 return PyTensor{g, soft_max(g->ctx, T(g, a, "soft_max"), s, causal, n_past)};
             }, py::arg("a"), py::arg("scale") = 1.0f, py::arg("causal") = false, py::arg("n_past") = 0)
        // backward ops (training)
        .def("mul_mat_t", [](const G& g, const PyTensor& a, const PyTensor& d) {
            return PyTensor{g, mul_mat_t(g->ctx, T(g, a, "mul_mat_t"), T(g, d, "mul_mat_t"))}; })
        .def("rms_norm_back", [](const G& g, const PyTensor& x, const PyTensor& dy, float eps) {
            return PyTensor{g, rms_norm_back(g->ctx, T(g, x, "rms_norm_back"), T(g, dy, "rms_norm_back"), eps)}; })
        .def("layer_norm_back", [](const G& g, const PyTensor& x, const PyTensor& dy, float eps) {
            return PyTensor{g, layer_norm_back(g->ctx, T(g, x, "layer_norm_back"), T(g, dy, "layer_norm_back"), eps)}; })
        .def("soft_max_back", [](const G& g, const PyTensor& p, const PyTensor& dp, float s) {
            return PyTensor{g, soft_max_back(g->ctx, T(g, p, "soft_max_back"), T(g, dp, "soft_max_back"), s)}; })
        .def("silu_back", [](const G& g, const PyTensor& x, const PyTensor& dy) {
            return PyTensor{g, silu_back(g->ctx, T(g, x, "silu_back"), T(g, dy, "silu_back"))}; })
        .def("gelu_back", [](const G& g, const PyTensor& x, const PyTensor& dy) {
            return PyTensor{g, gelu_back(g->ctx, T(g, x, "gelu_back"), T(g, dy, "gelu_back"))}; })
        .def("dropout", [](const G& g, const PyTensor& x, float p, int64_t seed) {
            return PyTensor{g, dropout(g->ctx, T(g, x, "dropout"), p, seed)}; })
        .def("rope_back", [](const G& g, const PyTensor& dy, const PyTensor& pos, int n_rot, float freq_base) {
                 RopeParams p;
                 p.n_rot = n_rot;
                 p.freq_base = freq_base;
                 return PyTensor{g, rope_back(g->ctx, T(g, dy, "rope_back"), T(g, pos, "rope_back"), p)};
             }, py::arg("dy"), py::arg("pos"), py::arg("n_rot"), py::arg("freq_base") = 10000.0f)
        .def("compute", &compute_graph, py::arg("outputs"), py::arg("n_threads") = 0,
             "Compute the outputs (in order; a cpy before what reads its destination) and return numpy copies.")
        .def_property_readonly("activation_bytes", [](const G& g) { return g->buf.peak_activation_bytes(); })
        .def_property_readonly("buffer_bytes", [](const G& g) { return g->buf.capacity(); });

    ops.def("llama3_freq_factors", [](int n_rot, float base, float factor, float low, float high, int orig) {
        RopeParams p;
        p.n_rot = n_rot;
        p.freq_base = base;
        p.llama3_factor = factor;
        p.llama3_low_freq_factor = low;
        p.llama3_high_freq_factor = high;
        p.llama3_original_ctx = orig;
        return llama3_freq_factors(p);
    });
    ops.def("default_threads", [] { return default_thread_pool().default_threads(); });
}

}  // namespace ggmlpy_bind
