// GPT-J (general.architecture = "gptj"): one LayerNorm (with bias) per block feeding attention
// and the MLP in parallel (x + attn(ln(x)) + mlp(ln(x))), rope on the first n_rot dims of each
// head in interleaved-pair form, GELU (tanh) MLP with biases, final LayerNorm with bias, output
// projection with bias. Q/K/V/out projections have no bias. Tensor names as gguf-py's
// MODEL_TENSORS[GPTJ].
#include "arch/arch.h"
#include "arch/blocks.h"
#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {

class GptjModel final : public DecoderModel {
public:
    GptjModel(std::unique_ptr<GGUFFile> f, const ModelParams& p) : DecoderModel(std::move(f), p, "gptj") {}

protected:
    void read_hparams(const GGUFFile& f, HParams& hp) override {
        const std::string a = "gptj.";
        const int64_t big = 1 << 24;
        hp.n_ctx_train = hparam_int_or(f, a + "context_length", 2048, 1, (1ll << 31) - 1);
        hp.n_embd = hparam_int(f, a + "embedding_length", 1, big);
        hp.n_layer = hparam_int(f, a + "block_count", 1, 4096);
        hp.n_ff = hparam_int_or(f, a + "feed_forward_length", 4 * hp.n_embd, 1, big);
        hp.n_head = hparam_int(f, a + "attention.head_count", 1, 4096);
        hp.n_head_kv = hp.n_head;
        hp.head_dim = hparam_head_dim(f, a, hp.n_embd, hp.n_head);
        hp.n_vocab = hparam_int_or(f, a + "vocab_size", 0, 1, (1ll << 31) - 1);
        hp.norm_eps = hparam_eps(f, a + "attention.layer_norm_epsilon");
        hparam_rope_norm(f, a, hp);
    }

    void bind_weights(WeightBinder& b, const HParams& hp, ModelWeights& w) override {
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
        w.tok_embd = b.require("token_embd.weight", {E, V});
        w.output_norm = b.require("output_norm.weight", {E});
        w.output_norm_b = b.require("output_norm.bias", {E});
        w.output = b.optional("output.weight", {E, V});
        if (!w.output) w.output = w.tok_embd;
        w.output_b = b.optional("output.bias", {V});
        w.layers.resize((size_t)hp.n_layer);
        for (int il = 0; il < hp.n_layer; ++il) {
            LayerWeights& l = w.layers[(size_t)il];
            const std::string p = "blk." + std::to_string(il) + ".";
            l.attn_norm = b.require(p + "attn_norm.weight", {E});
            l.attn_norm_b = b.require(p + "attn_norm.bias", {E});
            l.wq = b.require(p + "attn_q.weight", {E, E});
            l.wk = b.require(p + "attn_k.weight", {E, E});
            l.wv = b.require(p + "attn_v.weight", {E, E});
            l.wo = b.require(p + "attn_output.weight", {E, E});
            l.ffn_up = b.require(p + "ffn_up.weight", {E, F});
            l.ffn_up_b = b.require(p + "ffn_up.bias", {F});
            l.ffn_down = b.require(p + "ffn_down.weight", {F, E});
            l.ffn_down_b = b.require(p + "ffn_down.bias", {E});
        }
    }

    Tensor* build_graph(Context& ctx, Graph& g, const BatchInput& in) override {
        const HParams& hp = hp_;
        Tensor* x = get_rows(ctx, w_.tok_embd, in.ids);  // [n_embd, n]
        for (int il = 0; il < hp.n_layer; ++il) {
            const LayerWeights& l = w_.layers[(size_t)il];
            const bool last = il == hp.n_layer - 1;
            Tensor* cur = block_norm(ctx, x, NormKind::LAYER, hp.norm_eps, l.attn_norm, l.attn_norm_b);
            Tensor* att = block_attention(ctx, g, hp, l, *kv_, il, cur, in, nullptr);
            if (last && in.n_outputs == 0) return nullptr;
            if (last) {
                att = block_output_rows(ctx, att, in);
                cur = block_output_rows(ctx, cur, in);
                x = block_output_rows(ctx, x, in);
            }
            // parallel residual: both branches read the same normed input
            Tensor* att_out = block_linear(ctx, l.wo, l.bo, att, l.lora);
            Tensor* ffn_out = block_ffn_gelu(ctx, l, cur);
            x = add(ctx, add(ctx, x, att_out), ffn_out);
        }
        x = block_norm(ctx, x, NormKind::LAYER, hp.norm_eps, w_.output_norm, w_.output_norm_b);
        if (in.embeddings) return x;  // [n_embd, n_outputs]
        return block_linear(ctx, w_.output, w_.output_b, x, w_.lora);  // [n_vocab, n_outputs]
    }
};

}  // namespace

std::unique_ptr<DecoderModel> make_gptj_model(std::unique_ptr<GGUFFile> f, const ModelParams& p) {
    return std::make_unique<GptjModel>(std::move(f), p);
}

}  // namespace ggmlpy
