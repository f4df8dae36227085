// Bindings for Model (model.h): _core.Model(path, n_ctx=0, n_batch=512, n_threads=0,
// use_mmap=True, use_mlock=False, kv_type="f16" (f32, q8_0, q4_0), n_seq_max=1, lora=[(path, scale)], mem_budget=0 (bytes;
// 0: what is available)); eval_batch(seqs, ids) -> (k, n_vocab),
// n_past_seq / truncate_seq / copy_seq; eval(ids, all_logits=False) -> float32 logits
// (n, n_vocab) or (n_vocab,); eval_embeddings(ids) -> (n, n_embd); reset(); truncate(n); close(); properties n_past, n_vocab, n_ctx, n_embd,
// n_layer, arch, n_threads (settable), metadata, memory, tokenizer (the Tokenizer binding).
// Load, eval, reset, truncate and close release the GIL before they take the Model's mutex (a
// thread waiting for the mutex must not hold the GIL the running eval needs to return). Forwarding only.
#include <cctype>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <climits>

#include "bindings.h"
#include "ggmlpy/error.h"
#include "ggmlpy/model.h"

namespace ggmlpy_bind {
namespace {

using ggmlpy::Model;

Model& live(Model& m, const char* what) {
    if (m.closed()) throw ggmlpy::ValueError(std::string(what) + ": the model is closed");
    return m;
}

// ids: a list / sequence of ints or a 1-D integer numpy array -> int32 (range checked)
std::vector<int32_t> to_ids(const py::object& ids) {
    py::module_ np = py::module_::import("numpy");
    py::array arr;
    try {
        arr = np.attr("asarray")(ids);
    } catch (py::error_already_set&) {
        throw ggmlpy::ValueError("eval: ids must be a sequence of ints or an integer numpy array");
    }
    if (arr.ndim() != 1)
        throw ggmlpy::ValueError("eval: ids must be 1-D, got " + std::to_string(arr.ndim()) + " dims");
    if (arr.size() == 0) throw ggmlpy::ValueError("eval: ids is empty");
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw ggmlpy::ValueError("eval: ids must be integers, got dtype " +
                                 std::string(py::str(arr.dtype())));
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> a64(arr);
    std::vector<int32_t> out((size_t)a64.size());
    const int64_t* p = a64.data();
    for (size_t i = 0; i < out.size(); ++i) {
        if (p[i] < INT32_MIN || p[i] > INT32_MAX)
            throw ggmlpy::ValueError("eval: token id " + std::to_string(p[i]) + " at index " + std::to_string(i) +
                                     " is out of range");
        out[i] = (int32_t)p[i];
    }
    return out;
}

}  // namespace

void register_model(py::module_& m) {
    m.def("supported_architectures", &ggmlpy::supported_architectures,
          "Architectures (general.architecture values) Model can load.");

    py::class_<Model>(m, "Model", "A loaded GGUF model: weights (mmap), tokenizer, KV cache.")
        .def(py::init([](const py::object& path, int n_ctx, int n_batch, int n_threads, bool use_mmap,
                         bool use_mlock, const std::string& kv_type, int n_seq_max, long long mem_budget,
                         const std::vector<std::pair<std::string, float>>& lora) {
                 std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                 ggmlpy::ModelParams mp;
                 mp.n_ctx = n_ctx;
                 mp.n_batch = n_batch;
                 mp.n_threads = n_threads;
                 mp.use_mmap = use_mmap;
                 mp.use_mlock = use_mlock;
                 mp.n_seq_max = n_seq_max;
                 if (mem_budget < 0)
                     throw ggmlpy::ValueError("mem_budget must be >= 0 bytes (0: what is available), got " +
                                              std::to_string(mem_budget));
                 mp.mem_budget = (uint64_t)mem_budget;
                 mp.lora = lora;
                 std::string kvt = kv_type;
                 for (char& c : kvt) c = (char)std::tolower((unsigned char)c);
                 if (kvt != "f16" && kvt != "f32" && kvt != "q8_0" && kvt != "q4_0")
                     throw ggmlpy::ValueError("kv_type must be 'f16', 'f32', 'q8_0' or 'q4_0', got '" + kv_type + "'");
                 mp.kv_type = ggmlpy::dtype_from_name(kvt);
                 if (n_ctx < 0) throw ggmlpy::ValueError("n_ctx must be >= 0, got " + std::to_string(n_ctx));
                 if (n_batch < 1) throw ggmlpy::ValueError("n_batch must be >= 1, got " + std::to_string(n_batch));
                 if (n_threads < 0)
                     throw ggmlpy::ValueError("n_threads must be >= 0, got " + std::to_string(n_threads));
                 py::gil_scoped_release nogil;
                 return Model::load(p, mp);
             }),
             py::arg("path"), py::arg("n_ctx") = 0, py::arg("n_batch") = 512, py::arg("n_threads") = 0,
             py::arg("use_mmap") = true, py::arg("use_mlock") = false, py::arg("kv_type") = "f16",
             py::arg("n_seq_max") = 1, py::arg("mem_budget") = 0,
             py::arg("lora") = std::vector<std::pair<std::string, float>>{})
        .def("eval", [](Model& self, const py::object& ids, bool all_logits) {
                 Model& mdl = live(self, "eval");
                 std::vector<int32_t> v = to_ids(ids);
                 const int64_t n = (int64_t)v.size(), nv = mdl.n_vocab();
                 // before the logits array (n * n_vocab floats) is allocated; eval checks again
                 if (mdl.n_past() + n > mdl.n_ctx())
                     throw ggmlpy::ContextFullError("context full: " + std::to_string(mdl.n_past()) +
                                                    " tokens in the cache + " + std::to_string(n) +
                                                    " new > n_ctx " + std::to_string(mdl.n_ctx()) +
                                                    " (reset() or load with a larger n_ctx)");
                 py::array_t<float> out = all_logits ? py::array_t<float>({(py::ssize_t)n, (py::ssize_t)nv})
                                                     : py::array_t<float>({(py::ssize_t)nv});
                 float* dst = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     mdl.eval(v.data(), n, all_logits, dst);
                 }
                 return out;
             },
             py::arg("ids"), py::arg("all_logits") = false,
             "Appends ids to the context; returns float32 logits (len(ids), n_vocab) if all_logits, "
             "else (n_vocab,) for the last token.")
        .def("eval_embeddings", [](Model& self, const py::object& ids) {
                 Model& mdl = live(self, "eval_embeddings");
                 std::vector<int32_t> v = to_ids(ids);
                 const int64_t n = (int64_t)v.size();
                 if (mdl.n_past() + n > mdl.n_ctx())
                     throw ggmlpy::ContextFullError("context full: " + std::to_string(mdl.n_past()) +
                                                    " tokens in the cache + " + std::to_string(n) +
                                                    " new > n_ctx " + std::to_string(mdl.n_ctx()));
                 py::array_t<float> out({(py::ssize_t)n, (py::ssize_t)mdl.n_embd()});
                 float* dst = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     mdl.eval_embeddings(v.data(), n, dst);
                 }
                 return out;
             },
             py::arg("ids"),
             "Appends ids to the context; returns float32 final hidden states (len(ids), n_embd), "
             "after the output norm.")
        .def("eval_batch", [](Model& self, const std::vector<int>& seqs, const std::vector<py::object>& ids) {
                 Model& mdl = live(self, "eval_batch");
                 if (seqs.size() != ids.size())
                     throw ggmlpy::ValueError("eval_batch: " + std::to_string(seqs.size()) + " sequences but " +
                                              std::to_string(ids.size()) + " id lists");
                 std::vector<std::vector<int32_t>> lists;
                 lists.reserve(ids.size());
                 for (const py::object& o : ids) lists.push_back(to_ids(o));
                 std::vector<ggmlpy::SeqTokens> batch;
                 for (size_t i = 0; i < lists.size(); ++i)
                     batch.push_back(ggmlpy::SeqTokens{seqs[i], lists[i].data(), (int64_t)lists[i].size()});
                 py::array_t<float> out({(py::ssize_t)batch.size(), (py::ssize_t)mdl.n_vocab()});
                 float* dst = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     mdl.eval_batch(batch, dst);
                 }
                 return out;
             },
             py::arg("seqs"), py::arg("ids"),
             "Appends ids[i] to sequence seqs[i] (distinct), all in shared forward passes; returns float32 "
             "logits (len(seqs), n_vocab) after each sequence's last token.")
        .def("n_past_seq", [](Model& self, int seq) { return self.n_past_seq(seq); }, py::arg("seq"))
        .def("truncate_seq", [](Model& self, int seq, int n) {
                 live(self, "truncate_seq");
                 py::gil_scoped_release nogil;
                 self.truncate_seq(seq, n);
             }, py::arg("seq"), py::arg("n"), "Keeps the first n cached tokens of sequence seq.")
        .def("copy_seq", [](Model& self, int src, int dst) {
                 live(self, "copy_seq");
                 py::gil_scoped_release nogil;
                 self.copy_seq(src, dst);
             }, py::arg("src"), py::arg("dst"), "Sequence dst's cache becomes a copy of src's (a forked prefix).")
        .def("kv_state", [](Model& self, int seq) {
                 live(self, "kv_state");
                 std::string s;
                 {
                     py::gil_scoped_release nogil;
                     s = self.kv_state(seq);
                 }
                 return py::bytes(s);
             }, py::arg("seq") = 0, "Sequence seq's KV cache (n_past cells) as bytes, with a header.")
        .def("set_kv_state", [](Model& self, const py::bytes& state, int seq) {
                 live(self, "set_kv_state");
                 std::string s = state;
                 py::gil_scoped_release nogil;
                 self.set_kv_state(seq, s);
             }, py::arg("state"), py::arg("seq") = 0,
             "Puts bytes from kv_state back into sequence seq (checked against this model).")
        .def_property_readonly("n_seq_max", &Model::n_seq_max)
        .def("reset", [](Model& self) {
                 live(self, "reset");
                 py::gil_scoped_release nogil;
                 self.reset();
             }, "Empties the KV cache.")
        .def("truncate", [](Model& self, int n) {
                 live(self, "truncate");
                 py::gil_scoped_release nogil;
                 self.truncate(n);
             }, py::arg("n"), "Keeps the first n cached tokens (0 <= n <= n_past).")
        .def("close", [](Model& self) {
                 py::gil_scoped_release nogil;
                 self.close();
             }, "Frees weights, KV cache and threads now (the tokenizer stays usable).")
        .def_property_readonly("closed", &Model::closed)
        .def_property_readonly("n_past", &Model::n_past)
        .def_property_readonly("n_vocab", &Model::n_vocab)
        .def_property_readonly("n_ctx", &Model::n_ctx)
        .def_property_readonly("n_embd", &Model::n_embd)
        .def_property_readonly("n_layer", &Model::n_layer)
        .def_property_readonly("arch", &Model::arch)
        .def_property("n_threads", &Model::n_threads, [](Model& self, int n) {
            py::gil_scoped_release nogil;
            self.set_n_threads(n);
        })
        .def_property_readonly("metadata", [](const Model& self) {
            py::dict d;
            for (const auto& kv : self.metadata()) {
                PyObject* o = PyUnicode_DecodeUTF8(kv.second.data(), (Py_ssize_t)kv.second.size(), "replace");
                if (!o) throw py::error_already_set();
                d[py::str(kv.first)] = py::reinterpret_steal<py::object>(o);
            }
            return d;
        })
        .def_property_readonly("memory", [](const Model& self) {
            ggmlpy::MemoryStats s = self.memory();
            py::dict d;
            d["file_bytes"] = s.file_bytes;
            d["weight_bytes"] = s.weight_bytes;
            d["kv_bytes"] = s.kv_bytes;
            d["scratch_bytes"] = s.scratch_bytes;
            d["mmapped"] = self.mmapped();
            d["mlocked"] = self.mlocked();
            d["mlock_error"] = self.mlock_error();
            d["mem_budget"] = s.mem_budget;
            d["resident_bytes"] = s.resident_bytes;
            d["streamed_bytes"] = s.streamed_bytes;
            d["window_bytes"] = s.window_bytes;
            d["resident_locked"] = s.resident_locked;
            d["stream_prefetched"] = s.stream_prefetched;
            d["stream_dropped"] = s.stream_dropped;
            d["stream_passes"] = s.stream_passes;
            d["stream_fetch_s"] = s.stream_fetch_s;
            d["stream_drop_s"] = s.stream_drop_s;
            return d;
        })
        .def_property_readonly("tokenizer", &Model::tokenizer, py::return_value_policy::reference_internal);
}

}  // namespace ggmlpy_bind
