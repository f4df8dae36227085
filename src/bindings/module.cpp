// The ggmlpy._core module: exception types and the per-area registrations.
#include <pybind11/pybind11.h>

#include "bindings.h"
#include "ggmlpy/error.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "ggmlpy C++ core";
    static py::exception<ggmlpy::FormatError> gguf_error(m, "GGUFError", PyExc_ValueError);
    static py::exception<ggmlpy::ContextFullError> ctx_full(m, "ContextFullError", PyExc_RuntimeError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const ggmlpy::FormatError& e) {
            py::set_error(gguf_error, e.what());
        } catch (const ggmlpy::ContextFullError& e) {
            py::set_error(ctx_full, e.what());
        } catch (const ggmlpy::FileError& e) {
            py::set_error(e.not_found ? PyExc_FileNotFoundError : PyExc_OSError, e.what());
        } catch (const ggmlpy::MemoryLimitError& e) {
            py::set_error(PyExc_MemoryError, e.what());
        } catch (const ggmlpy::ValueError& e) {
            py::set_error(PyExc_ValueError, e.what());
        }
    });
    ggmlpy_bind::register_info(m);
    ggmlpy_bind::register_ops(m);
    ggmlpy_bind::register_quant(m);
    ggmlpy_bind::register_tokenizer(m);
    ggmlpy_bind::register_gguf(m);
    ggmlpy_bind::register_model(m);
    ggmlpy_bind::register_sampler(m);
    ggmlpy_bind::register_grammar(m);
    ggmlpy_bind::register_train(m);
}
