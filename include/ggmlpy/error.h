// Exceptions thrown by the core. The bindings map them to Python: ValueError -> ValueError,
// FormatError -> ggmlpy.GGUFError (a ValueError subclass), FileError -> OSError/FileNotFoundError,
// MemoryLimitError -> MemoryError.
// Messages name the op, file, key or tensor and the expected vs found value.
#pragma once
#include <stdexcept>
#include <string>

namespace ggmlpy {

struct ValueError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
// A malformed or unsupported model file (GGUF or legacy): bad magic, truncated, bad key/tensor.
struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// The file cannot be opened or mapped (missing, permission, I/O).
struct FileError : std::runtime_error {
    using std::runtime_error::runtime_error;
    bool not_found = false;
    FileError(const std::string& msg, bool missing) : std::runtime_error(msg), not_found(missing) {}
};
// An allocation sized by the file or the arguments would not fit in the memory available
// (memory_limit.h); raised before anything is allocated. Python: MemoryError.
struct MemoryLimitError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// The context (KV cache) is full.
struct ContextFullError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace ggmlpy
