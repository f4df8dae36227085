// Fuzz target: arbitrary bytes through the whole GGUF reader (header, every metadata type, tensor
// infos and their extents), the typed getters, and, when tokenizer.ggml.* keys are there, the
// vocabulary checks and a tokenizer built from them. Malformed input must end in FormatError or
// ValueError; anything else (a crash, an ASan/UBSan report, another exception) is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "ggmlpy/dtype.h"
#include "ggmlpy/error.h"
#include "ggmlpy/gguf.h"
#include "ggmlpy/tokenizer.h"

using namespace ggmlpy;

namespace {

[[noreturn]] void fail(const char* why) {  // a broken property: abort, libFuzzer saves the input
    std::fprintf(stderr, "%s: %s\n", "fuzz_gguf", why);
    std::abort();
}

volatile size_t g_sink;  // keeps the reads below from being optimized away

void touch_metadata(const GGUFFile& f) {
    size_t n = 0;
    for (const auto& [key, v] : f.kv()) {
        n += key.size() + v.to_string().size();
        // every getter on every key: a wrong type throws FormatError, nothing else may happen
        try { n += f.get_int(key, 0) != 0; } catch (const FormatError&) {}
        try { n += f.get_float(key, 0.0) != 0; } catch (const FormatError&) {}
        try { n += f.get_string(key, "").size(); } catch (const FormatError&) {}
        try { n += f.get_bool(key, false); } catch (const FormatError&) {}
        try { n += f.get_string_array(key).size(); } catch (const FormatError&) {}
        try { n += f.get_float_array(key).size(); } catch (const FormatError&) {}
        try { n += f.get_int_array(key).size(); } catch (const FormatError&) {}
    }
    g_sink = n;
}

void touch_tensors(const GGUFFile& f) {
    size_t n = f.tensor_bytes();
    for (const GGUFTensorInfo& t : f.tensors()) {
        // the promised size, computed without overflow, and where it lies
        const DTypeTraits& tr = dtype_traits(t.type);
        const unsigned __int128 cap = (unsigned __int128)1 << 64;  // saturate: no 128-bit overflow
        unsigned __int128 bytes = (unsigned __int128)(uint64_t)(t.ne[0] / tr.block_size) * tr.type_size;
        for (int d = 1; d < t.n_dims; ++d) {
            if (bytes > cap) bytes = cap;
            bytes *= (uint64_t)t.ne[d];
        }
        if (bytes != t.nbytes) fail("tensor nbytes differs from its shape and type");
        if (f.data_offset() + t.offset + t.nbytes > f.file_size()) fail("tensor data past the end");
        if (t.offset % f.alignment() != 0) fail("tensor offset not aligned");
        n += t.shape_string().size() + (size_t)t.nelements();
        // the first and the last byte the reader promises: ASan reports a read past the copy
        if (t.nbytes) {
            const auto* p = static_cast<const uint8_t*>(t.data);
            n += p[0] + p[t.nbytes - 1];
        }
        if (f.find_tensor(t.name) == nullptr) fail("a listed tensor is not found by name");
    }
    g_sink = n;
}

void touch_tokenizer(const GGUFFile& f) {
    if (!f.has("tokenizer.ggml.model")) return;
    try {
        Tokenizer tok = tokenizer_from_gguf(f);
        const std::string text = "Hello  world's 12345 na\xC3\xAFve <|im_start|>\n\t\xE6\x97\xA5 \xFF\xC3";
        std::vector<int32_t> ids = tok.encode(text, true, true);
        for (int32_t id : ids)
            if (id < 0 || id >= tok.n_vocab()) fail("encode gave an id outside the vocabulary");
        g_sink = tok.decode(ids, true).size();
        for (int32_t id = 0; id < tok.n_vocab(); ++id) g_sink = tok.token_to_piece(id).size() + tok.is_eog(id);
    } catch (const FormatError&) {
    } catch (const ValueError&) {  // e.g. text not encodable: no byte tokens and no unknown token
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<GGUFFile> f;
    try {
        f = GGUFFile::from_bytes(data, size, "fuzz.gguf");
    } catch (const FormatError&) {
        return 0;
    }
    touch_metadata(*f);
    touch_tensors(*f);
    touch_tokenizer(*f);
    return 0;
}
