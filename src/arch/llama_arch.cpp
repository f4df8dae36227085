// Llama family (general.architecture = "llama": Llama 2/3, TinyLlama, SmolLM2, Mistral-style GQA).
// Pre-norm RMSNorm blocks, rope on Q/K, SwiGLU MLP, tied or separate output. GGUF llama files
// store Q/K rows permuted for the interleaved-pair rope (llama.cpp's converter does this to HF
// weights), so rope runs in NORM (interleaved) mode, not NeoX.
#include "arch/arch.h"
#include "arch/blocks.h"
#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {

class LlamaModel final : public DecoderModel {
public:
    LlamaModel(std::unique_ptr<GGUFFile> f, const ModelParams& p) : DecoderModel(std::move(f), p, "llama") {}

protected:
    void read_hparams(const GGUFFile& f, HParams& hp) override {
        const std::string a = "llama.";
        const int64_t big = 1 << 24;
        hp.n_ctx_train = hparam_int_or(f, a + "context_length", 4096, 1, (1ll << 31) - 1);
        hp.n_embd = hparam_int(f, a + "embedding_length", 1, big);
        hp.n_layer = hparam_int(f, a + "block_count", 1, 4096);
        hp.n_ff = hparam_int(f, a + "feed_forward_length", 1, big);
        hp.n_head = hparam_int(f, a + "attention.head_count", 1, 4096);
        hp.n_head_kv = hparam_int_or(f, a + "attention.head_count_kv", hp.n_head, 1, hp.n_head);
        if (f.has(a + "attention.key_length")) {
            hp.head_dim = hparam_int(f, a + "attention.key_length", 1, big);
            int vl = hparam_int_or(f, a + "attention.value_length", hp.head_dim, 1, big);
            if (vl != hp.head_dim)
                throw FormatError(f.path() + ": key '" + a + "attention.value_length' = " + std::to_string(vl) +
                                  " differs from key_length " + std::to_string(hp.head_dim) + " (unsupported)");
        } else {
            hp.head_dim = hparam_head_dim(f, a, hp.n_embd, hp.n_head);
        }
        hp.n_vocab = hparam_int_or(f, a + "vocab_size", 0, 1, (1ll << 31) - 1);
        hp.norm_eps = hparam_eps(f, a + "attention.layer_norm_rms_epsilon");
        hparam_rope_norm(f, a, hp);
        std::string scaling = f.get_string(a + "rope.scaling.type", "none");
        double factor = f.get_float(a + "rope.scaling.factor", 0.0);
        if (scaling == "none" && f.has(a + "rope.scale_linear")) {  // older files
            scaling = "linear";
            factor = f.require_float(a + "rope.scale_linear");
        }
        if (scaling == "linear") {
            if (factor != 0.0) {
                if (!(factor > 0.0))
                    throw FormatError(f.path() + ": key '" + a + "rope.scaling.factor' must be positive");
                hp.rope.freq_scale = (float)(1.0 / factor);
            }
        } else if (scaling != "none") {
            throw FormatError(f.path() + ": key '" + a + "rope.scaling.type' = '" + scaling +
                              "' is not supported (supported: none, linear; llama3 via rope_freqs)");
        }
    }

    void bind_weights(WeightBinder& b, const HParams& hp, ModelWeights& w) override {
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
        const int64_t Q = (int64_t)hp.n_head * hp.head_dim, KV = hp.n_embd_kv();
        w.tok_embd = b.require("token_embd.weight", {E, V});
        w.output_norm = b.require("output_norm.weight", {E});
        w.output = b.optional("output.weight", {E, V});
        if (!w.output) w.output = w.tok_embd;  // tied embeddings
        if (hp.rope.n_rot > 0) w.rope_freqs = b.optional("rope_freqs.weight", {hp.rope.n_rot / 2});
        w.layers.resize((size_t)hp.n_layer);
        for (int il = 0; il < hp.n_layer; ++il) {
            LayerWeights& l = w.layers[(size_t)il];
            const std::string p = "blk." + std::to_string(il) + ".";
            l.attn_norm = b.require(p + "attn_norm.weight", {E});
            l.wq = b.require(p + "attn_q.weight", {E, Q});
            l.wk = b.require(p + "attn_k.weight", {E, KV});
            l.wv = b.require(p + "attn_v.weight", {E, KV});
            l.wo = b.require(p + "attn_output.weight", {Q, E});
            // optional biases (Llama-compatible variants that keep them)
            l.bq = b.optional(p + "attn_q.bias", {Q});
            l.bk = b.optional(p + "attn_k.bias", {KV});
            l.bv = b.optional(p + "attn_v.bias", {KV});
            l.bo = b.optional(p + "attn_output.bias", {E});
            l.ffn_norm = b.require(p + "ffn_norm.weight", {E});
            l.ffn_gate = b.require(p + "ffn_gate.weight", {E, F});
            l.ffn_up = b.require(p + "ffn_up.weight", {E, F});
            l.ffn_down = b.require(p + "ffn_down.weight", {F, E});
        }
    }

    Tensor* build_graph(Context& ctx, Graph& g, const BatchInput& in) override {
        const HParams& hp = hp_;
        Tensor* x = get_rows(ctx, w_.tok_embd, in.ids);  // [n_embd, n]
        for (int il = 0; il < hp.n_layer; ++il) {
            const LayerWeights& l = w_.layers[(size_t)il];
            const bool last = il == hp.n_layer - 1;
            Tensor* cur = block_norm(ctx, x, NormKind::RMS, hp.norm_eps, l.attn_norm, nullptr);
            Tensor* att = block_attention(ctx, g, hp, l, *kv_, il, cur, in, w_.rope_freqs);
            if (last && in.n_outputs == 0) return nullptr;  // prefill chunk: the cache is all we need
            if (last) {
                att = block_output_rows(ctx, att, in);
                x = block_output_rows(ctx, x, in);
            }
            x = add(ctx, x, block_linear(ctx, l.wo, l.bo, att, l.lora));
            cur = block_norm(ctx, x, NormKind::RMS, hp.norm_eps, l.ffn_norm, nullptr);
            x = add(ctx, x, block_ffn_swiglu(ctx, l, cur));
        }
        x = block_norm(ctx, x, NormKind::RMS, hp.norm_eps, w_.output_norm, nullptr);
        if (in.embeddings) return x;        // [n_embd, n_outputs]
        return lora_mul_mat(ctx, w_.output, x, w_.lora);  // [n_vocab, n_outputs]
    }
};

}  // namespace

std::unique_ptr<DecoderModel> make_llama_model(std::unique_ptr<GGUFFile> f, const ModelParams& p) {
    return std::make_unique<LlamaModel>(std::move(f), p);
}

}  // namespace ggmlpy
