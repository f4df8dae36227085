// GBNF text -> Grammar (include/ggmlpy/grammar.h). Syntax, as llama.cpp users know it:
//   name ::= alternatives          a rule; its body runs until the next "name ::=" or the end
//   a b | c                        sequence and alternatives; ( ... ) groups
//   "text"  [a-z0-9_]  [^"\\]  .   literal, class (ranges, ^ negation), any character
//   x*  x+  x?  x{m}  x{m,}  x{m,n} repetition of the element or group before it
//   # comment to the end of the line; escapes \n \r \t \\ \" \' \[ \] \- \/ \^ \xHH \uHHHH \UHHHHHHHH
// Repetitions and groups become generated rules "<rule>#<n>"; x* is the right-recursive
// "r ::= x r | ''" so that the automaton's tail-call rule keeps its stacks flat. Classes are
// compiled to UTF-8 byte sequences (grammar_utf8.cpp). Errors are ValueError with the line, the
// column and the rule being parsed. Sizes are bounded (text, elements, nesting, repetition
// counts) so that no input can exhaust memory or the C++ stack.
#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <unordered_map>

#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"

namespace ggmlpy {
namespace grammar {

void check_grammar(const Grammar& g);  // grammar_check.cpp

namespace {

constexpr size_t kMaxText = size_t(1) << 20;      // 1 MiB of grammar text
constexpr size_t kMaxElems = size_t(1) << 21;     // compiled elements (8 bytes each)
constexpr int kMaxNesting = 100;                  // ( ( ( ... ) ) ) depth
constexpr long kMaxRepeat = 10000;                // m and n of x{m,n}

using Unit = std::vector<Elem>;   // one element or group, before its repetition operator
using Alts = std::vector<Unit>;

struct Draft {
    std::string name;
    Alts alts;
    bool defined = false;
    size_t first_use = std::string::npos;  // text offset of the first reference
    std::string used_in;
};

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}

    std::shared_ptr<Grammar> run(const std::string& root) {
        if (s_.size() > kMaxText)
            throw ValueError("grammar: text is " + std::to_string(s_.size()) + " bytes, more than the " +
                             std::to_string(kMaxText) + " allowed");
        skip_ws();
        if (i_ >= s_.size()) throw ValueError("grammar: the grammar is empty (expected 'root ::= ...')");
        while (i_ < s_.size()) {
            const size_t at = i_;
            std::string name = parse_name();
            skip_ws();
            if (s_.compare(i_, 3, "::=") != 0) fail("expected '::=' after rule name '" + name + "'", i_);
            i_ += 3;
            rule_ = name;
            n_gen_ = 0;
            const int id = rule_id(name);
            if (rules_[size_t(id)].defined) fail("rule '" + name + "' is defined twice", at);
            rules_[size_t(id)].defined = true;
            Alts alts = parse_alternatives(0);
            rules_[size_t(id)].alts = std::move(alts);
            skip_ws();
            if (i_ < s_.size() && s_[i_] == ')') fail("')' without a matching '('", i_);
        }
        for (const Draft& d : rules_) {
            if (!d.defined) {
                rule_.clear();
                fail("rule '" + d.name + "' is used in rule '" + d.used_in + "' but never defined", d.first_use);
            }
        }
        auto it = ids_.find(root);
        if (it == ids_.end())
            throw ValueError("grammar: no rule named '" + root + "' (the start rule) is defined");
        auto g = std::make_shared<Grammar>();
        g->sets = std::move(sets_);
        g->root = it->second;
        for (Draft& d : rules_) {
            std::vector<int32_t> starts;
            for (Unit& alt : d.alts) {
                starts.push_back(int32_t(g->elems.size()));
                g->elems.insert(g->elems.end(), alt.begin(), alt.end());
                g->elems.push_back(Elem{ElemType::END, 0});
            }
            g->rule_alts.push_back(std::move(starts));
            g->rule_names.push_back(d.name);
        }
        return g;
    }

private:
    [[noreturn]] void fail(const std::string& msg, size_t pos) const {
        size_t line = 1, col = 1;
        for (size_t k = 0; k < pos && k < s_.size(); ++k) {
            if (s_[k] == '\n') ++line, col = 1;
            else if ((uint8_t(s_[k]) & 0xC0) != 0x80) ++col;   // columns count characters
        }
        std::string where = "grammar: line " + std::to_string(line) + ", column " + std::to_string(col);
        if (!rule_.empty()) where += " (rule '" + rule_ + "')";
        throw ValueError(where + ": " + msg);
    }

