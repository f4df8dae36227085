// Vocabulary from GGUF metadata (tokenizer.ggml.*) and the public pretokenize_text entry point.
// Key names and defaults follow llama.cpp's GGUF writer; see tokenizer.h.
#include "ggmlpy/error.h"
#include "ggmlpy/gguf.h"
#include "ggmlpy/tokenizer.h"
#include "tokenizer/pretokenize.h"

namespace ggmlpy {

Vocab vocab_from_gguf(const GGUFFile& f) {
    Vocab v;
    v.model = f.require_string("tokenizer.ggml.model");
    v.pre = f.get_string("tokenizer.ggml.pre", "default");
    v.tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (v.tokens.empty())
        throw FormatError(f.where() + ": key 'tokenizer.ggml.tokens' is missing or empty (expected the vocabulary)");
    v.scores = f.get_float_array("tokenizer.ggml.scores");
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) v.token_types.push_back(int32_t(t));
    v.merges = f.get_string_array("tokenizer.ggml.merges");
    auto id = [&](const char* key) {
        const int64_t x = f.get_int(key, -1);
        if (x < -1 || x > INT32_MAX)
            throw FormatError(f.where() + ": key '" + key + "' = " + std::to_string(x) + " is not a token id");
        return int32_t(x);
    };
    v.bos = id("tokenizer.ggml.bos_token_id");
    v.eos = id("tokenizer.ggml.eos_token_id");
    v.unk = id("tokenizer.ggml.unknown_token_id");
    v.pad = id("tokenizer.ggml.padding_token_id");
    v.eot = id("tokenizer.ggml.eot_token_id");
    const bool spm = v.model == "llama";
    v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm);
    v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
    v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
    return v;
}

Tokenizer tokenizer_from_gguf(const GGUFFile& f) {
    Vocab v = vocab_from_gguf(f);
    try {
        return Tokenizer(std::move(v));
    } catch (const ValueError& e) {
        throw FormatError(f.where() + ": " + e.what());
    }
}

std::vector<std::string> pretokenize_text(const std::string& pre, const std::string& text) {
    return pretokenize(pre_type_from_name(pre), text);
}

}  // namespace ggmlpy
