// Token masks and the per-generation Matcher.
//
// mask(state): depth-first walk of the vocabulary trie (GrammarVocab) in lockstep with the
// automaton: an edge whose byte the state rejects prunes the whole subtree (every token with that
// prefix), and every token ending at a node reached alive is allowed. End-of-generation tokens are
// allowed exactly when the state can end. Masks are memoized per state: a JSON generation keeps
// revisiting the same few states (inside a string, after a key, ...), so most tokens cost one
// lookup.
#include <cmath>
#include <limits>

#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"

namespace ggmlpy {
namespace grammar {

const std::vector<uint64_t>& Automaton::mask(int32_t s) {
    if (!v_) throw ValueError("grammar: this automaton has no vocabulary, so it cannot mask tokens");
    auto it = masks_.find(s);
    if (it != masks_.end()) return it->second;
    const GrammarVocab& v = *v_;
    std::vector<uint64_t> m(size_t(v.n_vocab() + 63) / 64, 0);
    auto allow = [&m](int32_t t) { m[size_t(t) >> 6] |= uint64_t(1) << (t & 63); };
    std::vector<std::pair<int32_t, int32_t>> st{{0, s}};  // (trie node, automaton state)
    while (!st.empty()) {
        const auto [tn, ss] = st.back();
        st.pop_back();
        for (int32_t e = v.first_edge[size_t(tn)]; e < v.first_edge[size_t(tn) + 1]; ++e) {
            const int32_t t = step(ss, v.edge_byte[size_t(e)]);
            if (t == DEAD) continue;
            const int32_t child = v.edge_child[size_t(e)];
            for (int32_t k = v.first_tok[size_t(child)]; k < v.first_tok[size_t(child) + 1]; ++k) allow(v.tokens[size_t(k)]);
            if (v.first_edge[size_t(child)] < v.first_edge[size_t(child) + 1]) st.emplace_back(child, t);
        }
    }
    if (can_end(s))
        for (int32_t t : v.eog()) allow(t);
    mask_bytes_ += m.size() * sizeof(uint64_t);
    return masks_.emplace(s, std::move(m)).first->second;
}

Matcher::Matcher(std::shared_ptr<Automaton> a) : a_(std::move(a)) {
    if (!a_) throw ValueError("GrammarMatcher: automaton is None");
    reset();
}

void Matcher::reset() {
    a_->maybe_reset();
    gen_ = a_->generation();
    ended_ = false;
    set(a_->start());
}

int32_t Matcher::cur() {
    a_->maybe_reset();
    if (gen_ != a_->generation()) {
        state_ = a_->load(saved_);
        gen_ = a_->generation();
    }
    return state_;
}

void Matcher::set(int32_t s) {
    state_ = s;
    saved_ = a_->save(s);
}

int64_t Matcher::apply_mask(float* logits, int64_t n) {
    const float ninf = -std::numeric_limits<float>::infinity();
    if (ended_) {
        for (int64_t i = 0; i < n; ++i) logits[i] = ninf;
        return 0;
    }
    const std::vector<uint64_t>& m = a_->mask(cur());
    const int64_t nv = a_->vocab()->n_vocab();
    int64_t allowed = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (i < nv && ((m[size_t(i) >> 6] >> (i & 63)) & 1)) ++allowed;
        else logits[i] = ninf;
    }
    return allowed;
}

bool Matcher::allowed(int32_t token) {
    if (ended_ || !a_->vocab() || token < 0 || token >= a_->vocab()->n_vocab()) return false;
    const std::vector<uint64_t>& m = a_->mask(cur());
    return (m[size_t(token) >> 6] >> (token & 63)) & 1;
}

bool Matcher::accept_token(int32_t token) {
    if (!allowed(token)) return false;
    if (a_->vocab()->is_eog(token)) {
        ended_ = true;
        return true;
    }
    int32_t s = cur();
    for (char c : a_->vocab()->piece(token)) {
        s = a_->step(s, uint8_t(c));
        if (s == Automaton::DEAD) return false;   // cannot happen for an allowed token
    }
    set(s);
    return true;
}

bool Matcher::accept_bytes(std::string_view bytes) {
    if (ended_) return bytes.empty();
    int32_t s = cur();
    for (char c : bytes) {
        s = a_->step(s, uint8_t(c));
        if (s == Automaton::DEAD) return false;
    }
    set(s);
    return true;
}

bool Matcher::is_complete() { return ended_ || a_->can_end(cur()); }

bool Matcher::is_done() {
    if (ended_) return true;
    const int32_t s = cur();
    return a_->can_end(s) && !a_->has_more(s);
}

}  // namespace grammar
}  // namespace ggmlpy