    static bool name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    }

    void skip_ws() {
        while (i_ < s_.size()) {
            const char c = s_[i_];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') ++i_;
            else if (c == '#') while (i_ < s_.size() && s_[i_] != '\n') ++i_;
            else break;
        }
    }

    std::string parse_name() {
        const size_t b = i_;
        while (i_ < s_.size() && name_char(s_[i_])) ++i_;
        if (b == i_) fail(i_ < s_.size() ? std::string("expected a rule name, found '") + s_[i_] + "'"
                                         : std::string("expected a rule name, found the end of the text"), i_);
        return std::string(s_.substr(b, i_ - b));
    }

    // "name ::=" ahead: the current rule's body ends here.
    bool at_rule_start() {
        const size_t save = i_;
        while (i_ < s_.size() && name_char(s_[i_])) ++i_;
        bool yes = i_ > save;
        if (yes) {
            skip_ws();
            yes = s_.compare(i_, 3, "::=") == 0;
        }
        i_ = save;
        return yes;
    }

    int rule_id(const std::string& name) {
        auto it = ids_.find(name);
        if (it != ids_.end()) return it->second;
        const int id = int(rules_.size());
        rules_.push_back(Draft{name, {}, false, std::string::npos, {}});
        ids_.emplace(name, id);
        return id;
    }

    int new_rule(Alts alts) {
        const int id = int(rules_.size());
        rules_.push_back(Draft{rule_ + "#" + std::to_string(++n_gen_), std::move(alts), true, std::string::npos, {}});
        return id;
    }

    int set_id(const ByteSet& b) {
        auto key = std::array<uint64_t, 4>{b.w[0], b.w[1], b.w[2], b.w[3]};
        auto it = set_ids_.find(key);
        if (it != set_ids_.end()) return it->second;
        const int id = int(sets_.size());
        sets_.push_back(b);
        set_ids_.emplace(key, id);
        return id;
    }

    Elem byte_elem(uint8_t lo, uint8_t hi) {
        ByteSet b;
        b.set_range(lo, hi);
        return Elem{ElemType::BYTES, set_id(b)};
    }

    void count(size_t n) {
        n_elems_ += n;
        if (n_elems_ > kMaxElems)
            fail("the grammar is too large (more than " + std::to_string(kMaxElems) +
                 " elements after expanding repetitions)", i_);
    }

    Alts parse_alternatives(int depth) {
        if (depth > kMaxNesting) fail("groups nested deeper than " + std::to_string(kMaxNesting), i_);
        Alts alts;
        alts.push_back(parse_sequence(depth));
        skip_ws();
        while (i_ < s_.size() && s_[i_] == '|') {
            ++i_;
            alts.push_back(parse_sequence(depth));
            skip_ws();
        }
        return alts;
    }

    Unit parse_sequence(int depth) {
        Unit seq;
        for (;;) {
            skip_ws();
            if (i_ >= s_.size()) break;
            const char c = s_[i_];
            if (c == '|' || c == ')') break;
            if (name_char(c) && at_rule_start()) {
                if (depth > 0) fail("missing ')' before the next rule", i_);
                break;
            }
            Unit u = parse_primary(depth);
            apply_postfix(u, seq);
        }
        return seq;
    }

    Unit parse_primary(int depth) {
        const char c = s_[i_];
        if (c == '"') return parse_literal();
        if (c == '[') return parse_class();
        if (c == '.') {
            ++i_;
            return class_unit({{0, 0x10FFFF}});
        }
        if (c == '(') {
            const size_t open = i_++;
            Alts alts = parse_alternatives(depth + 1);
            if (i_ >= s_.size() || s_[i_] != ')') fail("unclosed '(' (opened here)", open);
            ++i_;
            if (alts.size() == 1) return std::move(alts[0]);
            return Unit{Elem{ElemType::REF, new_rule(std::move(alts))}};
        }
        if (name_char(c)) {
            const size_t at = i_;
            std::string name = parse_name();
            const int id = rule_id(name);
            Draft& d = rules_[size_t(id)];
            if (d.first_use == std::string::npos) d.first_use = at, d.used_in = rule_;
            count(1);
            return Unit{Elem{ElemType::REF, id}};
        }
        if (c == '*' || c == '+' || c == '?' || c == '{')
            fail(std::string("'") + c + "' has nothing before it to repeat", i_);
        fail(std::string("unexpected character '") + c + "'", i_);
    }

