// Element types. Ids equal GGUF's ggml_type ids, so they are a file format: append only, never
// renumber. Traits give the block size (elements per block) and bytes per block of each type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ggmlpy {

enum class DType : int32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
constexpr int DTYPE_TABLE_SIZE = 40;  // > largest id; tables indexed by id use this size

struct DTypeTraits {
    const char* name;    // "f32", "q4_0", ... ; nullptr for ids we do not support
    int64_t block_size;  // elements per block (1 for plain types)
    size_t type_size;    // bytes per block
    bool quantized;
};

// Traits of a type; throws ValueError-mapped ggmlpy::ValueError for an unsupported id.
const DTypeTraits& dtype_traits(DType t);
bool dtype_supported(int32_t id);
const char* dtype_name(DType t);
// Parses "q4_0", "Q4_0", "f16", ...; throws ggmlpy::ValueError naming the string.
DType dtype_from_name(const std::string& name);
// Bytes of a row of ne0 elements; throws if ne0 is not a multiple of the block size.
size_t row_size(DType t, int64_t ne0);

}  // namespace ggmlpy
