// ggmlpy::Tokenizer: vocabulary validation, special-token partition of the input (leftmost-
// longest match, as HF's added-token matcher), dispatch to the SPM / BPE encoders, and per-token
// decoding to raw bytes. Encoders live in spm.cpp and bpe.cpp.
#include <algorithm>
#include <cstring>

#include "ggmlpy/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace ggmlpy {

namespace {
const char* kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Texts of control tokens that end a turn in common chat templates (besides eos/eot ids).
const char* const kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                 "<|endoftext|>", "<|eom_id|>", "<EOT>"};

// "<0xNN>" -> NN, else -1
int parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; ++i) {
        const char c = t[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else return -1;
    }
    return v;
}

void check_id(const char* key, int32_t id, size_t n) {
    if (id < -1 || (id >= 0 && size_t(id) >= n))
        throw ValueError(std::string("tokenizer.ggml.") + key + ": token id " + std::to_string(id) +
                         " is outside the vocabulary [0, " + std::to_string(n) + ")");
}
}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.v = std::move(vocab);
    const Vocab& v = m.v;
    const size_t n = v.tokens.size();
    if (v.model == "llama") {
        m.spm = true;
    } else if (v.model == "gpt2") {
        m.spm = false;
        m.pre = pre_type_from_name(v.pre);
        m.ignore_merges = m.pre == PreType::LLAMA3;
    } else {
        throw ValueError("tokenizer.ggml.model: unsupported tokenizer model '" + v.model +
                         "' (supported: llama, gpt2)");
    }
    if (n == 0) throw ValueError("tokenizer.ggml.tokens: the vocabulary is empty");
    if (n > size_t(INT32_MAX)) throw ValueError("tokenizer.ggml.tokens: too many tokens");
    if (!v.scores.empty() && v.scores.size() != n)
        throw ValueError("tokenizer.ggml.scores: " + std::to_string(v.scores.size()) +
                         " scores for " + std::to_string(n) + " tokens");
    if (!v.token_types.empty() && v.token_types.size() != n)
        throw ValueError("tokenizer.ggml.token_type: " + std::to_string(v.token_types.size()) +
                         " types for " + std::to_string(n) + " tokens");
    check_id("bos_token_id", v.bos, n);
    check_id("eos_token_id", v.eos, n);
    check_id("unknown_token_id", v.unk, n);
    check_id("padding_token_id", v.pad, n);
    check_id("eot_token_id", v.eot, n);

    m.types.assign(n, TokenType::NORMAL);
    for (size_t i = 0; i < v.token_types.size(); ++i) {
        const int32_t t = v.token_types[i];
        if (t < 0 || t > 6)
            throw ValueError("tokenizer.ggml.token_type[" + std::to_string(i) + "]: invalid type " +
                             std::to_string(t) + " (expected 0..6)");
        m.types[i] = t == 0 ? TokenType::NORMAL : TokenType(t);
    }
    m.text_to_id.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) m.text_to_id.emplace(v.tokens[i], int32_t(i));

    // special tokens matched in text: control and unknown (only with parse_special, checked at
    // match time) and user-defined (always, like HF's non-special added tokens)
    m.special_by_byte.assign(256, {});
    for (size_t i = 0; i < n; ++i) {
        const TokenType t = m.types[i];
        if ((t == TokenType::CONTROL || t == TokenType::USER_DEFINED || t == TokenType::UNKNOWN) &&
            !v.tokens[i].empty())
            m.special_by_byte[uint8_t(v.tokens[i][0])].push_back(int32_t(i));
    }
    for (auto& b : m.special_by_byte)
        std::stable_sort(b.begin(), b.end(), [&](int32_t a, int32_t c) {
            return v.tokens[a].size() > v.tokens[c].size();
        });

    if (m.spm) m.init_spm();
    else m.init_bpe();

    std::vector<std::string> pieces(n);  // m.piece stays empty until filled: token_to_piece reads it
    for (size_t i = 0; i < n; ++i) pieces[i] = token_to_piece(int32_t(i), false);
    m.piece = std::move(pieces);

    m.eog.assign(n, 0);
    if (v.eos >= 0) m.eog[v.eos] = 1;
    if (v.eot >= 0) m.eog[v.eot] = 1;
    for (size_t i = 0; i < n; ++i) {
        if (m.types[i] != TokenType::CONTROL && m.types[i] != TokenType::USER_DEFINED) continue;
        for (const char* t : kEogTexts)
            if (v.tokens[i] == t) m.eog[i] = 1;
    }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;

