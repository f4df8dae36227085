// A loaded model: weights bound to the (usually memory-mapped) file, tokenizer, KV cache and the
// per-architecture graph builder. The architecture comes from general.architecture (registry in
// src/arch). eval, reset, truncate, close, memory and set_n_threads take the Model's mutex, so calls
// from several threads are serialized (close waits for a running eval) and never free memory in use.
// A sequence of calls (reset, eval, eval...) is not atomic: callers sharing a Model track what the
// cache holds themselves (the Python Model does).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ggmlpy/dtype.h"
#include "ggmlpy/tokenizer.h"

namespace ggmlpy {

struct ModelParams {
    int n_ctx = 0;          // 0: the model's context length, capped at 4096
    int n_batch = 512;      // prompt tokens per forward pass
    int n_threads = 0;      // 0: physical cores
    bool use_mmap = true;   // false: read weights into anonymous memory
    bool use_mlock = false; // lock weight pages in RAM
    DType kv_type = DType::F16;  // KV cache element type (F16 or F32)
    int n_seq_max = 1;      // sequences the KV cache holds, each with n_ctx cells
    // Bytes the weights may hold in RAM. 0: what is available at load (MemAvailable, cgroup
    // limits) less the KV cache and buffers. Weights beyond it are streamed from the file on every
    // forward pass (src/io/weight_stream.h); weights that fit stay a plain mapping.
    uint64_t mem_budget = 0;
    // LoRA adapters (GGUF adapter files, src/adapters/lora.h) applied unmerged, with the user's
    // scale of each: (path, scale).
    std::vector<std::pair<std::string, float>> lora;
};

// Tokens for one sequence in an eval_batch call.
struct SeqTokens {
    int seq = 0;
    const int32_t* ids = nullptr;
    int64_t n = 0;
};

struct MemoryStats {
    size_t file_bytes = 0;     // size of the mapped model file
    size_t weight_bytes = 0;   // tensor data bytes
    size_t kv_bytes = 0;       // KV cache
    size_t scratch_bytes = 0;  // activations / compute buffers
    // The weight memory plan (weight_stream.h): budget, resident and streamed bytes (streamed =
    // read from the file on every forward pass), the read-ahead window, and what the I/O thread
    // has done so far.
    uint64_t mem_budget = 0;
    uint64_t resident_bytes = 0;
    uint64_t streamed_bytes = 0;
    uint64_t window_bytes = 0;
    bool resident_locked = false;
    uint64_t stream_prefetched = 0;  // bytes read ahead
    uint64_t stream_dropped = 0;     // bytes dropped after use
    uint64_t stream_passes = 0;      // forward passes streamed
    double stream_fetch_s = 0;       // I/O thread time spent reading ahead
    double stream_drop_s = 0;        // and dropping
};

class Model {
public:
    // Throws FileError (missing/unreadable), FormatError (bad GGUF, missing tensor, shape vs
    // metadata, unknown architecture or tokenizer), ValueError (bad params) or MemoryLimitError
    // (the KV cache and buffers for n_ctx would not fit in memory), naming what is wrong.
    static std::unique_ptr<Model> load(const std::string& path, const ModelParams& params);
    virtual ~Model() = default;

    virtual const std::string& arch() const = 0;   // "llama", "gptj"
    virtual int n_vocab() const = 0;
    virtual int n_ctx() const = 0;
    virtual int n_embd() const = 0;
    virtual int n_layer() const = 0;
    virtual int n_past() const = 0;                // tokens in the KV cache (sequence 0)
    virtual const Tokenizer& tokenizer() const = 0;
    virtual const std::map<std::string, std::string>& metadata() const = 0;  // scalar keys, as text
    virtual MemoryStats memory() const = 0;

    // Appends n tokens to sequence 0 at position n_past, evaluating them in chunks of n_batch. Writes logits:
    // all_logits ? n * n_vocab floats (row i = after token i) : n_vocab floats for the last token.
    // Throws ContextFullError if n_past + n > n_ctx, ValueError for an id outside the vocabulary.
    virtual void eval(const int32_t* ids, int64_t n, bool all_logits, float* logits) = 0;
    // As eval, but writes the final hidden states (after the output norm) of every token:
    // n * n_embd floats, row i = token i. The tokens stay in the cache as with eval.
    virtual void eval_embeddings(const int32_t* ids, int64_t n, float* out) = 0;
    // Appends each entry's tokens to its sequence (distinct sequences), all in shared forward
    // passes: the weights are read once per pass for every row. Writes the logits after each
    // entry's last token, n_vocab floats per entry in order. A sequence's logits have the same
    // bits as when its tokens are evaluated alone (eval on a one-sequence model): every op works
    // per row and attention per sequence. Throws like eval, naming the sequence.
    virtual void eval_batch(const std::vector<SeqTokens>& batch, float* logits) = 0;
    virtual int n_seq_max() const = 0;
    virtual int n_past_seq(int seq) const = 0;         // tokens cached for sequence seq
    virtual void truncate_seq(int seq, int n) = 0;     // as truncate, for sequence seq
    virtual void copy_seq(int src, int dst) = 0;       // dst's cache becomes a copy of src's
    // Sequence seq's cache as bytes: a header (magic "GGPYKV", version, n_layer, K/V row size,
    // cache type, n_past) then every layer's K and V for the n_past cells. set_kv_state puts such
    // bytes back (n_past included), after checking them against this model: ValueError naming
    // the mismatch, and nothing changes.
    virtual std::string kv_state(int seq) const = 0;
    virtual void set_kv_state(int seq, const std::string& state) = 0;
    virtual void reset() = 0;                      // empties the KV cache (n_past = 0)
    // Keeps the first n cached tokens (0 <= n <= n_past), dropping the rest: later tokens only
    // attend to positions < n_past, so the cache rows past n are simply overwritten.
    virtual void truncate(int n) = 0;
    virtual void set_n_threads(int n) = 0;
    virtual int n_threads() const = 0;

    // Frees the weights mapping, KV cache, buffers and threads now. The tokenizer and metadata stay
    // valid (references handed out keep working); eval() afterwards throws ValueError.
    virtual void close() = 0;
    virtual bool closed() const = 0;
    virtual bool mmapped() const = 0;          // weights are file-backed pages
    virtual bool mlocked() const = 0;          // use_mlock succeeded
    virtual std::string mlock_error() const = 0;  // why use_mlock failed ("" otherwise)
};

// Architectures Model::load knows ("llama", "gptj").
std::vector<std::string> supported_architectures();

}  // namespace ggmlpy
