// Bindings for the GGUF reader (gguf.h): _core.GGUFReader(path, use_mmap=True) exposing version,
// alignment, data_offset, file_size, metadata (dict of Python values), tensors (list of dicts) and
// tensor_bytes(name) (a read-only uint8 view of a tensor's data, kept alive by the reader).
// Forwarding only; used by tests and tools that inspect files.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "ggmlpy/gguf.h"

namespace ggmlpy_bind {
namespace {

using ggmlpy::GGUFFile;
using ggmlpy::GGUFType;
using ggmlpy::GGUFValue;

py::object to_py(const GGUFValue& v) {
    switch (v.type) {
        case GGUFType::STRING:
            // metadata strings are meant to be UTF-8; keep raw bytes if they are not
            try { return py::str(v.s); } catch (const py::error_already_set&) { return py::bytes(v.s); }
        case GGUFType::BOOL: return py::bool_(v.i != 0);
        case GGUFType::FLOAT32: case GGUFType::FLOAT64: return py::float_(v.f);
        case GGUFType::UINT64: return py::int_(v.u);
        case GGUFType::ARRAY: {
            py::list l;
            if (v.elem_type == GGUFType::STRING) {
                for (const auto& s : v.arr_str) {
                    PyObject* o = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "surrogateescape");
                    if (!o) throw py::error_already_set();
                    l.append(py::reinterpret_steal<py::object>(o));
                }
            } else if (v.elem_type == GGUFType::ARRAY) {
                for (const auto& e : v.arr_nested) l.append(to_py(e));
            } else if (v.elem_type == GGUFType::FLOAT32 || v.elem_type == GGUFType::FLOAT64) {
                for (double d : v.arr_num) l.append(py::float_(d));
            } else if (v.elem_type == GGUFType::BOOL) {
                for (int64_t i : v.arr_int) l.append(py::bool_(i != 0));
            } else if (v.elem_type == GGUFType::UINT64) {
                for (int64_t i : v.arr_int) l.append(py::int_((uint64_t)i));
            } else {
                for (int64_t i : v.arr_int) l.append(py::int_(i));
            }
            return l;
        }
        default: return py::int_(v.i);
    }
}

struct PyGGUF {
    std::unique_ptr<GGUFFile> f;
};

}  // namespace

void register_gguf(py::module_& m) {
    py::class_<PyGGUF>(m, "GGUFReader",
                       "Reads a GGUF file (v2/v3): metadata, tensor infos and raw tensor bytes (mmap, zero copy).")
        .def(py::init([](const py::object& path, bool use_mmap) {
                 std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                 ggmlpy::GGUFOpenOptions o;
                 o.use_mmap = use_mmap;
                 auto r = std::make_unique<PyGGUF>();
                 {
                     py::gil_scoped_release nogil;
                     r->f = GGUFFile::open(p, o);
                 }
                 return r;
             }),
             py::arg("path"), py::arg("use_mmap") = true)
        .def_property_readonly("path", [](const PyGGUF& r) { return r.f->path(); })
        .def_property_readonly("version", [](const PyGGUF& r) { return r.f->version(); })
        .def_property_readonly("alignment", [](const PyGGUF& r) { return r.f->alignment(); })
        .def_property_readonly("data_offset", [](const PyGGUF& r) { return r.f->data_offset(); })
        .def_property_readonly("file_size", [](const PyGGUF& r) { return r.f->file_size(); })
        .def_property_readonly("mmapped", [](const PyGGUF& r) { return r.f->mmapped(); })
        .def_property_readonly("metadata", [](const PyGGUF& r) {
            py::dict d;
            for (const auto& kv : r.f->kv()) d[py::str(kv.first)] = to_py(kv.second);
            return d;
        })
        .def("metadata_type", [](const PyGGUF& r, const std::string& key) -> py::object {
            const GGUFValue* v = r.f->find(key);
            if (!v) return py::none();
            std::string t = ggmlpy::gguf_type_name(v->type);
            if (v->is_array()) t += std::string("[") + ggmlpy::gguf_type_name(v->elem_type) + "]";
            return py::str(t);
        }, "Type name of a key ('uint32', 'array[string]', ...), None if absent.")
        .def_property_readonly("tensors", [](const PyGGUF& r) {
            py::list l;
            for (const auto& t : r.f->tensors()) {
                py::dict d;
                d["name"] = t.name;
                py::tuple ne(t.n_dims);
                for (int i = 0; i < t.n_dims; ++i) ne[i] = t.ne[i];
                d["ne"] = ne;  // ggml order, ne[0] fastest (numpy shape reversed)
                d["type"] = ggmlpy::dtype_name(t.type);
                d["type_id"] = (int)t.type;
                d["offset"] = t.offset;
                d["nbytes"] = t.nbytes;
                l.append(d);
            }
            return l;
        })
        .def("tensor_bytes", [](py::object self, const std::string& name) {
            const PyGGUF& r = self.cast<const PyGGUF&>();
            const ggmlpy::GGUFTensorInfo& t = r.f->require_tensor(name);
            py::array_t<uint8_t> a({(py::ssize_t)t.nbytes}, {(py::ssize_t)1}, (const uint8_t*)t.data, self);
            py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
            return a;
        }, py::arg("name"), "Read-only uint8 view of the tensor's data (GGUFError if absent).");
}

}  // namespace ggmlpy_bind