int32_t Tokenizer::n_vocab() const { return int32_t(impl_->v.tokens.size()); }
const Vocab& Tokenizer::vocab() const { return impl_->v; }
bool Tokenizer::is_eog(int32_t id) const {
    return id >= 0 && id < n_vocab() && impl_->eog[size_t(id)];
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool parse_special) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    if (add_bos && m.v.bos >= 0) out.push_back(m.v.bos);
    // SPM space prefix: only at the start of the text, as sentencepiece and HF's Metaspace
    // (prepend_scheme "first") do; text after a special token gets none.
    size_t frag = 0;  // start of the pending raw-text fragment
    auto flush = [&](size_t end) {
        if (end > frag) {
            const std::string piece = text.substr(frag, end - frag);
            if (m.spm) m.encode_spm(piece, frag == 0, out);
            else m.encode_bpe(piece, out);
        }
    };
    for (size_t i = 0; i < text.size();) {
        int32_t hit = -1;
        for (int32_t id : m.special_by_byte[uint8_t(text[i])]) {
            const TokenType t = m.types[size_t(id)];
            if (!parse_special && t != TokenType::USER_DEFINED) continue;
            const std::string& s = m.v.tokens[size_t(id)];
            if (text.compare(i, s.size(), s) == 0) {
                hit = id;  // bucket is sorted longest first
                break;
            }
        }
        if (hit < 0) {
            ++i;
            continue;
        }
        flush(i);
        out.push_back(hit);
        i += m.v.tokens[size_t(hit)].size();
        frag = i;
    }
    flush(text.size());
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    const Impl& m = *impl_;
    if (id < 0 || id >= n_vocab())
        throw ValueError("token_to_piece: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                         std::to_string(n_vocab()) + ")");
    if (!render_special && !m.piece.empty()) return m.piece[size_t(id)];
    const std::string& text = m.v.tokens[size_t(id)];
    switch (m.types[size_t(id)]) {
        case TokenType::CONTROL:
            return render_special ? text : std::string();
        case TokenType::UNUSED:
            return std::string();
        case TokenType::UNKNOWN:
            // SentencePiece renders an unknown piece as " ⁇ "
            return m.spm ? std::string(" \xE2\x81\x87 ") : (render_special ? text : std::string());
        case TokenType::USER_DEFINED:
            return text;
        case TokenType::BYTE: {
            const int b = parse_byte_token(text);
            if (b >= 0) return std::string(1, char(b));
            return text;
        }
        default:
            break;
    }
    std::string r;
    if (m.spm) {
        // "▁" -> ' '
        for (size_t i = 0; i < text.size();) {
            if (text.compare(i, 3, kSpmSpace) == 0) {
                r += ' ';
                i += 3;
            } else {
                r += text[i++];
            }
        }
    } else {
        // byte-level: each code point back to its byte (code points outside the map kept as is)
        for (const auto& c : unicode::decode_utf8(text)) {
            const int b = unicode::unicode_to_byte(c.cp);
            if (b >= 0) r += char(b);
            else r.append(text, c.offset, c.len);
        }
    }
    return r;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
    const Impl& m = *impl_;
    std::string r;
    bool strip = m.spm && m.v.add_space_prefix;  // drop the space the space prefix added
    for (int32_t id : ids) {
        std::string p = token_to_piece(id, render_special);
        if (strip && m.types[size_t(id)] != TokenType::CONTROL) {
            if (m.types[size_t(id)] == TokenType::NORMAL && !p.empty() && p[0] == ' ') p.erase(0, 1);
            strip = false;
        }
        r += p;
    }
    return r;
}

}  // namespace ggmlpy
