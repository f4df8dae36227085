// Tokenizers built from GGUF vocabulary metadata (tokenizer.ggml.*): SentencePiece-style
// ("llama": scores, byte fallback, space prefix) and GPT-2 byte-level BPE ("gpt2": merges and the
// pre-tokenizer regex named by tokenizer.ggml.pre). Exact: ids equal HF tokenizers' ids.
// Decoding is per token to raw bytes, so a streamer can hold incomplete UTF-8 sequences back.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ggmlpy {

// GGUF tokenizer.ggml.token_type values
enum class TokenType : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

struct Vocab {
    std::string model = "llama";     // tokenizer.ggml.model: "llama" (SPM) or "gpt2" (BPE)
    std::string pre = "default";     // tokenizer.ggml.pre: "default", "gpt2", "llama-bpe", "smollm", ...
    std::vector<std::string> tokens; // tokenizer.ggml.tokens
    std::vector<float> scores;       // tokenizer.ggml.scores (SPM); may be empty for BPE
    std::vector<int32_t> token_types;// tokenizer.ggml.token_type; may be empty (all NORMAL)
    std::vector<std::string> merges; // tokenizer.ggml.merges ("a b"), BPE only
    int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1;
    bool add_bos = false, add_eos = false;
    bool add_space_prefix = true;    // tokenizer.ggml.add_space_prefix (SPM)
};

class Tokenizer {
public:
    // Validates the vocabulary (throws ValueError naming the bad field) and builds lookup tables.
    explicit Tokenizer(Vocab vocab);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    // add_bos: prepend BOS (if the vocab has one). parse_special: text like "<|im_start|>" that
    // spells a control/user-defined token becomes that token instead of being split.
    std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special = true) const;
    // Raw bytes of one token as it appears in text (byte tokens give their byte, "▁"/"Ġ" mapped
    // back to spaces). Control tokens give "" unless render_special.
    std::string token_to_piece(int32_t id, bool render_special = false) const;
    // Concatenated pieces; SPM drops the leading space the space prefix added.
    std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;
    bool is_eog(int32_t id) const;   // EOS / EOT / other end-of-generation tokens
    int32_t n_vocab() const;
    const Vocab& vocab() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

class GGUFFile;
// Reads tokenizer.ggml.* from GGUF metadata: model, pre ("default" when absent), tokens, scores,
// token_type, merges, bos/eos/unknown/padding/eot ids, add_bos_token (default: true for "llama",
// false otherwise), add_eos_token, add_space_prefix (default: true for "llama"). Throws
// FormatError naming the file and key for a missing or mistyped key.
Vocab vocab_from_gguf(const GGUFFile& file);
// vocab_from_gguf + Tokenizer; a vocabulary the tokenizer rejects (ValueError) is reported as
// FormatError "<file>: <what is wrong>".
Tokenizer tokenizer_from_gguf(const GGUFFile& file);

// Splits text the way the byte-level BPE pre-tokenizer named `pre` (tokenizer.ggml.pre) does;
// the pieces concatenate to `text`. Throws ValueError for an unknown name.
std::vector<std::string> pretokenize_text(const std::string& pre, const std::string& text);

}  // namespace ggmlpy
