// The vocabulary as byte strings for grammar masks: a trie over token pieces, so one walk from an
// automaton state visits each shared prefix once and prunes every token below a rejected byte.
// Trie layout (CSR, see grammar.h): nodes in creation order, edges of a node contiguous and sorted
// by byte. Built from the pieces sorted bytewise, so children appear in byte order.
#include <algorithm>
#include <numeric>
#include <tuple>

#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"
#include "ggmlpy/tokenizer.h"

namespace ggmlpy {
namespace grammar {

GrammarVocab::GrammarVocab(const Tokenizer& tok) {
    const int32_t n = tok.n_vocab();
    const auto& types = tok.vocab().token_types;
    pieces_.resize(size_t(n));
    eog_flag_.assign(size_t(n), 0);
    for (int32_t i = 0; i < n; ++i) {
        if (tok.is_eog(i)) {
            eog_.push_back(i);
            eog_flag_[size_t(i)] = 1;
            continue;
        }
        // Only text tokens may match grammar text: control / user-defined / unused / unknown
        // tokens render as markup or nothing, never as part of a JSON document.
        const int32_t t = types.empty() ? int32_t(TokenType::NORMAL) : types[size_t(i)];
        if (t != int32_t(TokenType::NORMAL) && t != int32_t(TokenType::BYTE)) continue;
        pieces_[size_t(i)] = tok.token_to_piece(i, false);
    }
    build();
}

GrammarVocab::GrammarVocab(std::vector<std::string> pieces, std::vector<int32_t> eog) : pieces_(std::move(pieces)) {
    eog_flag_.assign(pieces_.size(), 0);
    for (int32_t e : eog) {
        if (e < 0 || size_t(e) >= pieces_.size())
            throw ValueError("GrammarVocab: eog token id " + std::to_string(e) + " is outside the vocabulary");
        if (!eog_flag_[size_t(e)]) eog_.push_back(e);
        eog_flag_[size_t(e)] = 1;
        pieces_[size_t(e)].clear();
    }
    build();
}

void GrammarVocab::build() {
    std::vector<int32_t> order;
    for (size_t i = 0; i < pieces_.size(); ++i)
        if (!pieces_[i].empty()) order.push_back(int32_t(i));
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return pieces_[size_t(a)] < pieces_[size_t(b)] || (pieces_[size_t(a)] == pieces_[size_t(b)] && a < b);
    });
    // path[d] = node reached by the first d bytes of the previous piece
    std::vector<int32_t> path{0};
    std::vector<std::tuple<int32_t, uint8_t, int32_t>> edges;  // (parent, byte, child)
    std::vector<std::pair<int32_t, int32_t>> ends;             // (node, token)
    int32_t n_nodes = 1;
    const std::string* prev = nullptr;
    for (int32_t id : order) {
        const std::string& p = pieces_[size_t(id)];
        size_t common = 0;
        if (prev)
            while (common < p.size() && common < prev->size() && p[common] == (*prev)[common]) ++common;
        path.resize(common + 1);
        for (size_t d = common; d < p.size(); ++d) {
            edges.emplace_back(path.back(), uint8_t(p[d]), n_nodes);
            path.push_back(n_nodes++);
        }
        ends.emplace_back(path.back(), id);
        prev = &p;
    }
    std::stable_sort(edges.begin(), edges.end(),
                     [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
    first_edge.assign(size_t(n_nodes) + 1, 0);
    for (auto& e : edges) ++first_edge[size_t(std::get<0>(e)) + 1];
    std::partial_sum(first_edge.begin(), first_edge.end(), first_edge.begin());
    edge_byte.resize(edges.size());
    edge_child.resize(edges.size());
    for (size_t k = 0; k < edges.size(); ++k) edge_byte[k] = std::get<1>(edges[k]), edge_child[k] = std::get<2>(edges[k]);
    std::stable_sort(ends.begin(), ends.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    first_tok.assign(size_t(n_nodes) + 1, 0);
    for (auto& e : ends) ++first_tok[size_t(e.first) + 1];
    std::partial_sum(first_tok.begin(), first_tok.end(), first_tok.begin());
    tokens.resize(ends.size());
    for (size_t k = 0; k < ends.size(); ++k) tokens[k] = ends[k].second;
}

}  // namespace grammar
}  // namespace ggmlpy
