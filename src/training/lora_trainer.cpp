// LoraTrainer (lora_trainer.h): forward, cross-entropy, then the layers' backward graphs from the
// last layer to the first, each recomputing its layer's forward from the saved input.
#include "training/lora_trainer.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "ggmlpy/error.h"
#include "ggmlpy/ops.h"
#include "kernels/kernels.h"

namespace ggmlpy {

LoraTrainer::LoraTrainer(const DecoderModel& model, const std::vector<std::string>& targets, int rank, float alpha,
                         int n_threads, float dropout)
    : model_(model), gptj_(model.arch() == "gptj"), dropout_(dropout) {
    if (!(dropout >= 0.0f && dropout < 1.0f)) throw ValueError("dropout must be in [0, 1)");
    if (model.arch() != "llama" && model.arch() != "gptj")
        throw ValueError("LoRA training supports llama and gptj models, not '" + model.arch() + "'");
    if (rank < 1 || rank > 4096) throw ValueError("rank must be in [1, 4096], got " + std::to_string(rank));
    if (!std::isfinite(alpha)) throw ValueError("alpha must be finite");
    if (targets.empty()) throw ValueError("no target weights given");
    const std::map<std::string, Tensor*> all = model.lora_targets();
    slots_.reserve(targets.size());
    for (const std::string& name : targets) {
        auto it = all.find(name);
        if (it == all.end())
            throw ValueError("target '" + name + "' is not a weight of " + model.file().path() +
                             " that LoRA can adapt (the layer matrices)");
        Tensor* w = it->second;
        if (by_weight_.count(w)) throw ValueError("target '" + name + "' is given twice");
        if (w == model.weights().output) throw ValueError("target '" + name + "': training the output projection is not supported");
        LoraSlot s;
        s.name = name;
        s.w = w;
        s.n_in = w->ne[0];
        s.n_out = w->ne[1];
        s.r = rank;
        s.scale = alpha / (float)rank;
        s.index = (int)slots_.size();
        s.a.assign((size_t)(s.n_in * rank), 0.0f);
        s.b.assign((size_t)(rank * s.n_out), 0.0f);
        s.ga.assign(s.a.size(), 0.0f);
        s.gb.assign(s.b.size(), 0.0f);
        slots_.push_back(std::move(s));
    }
    for (LoraSlot& s : slots_) by_weight_[s.w] = &s;
    n_threads_ = n_threads > 0 ? n_threads : model.n_threads();
    pool_ = std::make_unique<ThreadPool>(n_threads_);
}

void LoraTrainer::zero_grad() {
    for (LoraSlot& s : slots_) {
        std::fill(s.ga.begin(), s.ga.end(), 0.0f);
        std::fill(s.gb.begin(), s.gb.end(), 0.0f);
    }
}

void LoraTrainer::check_tokens(const int32_t* ids, const int32_t* targets, int n) const {
    const int nv = model_.n_vocab();
    if (n < 2) throw ValueError("a training sequence needs at least 2 tokens, got " + std::to_string(n));
    if (n > model_.n_ctx())
        throw ValueError("sequence of " + std::to_string(n) + " tokens is longer than n_ctx " +
                         std::to_string(model_.n_ctx()) + " (load the model with a larger n_ctx)");
    for (int i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= nv)
            throw ValueError("token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(nv) + ")");
        if (targets[i] < -1 || targets[i] >= nv)
            throw ValueError("target " + std::to_string(targets[i]) + " at index " + std::to_string(i) +
                             " is outside [-1, " + std::to_string(nv) + ") (-1: not counted)");
    }
}

Tensor* LoraTrainer::forward(Context& ctx, Graph& g, Tensor* ids, Tensor* pos, std::vector<Tensor*>& xs,
                             float dropout, int64_t seed) {
    const ModelWeights& w = model_.weights();
    TrainGraph tg(ctx, g, model_.hparams(), w, gptj_, pos, by_weight_, dropout, seed);
    Tensor* x = get_rows(ctx, w.tok_embd, ids);  // [n_embd, T]
    for (int il = 0; il < model_.hparams().n_layer; ++il) {
        xs.push_back(x);
        g.build_forward(x);  // kept: the layer's backward starts from it
        x = tg.layer_forward(il, x).out;
    }
    xs.push_back(x);
    g.build_forward(x);
    Tensor* logits = tg.head_forward(x);
    g.build_forward(logits);
    return logits;
}

