// Bindings for the sampler area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_sampler(py::module_& m) {}
}  // namespace ggmlpy_bind
