// Fuzz target: arbitrary text through fixed tokenizers of every kind the library has (byte-level
// BPE with each pre-tokenizer, BPE without merges, SentencePiece-style with byte fallback, with an
// unknown token only, with UNUSED pieces). Input byte 0 picks the tokenizer, byte 1 the flags, the
// rest is the text (any bytes, valid UTF-8 or not). Checked: ids inside the vocabulary, and where
// the vocabulary can spell every byte, decode(encode(text)) == text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "ggmlpy/error.h"
#include "ggmlpy/tokenizer.h"

using namespace ggmlpy;

namespace {

[[noreturn]] void fail(const char* why) {  // a broken property: abort, libFuzzer saves the input
    std::fprintf(stderr, "%s: %s\n", "fuzz_tokenizer", why);
    std::abort();
}

// GPT-2's byte -> printable code point map, as UTF-8.
std::string byte_char(int b) {
    auto printable = [](int x) { return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
    int cp = b;
    if (!printable(b)) {
        cp = 256;
        for (int x = 0; x < b; ++x) cp += !printable(x);
    }
    std::string s;
    if (cp < 0x80) s += char(cp);
    else s += {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
    return s;
}

Vocab bpe(const char* pre, bool with_merges) {
    Vocab v;
    v.model = "gpt2";
    v.pre = pre;
    for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_char(b));
    const std::string G = byte_char(' ');
    v.tokens.insert(v.tokens.end(), {"he", "ll", "hell", "hello", G + "w", "or", G + "wor", "12", "123",
                                     G + G, "<|eot|>", "<user>"});
    if (with_merges) v.merges = {"h e", "l l", "he ll", "hell o", G + " w", "o r", G + "w or", "1 2", "12 3", G + " " + G};
    v.token_types.assign(v.tokens.size(), 1);
    v.token_types[v.tokens.size() - 2] = 3;  // control
    v.token_types[v.tokens.size() - 1] = 4;  // user-defined: matched even without parse_special
    v.eos = int32_t(v.tokens.size() - 2);
    v.add_space_prefix = false;
    return v;
}

// SentencePiece-style: <unk> <s> </s>, byte tokens (if bytes), then scored pieces; "▁xy" is
// UNUSED, so merges through it are split back.
Vocab spm(bool bytes) {
    Vocab v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.token_types = {2, 3, 3};
    static const char* hex = "0123456789ABCDEF";
    if (bytes)
        for (int b = 0; b < 256; ++b) {
            v.tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
            v.token_types.push_back(6);
        }
    v.scores.assign(v.tokens.size(), 0.0f);
    const std::string S = "\xE2\x96\x81";  // "▁"
    const std::vector<std::pair<std::string, float>> normal = {
        {S, -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"x", -2}, {"y", -2}, {S + "h", -3}, {"ll", -4},
        {"he", -5}, {S + "he", -6}, {"llo", -7}, {S + "hello", -8}, {S + "x", -3}, {S + "xy", -1}, {"\xC3\xA9", -2}};
    for (const auto& p : normal) {
        v.tokens.push_back(p.first);
        v.scores.push_back(p.second);
        v.token_types.push_back(p.first == S + "xy" ? 5 : 1);
    }
    v.tokens.push_back("<user>");
    v.scores.push_back(0);
    v.token_types.push_back(4);
    v.unk = 0, v.bos = 1, v.eos = 2;
    v.add_bos = true;
    return v;
}

struct Case {
    Tokenizer tok;
    bool round_trip;  // every byte has a token: decode(encode(text)) must give the text back
    bool spm;
};

const std::vector<std::unique_ptr<Case>>& cases() {
    static const std::vector<std::unique_ptr<Case>> all = [] {
        std::vector<std::unique_ptr<Case>> c;
        for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"})
            c.push_back(std::make_unique<Case>(Case{Tokenizer(bpe(pre, true)), true, false}));
        c.push_back(std::make_unique<Case>(Case{Tokenizer(bpe("gpt2", false)), true, false}));  // greedy
        c.push_back(std::make_unique<Case>(Case{Tokenizer(spm(true)), true, true}));
        c.push_back(std::make_unique<Case>(Case{Tokenizer(spm(false)), false, true}));  // unknown token only
        return c;
    }();
    return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const Case& c = *cases()[data[0] % cases().size()];
    const bool add_bos = data[1] & 1, parse_special = data[1] & 2;
    const std::string text(reinterpret_cast<const char*>(data) + 2, size - 2);

    const std::vector<int32_t> ids = c.tok.encode(text, add_bos, parse_special);
    for (int32_t id : ids)
        if (id < 0 || id >= c.tok.n_vocab()) fail("encode gave an id outside the vocabulary");
    const std::string back = c.tok.decode(ids, /*render_special=*/true);
    std::string streamed;  // per-token pieces, as a streamer decodes
    for (int32_t id : ids) streamed += c.tok.token_to_piece(id, true);

    // Without special-token parsing and BOS, no control token appears, so the text must come back
    // (SPM: unless the text spells "▁" itself, which decodes to a space, as in sentencepiece).
    const bool ambiguous = c.spm && text.find("\xE2\x96\x81") != std::string::npos;
    if (c.round_trip && !add_bos && !parse_special && !ambiguous && back != text)
        fail("decode(encode(text)) differs from the text");
    return 0;
}
