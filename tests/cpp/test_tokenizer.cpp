// Tokenizer tests without Python: pre-tokenizer splits recorded from HF tokenizers' Split /
// Digits pre-tokenizers, hand-derived ids for tiny byte-level BPE and SentencePiece vocabularies
// (merge order, tie-breaks, byte fallback, special tokens), bad-vocabulary errors, and SmolLM2's
// reference ids through the GGUF reader (tests/data/smollm2-reference.json).
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/gguf.h"
#include "ggmlpy/tokenizer.h"

using namespace ggmlpy;
using Ids = std::vector<int32_t>;

namespace {

struct PreCase {
    const char* pre;
    const char* text;
    std::vector<std::string> pieces;
};
// Expected pieces from HF tokenizers 0.23 (pre_tokenizers.Split(Regex(pattern), "isolated"), for
// smollm preceded by Digits(individual_digits=True)).
const std::vector<PreCase> kPreCases = {
    {"gpt2", "Hello world's 'LL  x", {"Hello", " world", "'s", " '", "LL", " ", " x"}},
    {"gpt2", "a  \t\n\nb 12345 ½x", {"a", "  \t\n", "\n", "b", " 12345", " ½", "x"}},
    {"gpt2", "I'M fine!!\r\n\r\n  ok\t", {"I", "'", "M", " fine", "!!", "\r\n\r\n ", " ok", "\t"}},
    {"gpt2", "naïve café 日本語 🤖", {"naïve", " café", " 日本語", " 🤖"}},
    {"gpt2", " ?!x'ſ", {" ?!", "x", "'", "ſ"}},
    {"llama-bpe", "Hello world's 'LL  x", {"Hello", " world", "'s", " '", "LL", " ", " x"}},
    {"llama-bpe", "a  \t\n\nb 12345 ½x", {"a", "  \t\n\n", "b", " ", "123", "45", " ", "½", "x"}},
    {"llama-bpe", "I'M fine!!\r\n\r\n  ok\t", {"I", "'M", " fine", "!!\r\n\r\n", " ", " ok", "\t"}},
    {"llama-bpe", " ?!x'ſ", {" ?!", "x", "'ſ"}},
    {"smollm", "a  \t\n\nb 12345 ½x", {"a", "  \t\n", "\n", "b", " ", "1", "2", "3", "4", "5", " ", "½", "x"}},
    {"smollm", "I'M fine!!\r\n\r\n  ok\t", {"I", "'", "M", " fine", "!!", "\r\n\r\n ", " ok", "\t"}},
};

// GPT-2's byte -> code point table, written out independently of src/tokenizer/unicode.cpp.
std::string byte_char(int b) {
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        int n = 0;
        for (int x = 0; x < b; ++x)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
        cp = 256 + n;
    }
    std::string s;
    if (cp < 0x80) s += char(cp);
    else {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

void test_pretokenize() {
    for (const auto& c : kPreCases) {
        const auto got = pretokenize_text(c.pre, c.text);
        CHECK(got == c.pieces);
        if (got != c.pieces) {
            std::fprintf(stderr, "  pre=%s text=[%s]:", c.pre, c.text);
            for (const auto& p : got) std::fprintf(stderr, " [%s]", p.c_str());
            std::fprintf(stderr, "\n");
        }
    }
    CHECK(pretokenize_text("gpt2", "").empty());
    CHECK_THROWS(pretokenize_text("nonesuch", "x"), ValueError);
}

// Byte-level BPE: tokens 0..255 are the mapped bytes in byte order, then the merge results.
Vocab tiny_bpe() {
    Vocab v;
    v.model = "gpt2";
    v.pre = "gpt2";
    for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_char(b));
    const std::string G = byte_char(' ');  // "Ġ"
    v.tokens.insert(v.tokens.end(), {"he", "ll", "hell", "hello", G + "w", "or", G + "wor", "<|eot|>"});
    v.merges = {"h e", "l l", "he ll", "hell o", G + " w", "o r", G + "w or"};
    v.token_types.assign(v.tokens.size(), 1);
    v.token_types[263] = 3;  // control
    v.eos = 263;
    v.add_space_prefix = false;
    return v;
}

void test_bpe() {
    Tokenizer t(tiny_bpe());
    // hello: h e -> he, l l -> ll, he ll -> hell, hell o -> hello;
    // " world": Ġ w -> Ġw, o r -> or, Ġw or -> Ġwor, then l, d stay
    CHECK((t.encode("hello world", false) == Ids{259, 262, 'l', 'd'}));
    CHECK((t.encode("lll", false) == Ids{257, 'l'}));  // equal ranks: leftmost pair first
    CHECK((t.encode("hello<|eot|>", false, true) == Ids{259, 263}));
    CHECK((t.encode("hello<|eot|>", false, false) == Ids{259, '<', '|', 'e', 'o', 't', '|', '>'}));
    CHECK(t.encode("", false).empty());
    CHECK(t.token_to_piece(260) == " w");
    CHECK(t.token_to_piece(0x0A) == "\n");
    CHECK(t.token_to_piece(263).empty() && t.token_to_piece(263, true) == "<|eot|>");
    const std::string s = "hello world\n\t\xC3\xA9\xF0\x9F\xA4\x96 lll";
    CHECK(t.decode(t.encode(s, false)) == s);
    // per-token bytes: the emoji spans four tokens of one byte each
    std::string streamed;
    for (int32_t id : t.encode("\xF0\x9F\xA4\x96", false)) {
        CHECK(t.token_to_piece(id).size() == 1);
        streamed += t.token_to_piece(id);
    }
    CHECK(streamed == "\xF0\x9F\xA4\x96");
    CHECK(t.is_eog(263) && !t.is_eog(259));
    CHECK_THROWS(t.token_to_piece(264), ValueError);
    CHECK_THROWS(t.decode({1, -1}), ValueError);
}

Vocab tiny_spm() {
    Vocab v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.token_types = {2, 3, 3};
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
        v.token_types.push_back(6);
    }
    v.scores.assign(v.tokens.size(), 0.0f);
    const std::string S = "\xE2\x96\x81";  // "▁"
    const std::vector<std::pair<std::string, float>> normal = {
        {S, -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {S + "h", -3}, {"ll", -4}, {"he", -5},
        {S + "he", -6}, {"llo", -7}, {S + "hello", -8}};  // ids 259..269
    for (const auto& p : normal) {
        v.tokens.push_back(p.first);
        v.scores.push_back(p.second);
        v.token_types.push_back(1);
    }
    v.unk = 0, v.bos = 1, v.eos = 2;
    v.add_bos = true;
    v.add_space_prefix = true;
    return v;
}

void test_spm() {
    Tokenizer t(tiny_spm());
    // "▁hello": ▁h (-3), ll (-4), [he is stale], ▁he (-6), llo (-7), ▁hello (-8)
    CHECK((t.encode("hello", false) == Ids{269}));
    CHECK((t.encode("hello", true) == Ids{1, 269}));
    // é is not a piece: its UTF-8 bytes C3 A9 as byte tokens (3 + byte)
    CHECK((t.encode("h\xC3\xA9", false) == Ids{264, 3 + 0xC3, 3 + 0xA9}));
    // equal scores: leftmost pair first ("▁" "l" "l" "l" -> ▁, ll, l)
    CHECK((t.encode("lll", false) == Ids{259, 265, 262}));
    // space prefix only at the start of the text, not after a special token
    CHECK((t.encode("hello</s>hello", false) == Ids{269, 2, 266, 268}));
    CHECK(t.token_to_piece(269) == " hello");
    CHECK(t.token_to_piece(3 + 0xC3) == "\xC3");
    CHECK(t.token_to_piece(0) == " \xE2\x81\x87 ");  // sentencepiece's " ⁇ "
    CHECK(t.decode({1, 269, 259, 264}) == "hello  h");  // leading prefix space dropped, once
    CHECK(t.decode(t.encode("h\xC3\xA9 hello", true)) == "h\xC3\xA9 hello");
    CHECK(t.is_eog(2) && !t.is_eog(1));
}

void test_bad_vocab() {
    Vocab v = tiny_spm();
    v.model = "bert";
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_spm();
    v.scores.pop_back();
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_spm();
    v.token_types[5] = 42;
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_spm();
    v.bos = int32_t(v.tokens.size());
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_bpe();
    v.pre = "nonesuch";
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_bpe();
    v.merges.push_back("nospace");
    CHECK_THROWS(Tokenizer{v}, ValueError);
    v = tiny_bpe();
    v.tokens.clear();
    v.token_types.clear();
    CHECK_THROWS(Tokenizer{v}, ValueError);
    try {
        v = tiny_bpe();
        v.pre = "nonesuch";
        Tokenizer{v};
    } catch (const ValueError& e) {
        CHECK(std::string(e.what()).find("tokenizer.ggml.pre") != std::string::npos);
        CHECK(std::string(e.what()).find("nonesuch") != std::string::npos);
    }
}

// SmolLM2-135M-Instruct through the GGUF reader; ids from tests/data/smollm2-reference.json
// (HF transformers).
void test_smollm2_gguf() {
    std::string path;
    if (const char* env = std::getenv("GGMLPY_TEST_MODEL")) path = env;
    else {
        std::string here = __FILE__;
        path = here.substr(0, here.rfind('/')) + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
    }
    GGUFOpenOptions opt;
    opt.load_tensors = false;
    std::unique_ptr<GGUFFile> f;
    try {
        f = GGUFFile::open(path, opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s (fetch the model as the README says, or set GGMLPY_TEST_MODEL)\n", e.what());
        CHECK(!"SmolLM2 GGUF not found");
        return;
    }
    Tokenizer t = tokenizer_from_gguf(*f);
    CHECK(t.n_vocab() == 49152 && t.vocab().bos == 1 && t.vocab().eos == 2 && !t.vocab().add_bos);
    CHECK((t.encode("naïve café 日本語 🤖", false) ==
           Ids{3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 15107, 114, 240}));
    CHECK((t.encode("def f(x):\n    return x**2", false) == Ids{1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34}));
    CHECK((t.encode(" Hello  world\n\n", false) == Ids{38699, 216, 905, 1116}));
    CHECK((t.encode("1, 2, 3, 4, 5,", false) == Ids{33, 28, 216, 34, 28, 216, 35, 28, 216, 36, 28, 216, 37, 28}));
    CHECK((t.encode("<|im_start|>user", false) == Ids{1, 4093}));
    CHECK(t.decode({7042, 30, 198, 2}, true) == " Paris.\n<|im_end|>");
    CHECK(t.is_eog(2) && t.is_eog(0));
}

}  // namespace

int main() {
    test_pretokenize();
    test_bpe();
    test_spm();
    test_bad_vocab();
    test_smollm2_gguf();
    return test_exit_code("test_tokenizer");
}
