// Bindings for the tokenizer area: _core.Tokenizer (built from vocabulary fields, or from a GGUF
// file's metadata) and _core.pretokenize. Forwards to include/ggmlpy/tokenizer.h; encode and
// decode release the GIL.
#include <pybind11/stl.h>

#include "bindings.h"
#include "ggmlpy/gguf.h"
#include "ggmlpy/tokenizer.h"

namespace ggmlpy_bind {
using ggmlpy::Tokenizer;
using ggmlpy::Vocab;

namespace {
py::str utf8_replace(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}
}  // namespace

void register_tokenizer(py::module_& m) {
    py::class_<Tokenizer>(m, "Tokenizer",
                          "Exact SentencePiece-style ('llama') or byte-level BPE ('gpt2') tokenizer.")
        .def(py::init([](std::string model, std::string pre, std::vector<std::string> tokens,
                         std::vector<float> scores, std::vector<int32_t> token_types,
                         std::vector<std::string> merges, int32_t bos, int32_t eos, int32_t unk,
                         int32_t pad, int32_t eot, bool add_bos, bool add_eos, bool add_space_prefix) {
                 Vocab v;
                 v.model = std::move(model);
                 v.pre = std::move(pre);
                 v.tokens = std::move(tokens);
                 v.scores = std::move(scores);
                 v.token_types = std::move(token_types);
                 v.merges = std::move(merges);
                 v.bos = bos, v.eos = eos, v.unk = unk, v.pad = pad, v.eot = eot;
                 v.add_bos = add_bos, v.add_eos = add_eos, v.add_space_prefix = add_space_prefix;
                 return Tokenizer(std::move(v));
             }),
             py::arg("model"), py::arg("pre") = "default", py::arg("tokens"),
             py::arg("scores") = std::vector<float>{}, py::arg("token_types") = std::vector<int32_t>{},
             py::arg("merges") = std::vector<std::string>{}, py::arg("bos") = -1, py::arg("eos") = -1,
             py::arg("unk") = -1, py::arg("pad") = -1, py::arg("eot") = -1, py::arg("add_bos") = false,
             py::arg("add_eos") = false, py::arg("add_space_prefix") = true)
        .def_static(
            "from_gguf",
            [](const std::string& path) {
                ggmlpy::GGUFOpenOptions opt;
                opt.load_tensors = false;
                auto f = ggmlpy::GGUFFile::open(path, opt);
                return ggmlpy::tokenizer_from_gguf(*f);
            },
            py::arg("path"), "Tokenizer from the tokenizer.ggml.* metadata of a GGUF file.")
        .def(
            "encode",
            [](const Tokenizer& t, const std::string& text, py::object add_bos, bool parse_special) {
                const bool bos = add_bos.is_none() ? t.vocab().add_bos : add_bos.cast<bool>();
                py::gil_scoped_release nogil;
                return t.encode(text, bos, parse_special);
            },
            py::arg("text"), py::arg("add_bos") = py::none(), py::arg("parse_special") = true,
            "Token ids of text. add_bos=None uses the vocabulary's tokenizer.ggml.add_bos_token.")
        .def(
            "token_to_piece",
            [](const Tokenizer& t, int32_t id, bool render_special) {
                return py::bytes(t.token_to_piece(id, render_special));
            },
            py::arg("id"), py::arg("render_special") = false,
            "Raw bytes of one token (may be part of a UTF-8 character).")
        .def(
            "decode",
            [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
                std::string s;
                {
                    py::gil_scoped_release nogil;
                    s = t.decode(ids, render_special);
                }
                return utf8_replace(s);
            },
            py::arg("ids"), py::arg("render_special") = false)
        .def(
            "decode_bytes",
            [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
                return py::bytes(t.decode(ids, render_special));
            },
            py::arg("ids"), py::arg("render_special") = false)
        .def("is_eog", &Tokenizer::is_eog, py::arg("id"))
        .def_property_readonly("n_vocab", &Tokenizer::n_vocab)
        .def_property_readonly("bos", [](const Tokenizer& t) { return t.vocab().bos; })
        .def_property_readonly("eos", [](const Tokenizer& t) { return t.vocab().eos; })
        .def_property_readonly("eot", [](const Tokenizer& t) { return t.vocab().eot; })
        .def_property_readonly("unk", [](const Tokenizer& t) { return t.vocab().unk; })
        .def_property_readonly("pad", [](const Tokenizer& t) { return t.vocab().pad; })
        .def_property_readonly("add_bos", [](const Tokenizer& t) { return t.vocab().add_bos; })
        .def_property_readonly("model", [](const Tokenizer& t) { return t.vocab().model; })
        .def_property_readonly("pre", [](const Tokenizer& t) { return t.vocab().pre; })
        .def("__len__", &Tokenizer::n_vocab);

    m.def("pretokenize",
          [](const std::string& pre, const std::string& text) { return ggmlpy::pretokenize_text(pre, text); },
          py::arg("pre"), py::arg("text"),
          "Pieces of text as the byte-level BPE pre-tokenizer named by tokenizer.ggml.pre splits it.");
}
}  // namespace ggmlpy_bind
