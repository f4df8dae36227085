// Bindings for LoraTrainer (src/training/lora_trainer.h): _core.LoraTrainer(model, targets, rank,
// alpha, n_threads=0, dropout=0); step(ids, targets, grad_scale, seed=0) -> (summed loss, counted tokens) adds
// gradients; loss(ids, targets) -> (summed loss, counted); zero_grad(); slots() -> list of dicts
// {name, scale, a [r, n_in], b [n_out, r], ga, gb} whose arrays are numpy views of the trainer's
// memory (PEFT's lora_A / lora_B shapes), written in place by the optimizer. Steps release the
// GIL. Forwarding only.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "arch/arch.h"
#include "bindings.h"
#include "ggmlpy/error.h"
#include "training/lora_trainer.h"

namespace ggmlpy_bind {
namespace {

using ggmlpy::LoraTrainer;

// The trainer and the model it reads: the model must stay open while the trainer is used.
struct PyTrainer {
    std::unique_ptr<LoraTrainer> t;
    const ggmlpy::Model* model = nullptr;
    LoraTrainer& live(const char* what) const {
        if (model->closed()) throw ggmlpy::ValueError(std::string(what) + ": the model is closed");
        return *t;
    }
};

std::vector<int32_t> ints(const py::array& arr, const char* what) {
    if (arr.ndim() != 1) throw ggmlpy::ValueError(std::string(what) + " must be 1-D");
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u') throw ggmlpy::ValueError(std::string(what) + " must be integers");
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> a(arr);
    std::vector<int32_t> out((size_t)a.size());
    for (size_t i = 0; i < out.size(); ++i) {
        const int64_t v = a.data()[i];
        if (v < INT32_MIN || v > INT32_MAX)
            throw ggmlpy::ValueError(std::string(what) + ": value " + std::to_string(v) + " is out of range");
        out[i] = (int32_t)v;
    }
    return out;
}

void same_length(const std::vector<int32_t>& ids, const std::vector<int32_t>& tg) {
    if (ids.size() != tg.size())
        throw ggmlpy::ValueError("ids (" + std::to_string(ids.size()) + ") and targets (" + std::to_string(tg.size()) +
                                 ") must have the same length");
}

py::array view(std::vector<float>& v, int64_t rows, int64_t cols, py::handle owner) {
    return py::array_t<float>({(py::ssize_t)rows, (py::ssize_t)cols}, v.data(), owner);
}

}  // namespace

void register_train(py::module_& m) {
    py::class_<PyTrainer>(m, "LoraTrainer", "LoRA gradients over a loaded model's frozen weights.")
        .def(py::init([](const ggmlpy::Model& model, const std::vector<std::string>& targets, int rank, float alpha,
                         int n_threads, float dropout) {
                 if (model.closed()) throw ggmlpy::ValueError("LoraTrainer: the model is closed");
                 const auto* dm = dynamic_cast<const ggmlpy::DecoderModel*>(&model);
                 if (!dm) throw ggmlpy::ValueError("LoraTrainer: unsupported model");
                 PyTrainer p;
                 p.t = std::make_unique<LoraTrainer>(*dm, targets, rank, alpha, n_threads, dropout);
                 p.model = &model;
                 return p;
             }),
             py::arg("model"), py::arg("targets"), py::arg("rank"), py::arg("alpha"), py::arg("n_threads") = 0,
             py::arg("dropout") = 0.0f, py::keep_alive<1, 2>())
        .def("step", [](PyTrainer& self, const py::array& ids, const py::array& targets, float grad_scale,
                        int64_t seed) {
                 std::vector<int32_t> i = ints(ids, "ids"), t = ints(targets, "targets");
                 same_length(i, t);
                 LoraTrainer& tr = self.live("step");
                 int64_t counted = 0;
                 double loss;
                 {
                     py::gil_scoped_release nogil;
                     loss = tr.step(i.data(), t.data(), (int)i.size(), grad_scale, &counted, seed);
                 }
                 return py::make_tuple(loss, counted);
             }, py::arg("ids"), py::arg("targets"), py::arg("grad_scale"), py::arg("seed") = 0)
        .def("loss", [](PyTrainer& self, const py::array& ids, const py::array& targets) {
                 std::vector<int32_t> i = ints(ids, "ids"), t = ints(targets, "targets");
                 same_length(i, t);
                 LoraTrainer& tr = self.live("loss");
                 int64_t counted = 0;
                 double loss;
                 {
                     py::gil_scoped_release nogil;
                     loss = tr.loss(i.data(), t.data(), (int)i.size(), &counted);
                 }
                 return py::make_tuple(loss, counted);
             }, py::arg("ids"), py::arg("targets"))
        .def("zero_grad", [](PyTrainer& self) { self.t->zero_grad(); })
        .def_property_readonly("peak_activation_bytes", [](const PyTrainer& self) { return self.t->peak_activation_bytes(); })
        .def("slots", [](py::object self_obj) {
                 PyTrainer& self = self_obj.cast<PyTrainer&>();
                 py::list out;
                 for (ggmlpy::LoraSlot& s : self.t->slots()) {
                     py::dict d;
                     d["name"] = s.name;
                     d["scale"] = s.scale;
                     d["a"] = view(s.a, s.r, s.n_in, self_obj);
                     d["b"] = view(s.b, s.n_out, s.r, self_obj);
                     d["ga"] = view(s.ga, s.r, s.n_in, self_obj);
                     d["gb"] = view(s.gb, s.n_out, s.r, self_obj);
                     out.append(d);
                 }
                 return out;
             });
}

}  // namespace ggmlpy_bind
