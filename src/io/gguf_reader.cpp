// GGUF reader: parses header, metadata and tensor infos from a MappedFile with a bounds-checked
// cursor (every length and count is compared with the bytes left before anything is read or
// allocated), then checks each tensor's type, shape, alignment and extent against the file.
// Layout (v2/v3, little endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, kv pairs,
// tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), pad to alignment, data.
#include "ggmlpy/gguf.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstring>
#include <limits>

#include "ggmlpy/error.h"
#include "io/mmap.h"

namespace ggmlpy {

namespace {

constexpr uint32_t GGUF_MAGIC = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int MAX_DIMS = 4;
constexpr uint64_t MAX_NESTING = 8;          // nested arrays deeper than this are refused

size_t scalar_size(GGUFType t) {
    switch (t) {
        case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
        case GGUFType::UINT16: case GGUFType::INT16: return 2;
        case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
        case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
        default: return 0;
    }
}

bool valid_type(uint32_t t) { return t <= (uint32_t)GGUFType::FLOAT64; }

// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and code points above
// U+10FFFF included), or npos when s is valid. Keys, tensor names and string values reach Python
// as str: a bad byte must be a FormatError here, not a UnicodeDecodeError later.
size_t utf8_error(const std::string& s) {
    const auto* p = (const unsigned char*)s.data();
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned c = p[i];
        size_t len;
        unsigned cp, min;
        if (c < 0x80) { ++i; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len > n - i) return i;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return std::string::npos;
}

// Bounds-checked little-endian reader over [0, size). `what` names the field being read so
// errors say which key / tensor was truncated.
class Cursor {
public:
    Cursor(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}
    size_t pos() const { return pos_; }
    size_t left() const { return n_ - pos_; }

