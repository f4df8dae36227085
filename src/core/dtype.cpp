// Element type traits (include/ggmlpy/dtype.h): one table indexed by the GGUF type id, with the
// block size and bytes per block of every type we support. Names follow ggml ("q4_K", "bf16");
// parsing is case-insensitive. Unsupported ids and names throw ggmlpy::ValueError naming them.
#include "ggmlpy/dtype.h"

#include <array>
#include <cctype>

#include "ggmlpy/error.h"
#include "quant/blocks.h"

namespace ggmlpy {
namespace {

std::array<DTypeTraits, DTYPE_TABLE_SIZE> make_table() {
    std::array<DTypeTraits, DTYPE_TABLE_SIZE> t{};
    for (auto& e : t) e = DTypeTraits{nullptr, 0, 0, false};
    auto set = [&](DType id, const char* name, int64_t bs, size_t ts, bool q) {
        t[(size_t)id] = DTypeTraits{name, bs, ts, q};
    };
    set(DType::F32, "f32", 1, 4, false);
    set(DType::F16, "f16", 1, 2, false);
    set(DType::Q4_0, "q4_0", QK4_0, sizeof(block_q4_0), true);
    set(DType::Q4_1, "q4_1", QK4_1, sizeof(block_q4_1), true);
    set(DType::Q5_0, "q5_0", QK5_0, sizeof(block_q5_0), true);
    set(DType::Q5_1, "q5_1", QK5_1, sizeof(block_q5_1), true);
    set(DType::Q8_0, "q8_0", QK8_0, sizeof(block_q8_0), true);
    set(DType::Q8_1, "q8_1", 32, sizeof(block_q8_1), true);
    set(DType::Q2_K, "q2_K", QK_K, sizeof(block_q2_K), true);
    set(DType::Q3_K, "q3_K", QK_K, sizeof(block_q3_K), true);
    set(DType::Q4_K, "q4_K", QK_K, sizeof(block_q4_K), true);
    set(DType::Q5_K, "q5_K", QK_K, sizeof(block_q5_K), true);
    set(DType::Q6_K, "q6_K", QK_K, sizeof(block_q6_K), true);
    set(DType::Q8_K, "q8_K", QK_K, sizeof(block_q8_K), true);
    set(DType::I8, "i8", 1, 1, false);
    set(DType::I16, "i16", 1, 2, false);
    set(DType::I32, "i32", 1, 4, false);
    set(DType::I64, "i64", 1, 8, false);
    set(DType::F64, "f64", 1, 8, false);
    set(DType::BF16, "bf16", 1, 2, false);
    return t;
}

const std::array<DTypeTraits, DTYPE_TABLE_SIZE>& table() {
    static const std::array<DTypeTraits, DTYPE_TABLE_SIZE> t = make_table();
    return t;
}

std::string lower(const std::string& s) {
    std::string r = s;
    for (auto& c : r) c = (char)std::tolower((unsigned char)c);
    return r;
}

}  // namespace

bool dtype_supported(int32_t id) {
    return id >= 0 && id < DTYPE_TABLE_SIZE && table()[(size_t)id].name != nullptr;
}

const DTypeTraits& dtype_traits(DType t) {
    const int32_t id = (int32_t)t;
    if (!dtype_supported(id))
        throw ValueError("unsupported tensor type id " + std::to_string(id) +
                         " (expected one of the GGUF types f32, f16, bf16, q4_0 .. q8_K)");
    return table()[(size_t)id];
}

const char* dtype_name(DType t) { return dtype_traits(t).name; }

DType dtype_from_name(const std::string& name) {
    const std::string want = lower(name);
    for (int32_t id = 0; id < DTYPE_TABLE_SIZE; ++id) {
        const char* n = table()[(size_t)id].name;
        if (n && lower(n) == want) return (DType)id;
    }
    std::string known;
    for (const auto& e : table())
        if (e.name) known += (known.empty() ? "" : ", ") + std::string(e.name);
    throw ValueError("unknown tensor type name '" + name + "' (expected one of: " + known + ")");
}

size_t row_size(DType t, int64_t ne0) {
    const DTypeTraits& tr = dtype_traits(t);
    if (ne0 < 0 || ne0 % tr.block_size != 0)
        throw ValueError(std::string("row of type ") + tr.name + ": " + std::to_string(ne0) +
                         " elements is not a multiple of the block size " +
                         std::to_string(tr.block_size));
    return (size_t)(ne0 / tr.block_size) * tr.type_size;
}

}  // namespace ggmlpy
