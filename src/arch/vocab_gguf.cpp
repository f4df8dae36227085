// Vocabulary glue: builds a tokenizer Vocab from the GGUF keys tokenizer.ggml.* (model, pre,
// tokens, scores, token_type, merges, special token ids, add_bos/add_eos/add_space_prefix).
// Only reads and range-checks; the Tokenizer validates the rest. Errors name the file and key.
#include "arch/arch.h"
#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {
int32_t token_id(const GGUFFile& f, const std::string& key, size_t n_tokens) {
    if (!f.has(key)) return -1;
    int64_t v = f.require_int(key);
    // some converters write -1 / UINT32_MAX for "none"
    if (v == -1 || v == 0xFFFFFFFFll) return -1;
    if (v < 0 || (size_t)v >= n_tokens)
        throw FormatError(f.path() + ": key '" + key + "' = " + std::to_string(v) +
                          " is not a token id (vocabulary has " + std::to_string(n_tokens) + " tokens)");
    return (int32_t)v;
}
}  // namespace

Vocab vocab_from_gguf(const GGUFFile& f) {
    Vocab v;
    const std::string k = "tokenizer.ggml.";
    if (!f.has(k + "model"))
        throw FormatError(f.path() + ": key 'tokenizer.ggml.model' is missing (the file has no tokenizer)");
    v.model = f.require_string(k + "model");
    if (v.model != "llama" && v.model != "gpt2")
        throw FormatError(f.path() + ": unknown tokenizer model '" + v.model +
                          "' (key tokenizer.ggml.model; supported: llama, gpt2)");
    v.pre = f.get_string(k + "pre", "default");
    v.tokens = f.get_string_array(k + "tokens");
    if (v.tokens.empty())
        throw FormatError(f.path() + ": key 'tokenizer.ggml.tokens' is missing or empty");
    const size_t n = v.tokens.size();
    v.scores = f.get_float_array(k + "scores");
    if (!v.scores.empty() && v.scores.size() != n)
        throw FormatError(f.path() + ": key 'tokenizer.ggml.scores' has " + std::to_string(v.scores.size()) +
                          " entries, expected " + std::to_string(n) + " (one per token)");
    std::vector<int64_t> types = f.get_int_array(k + "token_type");
    if (!types.empty() && types.size() != n)
        throw FormatError(f.path() + ": key 'tokenizer.ggml.token_type' has " + std::to_string(types.size()) +
                          " entries, expected " + std::to_string(n) + " (one per token)");
    v.token_types.reserve(types.size());
    for (int64_t t : types) v.token_types.push_back((int32_t)t);
    v.merges = f.get_string_array(k + "merges");

    v.bos = token_id(f, k + "bos_token_id", n);
    v.eos = token_id(f, k + "eos_token_id", n);
    v.unk = token_id(f, k + "unknown_token_id", n);
    v.pad = token_id(f, k + "padding_token_id", n);
    v.eot = token_id(f, k + "eot_token_id", n);
    const bool spm = v.model == "llama";
    v.add_bos = f.get_bool(k + "add_bos_token", spm);
    v.add_eos = f.get_bool(k + "add_eos_token", false);
    v.add_space_prefix = f.get_bool(k + "add_space_prefix", spm);
    return v;
}

}  // namespace ggmlpy
