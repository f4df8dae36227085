// Grammar engine tests (src/grammar/): UTF-8 range splitting against a reference encoder for every
// code point, byte-level matching of classes, and a small random-grammar fuzz: any text either
// parses or throws ValueError, and matching random bytes on what parsed never crashes or hangs.
// The Python tests (tests/python/test_grammar.py) check languages against re / json / jsonschema.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"

using namespace ggmlpy::grammar;

static std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) s += char(cp);
    else if (cp < 0x800) s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
    else if (cp < 0x10000) s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
    else s += char(0xF0 | (cp >> 18)), s += char(0x80 | ((cp >> 12) & 0x3F)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
    return s;
}

static int n_matching(const std::vector<std::vector<ByteRange>>& seqs, const std::string& b) {
    int n = 0;
    for (const auto& seq : seqs) {
        if (seq.size() != b.size()) continue;
        bool ok = true;
        for (size_t i = 0; i < b.size(); ++i) ok = ok && uint8_t(b[i]) >= seq[i].first && uint8_t(b[i]) <= seq[i].second;
        n += ok;
    }
    return n;
}

static void test_utf8_sequences() {
    // every scalar value is matched by exactly one sequence of the full range
    auto lo = utf8_sequences(0, 0xD7FF), hi = utf8_sequences(0xE000, 0x10FFFF);
    lo.insert(lo.end(), hi.begin(), hi.end());
    int bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        bad += n_matching(lo, utf8(cp)) != 1;
    }
    CHECK(bad == 0);
    // random sub-ranges: a code point matches iff it is inside
    std::mt19937 g(5);
    for (int t = 0; t < 200; ++t) {
        uint32_t a = g() % 0xD800, b = g() % 0xD800;
        if (t % 2) a = 0xE000 + g() % 0x102000, b = 0xE000 + g() % 0x102000;
        if (a > b) std::swap(a, b);
        const auto seqs = utf8_sequences(a, b);
        for (int k = 0; k < 300; ++k) {
            uint32_t cp = (k % 3 == 0) ? a + (g() % (b - a + 1)) : (t % 2 ? 0xE000 + g() % 0x102000 : g() % 0xD800);
            CHECK(n_matching(seqs, utf8(cp)) == (cp >= a && cp <= b ? 1 : 0));
        }
    }
}

static bool accepts(const std::string& grammar, const std::string& text) {
    auto a = std::make_shared<Automaton>(parse_gbnf(grammar), nullptr);
    Matcher m(a);
    return m.accept_bytes(text) && m.is_complete();
}

static void test_matching() {
    CHECK(accepts("root ::= [^a]", "\xE4\xB8\xAD"));        // 中, three bytes
    CHECK(!accepts("root ::= [^a]", "\xED\xA0\x80"));       // a surrogate is never a character
    CHECK(!accepts("root ::= [^a]", "\xC0\x80"));           // overlong
    CHECK(accepts("root ::= \"ab\"{2,3} c*\nc ::= [x-z]", "ababxyz"));
    CHECK(!accepts("root ::= \"ab\"{2,3} c*\nc ::= [x-z]", "abababab"));
    CHECK_THROWS(parse_gbnf("root ::= root \"a\" | \"b\""), ggmlpy::ValueError);
    CHECK_THROWS(parse_gbnf("root ::= x"), ggmlpy::ValueError);
    // the tail call keeps x* flat: a long run does not deepen the stacks
    CHECK(accepts("root ::= \"a\"* \"b\"", std::string(100000, 'a') + "b"));
}

