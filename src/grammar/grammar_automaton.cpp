// Lazily built DFA over the pushdown configurations of a Grammar.
//
// A stack is a chain of hash-consed nodes (pos, parent): `pos` is the next element to match at
// that level, `parent` the caller's frame, whose pos is the element after the rule reference.
// Equal stacks are equal node ids, so a configuration (the set of live stacks whose top is a
// BYTES element, plus "the grammar may end here") is a sorted id vector, interned as a state.
// step(state, byte) is computed once and kept in a 256-wide transition row.
//
// Expansion of a REF pushes a frame for the continuation, except when the continuation is the
// end of the alternative (a tail call): then the callee returns straight to the caller's caller,
// so the right-recursive rules of x* and x{m,n} never deepen the stack. Left recursion is
// rejected by grammar_check.cpp, so expansion terminates; stacks deeper than kMaxDepth (nesting
// beyond any sane document) are dropped, which only forbids such text.
//
// Memory: nodes, states, rows and masks are caches. Over budget, maybe_reset() drops them all
// and bumps generation(); matchers reload their state from a saved Config.
#include <algorithm>

#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"

namespace ggmlpy {
namespace grammar {
namespace {
constexpr int32_t kUnknown = -2;
constexpr int32_t kMaxDepth = 2048;
constexpr size_t kMaxHeads = 16384;            // live parses in one state
constexpr size_t kSoftNodes = size_t(1) << 22;  // reset between steps above these
constexpr size_t kSoftStates = size_t(1) << 16;
constexpr size_t kSoftMaskBytes = size_t(256) << 20;
constexpr size_t kHardNodes = size_t(1) << 25;  // give up within one step above these
constexpr size_t kHardStates = size_t(1) << 20;
}  // namespace

Automaton::Automaton(std::shared_ptr<const Grammar> g, std::shared_ptr<const GrammarVocab> v)
    : g_(std::move(g)), v_(std::move(v)) {
    if (!g_) throw ValueError("Automaton: grammar is None");
}

void Automaton::clear() {
    nodes_.clear();
    node_ids_.clear();
    states_.clear();
    state_ids_.clear();
    trans_.clear();
    masks_.clear();
    mask_bytes_ = 0;
    mark_.clear();
    start_ = -1;
    ++generation_;
}

bool Automaton::maybe_reset() {
    if (nodes_.size() < kSoftNodes && states_.size() < kSoftStates && mask_bytes_ < kSoftMaskBytes) return false;
    clear();
    return true;
}

int32_t Automaton::node(int32_t pos, int32_t parent) {
    const uint64_t key = uint64_t(uint32_t(pos)) << 32 | uint32_t(parent + 1);
    auto it = node_ids_.find(key);
    if (it != node_ids_.end()) return it->second;
    if (nodes_.size() >= kHardNodes)
        throw ValueError("grammar: too complex to match (more than " + std::to_string(kHardNodes) +
                         " parser stacks); simplify the grammar");
    const int32_t depth = parent < 0 ? 1 : nodes_[size_t(parent)].depth + 1;
    const int32_t id = int32_t(nodes_.size());
    nodes_.push_back(Node{pos, parent, depth});
    node_ids_.emplace(key, id);
    return id;
}

// Adds to `out` every stack reachable from node n without consuming input whose top is BYTES;
// sets `end` if the empty stack is reachable (the whole grammar matched).
void Automaton::expand(int32_t n0, std::vector<int32_t>& out, bool& end) {
    if (++epoch_ == 0) std::fill(mark_.begin(), mark_.end(), 0u), epoch_ = 1;
    std::vector<int32_t> work{n0};
    while (!work.empty()) {
        const int32_t n = work.back();
        work.pop_back();
        if (mark_.size() < nodes_.size()) mark_.resize(nodes_.size() * 2, 0u);
        if (mark_[size_t(n)] == epoch_) continue;
        mark_[size_t(n)] = epoch_;
        const Node nd = nodes_[size_t(n)];
        const Elem e = g_->elems[size_t(nd.pos)];
        if (e.type == ElemType::BYTES) {
            out.push_back(n);
        } else if (e.type == ElemType::END) {
            if (nd.parent < 0) end = true;
            else work.push_back(nd.parent);
        } else {
            if (nd.depth >= kMaxDepth) continue;
            const bool tail = g_->elems[size_t(nd.pos) + 1].type == ElemType::END;
            const int32_t ret = tail ? nd.parent : node(nd.pos + 1, nd.parent);
            const auto& alts = g_->rule_alts[size_t(e.value)];
            for (auto it = alts.rbegin(); it != alts.rend(); ++it) work.push_back(node(*it, ret));
        }
        if (out.size() > kMaxHeads)
            throw ValueError("grammar: too ambiguous (more than " + std::to_string(kMaxHeads) +
                             " parses alive at once); make the alternatives start differently");
    }
}

int32_t Automaton::intern_state(std::vector<int32_t>& heads, bool end) {
    std::sort(heads.begin(), heads.end());
    heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
    std::string key(reinterpret_cast<const char*>(heads.data()), heads.size() * sizeof(int32_t));
    key.push_back(end ? '\1' : '\0');
    auto it = state_ids_.find(key);
    if (it != state_ids_.end()) return it->second;
    if (states_.size() >= kHardStates)
        throw ValueError("grammar: too complex to match (more than " + std::to_string(kHardStates) + " states)");
    const int32_t id = int32_t(states_.size());
    states_.push_back(State{heads, end});
    state_ids_.emplace(std::move(key), id);
    trans_.resize(states_.size() * 256, kUnknown);
    return id;
}

int32_t Automaton::start() {
    if (start_ >= 0) return start_;
    std::vector<int32_t> heads;
    bool end = false;
    for (int32_t a : g_->rule_alts[size_t(g_->root)]) expand(node(a, -1), heads, end);
    start_ = intern_state(heads, end);
    return start_;
}

int32_t Automaton::step(int32_t s, uint8_t b) {
    const int32_t t = trans_[size_t(s) * 256 + b];
    if (t != kUnknown) return t;
    std::vector<int32_t> heads;
    bool end = false;
    const std::vector<int32_t> from = states_[size_t(s)].heads;  // copy: expand may grow states_
    for (int32_t h : from) {
        const Node nd = nodes_[size_t(h)];
        if (g_->sets[size_t(g_->elems[size_t(nd.pos)].value)].has(b)) expand(node(nd.pos + 1, nd.parent), heads, end);
    }
    const int32_t r = (heads.empty() && !end) ? DEAD : intern_state(heads, end);
    trans_[size_t(s) * 256 + b] = r;
    return r;
}

Automaton::Config Automaton::save(int32_t s) const {
    Config c;
    c.can_end = states_[size_t(s)].can_end;
    for (int32_t h : states_[size_t(s)].heads) {
        std::vector<int32_t> st;
        for (int32_t n = h; n >= 0; n = nodes_[size_t(n)].parent) st.push_back(nodes_[size_t(n)].pos);
        std::reverse(st.begin(), st.end());
        c.stacks.push_back(std::move(st));
    }
    return c;
}

int32_t Automaton::load(const Config& c) {
    std::vector<int32_t> heads;
    for (const auto& st : c.stacks) {
        int32_t parent = -1;
        for (int32_t pos : st) parent = node(pos, parent);
        heads.push_back(parent);
    }
    return intern_state(heads, c.can_end);
}

}  // namespace grammar
}  // namespace ggmlpy