    [[noreturn]] void fail(const std::string& what, const std::string& why) const {
        throw FormatError(path_ + ": " + what + ": " + why);
    }
    void need(size_t k, const std::string& what) const {
        if (k > left())
            fail(what, "truncated (needs " + std::to_string(k) + " bytes at offset " +
                           std::to_string(pos_) + ", file has " + std::to_string(left()) + " left)");
    }
    template <typename T> T get(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string str(const std::string& what) {
        uint64_t len = get<uint64_t>(what + " (string length)");
        if (len > left())
            fail(what, "string length " + std::to_string(len) + " exceeds the " +
                           std::to_string(left()) + " bytes left in the file");
        std::string s((const char*)p_ + pos_, (size_t)len);
        pos_ += (size_t)len;
        return s;
    }
    // str() that must be valid UTF-8 (keys, tensor names, string values); start = file offset
    std::string utf8_str(const std::string& what) {
        const size_t start = pos_ + 8;
        std::string s = str(what);
        const size_t bad = utf8_error(s);
        if (bad != std::string::npos)
            fail(what, "invalid UTF-8 at byte " + std::to_string(bad) + " of the string (file offset " +
                           std::to_string(start + bad) + ")");
        return s;
    }

private:
    const uint8_t* p_;
    size_t n_;
    size_t pos_ = 0;
    const std::string& path_;
};

void read_scalar(Cursor& c, GGUFType t, GGUFValue& v, const std::string& what) {
    switch (t) {
        case GGUFType::UINT8:  v.u = c.get<uint8_t>(what);  v.i = (int64_t)v.u; v.f = (double)v.u; break;
        case GGUFType::INT8:   v.i = c.get<int8_t>(what);   v.u = (uint64_t)v.i; v.f = (double)v.i; break;
        case GGUFType::UINT16: v.u = c.get<uint16_t>(what); v.i = (int64_t)v.u; v.f = (double)v.u; break;
        case GGUFType::INT16:  v.i = c.get<int16_t>(what);  v.u = (uint64_t)v.i; v.f = (double)v.i; break;
        case GGUFType::UINT32: v.u = c.get<uint32_t>(what); v.i = (int64_t)v.u; v.f = (double)v.u; break;
        case GGUFType::INT32:  v.i = c.get<int32_t>(what);  v.u = (uint64_t)v.i; v.f = (double)v.i; break;
        case GGUFType::UINT64: v.u = c.get<uint64_t>(what); v.i = (int64_t)v.u; v.f = (double)v.u; break;
        case GGUFType::INT64:  v.i = c.get<int64_t>(what);  v.u = (uint64_t)v.i; v.f = (double)v.i; break;
        case GGUFType::FLOAT32: v.f = c.get<float>(what);  break;
        case GGUFType::FLOAT64: v.f = c.get<double>(what); break;
        case GGUFType::BOOL: {
            uint8_t b = c.get<uint8_t>(what);
            if (b > 1) c.fail(what, "bool value " + std::to_string(b) + " is not 0 or 1");
            v.i = b; v.u = b; v.f = b;
            break;
        }
        case GGUFType::STRING: v.s = c.utf8_str(what); break;
        default: c.fail(what, "unexpected value type");
    }
}

void read_value(Cursor& c, GGUFType t, GGUFValue& v, const std::string& what, uint64_t depth) {
    v.type = t;
    if (t != GGUFType::ARRAY) {
        read_scalar(c, t, v, what);
        return;
    }
    if (depth > MAX_NESTING) c.fail(what, "arrays nested deeper than " + std::to_string(MAX_NESTING));
    uint32_t et = c.get<uint32_t>(what + " (array element type)");
    if (!valid_type(et)) c.fail(what, "unknown array element type " + std::to_string(et));
    v.elem_type = (GGUFType)et;
    uint64_t n = c.get<uint64_t>(what + " (array length)");
    v.count = n;
    // The smallest encoding of one element bounds the count before anything is allocated:
    // fixed-size scalars take their size, a string at least its 8-byte length, an array 12 bytes.
    size_t min_elem = scalar_size(v.elem_type);
    if (v.elem_type == GGUFType::STRING) min_elem = 8;
    if (v.elem_type == GGUFType::ARRAY) min_elem = 12;
    if (n > c.left() / min_elem)
        c.fail(what, "array of " + std::to_string(n) + " " + gguf_type_name(v.elem_type) +
                         " elements does not fit in the " + std::to_string(c.left()) +
                         " bytes left in the file (truncated or corrupt)");
    switch (v.elem_type) {
        case GGUFType::STRING:
            v.arr_str.reserve((size_t)n);
            for (uint64_t k = 0; k < n; ++k) v.arr_str.push_back(c.str(what + "[" + std::to_string(k) + "]"));
            break;
        case GGUFType::ARRAY:
            v.arr_nested.resize((size_t)n);
            for (uint64_t k = 0; k < n; ++k)
                read_value(c, GGUFType::ARRAY, v.arr_nested[k], what + "[" + std::to_string(k) + "]", depth + 1);
            break;
        case GGUFType::FLOAT32: case GGUFType::FLOAT64: {
            v.arr_num.resize((size_t)n);
            GGUFValue e;
            for (uint64_t k = 0; k < n; ++k) {
                read_scalar(c, v.elem_type, e, what);
                v.arr_num[k] = e.f;
            }
            break;
        }
        default: {
            v.arr_int.resize((size_t)n);
            GGUFValue e;
            for (uint64_t k = 0; k < n; ++k) {
                read_scalar(c, v.elem_type, e, what);
                v.arr_int[k] = e.i;
            }
        }
    }
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
    switch (t) {
        case GGUFType::UINT8: return "uint8";
        case GGUFType::INT8: return "int8";
        case GGUFType::UINT16: return "uint16";
        case GGUFType::INT16: return "int16";
        case GGUFType::UINT32: return "uint32";
        case GGUFType::INT32: return "int32";
        case GGUFType::FLOAT32: return "float32";
        case GGUFType::BOOL: return "bool";
        case GGUFType::STRING: return "string";
        case GGUFType::ARRAY: return "array";
        case GGUFType::UINT64: return "uint64";
        case GGUFType::INT64: return "int64";
        case GGUFType::FLOAT64: return "float64";
    }
    return "unknown";
}

bool GGUFValue::is_integer() const {
    switch (type) {
        case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::UINT16: case GGUFType::INT16:
        case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::UINT64: case GGUFType::INT64:
            return true;
        default: return false;
    }
}

std::string GGUFValue::to_string() const {
    switch (type) {
        case GGUFType::STRING: return s;
        case GGUFType::BOOL: return i ? "true" : "false";
        case GGUFType::FLOAT32: case GGUFType::FLOAT64: {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.9g", f);
            return buf;
        }
        case GGUFType::UINT64: return std::to_string(u);
        case GGUFType::ARRAY:
            return std::string("[") + gguf_type_name(elem_type) + "; " + std::to_string(count) + "]";
        default: return std::to_string(i);
    }
}

std::string GGUFTensorInfo::shape_string() const {
    std::string s = "[";
    for (int d = 0; d < n_dims; ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
    return s + "]";
}

GGUFFile::~GGUFFile() = default;

bool GGUFFile::mmapped() const { return mem_ && mem_->mapped(); }
bool GGUFFile::mlocked() const { return mem_ && mem_->locked(); }

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path, const GGUFOpenOptions& opt) {
    return parse(std::make_unique<MappedFile>(path, opt.use_mmap), path, opt);
}

std::unique_ptr<GGUFFile> GGUFFile::from_bytes(const void* data, size_t size, const std::string& name) {
    GGUFOpenOptions opt;
    opt.use_mmap = false;
    return parse(std::make_unique<MappedFile>(name, data, size), name, opt);
}

std::unique_ptr<GGUFFile> GGUFFile::parse(std::unique_ptr<MappedFile> mem, const std::string& path,
                                          const GGUFOpenOptions& opt) {
    std::unique_ptr<GGUFFile> g(new GGUFFile());
    g->path_ = path;
    g->mem_ = std::move(mem);
    g->file_size_ = g->mem_->size();
    if (g->file_size_ == 0) throw FormatError(path + ": file is empty (expected a GGUF file)");

    Cursor c(g->mem_->data(), g->file_size_, g->path_);
    if (g->file_size_ < 4) throw FormatError(path + ": not a GGUF file (only " + std::to_string(g->file_size_) + " bytes)");
    uint32_t magic = c.get<uint32_t>("magic");
    if (magic != GGUF_MAGIC) {
        char got[5] = {0};
        std::memcpy(got, g->mem_->data(), 4);
        for (char& ch : got) if (ch && (ch < 32 || ch > 126)) ch = '?';
        throw FormatError(path + ": not a GGUF file (magic '" + std::string(got) + "', expected 'GGUF')");
    }
    uint32_t version = c.get<uint32_t>("header (version)");
    if (version == 1) throw FormatError(path + ": GGUF version 1 is not supported (versions 2 and 3 are)");
    if (version != 2 && version != 3) {
        if ((version & 0xFFFF) == 0 && (version >> 24) <= 3)
            throw FormatError(path + ": big-endian GGUF files are not supported");
        throw FormatError(path + ": unsupported GGUF version " + std::to_string(version) + " (expected 2 or 3)");
    }
    g->version_ = version;
    uint64_t n_tensors = c.get<uint64_t>("header (tensor count)");
    uint64_t n_kv = c.get<uint64_t>("header (metadata count)");
    // a kv pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info 8 + 4 + 8 + 4 + 8
    if (n_kv > c.left() / 13)
        c.fail("header", "metadata count " + std::to_string(n_kv) + " is impossible for a file of " +
                             std::to_string(g->file_size_) + " bytes (truncated or corrupt)");
    if (n_tensors > c.left() / 32)
        c.fail("header", "tensor count " + std::to_string(n_tensors) + " is impossible for a file of " +
                             std::to_string(g->file_size_) + " bytes (truncated or corrupt)");

    g->kv_.reserve((size_t)n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key = c.utf8_str("metadata key #" + std::to_string(k));
        std::string what = "key '" + key + "'";
        if (g->kv_index_.count(key)) c.fail(what, "duplicate key");
        uint32_t t = c.get<uint32_t>(what + " (type)");
        if (!valid_type(t)) c.fail(what, "unknown value type " + std::to_string(t));
        GGUFValue v;
        read_value(c, (GGUFType)t, v, what, 0);
        g->kv_index_[key] = g->kv_.size();
        g->kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const GGUFValue* a = g->find("general.alignment")) {
        // The spec requires a multiple of 8 (tensor data read as f32 / f16 / block structs must be
        // aligned: odd addresses are misaligned loads). Powers of two from 8 to 1 MiB are accepted;
        // more is no real file's layout and only spreads a small file over a huge range.
        if (!a->is_integer() || a->i < 8 || (a->i & (a->i - 1)) != 0 || a->i > (1 << 20))
            throw FormatError(path + ": key 'general.alignment' must be a power of two from 8 to 1048576, found " +
                              a->to_string() + " (" + gguf_type_name(a->type) + ")");
        g->alignment_ = (size_t)a->i;
    }

    g->tensors_.resize((size_t)n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
        GGUFTensorInfo& ti = g->tensors_[k];
        ti.name = c.utf8_str("tensor info #" + std::to_string(k) + " (name)");
        std::string what = "tensor '" + ti.name + "'";
        if (ti.name.empty()) c.fail("tensor info #" + std::to_string(k), "empty tensor name");
        if (g->tensor_index_.count(ti.name)) c.fail(what, "duplicate tensor name");
        uint32_t nd = c.get<uint32_t>(what + " (n_dims)");
        if (nd < 1 || nd > MAX_DIMS)
            c.fail(what, "n_dims " + std::to_string(nd) + " out of range (1.." + std::to_string(MAX_DIMS) + ")");
        ti.n_dims = (int)nd;
        for (uint32_t d = 0; d < nd; ++d) {
            uint64_t ne = c.get<uint64_t>(what + " (dims)");
            if (ne > (uint64_t)std::numeric_limits<int64_t>::max() / 2)
                c.fail(what, "dimension " + std::to_string(d) + " is absurd (" + std::to_string(ne) + ")");
            ti.ne[d] = (int64_t)ne;
        }
        uint32_t type = c.get<uint32_t>(what + " (type)");
        if (!dtype_supported((int32_t)type))
            c.fail(what, "unsupported tensor type id " + std::to_string(type));
        ti.type = (DType)type;
        ti.offset = c.get<uint64_t>(what + " (offset)");
        g->tensor_index_[ti.name] = (size_t)k;
    }

    // data section: after the infos, rounded up to the alignment
    size_t end = c.pos();
    g->data_offset_ = (end + g->alignment_ - 1) / g->alignment_ * g->alignment_;
    if (n_tensors && g->data_offset_ > g->file_size_)
        throw FormatError(path + ": truncated: the tensor data section starts at byte " +
                          std::to_string(g->data_offset_) + " but the file has " +
                          std::to_string(g->file_size_) + " bytes");
    const size_t data_avail = g->file_size_ - std::min(g->data_offset_, g->file_size_);

    for (GGUFTensorInfo& ti : g->tensors_) {
        const std::string what = path + ": tensor '" + ti.name + "'";
        const DTypeTraits& tr = dtype_traits(ti.type);
        if (ti.ne[0] % tr.block_size != 0)
            throw FormatError(what + ": ne[0] = " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
                              tr.name + " block size " + std::to_string(tr.block_size));
        // nbytes = row bytes * rows, each product overflow-checked (a row of 2^62 f32 would wrap
        // to 0 bytes); UINT64_MAX when it overflows
        uint64_t bytes = 0;
        bool over = __builtin_mul_overflow((uint64_t)(ti.ne[0] / tr.block_size), (uint64_t)tr.type_size, &bytes);
        for (int d = 1; d < ti.n_dims && !over; ++d) over = __builtin_mul_overflow(bytes, (uint64_t)ti.ne[d], &bytes);
        if (over) bytes = UINT64_MAX;
        if (ti.offset % g->alignment_ != 0)
            throw FormatError(what + ": data offset " + std::to_string(ti.offset) +
                              " is not a multiple of the alignment " + std::to_string(g->alignment_));
        if (ti.offset > data_avail || bytes > data_avail - ti.offset)
            throw FormatError(what + " " + ti.shape_string() + " " + tr.name + " needs " +
                              (bytes == UINT64_MAX ? std::string("more than 2^64") : std::to_string(bytes)) +
                              " bytes at data offset " + std::to_string(ti.offset) +
                              ", past the end of the file: its data section has " + std::to_string(data_avail) +
                              " bytes (file truncated?)");
        ti.nbytes = (size_t)bytes;
        ti.data = g->mem_->data() + g->data_offset_ + ti.offset;
    }

    // No two tensors may share bytes: a small file whose thousands of tensor infos all point at the
    // same data would otherwise pass every size check and declare a huge model (and what one
    // tensor's bytes mean depends on which name reads them).
    std::vector<const GGUFTensorInfo*> by_offset;
    for (const GGUFTensorInfo& ti : g->tensors_)
        if (ti.nbytes) by_offset.push_back(&ti);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GGUFTensorInfo* a, const GGUFTensorInfo* b) { return a->offset < b->offset; });
    const GGUFTensorInfo* reach = nullptr;  // the tensor ending furthest so far
    for (const GGUFTensorInfo* t : by_offset) {
        if (reach && t->offset < reach->offset + reach->nbytes)
            throw FormatError(path + ": tensors '" + reach->name + "' (data bytes " + std::to_string(reach->offset) +
                              ".." + std::to_string(reach->offset + reach->nbytes) + ") and '" + t->name +
                              "' (from byte " + std::to_string(t->offset) + ") overlap");
        if (!reach || t->offset + t->nbytes > reach->offset + reach->nbytes) reach = t;
    }