static void test_fuzz() {
    const std::string alphabet = "root ::= x y |()[]^-*+?{},0123\"\\a.#\n é";
    std::mt19937 g(11);
    int parsed = 0;
    for (int t = 0; t < 20000; ++t) {
        std::string s = "root ::= ";
        const int n = int(g() % 24);
        for (int i = 0; i < n; ++i) s += alphabet[g() % alphabet.size()];
        if (t % 4 == 0) s += "\nx ::= \"q\" | [a-c]*\ny ::= x \"z\"";
        std::shared_ptr<const Grammar> gr;
        try {
            gr = parse_gbnf(s);
        } catch (const ggmlpy::ValueError&) {
            continue;
        }
        ++parsed;
        auto a = std::make_shared<Automaton>(gr, nullptr);
        Matcher m(a);
        for (int k = 0; k < 32; ++k) {
            std::string b(1, alphabet[g() % alphabet.size()]);
            try {
                m.accept_bytes(b);
            } catch (const ggmlpy::ValueError&) {   // "too ambiguous" is allowed, a crash is not
                break;
            }
        }
    }
    CHECK(parsed > 100);
}

// Token masks from the trie walk equal a brute-force check of each token's bytes, along random
// walks that only take allowed tokens (multi-byte tokens, partial UTF-8 tokens, an EOG token).
static void test_masks() {
    std::vector<std::string> pieces;
    for (int b = 0; b < 256; ++b) pieces.push_back(std::string(1, char(b)));
    for (const char* p : {"[1", ",2", "]", "\"a", "a\"", "\xC3", "\xA9", "\xC3\xA9", "\xE4\xB8", "\xAD]", "ab", "", "12"})
        pieces.push_back(p);
    pieces.push_back("</s>");
    const int32_t eog = int32_t(pieces.size()) - 1;
    auto vocab = std::make_shared<GrammarVocab>(pieces, std::vector<int32_t>{eog});
    const std::string g = "root ::= \"[\" ( item (\",\" item){0,3} )? \"]\"\n"
                          "item ::= [0-9]{1,3} | \"\\\"\" [^\"]{0,4} \"\\\"\"";
    auto a = std::make_shared<Automaton>(parse_gbnf(g), vocab);
    std::mt19937 rng(3);
    std::vector<float> logits(pieces.size());
    for (int walk = 0; walk < 60; ++walk) {
        Matcher m(a);
        std::string text;
        for (int step = 0; step < 40; ++step) {
            std::fill(logits.begin(), logits.end(), 0.0f);
            const int64_t n = m.apply_mask(logits.data(), int64_t(logits.size()));
            std::vector<int32_t> allowed;
            for (size_t t = 0; t < logits.size(); ++t) {
                // brute force: a fresh matcher over text + piece
                Matcher b(a);
                bool ok = b.accept_bytes(text);
                if (int32_t(t) == eog) ok = ok && b.is_complete();
                else ok = ok && !pieces[t].empty() && b.accept_bytes(pieces[t]);
                CHECK(ok == std::isfinite(logits[t]));
                if (ok) allowed.push_back(int32_t(t));
            }
            CHECK(int64_t(allowed.size()) == n);
            if (allowed.empty()) break;
            const int32_t t = allowed[rng() % allowed.size()];
            CHECK(m.accept_token(t));
            if (t == eog) {
                CHECK(m.is_done());
                break;
            }
            text += pieces[size_t(t)];
        }
    }
}

// Over its cache budget (65536 states here) the automaton drops every cached state; a matcher
// reloads its saved stacks and goes on as if nothing happened.
static void test_cache_reset() {
    auto a = std::make_shared<Automaton>(parse_gbnf("root ::= ( [a-z] [a-z] [a-z] [a-z] [a-z] [a-z] [a-z] ){0,10000}"),
                                         nullptr);
    Matcher m(a);
    const uint64_t gen0 = a->generation();
    bool ok = true;
    for (int chunk = 0; chunk < 70; ++chunk) ok = ok && m.accept_bytes(std::string(1000, 'q'));
    CHECK(ok);
    CHECK(a->generation() > gen0);   // at least one reset happened on the way
    CHECK(m.is_complete());          // 70000 = 7 * 10000 letters
    CHECK(m.is_done());
    CHECK(!m.accept_bytes("q"));
}

int main() {
    test_utf8_sequences();
    test_matching();
    test_masks();
    test_cache_reset();
    test_fuzz();
    return test_exit_code("test_grammar");
}
