// Bindings for the info area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_info(py::module_& m) {}
}  // namespace ggmlpy_bind
