// Graph builders for LoRA training over a DecoderModel's frozen weights: one layer's forward with
// what its backward reads kept as nodes, and that backward, for the Llama and GPT-J blocks. The
// trainer (lora_trainer.h) builds a layer's forward again inside its backward graph (gradient
// checkpointing), so only the layer inputs live across a step. Shapes in ggml order: activations
// [n_embd, T] for one sequence of T tokens at positions 0 .. T-1.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/arch.h"

namespace ggmlpy {

// One trainable LoRA pair of a frozen weight w [n_in, n_out]: A [n_in, r], B [r, n_out] (ggml
// order; numpy [r, n_in] and [n_out, r], PEFT's lora_A / lora_B), gradients of the same shapes.
struct LoraSlot {
    std::string name;      // the weight's GGUF name
    Tensor* w = nullptr;
    int64_t n_in = 0, n_out = 0, r = 0;
    float scale = 1.0f;    // alpha / r
    int index = 0;         // position in the trainer's slots (its dropout mask seed)
    std::vector<float> a, b, ga, gb;
};

// A gradient node of a slot, read back into ga / gb after the graph ran.
struct GradOut {
    LoraSlot* slot = nullptr;
    Tensor* da = nullptr;  // [n_in, r]
    Tensor* db = nullptr;  // [r, n_out]
};

class TrainGraph {
public:
    // slots: the LoRA slot of each adapted weight. pos: I32 [T] positions 0 .. T-1. dropout:
    // PEFT's lora_dropout on each adapter's input, mask seed dropout_seed(seed, slot.index).
    TrainGraph(Context& ctx, Graph& g, const HParams& hp, const ModelWeights& w, bool gptj, Tensor* pos,
               const std::unordered_map<const Tensor*, LoraSlot*>& slots, float dropout = 0.0f, int64_t seed = 0);
    static int64_t dropout_seed(int64_t seed, int slot) { return (int64_t)((uint64_t)seed * 1000003u + (uint64_t)slot); }

    // A linear map with what its backward needs.
    struct Lin {
        Tensor* w = nullptr;
        Tensor* x = nullptr;   // input [n_in, T]
        LoraSlot* slot = nullptr;
        Tensor* a = nullptr, *b = nullptr;  // leaves over slot->a / slot->b
        Tensor* xd = nullptr;  // the adapter's input: x, or dropout(x) [n_in, T]
        Tensor* u = nullptr;   // A xd [r, T]
    };
    struct Attn {
        Tensor* q = nullptr, *k = nullptr, *v = nullptr;  // after rope: [hd, n_head(_kv), T]; v [hd, n_head_kv, T]
        Tensor* p = nullptr;   // softmax probabilities [T_k, T_q, n_head]
        Lin lq, lk, lv, lo;
    };
    // Everything a layer's backward reads.
    struct LayerAct {
        int il = 0;
        Tensor* x = nullptr;    // layer input [n_embd, T]
        Tensor* h = nullptr;    // normed input of attention (GPT-J: of both branches)
        Attn at;
        Tensor* x2 = nullptr;   // Llama: x + attention, input of the FFN norm
        Tensor* h2 = nullptr;   // Llama: normed FFN input
        Tensor* gate = nullptr, *up = nullptr;  // FFN pre-activations [n_ff, T]
        Lin lg, lu, ld;
        Tensor* out = nullptr;  // layer output [n_embd, T]
    };

    LayerAct layer_forward(int il, Tensor* x);
    // dx of the layer from dout (its output's gradient); the slots' gradients go to grads().
    Tensor* layer_backward(const LayerAct& act, Tensor* dout);
    // Final norm + output projection: logits [n_vocab, T]; and dx of x from dlogits.
    Tensor* head_forward(Tensor* x);
    Tensor* head_backward(Tensor* x, Tensor* dlogits);
    const std::vector<GradOut>& grads() const { return grads_; }

private:
    Lin lin_forward(Tensor* w, Tensor* x);
    Tensor* lin_out(const Lin& l);  // y = w x + scale B (A x)
    Tensor* lin_backward(const Lin& l, Tensor* dy);
    Tensor* norm_forward(Tensor* x, Tensor* w, Tensor* b);
    Tensor* norm_backward(Tensor* x, Tensor* w, Tensor* dy);
    Attn attn_forward(const LayerWeights& l, Tensor* h);
    Tensor* attn_out(const Attn& a);  // [n_head * hd, T] before the output projection
    Tensor* attn_backward(const Attn& a, Tensor* dy);
    // sum over the rep query heads of each KV head: [hd, T, n_head] -> [hd, T, n_head_kv]
    Tensor* sum_groups(Tensor* x);

    Context& ctx_;
    Graph& g_;
    const HParams& hp_;
    const ModelWeights& w_;
    bool gptj_;
    Tensor* pos_;
    const std::unordered_map<const Tensor*, LoraSlot*>& slots_;
    float dropout_;
    int64_t seed_;
    std::vector<GradOut> grads_;
};

}  // namespace ggmlpy
