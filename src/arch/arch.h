// Shared machinery of every architecture: hyperparameters, weight binding by GGUF name with
// shape checks, the KV cache, and DecoderModel, the Model implementation that evaluates tokens in
// chunks of n_batch by building one graph per chunk. An architecture file (llama_arch.cpp,
// gptj_arch.cpp) supplies three hooks: read hyperparameters, bind its tensors, build the graph
// from the shared blocks (blocks.h). Variants (norm type, parallel residual, rope mode and dims,
// biases) are data in HParams / LayerWeights, not copies of code.
#pragma once
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ggmlpy/gguf.h"
#include "ggmlpy/graph.h"
#include "ggmlpy/model.h"
#include "ggmlpy/ops.h"
#include "ggmlpy/tensor.h"
#include "ggmlpy/threadpool.h"
#include "ggmlpy/tokenizer.h"
#include "adapters/lora.h"
#include "io/weight_stream.h"

namespace ggmlpy {

struct HParams {
    int n_vocab = 0;
    int n_ctx_train = 0;
    int n_embd = 0;
    int n_layer = 0;
    int n_ff = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;       // n_embd / n_head
    float norm_eps = 1e-5f; // RMS or LayerNorm epsilon
    RopeParams rope;        // n_rot, mode, base, scaling
    int n_embd_kv() const { return head_dim * n_head_kv; }
};

// Weights of one block. Tensors a variant lacks stay nullptr (no biases in Llama, no ffn_gate or
// ffn_norm in GPT-J). Matrices are [n_in, n_out] in ggml order (row = one output's weights).
struct LayerWeights {
    Tensor* attn_norm = nullptr;   // [n_embd]
    Tensor* attn_norm_b = nullptr; // [n_embd]
    Tensor* wq = nullptr;          // [n_embd, n_head * head_dim]
    Tensor* wk = nullptr;          // [n_embd, n_head_kv * head_dim]
    Tensor* wv = nullptr;          // [n_embd, n_head_kv * head_dim]
    Tensor* wo = nullptr;          // [n_head * head_dim, n_embd]
    Tensor* bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    Tensor* ffn_norm = nullptr;    // [n_embd]
    Tensor* ffn_norm_b = nullptr;
    Tensor* ffn_gate = nullptr;    // [n_embd, n_ff]
    Tensor* ffn_up = nullptr;      // [n_embd, n_ff]
    Tensor* ffn_down = nullptr;    // [n_ff, n_embd]
    Tensor* ffn_up_b = nullptr;    // [n_ff]
    Tensor* ffn_down_b = nullptr;  // [n_embd]
    const LoraSet* lora = nullptr; // the model's LoRA adapters (any of these matrices may have some)
};

struct ModelWeights {
    Tensor* tok_embd = nullptr;    // [n_embd, n_vocab]
    Tensor* output_norm = nullptr; // [n_embd]
    Tensor* output_norm_b = nullptr;
    Tensor* output = nullptr;      // [n_embd, n_vocab]; tok_embd when tied
    Tensor* output_b = nullptr;    // [n_vocab]
    Tensor* rope_freqs = nullptr;  // [n_rot / 2] (Llama 3 scaling factors), optional
    std::vector<LayerWeights> layers;
    const LoraSet* lora = nullptr; // LoRA adapters (output may have some)
};

// Binds GGUF tensors to graph leaves over the file's memory (zero copy). Small 1-D tensors
// (norms, biases) that are not f32 are converted once into owned f32 memory, since the norm and
// add ops take f32 operands. Every tensor is checked against the shape the metadata implies.
class DecoderModel;
class WeightBinder {
public:
    WeightBinder(const GGUFFile& file, Context& ctx) : file_(file), ctx_(ctx) {}
    DecoderModel* owner_ = nullptr;  // holds the converted f32 copies
    // Throws FormatError "<file>: tensor 'name' not found" / "... has shape [a, b], expected [c, d]".
    Tensor* require(const std::string& name, const std::vector<int64_t>& ne);
    // nullptr when absent; shape-checked when present.
    Tensor* optional(const std::string& name, const std::vector<int64_t>& ne);
    // Tensors of the file that no hook bound (reported in metadata, not an error).
    std::vector<std::string> unused() const;

private:
    Tensor* bind(const GGUFTensorInfo& t, const std::vector<int64_t>& ne);
    const GGUFFile& file_;
    Context& ctx_;
    std::map<std::string, bool> used_;
};

// K and V of every layer for n_seq sequences of n_ctx positions each; sequence s owns the cells
// [s * n_ctx, (s + 1) * n_ctx). K: per layer [n_embd_kv, n_seq * n_ctx], one row per cell. A float
// V (f16, f32) is stored transposed, per layer [n_seq * n_ctx, n_embd_kv] (one row per channel), so
// the attention product softmax(QK) x V reads contiguous rows of V^T without a copy. A quantized V
// (q8_0, q4_0) has one row per cell like K, since a block must hold one cell's channels (a new
// cell could not be added to a channel's block without requantizing it); flash_attn reads it.
class KVCache {
public:
    KVCache(const HParams& hp, int n_ctx, int n_seq, DType type, Context& ctx);
    int n_ctx() const { return n_ctx_; }    // cells per sequence
    int n_seq() const { return n_seq_; }
    int64_t base(int seq) const { return (int64_t)seq * n_ctx_; }  // first cell of sequence seq
    // Copies cells [0, n) of sequence src to sequence dst (a forked prefix).
    void copy_cells(int src, int dst, int n);
    // Cells [0, n) of sequence seq, every layer's K then V, appended to out / read from in
    // (cells_bytes(n) bytes).
    size_t cells_bytes(int n) const;
    void read_cells(int seq, int n, std::string& out) const;
    void write_cells(int seq, int n, const char* in);
    DType type() const { return type_; }
    bool v_trans() const { return v_trans_; }  // V stored as V^T (row per channel)
    size_t bytes() const { return bytes_; }
    Tensor* k(int il) const { return k_[il]; }
    Tensor* v(int il) const { return v_[il]; }

private:
    int n_ctx_;
    int n_seq_;
    DType type_;
    bool v_trans_;
    size_t bytes_ = 0;
    std::vector<Tensor*> k_, v_;
};

// One sequence's tokens in a chunk: rows [row0, row0 + n) at positions n_past .. n_past + n - 1
// of sequence seq. A chunk's spans are in row order and name distinct sequences.
struct SeqSpan {
    int seq = 0;
    int row0 = 0;
    int n = 0;
    int n_past = 0;
};

// Per-chunk inputs the graph builder gets.
struct BatchInput {
    Tensor* ids = nullptr;  // I32 [n_tokens]
    Tensor* pos = nullptr;  // I32 [n_tokens], each row's position in its sequence
    int n_tokens = 0;
    std::vector<SeqSpan> seqs;  // one span for a single-sequence chunk
    int n_outputs = 0;      // rows wanted: n_tokens (all), 1 (the last token), 0 (none), or out_rows'
    Tensor* out_rows = nullptr;  // I32 [n_outputs]: the rows wanted when several sequences share a chunk
    bool embeddings = false;  // rows are the final hidden states [n_embd] (after the output norm), not logits
    // Several sequences: f32 [n_head * head_dim, n_tokens] buffers the per-sequence attention
    // outputs are gathered in, alternating by layer (a layer's gather never overwrites what the
    // previous layer's output projection still reads).
    float* attn_out[2] = {nullptr, nullptr};
};

class DecoderModel : public Model {
public:
    DecoderModel(std::unique_ptr<GGUFFile> file, const ModelParams& params, std::string arch);
    ~DecoderModel() override;

