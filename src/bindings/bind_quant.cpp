// Bindings for the quant area: dtype traits, quantize (f32 rows -> row bytes) and dequantize (row
// bytes -> f32) through the reference functions of src/quant. Shapes are numpy order: (rows, ne0),
// the last axis is the row. Forwarding only; the GIL is released around the loops.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "ggmlpy/dtype.h"
#include "ggmlpy/error.h"
#include "quant/quant.h"

namespace ggmlpy_bind {
namespace {

using ggmlpy::DType;

// A type argument is a name ("q4_K", case-insensitive) or a GGUF type id.
DType to_dtype(const py::object& t) {
    if (py::isinstance<py::str>(t)) return ggmlpy::dtype_from_name(t.cast<std::string>());
    if (py::isinstance<py::int_>(t)) {
        const long long id = t.cast<long long>();
        if (id < 0 || id > 0x7fffffff || !ggmlpy::dtype_supported((int32_t)id))
            throw ggmlpy::ValueError("unsupported tensor type id " + std::to_string(id));
        return (DType)id;
    }
    throw ggmlpy::ValueError("type: expected a type name such as 'q4_0' or a GGUF type id, got " +
                             std::string(py::str(py::type::of(t).attr("__name__"))));
}

py::dict traits_dict(DType t) {
    const ggmlpy::DTypeTraits& tr = ggmlpy::dtype_traits(t);
    py::dict d;
    d["name"] = tr.name;
    d["id"] = (int)t;
    d["block_size"] = tr.block_size;
    d["type_size"] = tr.type_size;
    d["quantized"] = tr.quantized;
    return d;
}

// x: float32 array of shape (n,) or (rows, n); returns uint8 of shape (row_bytes,) or (rows, row_bytes)
py::array_t<uint8_t> quantize(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                              const py::object& type) {
    const DType t = to_dtype(type);
    if (x.ndim() != 1 && x.ndim() != 2)
        throw ggmlpy::ValueError("quantize: x must be 1-D or 2-D (rows, n), got " +
                                 std::to_string(x.ndim()) + " dimensions");
    const int64_t n = x.shape(x.ndim() - 1);
    const int64_t rows = x.ndim() == 2 ? x.shape(0) : 1;
    const size_t rs = ggmlpy::row_size(t, n);  // throws naming the type if n is not a multiple
    std::vector<py::ssize_t> shape;
    if (x.ndim() == 2) shape.push_back((py::ssize_t)rows);
    shape.push_back((py::ssize_t)rs);
    py::array_t<uint8_t> out(shape);
    const float* src = x.data();
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        ggmlpy::quantize_rows(t, src, dst, rows, n);
    }
    return out;
}

// data: any buffer of rows * row_size(type, shape[-1]) bytes; returns float32 of `shape`
py::array_t<float> dequantize(py::buffer data, const py::object& type, std::vector<int64_t> shape) {
    const DType t = to_dtype(type);
    if (shape.empty()) throw ggmlpy::ValueError("dequantize: shape must have at least one dimension");
    int64_t rows = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] < 0) throw ggmlpy::ValueError("dequantize: negative dimension in shape");
        if (i + 1 < shape.size()) rows *= shape[i];
    }
    const int64_t n = shape.back();
    const size_t rs = ggmlpy::row_size(t, n);
    py::buffer_info info = data.request();
    if (info.ndim > 0) {
        // must be contiguous bytes: check C-contiguity of the buffer
        py::ssize_t expect = info.itemsize;
        for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
            if (info.shape[d] > 1 && info.strides[d] != expect)
                throw ggmlpy::ValueError("dequantize: data must be a C-contiguous buffer");
            expect *= info.shape[d];
        }
    }
    const size_t nbytes = (size_t)info.size * (size_t)info.itemsize;
    const size_t want = (size_t)rows * rs;
    if (nbytes != want)
        throw ggmlpy::ValueError(std::string("dequantize: ") + ggmlpy::dtype_name(t) + " data of shape (" +
                                 [&] { std::string s; for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]); return s; }() +
                                 ") needs " + std::to_string(want) + " bytes, got " + std::to_string(nbytes));
    std::vector<py::ssize_t> pshape(shape.begin(), shape.end());
    py::array_t<float> out(pshape);
    const uint8_t* src = static_cast<const uint8_t*>(info.ptr);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        for (int64_t r = 0; r < rows; ++r) ggmlpy::dequantize_row(t, src + (size_t)r * rs, dst + r * n, n);
    }
    return out;
}

}  // namespace

void register_quant(py::module_& m) {
    m.def("dtype_traits", [](const py::object& t) { return traits_dict(to_dtype(t)); }, py::arg("type"),
          "Traits of a tensor type (name or GGUF id): name, id, block_size, type_size, quantized.");
    m.def("dtype_names", [] {
        std::vector<std::string> names;
        for (int32_t id = 0; id < ggmlpy::DTYPE_TABLE_SIZE; ++id)
            if (ggmlpy::dtype_supported(id)) names.push_back(ggmlpy::dtype_name((DType)id));
        return names;
    }, "Names of every supported tensor type, in GGUF id order.");
    m.def("row_size", [](const py::object& t, int64_t n) { return ggmlpy::row_size(to_dtype(t), n); },
          py::arg("type"), py::arg("n"), "Bytes of a row of n elements of the type.");
    m.def("quantize", &quantize, py::arg("x"), py::arg("type"),
          "Quantize float32 rows (shape (n,) or (rows, n)) with the reference quantizer of `type`; "
          "returns uint8 row bytes, shape (row_bytes,) or (rows, row_bytes).");
    m.def("dequantize", &dequantize, py::arg("data"), py::arg("type"), py::arg("shape"),
          "Dequantize row bytes of `type` to a float32 array of `shape` (last axis = row).");
}

}  // namespace ggmlpy_bind
