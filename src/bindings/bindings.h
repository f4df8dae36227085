// Each bind_*.cpp registers one area of the C++ API on the _core module. Bindings forward to the
// core and hold no logic; long calls release the GIL.
#pragma once
#include <pybind11/pybind11.h>

namespace ggmlpy_bind {
namespace py = pybind11;
void register_info(py::module_& m);       // bind_info.cpp: version, cpu features, kernels
void register_ops(py::module_& m);        // bind_ops.cpp: tensors, ops, graph compute on numpy
void register_quant(py::module_& m);      // bind_quant.cpp: quantize/dequantize, vec_dot per table
void register_tokenizer(py::module_& m);  // bind_tokenizer.cpp
void register_gguf(py::module_& m);       // bind_gguf.cpp: GGUF reader (metadata, tensor infos)
void register_model(py::module_& m);      // bind_model.cpp: Model load/eval/reset
void register_sampler(py::module_& m);    // bind_sampler.cpp
void register_grammar(py::module_& m);    // bind_grammar.cpp: GBNF grammars, token masks
void register_train(py::module_& m);      // bind_train.cpp: LoRA training steps
}  // namespace ggmlpy_bind