    // One code point of the text (UTF-8) or of an escape.
    uint32_t parse_char() {
        const size_t at = i_;
        const uint8_t c = uint8_t(s_[i_]);
        if (c == '\\') {
            if (++i_ >= s_.size()) fail("'\\' at the end of the text", at);
            const char e = s_[i_++];
            switch (e) {
                case 'n': return '\n';
                case 'r': return '\r';
                case 't': return '\t';
                case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^':
                    return uint32_t(uint8_t(e));
                case 'x': return parse_hex(2, at);
                case 'u': return parse_hex(4, at);
                case 'U': return parse_hex(8, at);
                default: fail(std::string("unknown escape '\\") + e + "'", at);
            }
        }
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i_ + size_t(n) > s_.size()) fail("invalid UTF-8 in the grammar text", at);
        uint32_t cp = n == 1 ? c : c & (0x7F >> n);
        for (int k = 1; k < n; ++k) {
            const uint8_t d = uint8_t(s_[i_ + size_t(k)]);
            if ((d & 0xC0) != 0x80) fail("invalid UTF-8 in the grammar text", at);
            cp = cp << 6 | (d & 0x3F);
        }
        i_ += size_t(n);
        return cp;
    }

    uint32_t parse_hex(int n, size_t at) {
        uint32_t v = 0;
        for (int k = 0; k < n; ++k, ++i_) {
            if (i_ >= s_.size()) fail("escape needs " + std::to_string(n) + " hex digits", at);
            const char h = s_[i_];
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) fail("escape needs " + std::to_string(n) + " hex digits", at);
            v = v << 4 | uint32_t(d);
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) fail("escape is not a Unicode scalar value", at);
        return v;
    }

    Unit parse_literal() {
        const size_t open = i_++;
        Unit u;
        for (;;) {
            if (i_ >= s_.size()) fail("unterminated string literal", open);
            if (s_[i_] == '"') {
                ++i_;
                break;
            }
            const size_t at = i_;
            const uint32_t cp = parse_char();
            if (cp >= 0xD800 && cp <= 0xDFFF) fail("surrogate code point in literal", at);
            for (auto& seq : utf8_sequences(cp, cp))
                for (auto& br : seq) u.push_back(byte_elem(br.first, br.second));
        }
        count(u.size());
        return u;
    }

    Unit parse_class() {
        const size_t open = i_++;
        bool negate = false;
        if (i_ < s_.size() && s_[i_] == '^') negate = true, ++i_;
        std::vector<std::pair<uint32_t, uint32_t>> r;
        for (;;) {
            if (i_ >= s_.size()) fail("unterminated character class '['", open);
            if (s_[i_] == ']') {
                ++i_;
                break;
            }
            const uint32_t lo = parse_char();
            uint32_t hi = lo;
            if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
                const size_t at = ++i_;
                hi = parse_char();
                if (hi < lo) fail("character range is reversed (end before start)", at);
            }
            r.emplace_back(lo, hi);
        }
        std::sort(r.begin(), r.end());
        std::vector<std::pair<uint32_t, uint32_t>> merged;
        for (auto& p : r) {
            if (!merged.empty() && p.first <= merged.back().second + 1)
                merged.back().second = std::max(merged.back().second, p.second);
            else merged.push_back(p);
        }
        if (negate) {
            std::vector<std::pair<uint32_t, uint32_t>> inv;
            uint32_t next = 0;
            for (auto& p : merged) {
                if (p.first > next) inv.emplace_back(next, p.first - 1);
                next = p.second + 1;
            }
            if (next <= 0x10FFFF) inv.emplace_back(next, 0x10FFFF);
            merged = std::move(inv);
        }
        return class_unit(merged);
    }

    // Sorted disjoint code point ranges -> one BYTES element when all are ASCII, else a rule
    // whose alternatives are the ASCII set and each multi-byte UTF-8 sequence.
    Unit class_unit(const std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
        ByteSet ascii;
        Alts multi;
        for (auto p : ranges) {
            // surrogates are not characters: UTF-8 never encodes them
            std::pair<uint32_t, uint32_t> parts[2] = {p, {1, 0}};
            if (p.first <= 0xDFFF && p.second >= 0xD800) {
                parts[0] = {p.first, 0xD7FF};
                parts[1] = {0xE000, p.second};
                if (p.first >= 0xD800) parts[0] = {1, 0};
                if (p.second <= 0xDFFF) parts[1] = {1, 0};
            }
            for (auto q : parts) {
                if (q.first > q.second) continue;
                for (auto& seq : utf8_sequences(q.first, q.second)) {
                    if (seq.size() == 1) {
                        ascii.set_range(seq[0].first, seq[0].second);
                        continue;
                    }
                    Unit u;
                    for (auto& br : seq) u.push_back(byte_elem(br.first, br.second));
                    multi.push_back(std::move(u));
                }
            }
        }
        count(1 + multi.size() * 4);
        if (multi.empty()) return Unit{Elem{ElemType::BYTES, set_id(ascii)}};   // may be empty: never matches
        if (!ascii.empty()) multi.insert(multi.begin(), Unit{Elem{ElemType::BYTES, set_id(ascii)}});
        return Unit{Elem{ElemType::REF, new_rule(std::move(multi))}};
    }

    long parse_int() {
        skip_ws();
        const size_t at = i_;
        long v = 0;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
            v = v * 10 + (s_[i_++] - '0');
            if (v > kMaxRepeat) fail("repetition count larger than " + std::to_string(kMaxRepeat), at);
        }
        if (at == i_) fail("expected a number in '{m,n}'", at);
        return v;
    }

    // x*, x+, x?, x{m,n}: appends the expansion of unit u to seq.
    void apply_postfix(Unit& u, Unit& seq) {
        if (i_ >= s_.size()) {
            seq.insert(seq.end(), u.begin(), u.end());
            return;
        }
        const char c = s_[i_];
        long lo = 1, hi = 1;  // hi < 0: unbounded
        if (c == '*') lo = 0, hi = -1, ++i_;
        else if (c == '+') lo = 1, hi = -1, ++i_;
        else if (c == '?') lo = 0, hi = 1, ++i_;
        else if (c == '{') {
            const size_t at = i_++;
            lo = parse_int();
            skip_ws();
            hi = lo;
            if (i_ < s_.size() && s_[i_] == ',') {
                ++i_;
                skip_ws();
                hi = (i_ < s_.size() && s_[i_] == '}') ? -1 : parse_int();
                skip_ws();
            }
            if (i_ >= s_.size() || s_[i_] != '}') fail("expected '}' to close '{m,n}'", at);
            ++i_;
            if (hi >= 0 && hi < lo) fail("'{m,n}' with n < m", at);
        }
        if (lo == 1 && hi == 1) {
            seq.insert(seq.end(), u.begin(), u.end());
            return;
        }
        count(u.size() * size_t(lo + (hi > lo ? hi - lo : 1)) + 4);
        for (long k = 0; k < lo; ++k) seq.insert(seq.end(), u.begin(), u.end());
        if (hi < 0) {
            // star ::= u star | ""    (right recursion: a tail call, constant stack depth)
            const int star = new_rule({});
            Unit body = u;
            body.push_back(Elem{ElemType::REF, star});
            rules_[size_t(star)].alts = {body, Unit{}};
            seq.push_back(Elem{ElemType::REF, star});
            return;
        }
        // up to (hi - lo) more: t1 ::= u | "";  tk ::= u t(k-1) | ""
        int prev = -1;
        for (long k = 0; k < hi - lo; ++k) {
            Unit body = u;
            if (prev >= 0) body.push_back(Elem{ElemType::REF, prev});
            prev = new_rule({body, Unit{}});
        }
        if (prev >= 0) seq.push_back(Elem{ElemType::REF, prev});
    }

    std::string_view s_;
    size_t i_ = 0;
    std::string rule_;
    int n_gen_ = 0;
    size_t n_elems_ = 0;
    std::vector<Draft> rules_;
    std::unordered_map<std::string, int> ids_;
    std::vector<ByteSet> sets_;
    std::map<std::array<uint64_t, 4>, int> set_ids_;
};

}  // namespace

std::shared_ptr<const Grammar> parse_gbnf(std::string_view text, const std::string& root) {
    std::shared_ptr<Grammar> g = Parser(text).run(root);
    check_grammar(*g);
    return g;
}

}  // namespace grammar
}  // namespace ggmlpy
