// Bindings for the ops area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_ops(py::module_& m) {}
}  // namespace ggmlpy_bind
