// Bindings for the quant area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_quant(py::module_& m) {}
}  // namespace ggmlpy_bind
