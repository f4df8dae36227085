// Internal state of ggmlpy::Tokenizer shared by tokenizer.cpp (validation, special-token
// partition, decoding), spm.cpp (SentencePiece-style encoder) and bpe.cpp (byte-level BPE).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggmlpy/tokenizer.h"
#include "tokenizer/pretokenize.h"

namespace ggmlpy {

struct Tokenizer::Impl {
    Vocab v;
    bool spm = true;             // "llama" (SentencePiece-style); false: "gpt2" byte-level BPE
    PreType pre = PreType::GPT2; // BPE only
    bool ignore_merges = false;  // BPE: a pre-token that is itself a token is taken whole (Llama 3)
    std::vector<TokenType> types;                       // one per token (NORMAL when absent)
    std::unordered_map<std::string, int32_t> text_to_id;// first id for each token text
    std::vector<std::string> piece;                     // token_to_piece(id, false), precomputed
    std::vector<uint8_t> eog;                           // 1 for end-of-generation tokens

    // Special tokens matched in raw text, bucketed by first byte, longest first.
    std::vector<std::vector<int32_t>> special_by_byte;  // 256 buckets

    // SPM: byte fallback tokens <0xNN> (-1 where absent).
    int32_t byte_token[256];
    // BPE: merges keyed by (left id, right id) -> (rank, merged id); the id of each mapped byte.
    struct Merge {
        int32_t rank, id;
    };
    std::unordered_map<uint64_t, Merge> merges;
    int32_t byte_symbol[256];

    static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    int32_t find(const std::string& text) const {
        auto it = text_to_id.find(text);
        return it == text_to_id.end() ? -1 : it->second;
    }

    // Encoders for one raw-text fragment (no special tokens inside), appending ids.
    // first: the fragment starts the text (SPM space prefix).
    void encode_spm(const std::string& text, bool first, std::vector<int32_t>& out) const;
    void encode_bpe(const std::string& text, std::vector<int32_t>& out) const;
    void encode_greedy(const std::string& word, const std::string& mapped, std::vector<int32_t>& out) const;
    void init_spm();  // byte_token
    void init_bpe();  // merges, byte_symbol (throws ValueError for unusable merges data)
};

}  // namespace ggmlpy
