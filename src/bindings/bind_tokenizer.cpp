// Bindings for the tokenizer area (to be filled by its owner).
#include "bindings.h"

namespace ggmlpy_bind {
void register_tokenizer(py::module_& m) {}
}  // namespace ggmlpy_bind