    const std::string& arch() const override { return arch_; }
    int n_vocab() const override { return hp_.n_vocab; }
    int n_ctx() const override { return n_ctx_; }
    int n_embd() const override { return hp_.n_embd; }
    int n_layer() const override { return hp_.n_layer; }
    int n_past() const override { return seq_past_.empty() ? 0 : seq_past_[0].load(); }
    const Tokenizer& tokenizer() const override { return *tokenizer_; }
    const std::map<std::string, std::string>& metadata() const override { return metadata_; }
    MemoryStats memory() const override;
    void eval(const int32_t* ids, int64_t n, bool all_logits, float* logits) override;
    void eval_embeddings(const int32_t* ids, int64_t n, float* out) override;
    void eval_batch(const std::vector<SeqTokens>& batch, float* logits) override;
    void reset() override { truncate(0); }
    void truncate(int n) override { truncate_seq(0, n); }
    int n_seq_max() const override { return kv_ ? kv_->n_seq() : params_.n_seq_max; }
    int n_past_seq(int seq) const override;
    void truncate_seq(int seq, int n) override;
    void copy_seq(int src, int dst) override;
    std::string kv_state(int seq) const override;
    void set_kv_state(int seq, const std::string& state) override;
    void set_n_threads(int n) override;
    int n_threads() const override { return n_threads_; }
    void close() override;
    bool closed() const override { return closed_; }
    bool mmapped() const override {
        std::lock_guard<std::mutex> lock(mu_);
        return file_ && file_->mmapped();
    }
    bool mlocked() const override {
        std::lock_guard<std::mutex> lock(mu_);
        return file_ && file_->mlocked();
    }
    std::string mlock_error() const override { return mlock_error_; }

