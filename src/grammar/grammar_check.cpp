// Static checks of a parsed grammar, so that matching can never loop or dead-end silently:
// - every rule reachable from the root must be able to complete (match some finite text);
// - no left recursion: a rule may not reach itself again before matching a byte (directly,
//   through other rules, or through rules that can match the empty string). Expanding such a
//   rule would push stacks forever; llama.cpp users get the same rule.
// Throws ValueError naming the rules involved. Generated rules are named "<rule>#<n>" (groups and
// repetitions inside <rule>).
#include <string>
#include <vector>

#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"

namespace ggmlpy {
namespace grammar {

void check_grammar(const Grammar& g) {
    const size_t R = g.rule_alts.size();
    auto alt_elems = [&](int32_t start) {
        std::vector<Elem> out;
        for (int32_t p = start; g.elems[size_t(p)].type != ElemType::END; ++p) out.push_back(g.elems[size_t(p)]);
        return out;
    };

    // reachable from the root
    std::vector<char> reach(R, 0);
    std::vector<int32_t> work{g.root};
    reach[size_t(g.root)] = 1;
    while (!work.empty()) {
        const int32_t r = work.back();
        work.pop_back();
        for (int32_t a : g.rule_alts[size_t(r)])
            for (const Elem& e : alt_elems(a))
                if (e.type == ElemType::REF && !reach[size_t(e.value)]) reach[size_t(e.value)] = 1, work.push_back(e.value);
    }

    // productive (can match some finite text) and nullable (can match ""), as fixpoints
    std::vector<char> prod(R, 0), null(R, 0);
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < R; ++r) {
            for (int32_t a : g.rule_alts[r]) {
                bool p = true, n = true;
                for (const Elem& e : alt_elems(a)) {
                    if (e.type == ElemType::BYTES) {
                        n = false;
                        p = p && !g.sets[size_t(e.value)].empty();
                    } else {
                        p = p && prod[size_t(e.value)];
                        n = n && null[size_t(e.value)];
                    }
                }
                if (p && !prod[r]) prod[r] = 1, changed = true;
                if (n && !null[r]) null[r] = 1, changed = true;
            }
        }
    }
    std::string bad;
    int n_bad = 0;
    for (size_t r = 0; r < R; ++r) {
        if (reach[r] && !prod[r] && n_bad++ < 4) bad += (bad.empty() ? "'" : ", '") + g.rule_names[r] + "'";
    }
    if (n_bad)
        throw ValueError("grammar: rule " + bad + (n_bad > 4 ? ", ..." : "") +
                         " can never complete (each alternative needs an endless chain of rules or a "
                         "class that matches no character), so the grammar could never finish");

    // left recursion: cycles in "r may start with rule q"
    std::vector<std::vector<int32_t>> starts(R);
    for (size_t r = 0; r < R; ++r) {
        if (!reach[r]) continue;
        for (int32_t a : g.rule_alts[r]) {
            for (const Elem& e : alt_elems(a)) {
                if (e.type == ElemType::BYTES) break;
                starts[r].push_back(e.value);
                if (!null[size_t(e.value)]) break;
            }
        }
    }
    std::vector<char> color(R, 0);  // 0 new, 1 on the DFS path, 2 done
    std::vector<std::pair<int32_t, size_t>> path;
    for (size_t r0 = 0; r0 < R; ++r0) {
        if (!reach[r0] || color[r0]) continue;
        path.emplace_back(int32_t(r0), 0);
        color[r0] = 1;
        while (!path.empty()) {
            auto& [r, k] = path.back();
            if (k == starts[size_t(r)].size()) {
                color[size_t(r)] = 2;
                path.pop_back();
                continue;
            }
            const int32_t q = starts[size_t(r)][k++];
            if (color[size_t(q)] == 1) {
                std::string cyc;
                size_t from = 0;
                while (path[from].first != q) ++from;
                for (size_t i = from; i < path.size(); ++i) cyc += "'" + g.rule_names[size_t(path[i].first)] + "' -> ";
                cyc += "'" + g.rule_names[size_t(q)] + "'";
                throw ValueError("grammar: left recursion: " + cyc +
                                 " (a rule must match at least one character before it can reach itself again; '<rule>#<n>' is a group or repetition inside <rule>)");
            }
            if (color[size_t(q)] == 0) {
                color[size_t(q)] = 1;
                path.emplace_back(q, 0);
            }
        }
    }
}

}  // namespace grammar
}  // namespace ggmlpy