double LoraTrainer::cross_entropy(float* logits, const int32_t* targets, int n, float grad_scale, bool grad,
                                  int64_t* counted) {
    const int64_t nv = model_.n_vocab();
    std::vector<double> row_loss((size_t)n, 0.0);
    const KernelTable& kt = kernels();
    pool_->run(n_threads_, [&](int ith, int nth) {
        for (int t = ith; t < n; t += nth) {
            float* z = logits + (size_t)t * (size_t)nv;
            if (targets[t] < 0) {
                if (grad) std::memset(z, 0, (size_t)nv * sizeof(float));
                continue;
            }
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t i = 0; i < nv; ++i) mx = std::max(mx, z[i]);
            const float zt = z[targets[t]];
            if (!grad) {
                double sum = 0.0;
                for (int64_t i = 0; i < nv; ++i) sum += std::exp((double)z[i] - mx);
                row_loss[(size_t)t] = mx + std::log(sum) - zt;
                continue;
            }
            // z = exp(z - mx) (the table's exp, summed in double), then softmax * grad_scale - onehot
            const double sum = kt.vec_exp_sum_f32(nv, z, z, mx);
            row_loss[(size_t)t] = mx + std::log(sum) - zt;
            kt.vec_scale_f32(nv, z, (float)(grad_scale / sum));
            z[targets[t]] -= grad_scale;
        }
    });
    double total = 0.0;
    int64_t c = 0;
    for (int t = 0; t < n; ++t)
        if (targets[t] >= 0) {
            total += row_loss[(size_t)t];
            ++c;
        }
    *counted = c;
    return total;
}

double LoraTrainer::loss(const int32_t* ids, const int32_t* targets, int n, int64_t* counted) {
    check_tokens(ids, targets, n);
    std::vector<int32_t> pos((size_t)n);
    for (int i = 0; i < n; ++i) pos[(size_t)i] = i;
    Context ctx(false);
    Graph g;
    std::vector<Tensor*> xs;
    Tensor* logits = forward(ctx, g, ctx.new_tensor_external(DType::I32, {n}, ids),
                             ctx.new_tensor_external(DType::I32, {n}, pos.data()), xs, 0.0f, 0);
    compute(g, *pool_, n_threads_, &fwd_buf_);
    peak_ = std::max(peak_, fwd_buf_.capacity());
    return cross_entropy(static_cast<float*>(logits->data), targets, n, 0.0f, false, counted);
}

double LoraTrainer::step(const int32_t* ids, const int32_t* targets, int n, float grad_scale, int64_t* counted,
                         int64_t seed) {
    check_tokens(ids, targets, n);
    if (!std::isfinite(grad_scale)) throw ValueError("grad_scale must be finite");
    const HParams& hp = model_.hparams();
    std::vector<int32_t> pos((size_t)n);
    for (int i = 0; i < n; ++i) pos[(size_t)i] = i;

    // forward: layer inputs and logits stay in fwd_buf_ until the step ends
    Context fctx(false);
    Graph fg;
    std::vector<Tensor*> xs;
    Tensor* logits = forward(fctx, fg, fctx.new_tensor_external(DType::I32, {n}, ids),
                             fctx.new_tensor_external(DType::I32, {n}, pos.data()), xs, dropout_, seed);
    compute(fg, *pool_, n_threads_, &fwd_buf_);
    const double total = cross_entropy(static_cast<float*>(logits->data), targets, n, grad_scale, true, counted);

    const int64_t E = hp.n_embd;
    std::vector<float> dcur((size_t)(E * n));
    auto run_back = [&](const std::function<Tensor*(TrainGraph&, Context&)>& build) {
        Context ctx(false);
        Graph g;
        Tensor* p = ctx.new_tensor_external(DType::I32, {n}, pos.data());
        TrainGraph tg(ctx, g, hp, model_.weights(), gptj_, p, by_weight_, dropout_, seed);
        Tensor* dx = build(tg, ctx);
        g.build_forward(dx);
        compute(g, *pool_, n_threads_, &bwd_buf_);
        peak_ = std::max(peak_, fwd_buf_.capacity() + bwd_buf_.capacity());
        std::memcpy(dcur.data(), dx->data, dcur.size() * sizeof(float));
        for (const GradOut& go : tg.grads()) {
            const float* da = static_cast<const float*>(go.da->data);
            const float* db = static_cast<const float*>(go.db->data);
            for (size_t i = 0; i < go.slot->ga.size(); ++i) go.slot->ga[i] += da[i];
            for (size_t i = 0; i < go.slot->gb.size(); ++i) go.slot->gb[i] += db[i];
        }
    };
    // the head: dlogits -> dx of the last layer's output
    run_back([&](TrainGraph& tg, Context& ctx) {
        Tensor* xl = ctx.new_tensor_external(DType::F32, {E, n}, xs.back()->data);
        Tensor* dl = ctx.new_tensor_external(DType::F32, {(int64_t)model_.n_vocab(), n}, logits->data);
        return tg.head_backward(xl, dl);
    });
    for (int il = hp.n_layer - 1; il >= 0; --il) {
        run_back([&](TrainGraph& tg, Context& ctx) {
            Tensor* x = ctx.new_tensor_external(DType::F32, {E, n}, xs[(size_t)il]->data);
            Tensor* dout = ctx.new_tensor_external(DType::F32, {E, n}, dcur.data());
            return tg.layer_backward(tg.layer_forward(il, x), dout);
        });
    }
    return total;
}

}  // namespace ggmlpy
