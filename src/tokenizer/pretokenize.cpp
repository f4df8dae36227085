// Hand-written matchers for the pre-tokenizer regexes in pretokenize.h. Each matcher returns the
// length of the leftmost alternative that matches at a position, exactly as a backtracking regex
// engine (Oniguruma in HF tokenizers) tries them in order; a position no alternative matches
// becomes a one-character piece (cannot happen for these patterns, whose last alternatives
// cover any character).
#include "tokenizer/pretokenize.h"

#include "ggmlpy/error.h"
#include "tokenizer/unicode.h"

namespace ggmlpy {

namespace {
using unicode::CodePoint;
using unicode::is_crlf;
using unicode::is_letter;
using unicode::is_number;
using unicode::is_space;

// [^\s\p{L}\p{N}]
bool is_other(uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

struct Cursor {
    const std::vector<CodePoint>& cps;
    size_t end;
    uint32_t at(size_t i) const { return i < end ? cps[i].cp : 0xFFFFFFFFu; }  // sentinel: no category
    bool has(size_t i) const { return i < end; }
};
// Case folding as the case-insensitive contractions need it: ASCII, plus U+017F LATIN SMALL
// LETTER LONG S, which Unicode folds to 's' (Oniguruma's (?i:'s) matches "'ſ"; no other code point
// folds to one of the letters s t r e v m l d).
uint32_t fold_contraction(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c == 0x17F ? 's' : c; }

// 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when `icase`); returns the length or 0.
size_t match_contraction(const Cursor& s, size_t p, bool icase) {
    if (s.at(p) != '\'') return 0;
    auto ch = [&](size_t i) { return icase ? fold_contraction(s.at(i)) : s.at(i); };
    const uint32_t a = ch(p + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    const uint32_t b = ch(p + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S)|\s+ at p (s.at(p) is white space): the run, less its last character when a
// non-space follows and the run is longer than one.
size_t match_space_run(const Cursor& s, size_t p) {
    size_t q = p;
    while (s.has(q) && is_space(s.at(q))) ++q;
    const size_t run = q - p;
    if (!s.has(q) || run == 1) return run;
    return run - 1;
}

size_t match_gpt2(const Cursor& s, size_t p) {
    if (size_t n = match_contraction(s, p, false)) return n;
    const uint32_t c = s.at(p);
    const size_t b = (c == ' ' && s.has(p + 1)) ? p + 1 : p;  // optional leading space
    const uint32_t d = s.at(b);
    if (is_letter(d) || is_number(d) || (is_other(d) && s.has(b))) {
        // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' share the shape "space? run-of-class"
        bool (*cls)(uint32_t) = is_letter(d) ? is_letter : is_number(d) ? is_number : is_other;
        size_t q = b;
        while (s.has(q) && cls(s.at(q))) ++q;
        return q - p;
    }
    // here c is white space (a lone ' ' before another space or the end, or any other space)
    return match_space_run(s, p);
}

size_t match_llama3(const Cursor& s, size_t p, size_t max_digits) {
    if (size_t n = match_contraction(s, p, true)) return n;
    const uint32_t c = s.at(p);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    {
        size_t b = p;
        if (!is_letter(c) && !is_crlf(c) && !is_number(c) && is_letter(s.at(p + 1))) b = p + 1;
        if (is_letter(s.at(b))) {
            size_t q = b;
            while (s.has(q) && is_letter(s.at(q))) ++q;
            return q - p;
        }
    }
    // \p{N}{1,max}
    if (is_number(c)) {
        size_t q = p;
        while (s.has(q) && q - p < max_digits && is_number(s.at(q))) ++q;
        return q - p;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    {
        const size_t b = (c == ' ' && s.has(p + 1) && is_other(s.at(p + 1))) ? p + 1 : p;
        if (s.has(b) && is_other(s.at(b))) {
            size_t q = b;
            while (s.has(q) && is_other(s.at(q))) ++q;
            while (s.has(q) && is_crlf(s.at(q))) ++q;
            return q - p;
        }
    }
    // c is white space from here on.
    // \s*[\r\n]+ : up to and including the last CR/LF of the white-space run
    {
        size_t q = p, last = SIZE_MAX;
        while (s.has(q) && is_space(s.at(q))) {
            if (is_crlf(s.at(q))) last = q;
            ++q;
        }
        if (last != SIZE_MAX) return last + 1 - p;
    }
    return match_space_run(s, p);
}

void split_segment(PreType type, const std::vector<CodePoint>& cps, size_t begin, size_t end,
                   std::vector<size_t>& ends) {
    const Cursor s{cps, end};
    for (size_t p = begin; p < end;) {
        size_t n;
        switch (type) {
            case PreType::LLAMA3: n = match_llama3(s, p, 3); break;
            case PreType::QWEN2: n = match_llama3(s, p, 1); break;
            default: n = match_gpt2(s, p); break;
        }
        if (n == 0) n = 1;
        p += n;
        ends.push_back(p);
    }
}

struct PreName {
    const char* name;
    PreType type;
};
// Names as llama.cpp's converter writes them into tokenizer.ggml.pre.
const PreName kPreNames[] = {
    {"default", PreType::GPT2},   {"gpt2", PreType::GPT2},          {"gpt-2", PreType::GPT2},
    {"smollm", PreType::SMOLLM},  {"llama-bpe", PreType::LLAMA3},   {"llama3", PreType::LLAMA3},
    {"qwen2", PreType::QWEN2},
};
}  // namespace

PreType pre_type_from_name(const std::string& name) {
    for (const auto& p : kPreNames)
        if (name == p.name) return p.type;
    throw ValueError("tokenizer.ggml.pre: unsupported pre-tokenizer '" + name + "' (supported: " +
                     supported_pre_names() + ")");
}

std::string supported_pre_names() {
    std::string r;
    for (const auto& p : kPreNames) r += (r.empty() ? "" : ", ") + std::string(p.name);
    return r;
}

std::vector<std::string> pretokenize(PreType type, const std::string& text) {
    const std::vector<CodePoint> cps = unicode::decode_utf8(text);
    std::vector<size_t> ends;  // piece ends, in code points
    if (type == PreType::SMOLLM) {
        // Digits(individual_digits=True): each number character is a piece of its own; the
        // GPT-2 regex then runs on the text between them.
        const PreType inner = PreType::GPT2;
        size_t seg = 0;
        for (size_t i = 0; i < cps.size(); ++i) {
            if (!is_number(cps[i].cp)) continue;
            split_segment(inner, cps, seg, i, ends);
            ends.push_back(i + 1);
            seg = i + 1;
        }
        split_segment(inner, cps, seg, cps.size(), ends);
    } else {
        split_segment(type, cps, 0, cps.size(), ends);
    }
    std::vector<std::string> out;
    out.reserve(ends.size());
    size_t start = 0;
    for (size_t e : ends) {
        const size_t b0 = cps[start].offset;
        const size_t b1 = e < cps.size() ? cps[e].offset : text.size();
        out.emplace_back(text, b0, b1 - b0);
        start = e;
    }
    return out;
}

}  // namespace ggmlpy
