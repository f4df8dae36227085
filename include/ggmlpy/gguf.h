// GGUF reader (versions 2 and 3): metadata of every value type, tensor infos, and zero-copy
// access to tensor data in a read-only mapping of the file (or, with use_mmap=false, a copy in
// anonymous memory). Every count, length, offset and size is checked against the file size
// before it is touched; malformed input throws FormatError naming the file and the key/tensor.
// Does not interpret architectures (src/arch) or vocabularies (tokenizer glue in src/arch).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ggmlpy/dtype.h"

namespace ggmlpy {

// GGUF metadata value types (file format ids).
enum class GGUFType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GGUFType t);

// One metadata value. Scalars keep their own type; arrays keep the element type and the
// elements (integers and bools in arr_int, floats in arr_num, strings in arr_str, nested arrays
// in arr_nested), so no value is lost. Typed getters on GGUFFile convert with range checks.
struct GGUFValue {
    GGUFType type = GGUFType::UINT8;
    GGUFType elem_type = GGUFType::UINT8;  // arrays only
    // scalar payloads (the one matching `type` is set; integers also fill `f` and vice versa)
    int64_t i = 0;          // signed view of integers and bools
    uint64_t u = 0;         // unsigned view of integers
    double f = 0.0;         // floats (and integers converted)
    std::string s;          // STRING
    // array payloads
    std::vector<std::string> arr_str;   // elem STRING
    std::vector<double> arr_num;        // FLOAT32 / FLOAT64 elements
    std::vector<int64_t> arr_int;       // integer / bool elements (UINT64 above 2^63 wraps)
    std::vector<GGUFValue> arr_nested;  // elem ARRAY
    uint64_t count = 0;                 // arrays: element count

    bool is_array() const { return type == GGUFType::ARRAY; }
    bool is_integer() const;
    bool is_float() const { return type == GGUFType::FLOAT32 || type == GGUFType::FLOAT64; }
    // Scalars as text (arrays: "[type; count]"), for metadata dicts and messages.
    std::string to_string() const;
};

struct GGUFTensorInfo {
    std::string name;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // elements per dim, ne[0] fastest (GGUF dims order)
    DType type = DType::F32;
    uint64_t offset = 0;           // relative to the start of the data section
    size_t nbytes = 0;             // bytes of data (rows of row_size(type, ne[0]))
    const void* data = nullptr;    // points into the mapping (or the in-memory copy)
    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    std::string shape_string() const;  // "[ne0, ne1, ...]"
};

struct GGUFOpenOptions {
    bool use_mmap = true;    // false: read the whole file into anonymous memory
    bool use_mlock = false;  // lock the pages; failure is reported in mlock_error, not thrown
    bool load_tensors = true;// false: metadata only (tensor infos still parsed and checked)
};

// The memory behind a file: a read-only private mapping, or a heap copy.
class MappedFile;

class GGUFFile {
public:
    // Throws FileError (missing, unreadable, cannot map) or FormatError (malformed).
    static std::unique_ptr<GGUFFile> open(const std::string& path, const GGUFOpenOptions& opt = {});
    // The same parse and checks over a copy of `size` bytes in memory (fuzzing, tests); `name`
    // stands in for the path in messages.
    static std::unique_ptr<GGUFFile> from_bytes(const void* data, size_t size,
                                                const std::string& name = "<memory>");
    ~GGUFFile();

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    size_t data_offset() const { return data_offset_; }  // start of the tensor data section
    size_t file_size() const { return file_size_; }
    bool mmapped() const;
    bool mlocked() const;
    const std::string& mlock_error() const { return mlock_error_; }  // "" unless use_mlock failed
    // Locks the tensor data section now (as use_mlock does at open); failure goes to mlock_error.
    void lock_tensor_data();
    const MappedFile* mapping() const { return mem_.get(); }  // nullptr before parse

    // Metadata in file order; lookup by key.
    const std::vector<std::pair<std::string, GGUFValue>>& kv() const { return kv_; }
    const GGUFValue* find(const std::string& key) const;
    bool has(const std::string& key) const { return find(key) != nullptr; }

    // Typed getters. The `require_*` forms throw FormatError naming the file and key when the key
    // is absent or of the wrong type / out of range; the others return `def` when absent (but
    // still throw on a wrong type).
    int64_t require_int(const std::string& key) const;
    int64_t get_int(const std::string& key, int64_t def) const;
    double require_float(const std::string& key) const;   // accepts integers too
    double get_float(const std::string& key, double def) const;
    std::string require_string(const std::string& key) const;
    std::string get_string(const std::string& key, const std::string& def) const;
    bool get_bool(const std::string& key, bool def) const;
    // Arrays: throw FormatError if present with another element type; empty vector if absent.
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<float> get_float_array(const std::string& key) const;
    std::vector<int64_t> get_int_array(const std::string& key) const;

    const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
    const GGUFTensorInfo* find_tensor(const std::string& name) const;
    // Throws FormatError "<file>: tensor 'name' not found" when absent.
    const GGUFTensorInfo& require_tensor(const std::string& name) const;

    // Bytes of the tensor data section actually used by tensors.
    size_t tensor_bytes() const;
    // madvise hints over the tensor data section (no-ops on a heap copy).
    void advise_willneed() const;
    void advise_random() const;

    // "path: message" helper for FormatError text.
    std::string where() const { return path_; }

private:
    GGUFFile() = default;
    static std::unique_ptr<GGUFFile> parse(std::unique_ptr<MappedFile> mem, const std::string& path,
                                           const GGUFOpenOptions& opt);
    std::string path_;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    size_t data_offset_ = 0;
    size_t file_size_ = 0;
    std::unique_ptr<MappedFile> mem_;
    std::string mlock_error_;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::map<std::string, size_t> kv_index_;
    std::vector<GGUFTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

}  // namespace ggmlpy
