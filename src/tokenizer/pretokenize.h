// Pre-tokenizers of byte-level BPE vocabularies, written by hand (no std::regex). Each variant
// reproduces one regex split (HF tokenizers' Split/ByteLevel with "isolated" behaviour: matches
// and the text between them both become pieces), named as GGUF's tokenizer.ggml.pre names it.
#pragma once
#include <string>
#include <vector>

namespace ggmlpy {

enum class PreType {
    GPT2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    SMOLLM,  // every \p{N} isolated first (HF Digits(individual_digits)), then GPT2 on the rest
    LLAMA3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
             //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    QWEN2,   // LLAMA3 with \p{N} instead of \p{N}{1,3}
};

// Maps a tokenizer.ggml.pre value to its variant; throws ValueError naming the key and the
// supported values for an unknown one.
PreType pre_type_from_name(const std::string& name);
// Comma-separated list of the accepted names (for messages and docs).
std::string supported_pre_names();

// Splits UTF-8 text into pieces (byte substrings of `text`, in order, concatenating to `text`).
// Invalid UTF-8 bytes are kept, each treated as a character of no category (like punctuation).
std::vector<std::string> pretokenize(PreType type, const std::string& text);

}  // namespace ggmlpy
