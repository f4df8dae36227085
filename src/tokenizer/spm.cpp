// SentencePiece-style encoder (tokenizer.ggml.model = "llama"), as sentencepiece's BPE model
// encodes: spaces become "▁" (with one prepended when add_space_prefix), the text is split into
// UTF-8 characters, and adjacent pairs whose concatenation is a piece are merged, highest piece
// score first (ties: leftmost pair). Merged pieces of type UNUSED are split back into the pair
// they came from; a final piece that is not in the vocabulary becomes its UTF-8 bytes as <0xNN>
// tokens (byte fallback), or the unknown token when the vocabulary has no byte tokens.
#include <functional>
#include <queue>
#include <unordered_map>

#include "ggmlpy/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace ggmlpy {

void Tokenizer::Impl::init_spm() {
    for (int b = 0; b < 256; ++b) byte_token[b] = -1;
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        const std::string t = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
        const int32_t id = find(t);
        if (id >= 0 && types[size_t(id)] == TokenType::BYTE) byte_token[b] = id;
    }
    if (v.scores.empty()) throw ValueError("tokenizer.ggml.scores: required for the 'llama' (SentencePiece) model");
}

namespace {
struct Symbol {
    int prev, next;
    size_t off, len;  // bytes of the escaped text; len 0 once merged into its left neighbour
};
struct Bigram {
    int left, right;
    float score;
    size_t len;
};
struct BigramLess {
    // priority_queue pops the greatest: highest score, then smallest left position
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};
}  // namespace

void Tokenizer::Impl::encode_spm(const std::string& raw, bool first, std::vector<int32_t>& out) const {
    std::string text;
    text.reserve(raw.size() + 8);
    if (first && v.add_space_prefix) text += "\xE2\x96\x81";
    for (char c : raw) {
        if (c == ' ') text += "\xE2\x96\x81";
        else text += c;
    }
    if (text.empty()) return;

    std::vector<Symbol> sym;
    for (size_t i = 0; i < text.size();) {
        const size_t n = unicode::utf8_len_at(text, i);
        const int idx = int(sym.size());
        sym.push_back({idx - 1, -1, i, n});
        if (idx > 0) sym[size_t(idx - 1)].next = idx;
        i += n;
    }

    // merged text -> the pair it came from, for pieces of type UNUSED (split back at the end)
    std::unordered_map<std::string, std::pair<std::string, std::string>> rev_merge;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> agenda;
    auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        const Symbol& a = sym[size_t(l)];
        const Symbol& b = sym[size_t(r)];
        const std::string merged = text.substr(a.off, a.len + b.len);
        const int32_t id = find(merged);
        if (id < 0) return;
        const TokenType t = types[size_t(id)];
        // sentencepiece merges into normal, user-defined and unused pieces only
        if (t != TokenType::NORMAL && t != TokenType::USER_DEFINED && t != TokenType::UNUSED) return;
        agenda.push({l, r, v.scores[size_t(id)], merged.size()});
        if (t == TokenType::UNUSED)
            rev_merge[merged] = {text.substr(a.off, a.len), text.substr(b.off, b.len)};
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(int(i - 1), int(i));

    while (!agenda.empty()) {
        const Bigram bg = agenda.top();
        agenda.pop();
        Symbol& l = sym[size_t(bg.left)];
        Symbol& r = sym[size_t(bg.right)];
        // stale entry: one side was merged away or grew since it was queued
        if (l.len == 0 || r.len == 0 || l.len + r.len != bg.len) continue;
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[size_t(r.next)].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }

    bool prev_unk = false;  // without byte tokens, a run of unknown pieces is one unknown token
    std::function<void(const std::string&)> emit = [&](const std::string& piece) {
        const int32_t id = find(piece);
        if (id >= 0 && types[size_t(id)] == TokenType::UNUSED) {
            auto it = rev_merge.find(piece);
            if (it != rev_merge.end()) {
                const auto halves = it->second;  // copy: the recursion below does not touch rev_merge, but keeps no reference
                emit(halves.first);
                emit(halves.second);
                return;
            }
        }
        if (id >= 0) {
            out.push_back(id);
            prev_unk = false;
            return;
        }
        // byte fallback
        bool all_bytes = true;
        for (char c : piece) all_bytes = all_bytes && byte_token[uint8_t(c)] >= 0;
        if (all_bytes) {
            for (char c : piece) out.push_back(byte_token[uint8_t(c)]);
            prev_unk = false;
            return;
        }
        if (v.unk < 0)
            throw ValueError("encode: text piece '" + piece +
                             "' is not in the vocabulary, which has neither byte tokens nor an unknown token");
        if (!prev_unk) out.push_back(v.unk);
        prev_unk = true;
    };
    for (int i = 0; i >= 0; i = sym[size_t(i)].next) emit(text.substr(sym[size_t(i)].off, sym[size_t(i)].len));
}

}  // namespace ggmlpy
