// Bindings for the gguf area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_gguf(py::module_& m) {}
}  // namespace ggmlpy_bind