    if (opt.use_mlock && n_tensors) g->lock_tensor_data();
    return g;
}

void GGUFFile::lock_tensor_data() {
    if (mem_ && !tensors_.empty()) mlock_error_ = mem_->lock(data_offset_, file_size_ - data_offset_);
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
[[noreturn]] void bad_type(const std::string& path, const std::string& key, const char* expected,
                           const GGUFValue& v) {
    std::string found = gguf_type_name(v.type);
    if (v.is_array()) found += std::string(" of ") + gguf_type_name(v.elem_type);
    throw FormatError(path + ": key '" + key + "' has type " + found + ", expected " + expected);
}
}  // namespace

int64_t GGUFFile::require_int(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) throw FormatError(path_ + ": required key '" + key + "' is missing");
    if (!v->is_integer()) bad_type(path_, key, "an integer", *v);
    if (v->type == GGUFType::UINT64 && v->u > (uint64_t)std::numeric_limits<int64_t>::max())
        throw FormatError(path_ + ": key '" + key + "' value " + std::to_string(v->u) + " is out of range");
    return v->i;
}
int64_t GGUFFile::get_int(const std::string& key, int64_t def) const {
    return has(key) ? require_int(key) : def;
}
double GGUFFile::require_float(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) throw FormatError(path_ + ": required key '" + key + "' is missing");
    if (!v->is_float() && !v->is_integer()) bad_type(path_, key, "a number", *v);
    return v->f;
}
double GGUFFile::get_float(const std::string& key, double def) const {
    return has(key) ? require_float(key) : def;
}
std::string GGUFFile::require_string(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) throw FormatError(path_ + ": required key '" + key + "' is missing");
    if (v->type != GGUFType::STRING) bad_type(path_, key, "a string", *v);
    return v->s;
}
std::string GGUFFile::get_string(const std::string& key, const std::string& def) const {
    return has(key) ? require_string(key) : def;
}
bool GGUFFile::get_bool(const std::string& key, bool def) const {
    const GGUFValue* v = find(key);
    if (!v) return def;
    if (v->type != GGUFType::BOOL && !v->is_integer()) bad_type(path_, key, "a bool", *v);
    return v->i != 0;
}
std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return {};
    if (!v->is_array() || v->elem_type != GGUFType::STRING) bad_type(path_, key, "an array of strings", *v);
    return v->arr_str;
}
std::vector<float> GGUFFile::get_float_array(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return {};
    if (!v->is_array() || v->elem_type == GGUFType::STRING || v->elem_type == GGUFType::ARRAY)
        bad_type(path_, key, "an array of numbers", *v);
    std::vector<float> out;
    out.reserve((size_t)v->count);
    if (!v->arr_num.empty()) for (double d : v->arr_num) out.push_back((float)d);
    else for (int64_t i : v->arr_int) out.push_back((float)i);
    return out;
}
std::vector<int64_t> GGUFFile::get_int_array(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return {};
    if (!v->is_array() || v->elem_type == GGUFType::STRING || v->elem_type == GGUFType::ARRAY ||
        v->elem_type == GGUFType::FLOAT32 || v->elem_type == GGUFType::FLOAT64)
        bad_type(path_, key, "an array of integers", *v);
    return v->arr_int;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}
const GGUFTensorInfo& GGUFFile::require_tensor(const std::string& name) const {
    const GGUFTensorInfo* t = find_tensor(name);
    if (!t) throw FormatError(path_ + ": tensor '" + name + "' not found");
    return *t;
}

size_t GGUFFile::tensor_bytes() const {
    size_t n = 0;
    for (const auto& t : tensors_) n += t.nbytes;
    return n;
}
void GGUFFile::advise_willneed() const {
    if (data_offset_ < file_size_) mem_->advise_willneed(data_offset_, file_size_ - data_offset_);
}
void GGUFFile::advise_random() const {
    if (data_offset_ < file_size_) mem_->advise_random(data_offset_, file_size_ - data_offset_);
}

}  // namespace ggmlpy