    const GGUFFile& file() const { return *file_; }
    const HParams& hparams() const { return hp_; }
    const ModelWeights& weights() const { return w_; }
    // The weights a LoRA adapter may target, by GGUF name: every layer matrix, and output.weight
    // when it is its own tensor (not the tied embedding).
    std::map<std::string, Tensor*> lora_targets() const;

protected:
    // Hooks, called by init() in this order.
    virtual void read_hparams(const GGUFFile& f, HParams& hp) = 0;
    virtual void bind_weights(WeightBinder& b, const HParams& hp, ModelWeights& w) = 0;
    // Returns f32 logits [n_vocab, n_outputs] (the last n_outputs tokens), or with in.embeddings the
    // normed final hidden states [n_embd, n_outputs]; nullptr when n_outputs is 0 (the graph then
    // only has to fill the KV cache).
    virtual Tensor* build_graph(Context& ctx, Graph& g, const BatchInput& in) = 0;

public:
    // Runs the hooks, builds the tokenizer and the KV cache. Called by the registry right after
    // construction (hooks are virtual, so not from the constructor).
    void init();
    // Bytes init() allocates for n_ctx_ (KV cache) and eval() at most for one chunk (compute
    // buffers, logits), checked against the memory budget before anything is allocated.
    uint64_t planned_bytes() const;

private:
    // eval and eval_embeddings: appends n tokens, writing `row` floats per output row to out.
    void run_chunks(const int32_t* ids, int64_t n, bool all_rows, bool embeddings, float* out);
    // One forward pass over in (ids, pos, spans set); copies the wanted rows to dst.
    void run_graph(BatchInput& in, float* dst, int64_t row);
    void check_seq(const char* what, int seq) const;
    // Opens params_.lora's adapters and hands them to every layer (init, after bind_weights).
    void load_lora();
    // The weight memory plan (memory_plan.cpp): every mapped weight in the order a forward pass
    // reads it, split by plan_weights for the budget; starts the WeightStream when some stream.
    void plan_memory();

protected:
    std::unique_ptr<GGUFFile> file_;
    ModelParams params_;
    std::string arch_;
    HParams hp_;
    ModelWeights w_;
    Context weights_ctx_{false};  // leaves over the mapping (no data owned except converted 1-D)
    Context kv_ctx_{true};        // the KV cache (owned, zero-filled)
    std::unique_ptr<KVCache> kv_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::map<std::string, std::string> metadata_;
    std::unique_ptr<ThreadPool> pool_;
    WeightPlan plan_;                       // plan_memory()
    std::unique_ptr<WeightStream> stream_;  // only when some weights stream
    std::unique_ptr<LoraSet> lora_;         // only when params_.lora names adapters
    ComputeBuffer buf_;
    Context graph_ctx_{false};    // per chunk graph nodes, cleared each chunk
    std::vector<int32_t> pos_;
    int n_ctx_ = 0;
    // tokens cached per sequence, and closed_: atomics so the property getters may read them
    // without the mutex
    std::vector<std::atomic<int>> seq_past_;
    std::vector<float> attn_out_[2];  // BatchInput::attn_out
    std::vector<int32_t> out_rows_;
    std::vector<float> rows_;  // eval_batch: the output rows of one chunk
    std::atomic<bool> closed_{false};
    // Serializes eval / truncate / close / memory: eval releases the GIL, and close (or another
    // eval) from a second thread must not free or rebuild the graph, buffers or cache under it.
    mutable std::mutex mu_;
    std::string mlock_error_;
    std::atomic<int> n_threads_{1};
    std::deque<std::vector<float>> converted_;  // 1-D weights converted to f32
    size_t converted_bytes_ = 0;
    friend class WeightBinder;
};

// Registry: architecture name -> factory. Model::load dispatches on general.architecture.
using ArchFactory = std::function<std::unique_ptr<DecoderModel>(std::unique_ptr<GGUFFile>, const ModelParams&)>;
std::unique_ptr<DecoderModel> make_llama_model(std::unique_ptr<GGUFFile> f, const ModelParams& p);
std::unique_ptr<DecoderModel> make_gptj_model(std::unique_ptr<GGUFFile> f, const ModelParams& p);

// Metadata helpers shared by the hooks: "<arch>.<key>" lookups with range checks.
int hparam_int(const GGUFFile& f, const std::string& key, int64_t lo, int64_t hi);
int hparam_int_or(const GGUFFile& f, const std::string& key, int def, int64_t lo, int64_t hi);
// A norm epsilon in (0, 1] (default 1e-5).
float hparam_eps(const GGUFFile& f, const std::string& key);
// head_dim = n_embd / n_head, which must divide evenly (a = "<arch>.").
int hparam_head_dim(const GGUFFile& f, const std::string& a, int n_embd, int n_head);
// Interleaved-pair rope over the first rope.dimension_count dims (default: all), rope.freq_base.
void hparam_rope_norm(const GGUFFile& f, const std::string& a, HParams& hp);

}  // namespace ggmlpy
