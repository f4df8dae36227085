// Bindings for the model area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_model(py::module_& m) {}
}  // namespace ggmlpy_bind
