// Shared transformer blocks used by every architecture's graph builder. Activations are f32
// [n_embd, n_tokens] (ggml order: one token per row). Each block only adds nodes to the context
// (and, for attention, the K/V cache writes to the graph, in the order they must run).
#pragma once
#include "arch/arch.h"

namespace ggmlpy {

enum class NormKind { RMS, LAYER };

// norm(x) * w (+ b). x: [n, n_tokens]; w, b: [n] or nullptr.
Tensor* block_norm(Context& ctx, Tensor* x, NormKind kind, float eps, Tensor* w, Tensor* b);
// w x (+ b), plus w's LoRA adapters when lora has some. w: [n_in, n_out] any matmul type;
// x: f32 [n_in, n_tokens] -> [n_out, n_tokens].
Tensor* block_linear(Context& ctx, Tensor* w, Tensor* b, Tensor* x, const LoraSet* lora = nullptr);
// Self-attention of layer il without the output projection: projects cur to Q, K, V (with
// biases when present), applies rope to the first n_rot dims of each head, and for each sequence
// span of in writes its K and V at positions n_past .. n_past + n - 1 of its cells (appended to g
// first) and attends causally over its positions 0 .. n_past + n - 1 with grouped heads (query
// head h reads KV head h / (n_head / n_head_kv)). cur: [n_embd, n_tokens] ->
// [n_head * head_dim, n_tokens].
Tensor* block_attention(Context& ctx, Graph& g, const HParams& hp, const LayerWeights& lw,
                        const KVCache& kv, int il, Tensor* cur, const BatchInput& in,
                        Tensor* rope_freqs);
// SwiGLU MLP: down(silu(gate x) * up x). x: [n_embd, n_tokens] -> [n_embd, n_tokens].
Tensor* block_ffn_swiglu(Context& ctx, const LayerWeights& lw, Tensor* x);
// GELU MLP with biases: down(gelu(up x + b_up)) + b_down (tanh-approximate gelu, GPT-J's gelu_new).
Tensor* block_ffn_gelu(Context& ctx, const LayerWeights& lw, Tensor* x);
// The last column of x [ne0, n_tokens] as a [ne0, 1] view (only the last token's row is needed
// past the last layer's attention when not all logits are wanted).
Tensor* block_last_row(Context& ctx, Tensor* x);
// The rows of x [ne0, n_tokens] past the last layer's attention that in wants: in.out_rows
// (several sequences), the last one, or all.
Tensor* block_output_rows(Context& ctx, Tensor* x, const BatchInput& in);

}  // namespace ggmlpy
