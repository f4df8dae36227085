// Grammar-constrained sampling: a GBNF grammar compiled to byte-level rules, a lazily built
// automaton over its pushdown configurations, and a token mask computed by walking a trie of the
// vocabulary's token bytes.
//
// Contract: everything works on bytes. Character classes over code points are compiled into
// alternatives of UTF-8 byte sequences (grammar_utf8.cpp), so a token that is part of a UTF-8
// character (byte-level BPE, SPM byte fallback) is matched like any other byte string, and only
// valid UTF-8 can ever be produced by a class. Bad grammars (syntax, undefined or left-recursive
// rules, rules that can never complete, size limits) throw ValueError naming the rule and the
// line/column. Left out: lookahead, token-level terminals, grammar-driven "lazy" triggers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ggmlpy {
class Tokenizer;

namespace grammar {

// 256-bit set of bytes: one terminal element matches one byte in the set.
struct ByteSet {
    uint64_t w[4] = {0, 0, 0, 0};
    bool has(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
    void set(uint8_t b) { w[b >> 6] |= uint64_t(1) << (b & 63); }
    void set_range(uint8_t lo, uint8_t hi) {
        for (int b = lo; b <= hi; ++b) set(uint8_t(b));
    }
    bool empty() const { return !(w[0] | w[1] | w[2] | w[3]); }
    bool operator==(const ByteSet& o) const {
        return w[0] == o.w[0] && w[1] == o.w[1] && w[2] == o.w[2] && w[3] == o.w[3];
    }
};

enum class ElemType : uint8_t { END, BYTES, REF };
struct Elem {
    ElemType type;
    int32_t value;  // BYTES: index into Grammar::sets; REF: rule id; END: unused
};

// A compiled grammar. Every alternative is a run of `elems` ending with END; a position in the
// automaton is an index into `elems`. Rules made by the parser for groups, repetitions and
// multi-byte classes are named "<rule>#<n>".
struct Grammar {
    std::vector<Elem> elems;
    std::vector<ByteSet> sets;
    std::vector<std::vector<int32_t>> rule_alts;  // rule id -> start of each alternative in elems
    std::vector<std::string> rule_names;
    int32_t root = -1;
};

// Parses and checks GBNF text (grammar_parser.cpp, grammar_check.cpp). Throws ValueError.
std::shared_ptr<const Grammar> parse_gbnf(std::string_view text, const std::string& root = "root");

// Code point ranges [lo, hi] (inclusive, surrogates excluded by the caller) -> UTF-8 byte
// sequences: each inner vector is 1..4 byte ranges (lo, hi), matched one after the other.
using ByteRange = std::pair<uint8_t, uint8_t>;
std::vector<std::vector<ByteRange>> utf8_sequences(uint32_t lo, uint32_t hi);

// Tokens as byte strings for the mask walk (grammar_vocab.cpp). Only NORMAL and BYTE tokens with
// a non-empty piece enter the trie (control, user-defined and unused tokens never match grammar
// text); end-of-generation tokens are allowed exactly when the grammar can end.
class GrammarVocab {
public:
    explicit GrammarVocab(const Tokenizer& tok);
    GrammarVocab(std::vector<std::string> pieces, std::vector<int32_t> eog);  // tests: pieces[id], "" = never
    int32_t n_vocab() const { return int32_t(pieces_.size()); }
    const std::string& piece(int32_t id) const { return pieces_[size_t(id)]; }
    bool is_eog(int32_t id) const { return eog_flag_[size_t(id)] != 0; }
    const std::vector<int32_t>& eog() const { return eog_; }

