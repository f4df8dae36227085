// Bindings for grammar-constrained sampling (include/ggmlpy/grammar.h):
//   Grammar(text, root="root")                 parsed + checked GBNF; ValueError on bad grammars
//   GrammarVocab(tokenizer) / GrammarVocab(pieces: list[bytes], eog: list[int])
//   GrammarAutomaton(grammar, vocab=None)      shared DFA cache; reuse it across generations
//   GrammarMatcher(automaton)                  one generation: apply_mask(logits) in place,
//                                              accept_token, accept_bytes, is_complete, is_done
// The GIL is kept: the automaton's caches are not thread-safe, and a mask costs little.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "ggmlpy/error.h"
#include "ggmlpy/grammar.h"
#include "ggmlpy/tokenizer.h"

namespace ggmlpy_bind {
namespace g = ggmlpy::grammar;

void register_grammar(py::module_& m) {
    py::class_<g::Grammar, std::shared_ptr<g::Grammar>>(m, "Grammar",
                                                        "A parsed and checked GBNF grammar (bytes-level rules).")
        .def(py::init([](const std::string& text, const std::string& root) {
                 // parse_gbnf returns shared_ptr<const Grammar>; the Python object is read-only anyway
                 return std::const_pointer_cast<g::Grammar>(g::parse_gbnf(text, root));
             }),
             py::arg("text"), py::arg("root") = "root")
        .def_property_readonly("n_rules", [](const g::Grammar& gr) { return gr.rule_names.size(); })
        .def_property_readonly("rule_names", [](const g::Grammar& gr) { return gr.rule_names; })
        .def_property_readonly("n_elements", [](const g::Grammar& gr) { return gr.elems.size(); });

    py::class_<g::GrammarVocab, std::shared_ptr<g::GrammarVocab>>(m, "GrammarVocab",
                                                                  "Token pieces as a byte trie for grammar masks.")
        .def(py::init([](const ggmlpy::Tokenizer& t) { return std::make_shared<g::GrammarVocab>(t); }),
             py::arg("tokenizer"))
        .def(py::init([](const std::vector<py::bytes>& pieces, const std::vector<int32_t>& eog) {
                 std::vector<std::string> p;
                 p.reserve(pieces.size());
                 for (const auto& b : pieces) p.emplace_back(b);
                 return std::make_shared<g::GrammarVocab>(std::move(p), eog);
             }),
             py::arg("pieces"), py::arg("eog"))
        .def_property_readonly("n_vocab", &g::GrammarVocab::n_vocab)
        .def_property_readonly("eog", &g::GrammarVocab::eog)
        .def_property_readonly("n_trie_nodes", [](const g::GrammarVocab& v) { return v.first_edge.size() - 1; });

    py::class_<g::Automaton, std::shared_ptr<g::Automaton>>(m, "GrammarAutomaton",
                                                            "Lazily built automaton of a grammar over a vocabulary.")
        .def(py::init([](std::shared_ptr<g::Grammar> gr, std::shared_ptr<g::GrammarVocab> v) {
                 if (!gr) throw ggmlpy::ValueError("GrammarAutomaton: grammar must be a Grammar");
                 return std::make_shared<g::Automaton>(gr, v);
             }),
             py::arg("grammar"), py::arg("vocab") = nullptr)
        .def_property_readonly("n_states", &g::Automaton::n_states);

    py::class_<g::Matcher>(m, "GrammarMatcher", "Position of one generation in a GrammarAutomaton.")
        .def(py::init([](std::shared_ptr<g::Automaton> a) {
                 if (!a) throw ggmlpy::ValueError("GrammarMatcher: automaton must be a GrammarAutomaton");
                 return g::Matcher(a);
             }),
             py::arg("automaton"))
        .def(
            "apply_mask",
            [](g::Matcher& mt, py::array logits) {
                if (!py::isinstance<py::array_t<float>>(logits) || logits.ndim() != 1)
                    throw py::type_error("apply_mask: logits must be a 1-D float32 numpy array");
                if (!(logits.flags() & py::array::c_style) || !logits.writeable())
                    throw ggmlpy::ValueError("apply_mask: logits must be contiguous and writable");
                return mt.apply_mask(static_cast<float*>(logits.mutable_data()), int64_t(logits.size()));
            },
            py::arg("logits"), "Sets disallowed logits to -inf in place; returns how many tokens stay allowed.")
        .def("allowed", &g::Matcher::allowed, py::arg("token"))
        .def("accept_token", &g::Matcher::accept_token, py::arg("token"))
        .def(
            "accept_bytes", [](g::Matcher& mt, const py::bytes& b) { return mt.accept_bytes(std::string(b)); },
            py::arg("data"), "Advances over raw bytes; False (and no change) if the grammar rejects them.")
        .def("is_complete", &g::Matcher::is_complete)
        .def("is_done", &g::Matcher::is_done)
        .def("reset", &g::Matcher::reset);
}
}  // namespace ggmlpy_bind
