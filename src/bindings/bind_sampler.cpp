// Bindings for the sampler: _core.Sampler(temperature=..., top_k=..., ..., seed=-1) with
// sample(logits: float32[n_vocab]) -> int, accept(id), accept_many(ids), reset(), seed,
// apply_penalties(logits) -> penalized copy. Forwards to ggmlpy::Sampler; holds no logic.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "ggmlpy/error.h"
#include "ggmlpy/sampler.h"

namespace ggmlpy_bind {
namespace {
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

const float* vocab_row(const FloatArray& a, int& n) {
    if (a.ndim() != 1)
        throw ggmlpy::ValueError("Sampler: logits must be 1-D (n_vocab,), got " + std::to_string(a.ndim()) + " dims");
    n = (int)a.shape(0);
    return a.data();
}
}  // namespace

void register_sampler(py::module_& m) {
    py::class_<ggmlpy::Sampler>(m, "Sampler",
        "Token sampler with its own seeded RNG: penalties over the last repeat_last_n accepted tokens, "
        "then greedy (temperature 0) or temperature -> top-k -> top-p -> min-p -> draw.")
        .def(py::init([](float temperature, int top_k, float top_p, float min_p, float repetition_penalty,
                         float frequency_penalty, float presence_penalty, int repeat_last_n, int64_t seed,
                         float typical_p, int mirostat, float mirostat_tau, float mirostat_eta,
                         float dry_multiplier, float dry_base, int dry_allowed_length, int dry_penalty_last_n,
                         const std::vector<int32_t>& dry_breakers) {
                 ggmlpy::SamplerParams p;
                 p.temperature = temperature; p.top_k = top_k; p.top_p = top_p; p.min_p = min_p;
                 p.repetition_penalty = repetition_penalty; p.frequency_penalty = frequency_penalty;
                 p.presence_penalty = presence_penalty; p.repeat_last_n = repeat_last_n; p.seed = seed;
                 p.typical_p = typical_p; p.mirostat = mirostat; p.mirostat_tau = mirostat_tau;
                 p.mirostat_eta = mirostat_eta;
                 p.dry_multiplier = dry_multiplier; p.dry_base = dry_base;
                 p.dry_allowed_length = dry_allowed_length; p.dry_penalty_last_n = dry_penalty_last_n;
                 p.dry_breakers = dry_breakers;
                 return new ggmlpy::Sampler(p);
             }),
             py::kw_only(), py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f,
             py::arg("min_p") = 0.05f, py::arg("repetition_penalty") = 1.0f, py::arg("frequency_penalty") = 0.0f,
             py::arg("presence_penalty") = 0.0f, py::arg("repeat_last_n") = 64, py::arg("seed") = -1,
             py::arg("typical_p") = 1.0f, py::arg("mirostat") = 0, py::arg("mirostat_tau") = 5.0f,
             py::arg("mirostat_eta") = 0.1f, py::arg("dry_multiplier") = 0.0f, py::arg("dry_base") = 1.75f,
             py::arg("dry_allowed_length") = 2, py::arg("dry_penalty_last_n") = -1,
             py::arg("dry_breakers") = std::vector<int32_t>{})
        .def_property_readonly("mirostat_mu", &ggmlpy::Sampler::mirostat_mu,
                               "Mirostat's current surprise bound mu (2 * tau at start and after reset()).")
        .def("sample", [](ggmlpy::Sampler& s, const FloatArray& logits) {
                 int n = 0;
                 const float* d = vocab_row(logits, n);
                 return s.sample(d, n);
             }, py::arg("logits"), "Pick a token id from float32 logits of shape (n_vocab,).")
        .def("accept", &ggmlpy::Sampler::accept, py::arg("id"), "Append a token to the penalty history.")
        .def("accept_many", [](ggmlpy::Sampler& s, const std::vector<int32_t>& ids) {
                 for (int32_t id : ids) s.accept(id);
             }, py::arg("ids"))
        .def("reset", &ggmlpy::Sampler::reset, "Clear the penalty history (the RNG state is kept).")
        .def("set_seed", &ggmlpy::Sampler::set_seed, py::arg("seed"), "Re-seed the RNG (< 0: random).")
        .def_property_readonly("seed", &ggmlpy::Sampler::seed)
        .def_property_readonly("history", &ggmlpy::Sampler::history)
        .def("uniform", &ggmlpy::Sampler::uniform, "Next uniform draw in [0, 1) from the sampler's RNG.")
        .def("apply_penalties", [](const ggmlpy::Sampler& s, const FloatArray& logits) {
                 int n = 0;
                 vocab_row(logits, n);
                 FloatArray out(n);
                 std::copy(logits.data(), logits.data() + n, out.mutable_data());
                 s.apply_penalties(out.mutable_data(), n);
                 return out;
             }, py::arg("logits"), "A copy of logits with the repetition/frequency/presence penalties applied.")
        .def_property_readonly("params", [](const ggmlpy::Sampler& s) {
                 const auto& p = s.params();
                 py::dict d;
                 d["temperature"] = p.temperature; d["top_k"] = p.top_k; d["top_p"] = p.top_p;
                 d["min_p"] = p.min_p; d["repetition_penalty"] = p.repetition_penalty;
                 d["frequency_penalty"] = p.frequency_penalty; d["presence_penalty"] = p.presence_penalty;
                 d["repeat_last_n"] = p.repeat_last_n; d["seed"] = s.seed();
                 return d;
             });
}
}  // namespace ggmlpy_bind
