// LoRA training over a loaded DecoderModel: the base weights stay the read-only file mapping (any
// type); only the adapters' A and B (f32) and their gradients are written. One call runs one
// sequence forward and backward and adds its gradients; the optimizer (AdamW) lives in Python
// (ggmlpy.training), over the slots' arrays shared with numpy.
//
// Memory (gradient checkpointing): the forward pass keeps only each layer's input [n_embd, T];
// each layer's backward graph computes that layer's forward again and then its backward, so the
// activations alive at once are one layer's plus the logits [n_vocab, T].
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggmlpy/graph.h"
#include "ggmlpy/threadpool.h"
#include "training/train_graph.h"

namespace ggmlpy {

class LoraTrainer {
public:
    // targets: GGUF weight names (each must be in model.lora_targets()); rank >= 1; scale of every
    // pair = alpha / rank. A and B start at zero (set them from Python). The model must outlive
    // the trainer and must not evaluate while a step runs.
    // dropout: PEFT's lora_dropout probability on each adapter's input (training steps only).
    LoraTrainer(const DecoderModel& model, const std::vector<std::string>& targets, int rank, float alpha,
                int n_threads, float dropout = 0.0f);

    // One sequence: ids[0..n) in, targets[0..n) the token each position must predict (-1: not
    // counted). Returns the summed cross-entropy over counted positions and sets *counted; adds
    // grad_scale * d(sum)/d(A, B) to every slot's ga / gb. seed: this sequence's dropout masks
    // (slot k's is TrainGraph::dropout_seed(seed, k)).
    double step(const int32_t* ids, const int32_t* targets, int n, float grad_scale, int64_t* counted,
                int64_t seed = 0);
    // Loss only (no gradients): the same forward, for evaluation.
    double loss(const int32_t* ids, const int32_t* targets, int n, int64_t* counted);
    void zero_grad();

    std::vector<LoraSlot>& slots() { return slots_; }
    int n_threads() const { return n_threads_; }
    size_t peak_activation_bytes() const { return peak_; }

private:
    // Forward of every layer into fwd_buf_; returns the logits node, layer inputs in xs.
    Tensor* forward(Context& ctx, Graph& g, Tensor* ids, Tensor* pos, std::vector<Tensor*>& xs, float dropout,
                    int64_t seed);
    // Loss of logits [n_vocab, n] against targets; with grad, logits become dloss/dlogits * grad_scale.
    double cross_entropy(float* logits, const int32_t* targets, int n, float grad_scale, bool grad,
                         int64_t* counted);
    void check_tokens(const int32_t* ids, const int32_t* targets, int n) const;

    const DecoderModel& model_;
    bool gptj_;
    int n_threads_;
    float dropout_;
    std::unique_ptr<ThreadPool> pool_;
    std::vector<LoraSlot> slots_;
    std::unordered_map<const Tensor*, LoraSlot*> by_weight_;
    ComputeBuffer fwd_buf_, bwd_buf_;
    size_t peak_ = 0;
};

}  // namespace ggmlpy