    // Trie over the pieces: node 0 is the root; children of node n are edges
    // [first_edge[n], first_edge[n+1]) with edge_byte/edge_child; tokens ending at n are
    // tokens[first_tok[n], first_tok[n+1]).
    std::vector<int32_t> first_edge, edge_child, first_tok, tokens;
    std::vector<uint8_t> edge_byte;

private:
    void build();
    std::vector<std::string> pieces_;
    std::vector<int32_t> eog_;
    std::vector<uint8_t> eog_flag_;
};

// The pushdown configurations reached from the root, interned into states of a lazily built DFA
// (grammar_automaton.cpp). A configuration is the set of stacks whose top is a BYTES element,
// plus whether the empty stack (grammar complete) was reached. step() results and token masks are
// memoized per state, so after warm-up a token costs a table lookup per trie edge visited.
// Not thread-safe: the Python layer calls it holding the GIL.
class Automaton {
public:
    Automaton(std::shared_ptr<const Grammar> g, std::shared_ptr<const GrammarVocab> v);

    // Saved form of a state that survives a cache reset: stacks of positions, bottom first.
    struct Config {
        std::vector<std::vector<int32_t>> stacks;
        bool can_end = false;
    };
    static constexpr int32_t DEAD = -1;

    int32_t start();
    int32_t step(int32_t s, uint8_t b);  // DEAD when no stack accepts b
    bool can_end(int32_t s) const { return states_[size_t(s)].can_end; }
    bool has_more(int32_t s) const { return !states_[size_t(s)].heads.empty(); }
    // bit t of the mask: token t may come next (n_vocab bits, 64 per word)
    const std::vector<uint64_t>& mask(int32_t s);

    Config save(int32_t s) const;
    int32_t load(const Config& c);
    // Drops every cached node, state and mask when over budget; returns true if it did (state
    // ids from before are then invalid: callers reload their saved Config).
    bool maybe_reset();
    uint64_t generation() const { return generation_; }

    const Grammar& grammar() const { return *g_; }
    const GrammarVocab* vocab() const { return v_.get(); }
    size_t n_states() const { return states_.size(); }

private:
    struct Node {
        int32_t pos, parent, depth;
    };
    struct State {
        std::vector<int32_t> heads;  // node ids whose element is BYTES, sorted
        bool can_end = false;
    };
    int32_t node(int32_t pos, int32_t parent);
    void expand(int32_t n, std::vector<int32_t>& out, bool& end);
    int32_t intern_state(std::vector<int32_t>& heads, bool end);
    void clear();

    std::shared_ptr<const Grammar> g_;
    std::shared_ptr<const GrammarVocab> v_;
    std::vector<Node> nodes_;
    std::unordered_map<uint64_t, int32_t> node_ids_;
    std::vector<State> states_;
    std::unordered_map<std::string, int32_t> state_ids_;
    std::vector<int32_t> trans_;  // [n_states * 256]: UNKNOWN, DEAD or the next state
    std::unordered_map<int32_t, std::vector<uint64_t>> masks_;
    size_t mask_bytes_ = 0;
    uint64_t generation_ = 0;
    int32_t start_ = -1;
    std::vector<uint32_t> mark_;  // expand() scratch: mark_[node] == epoch_ once visited
    uint32_t epoch_ = 0;
};

// One generation's position in an Automaton (which it may share with other matchers).
class Matcher {
public:
    explicit Matcher(std::shared_ptr<Automaton> a);
    // Sets logits[t] = -inf for every token t that may not come next; logits beyond the
    // vocabulary are disallowed. Returns the number of tokens left allowed.
    int64_t apply_mask(float* logits, int64_t n);
    bool allowed(int32_t token);
    bool accept_token(int32_t token);  // false (and no change) if the token is not allowed
    bool accept_bytes(std::string_view bytes);
    bool is_complete();  // the text so far is a full sentence of the grammar
    bool is_done();      // complete and nothing may follow
    void reset();

private:
    int32_t cur();
    void set(int32_t s);
    std::shared_ptr<Automaton> a_;
    int32_t state_ = -1;
    bool ended_ = false;  // an end-of-generation token was accepted
    uint64_t gen_ = 0;
    Automaton::Config saved_;
};

}  // namespace grammar
}  // namespace ggmlpy
