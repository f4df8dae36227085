// DecoderModel (arch.h): the Model every architecture shares. init() runs the architecture's
// hooks, builds the tokenizer and the KV cache; eval() splits tokens into chunks of n_batch,
// builds one graph per chunk (the architecture's build_graph) and computes it on the model's
// thread pool. Also WeightBinder (zero-copy binding with shape checks) and KVCache.
#include <algorithm>
#include <cstring>

#include "arch/arch.h"
#include "ggmlpy/cpu.h"
#include "ggmlpy/error.h"
#include "ggmlpy/memory_limit.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace ggmlpy {

namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}
}  // namespace

// ---- hyperparameter helpers ----------------------------------------------------------------------

int hparam_int(const GGUFFile& f, const std::string& key, int64_t lo, int64_t hi) {
    int64_t v = f.require_int(key);
    if (v < lo || v > hi)
        throw FormatError(f.path() + ": key '" + key + "' = " + std::to_string(v) + " is out of range [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return (int)v;
}

int hparam_int_or(const GGUFFile& f, const std::string& key, int def, int64_t lo, int64_t hi) {
    return f.has(key) ? hparam_int(f, key, lo, hi) : def;
}

float hparam_eps(const GGUFFile& f, const std::string& key) {
    const float eps = (float)f.get_float(key, 1e-5);
    if (!(eps > 0.0f) || eps > 1.0f)
        throw FormatError(f.path() + ": key '" + key + "' = " + std::to_string(eps) +
                          " is not a small positive number");
    return eps;
}

int hparam_head_dim(const GGUFFile& f, const std::string& a, int n_embd, int n_head) {
    if (n_embd % n_head != 0)
        throw FormatError(f.path() + ": key '" + a + "embedding_length' = " + std::to_string(n_embd) +
                          " is not a multiple of attention.head_count " + std::to_string(n_head));
    return n_embd / n_head;
}

void hparam_rope_norm(const GGUFFile& f, const std::string& a, HParams& hp) {
    hp.rope.mode = RopeMode::NORM;
    hp.rope.n_rot = hparam_int_or(f, a + "rope.dimension_count", hp.head_dim, 0, hp.head_dim);
    hp.rope.freq_base = (float)f.get_float(a + "rope.freq_base", 10000.0);
    if (!(hp.rope.freq_base > 0.0f))
        throw FormatError(f.path() + ": key '" + a + "rope.freq_base' must be positive");
}

// ---- WeightBinder ----------------------------------------------------------------------------------

Tensor* WeightBinder::bind(const GGUFTensorInfo& t, const std::vector<int64_t>& ne) {
    // shape check: dims beyond the expected rank must be 1
    bool ok = t.n_dims <= (int)ne.size() || ne.size() == 0;
    for (int d = 0; d < 4 && ok; ++d) {
        int64_t want = d < (int)ne.size() ? ne[d] : 1;
        if (t.ne[d] != want) ok = false;
    }
    if (!ok)
        throw FormatError(file_.path() + ": tensor '" + t.name + "' has shape " + t.shape_string() +
                          ", expected " + shape_str(ne) + " from the metadata");
    used_[t.name] = true;
    const bool vector = ne.size() == 1;
    if ((vector || t.name == "token_embd.weight") && !can_dequantize(t.type))
        throw FormatError(file_.path() + ": tensor '" + t.name + "' has type " + dtype_name(t.type) +
                          ", which cannot be converted to f32 for its role (" +
                          (vector ? "a norm or bias vector" : "the token embedding") + ")");
    if (vector && t.type != DType::F32) {
        // norms and biases: convert once to f32 (the norm/add ops take f32 operands)
        DecoderModel* model = owner_;
        std::vector<float>& buf = model->converted_.emplace_back((size_t)ne[0]);
        dequantize_row(t.type, t.data, buf.data(), ne[0]);
        model->converted_bytes_ += buf.size() * sizeof(float);
        Tensor* x = ctx_.new_tensor_external(DType::F32, ne, buf.data());
        x->set_name(t.name);
        return x;
    }
    if (!vector && kernels().type[(int)t.type].vec_dot == nullptr && t.name != "token_embd.weight")
        throw FormatError(file_.path() + ": tensor '" + t.name + "' has type " + dtype_name(t.type) +
                          ", which has no matmul kernel");
    Tensor* x = ctx_.new_tensor_external(t.type, ne, t.data);
    x->set_name(t.name);
    return x;
}

Tensor* WeightBinder::require(const std::string& name, const std::vector<int64_t>& ne) {
    return bind(file_.require_tensor(name), ne);
}

Tensor* WeightBinder::optional(const std::string& name, const std::vector<int64_t>& ne) {
    const GGUFTensorInfo* t = file_.find_tensor(name);
    return t ? bind(*t, ne) : nullptr;
}

std::vector<std::string> WeightBinder::unused() const {
    std::vector<std::string> out;
    for (const auto& t : file_.tensors())
        if (!used_.count(t.name)) out.push_back(t.name);
    return out;
}

// ---- KVCache ---------------------------------------------------------------------------------------

KVCache::KVCache(const HParams& hp, int n_ctx, int n_seq, DType type, Context& ctx)
    : n_ctx_(n_ctx), n_seq_(n_seq), type_(type), v_trans_(!dtype_traits(type).quantized) {
    const int64_t cells = (int64_t)n_ctx * n_seq;
    for (int il = 0; il < hp.n_layer; ++il) {
        Tensor* k = ctx.new_tensor_2d(type, hp.n_embd_kv(), cells);  // row per cell
        Tensor* v = v_trans_ ? ctx.new_tensor_2d(type, cells, hp.n_embd_kv())   // row per channel
                             : ctx.new_tensor_2d(type, hp.n_embd_kv(), cells);  // row per cell
        k->set_name("cache_k_l" + std::to_string(il));
        v->set_name("cache_v_l" + std::to_string(il));
        k_.push_back(k);
        v_.push_back(v);
        bytes_ += k->nbytes() + v->nbytes();
    }
}

// Calls f(offset, bytes) for each run of bytes that cells [first, first + n) take in t: one run
// when cells are rows, one per channel row when they are columns (V^T).
template <typename F>
static void for_cell_runs(const Tensor* t, bool cells_are_columns, int64_t first, int n, F f) {
    if (!cells_are_columns) {
        f((size_t)first * t->nb[1], (size_t)n * t->nb[1]);
        return;
    }
    const size_t esz = t->element_size();
    for (int64_t c = 0; c < t->ne[1]; ++c) f((size_t)c * t->nb[1] + (size_t)first * esz, (size_t)n * esz);
}

void KVCache::copy_cells(int src, int dst, int n) {
    if (src == dst || n <= 0) return;
    const int64_t shift = base(dst) - base(src);
    for (size_t il = 0; il < k_.size(); ++il)
        for (const Tensor* t : {k_[il], v_[il]}) {
            const bool cols = t == v_[il] && v_trans_;
            const size_t step = cols ? (size_t)shift * t->element_size() : (size_t)shift * t->nb[1];
            for_cell_runs(t, cols, base(src), n, [&](size_t off, size_t len) {
                std::memcpy((char*)t->data + off + step, (const char*)t->data + off, len);
            });
        }
}

size_t KVCache::cells_bytes(int n) const {
    size_t total = 0;
    for (size_t il = 0; il < k_.size(); ++il)
        for (const Tensor* t : {k_[il], v_[il]})
            for_cell_runs(t, t == v_[il] && v_trans_, 0, n, [&](size_t, size_t len) { total += len; });
    return total;
}

void KVCache::read_cells(int seq, int n, std::string& out) const {
    for (size_t il = 0; il < k_.size(); ++il)
        for (const Tensor* t : {k_[il], v_[il]})
            for_cell_runs(t, t == v_[il] && v_trans_, base(seq), n,
                          [&](size_t off, size_t len) { out.append((const char*)t->data + off, len); });
}

void KVCache::write_cells(int seq, int n, const char* in) {
    for (size_t il = 0; il < k_.size(); ++il)
        for (const Tensor* t : {k_[il], v_[il]})
            for_cell_runs(t, t == v_[il] && v_trans_, base(seq), n, [&](size_t off, size_t len) {
                std::memcpy((char*)t->data + off, in, len);
                in += len;
            });
}

// ---- DecoderModel ----------------------------------------------------------------------------------

DecoderModel::DecoderModel(std::unique_ptr<GGUFFile> file, const ModelParams& params, std::string arch)
    : file_(std::move(file)), params_(params), arch_(std::move(arch)) {}

DecoderModel::~DecoderModel() = default;

void DecoderModel::init() {
    const GGUFFile& f = *file_;
    read_hparams(f, hp_);
    if (hp_.n_head_kv <= 0 || hp_.n_head % hp_.n_head_kv != 0)
        throw FormatError(f.path() + ": head_count " + std::to_string(hp_.n_head) +
                          " is not a multiple of head_count_kv " + std::to_string(hp_.n_head_kv));
    if (hp_.rope.n_rot < 0 || hp_.rope.n_rot > hp_.head_dim || hp_.rope.n_rot % 2 != 0)
        throw FormatError(f.path() + ": key '" + arch_ + ".rope.dimension_count' = " +
                          std::to_string(hp_.rope.n_rot) + " must be even and at most the head size " +
                          std::to_string(hp_.head_dim));

    // vocabulary from tokenizer.ggml.* (tokenizer area; FormatError naming the file and key)
    tokenizer_ = std::make_unique<Tokenizer>(tokenizer_from_gguf(f));
    const int n_tokens_vocab = tokenizer_->n_vocab();
    if (hp_.n_vocab == 0) hp_.n_vocab = n_tokens_vocab;
    if (hp_.n_vocab != n_tokens_vocab)
        throw FormatError(f.path() + ": key '" + arch_ + ".vocab_size' = " + std::to_string(hp_.n_vocab) +
                          " but tokenizer.ggml.tokens has " + std::to_string(n_tokens_vocab) + " tokens");

    WeightBinder binder(f, weights_ctx_);
    binder.owner_ = this;
    bind_weights(binder, hp_, w_);
    std::vector<std::string> unused = binder.unused();
    if (!unused.empty()) {
        std::string s;
        for (size_t i = 0; i < unused.size() && i < 8; ++i) s += (i ? ", " : "") + unused[i];
        if (unused.size() > 8) s += ", ...";
        metadata_["ggmlpy.unused_tensors"] = s;
    }
    if (!params_.lora.empty()) load_lora();

    // context and KV cache
    if (params_.n_ctx < 0) throw ValueError("n_ctx must be >= 0, got " + std::to_string(params_.n_ctx));
    if (params_.n_batch < 1) throw ValueError("n_batch must be >= 1, got " + std::to_string(params_.n_batch));
    if (params_.n_threads < 0) throw ValueError("n_threads must be >= 0, got " + std::to_string(params_.n_threads));
    const DType kvt = params_.kv_type;
    if (kvt != DType::F16 && kvt != DType::F32 && kvt != DType::Q8_0 && kvt != DType::Q4_0)
        throw ValueError(std::string("kv_type must be f16, f32, q8_0 or q4_0, got ") + dtype_name(kvt));
    if (dtype_traits(kvt).quantized && hp_.head_dim % dtype_traits(kvt).block_size != 0)
        throw ValueError(std::string("kv_type ") + dtype_name(kvt) + " needs a head size that is a multiple of " +
                         std::to_string(dtype_traits(kvt).block_size) + "; " + f.path() + " has " +
                         std::to_string(hp_.head_dim));
    n_ctx_ = params_.n_ctx > 0 ? params_.n_ctx : std::min(hp_.n_ctx_train > 0 ? hp_.n_ctx_train : 4096, 4096);
    if (n_ctx_ > (1 << 20)) throw ValueError("n_ctx " + std::to_string(n_ctx_) + " is too large (max 1048576)");
    check_memory(planned_bytes(), "n_ctx " + std::to_string(n_ctx_) + " x " + std::to_string(params_.n_seq_max) +
                                      " sequence(s) (KV cache, compute buffers and logits for " +
                                      std::to_string(hp_.n_layer) + " layers)",
                 "load the model with a smaller n_ctx (or n_batch)");
    if (params_.n_seq_max < 1 || params_.n_seq_max > 256)
        throw ValueError("n_seq_max must be in [1, 256], got " + std::to_string(params_.n_seq_max));
    kv_ = std::make_unique<KVCache>(hp_, n_ctx_, params_.n_seq_max, params_.kv_type, kv_ctx_);
    seq_past_ = std::vector<std::atomic<int>>((size_t)params_.n_seq_max);
    for (auto& p : seq_past_) p = 0;

    n_threads_ = params_.n_threads > 0 ? params_.n_threads : physical_cores();
    pool_ = std::make_unique<ThreadPool>(n_threads_);

    for (const auto& kv : f.kv())
        if (!kv.second.is_array()) metadata_[kv.first] = kv.second.to_string();
    plan_memory();
}

std::map<std::string, Tensor*> DecoderModel::lora_targets() const {
    std::map<std::string, Tensor*> targets;
    for (const LayerWeights& l : w_.layers)
        for (Tensor* t : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down})
            if (t) targets[t->name] = t;
    if (w_.output && w_.output != w_.tok_embd) targets[w_.output->name] = w_.output;
    return targets;
}

void DecoderModel::load_lora() {
    const std::map<std::string, Tensor*> targets = lora_targets();
    std::vector<LoraSpec> specs;
    std::string names;
    for (const auto& e : params_.lora) {
        specs.push_back(LoraSpec{e.first, e.second});
        names += (names.empty() ? "" : ", ") + e.first + ":" + std::to_string(e.second);
    }
    lora_ = std::make_unique<LoraSet>();
    lora_->load(specs, arch_, file_->path(), targets);
    for (LayerWeights& l : w_.layers) l.lora = lora_.get();
    w_.lora = lora_.get();
    metadata_["ggmlpy.lora"] = names;
}

uint64_t DecoderModel::planned_bytes() const {
    // Every size here comes from the file or the arguments: saturating arithmetic, so an absurd
    // value gives UINT64_MAX (and a MemoryLimitError), never a wrapped small number.
    const uint64_t ctx = (uint64_t)n_ctx_;
    const uint64_t cells = mul_sat(ctx, (uint64_t)std::max(params_.n_seq_max, 1));
    const uint64_t cell_row = row_size(params_.kv_type, hp_.n_embd_kv());  // one cell's K (or V)
    const uint64_t kv = mul_sat(mul_sat(2 * (uint64_t)hp_.n_layer, cell_row), cells);
    // compute buffers for one chunk of n_batch tokens, as f32: the logits (n_vocab), the attention
    // scores of every head against the whole context, and the activations of one block
    const uint64_t nb = (uint64_t)std::min(params_.n_batch, n_ctx_);
    uint64_t row = add_sat((uint64_t)hp_.n_vocab, mul_sat((uint64_t)hp_.n_head, ctx));
    row = add_sat(row, add_sat(8 * (uint64_t)hp_.n_embd, 3 * (uint64_t)hp_.n_ff));
    if (params_.n_seq_max > 1)  // the two attention gather buffers
        row = add_sat(row, 2 * (uint64_t)hp_.n_head * (uint64_t)hp_.head_dim);
    return add_sat(kv, mul_sat(mul_sat(nb, row), sizeof(float)));
}

void DecoderModel::check_seq(const char* what, int seq) const {
    if (seq < 0 || seq >= (int)seq_past_.size())
        throw ValueError(std::string(what) + ": sequence " + std::to_string(seq) + " is outside [0, n_seq_max = " +
                         std::to_string(seq_past_.size()) + ")");
}

int DecoderModel::n_past_seq(int seq) const {
    check_seq("n_past_seq", seq);
    return seq_past_[(size_t)seq];
}

void DecoderModel::truncate_seq(int seq, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    check_seq("truncate", seq);
    const int past = seq_past_[(size_t)seq];
    if (n < 0 || n > past)
        throw ValueError("truncate: n = " + std::to_string(n) + " is outside [0, n_past = " + std::to_string(past) +
                         "]" + (seq ? " of sequence " + std::to_string(seq) : std::string()));
    seq_past_[(size_t)seq] = n;
}

void DecoderModel::copy_seq(int src, int dst) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw ValueError("copy_seq: the model is closed");
    check_seq("copy_seq", src);
    check_seq("copy_seq", dst);
    kv_->copy_cells(src, dst, seq_past_[(size_t)src]);
    seq_past_[(size_t)dst] = seq_past_[(size_t)src].load();
}

namespace {
// kv_state header: magic, then uint32 version, n_layer, bytes per K row, cache type id, n_past
constexpr char kKvMagic[8] = {'G', 'G', 'P', 'Y', 'K', 'V', '\0', '\0'};
constexpr uint32_t kKvVersion = 1;
constexpr size_t kKvHeader = sizeof(kKvMagic) + 5 * sizeof(uint32_t);
}  // namespace

std::string DecoderModel::kv_state(int seq) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw ValueError("kv_state: the model is closed");
    check_seq("kv_state", seq);
    const int n = seq_past_[(size_t)seq];
    const uint32_t head[5] = {kKvVersion, (uint32_t)hp_.n_layer, (uint32_t)kv_->k(0)->nb[1],
                              (uint32_t)kv_->type(), (uint32_t)n};
    std::string out(kKvMagic, sizeof(kKvMagic));
    out.append((const char*)head, sizeof(head));
    out.reserve(kKvHeader + kv_->cells_bytes(n));
    kv_->read_cells(seq, n, out);
    return out;
}

void DecoderModel::set_kv_state(int seq, const std::string& state) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw ValueError("set_kv_state: the model is closed");
    check_seq("set_kv_state", seq);
    if (state.size() < kKvHeader || std::memcmp(state.data(), kKvMagic, sizeof(kKvMagic)) != 0)
        throw ValueError("set_kv_state: not a KV cache state (no GGPYKV header)");
    uint32_t head[5];
    std::memcpy(head, state.data() + sizeof(kKvMagic), sizeof(head));
    const auto mismatch = [](const char* what, uint64_t got, uint64_t want) {
        return ValueError("set_kv_state: the state's " + std::string(what) + " is " + std::to_string(got) +
                          ", this model's " + std::to_string(want) + " (a state of another model or cache type)");
    };
    if (head[0] != kKvVersion) throw mismatch("format version", head[0], kKvVersion);
    if (head[1] != (uint32_t)hp_.n_layer) throw mismatch("layer count", head[1], hp_.n_layer);
    if (head[2] != (uint32_t)kv_->k(0)->nb[1]) throw mismatch("K row size in bytes", head[2], kv_->k(0)->nb[1]);
    if (head[3] != (uint32_t)kv_->type()) throw mismatch("cache type id", head[3], (uint32_t)kv_->type());
    const int n = (int)head[4];
    if (head[4] > (uint32_t)n_ctx_)
        throw ValueError("set_kv_state: the state holds " + std::to_string(head[4]) + " tokens, more than n_ctx = " +
                         std::to_string(n_ctx_));
    if (state.size() != kKvHeader + kv_->cells_bytes(n))
        throw ValueError("set_kv_state: the state is " + std::to_string(state.size()) + " bytes, expected " +
                         std::to_string(kKvHeader + kv_->cells_bytes(n)) + " for " + std::to_string(n) + " tokens");
    kv_->write_cells(seq, n, state.data() + kKvHeader);
    seq_past_[(size_t)seq] = n;
}

void DecoderModel::close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    stream_.reset();  // its I/O thread reads the mapping
    pool_.reset();
    buf_.release();
    graph_ctx_.clear();
    kv_.reset();
    kv_ctx_.clear();
    w_ = ModelWeights();
    weights_ctx_.clear();
    converted_.clear();
    converted_bytes_ = 0;
    file_.reset();
    for (auto& p : seq_past_) p = 0;
}

MemoryStats DecoderModel::memory() const {
    std::lock_guard<std::mutex> lock(mu_);
    MemoryStats m;
    if (closed_) return m;
    m.file_bytes = file_->file_size();
    m.weight_bytes = file_->tensor_bytes();
    m.kv_bytes = kv_ ? kv_->bytes() : 0;
    m.scratch_bytes = buf_.capacity() + converted_bytes_;
    m.mem_budget = plan_.budget;
    m.resident_bytes = plan_.resident_bytes;
    m.streamed_bytes = plan_.streamed_bytes;
    m.window_bytes = plan_.window_bytes;
    if (stream_) {
        m.resident_locked = stream_->resident_locked();
        m.stream_prefetched = stream_->bytes_prefetched();
        m.stream_dropped = stream_->bytes_dropped();
        m.stream_passes = stream_->passes();
        m.stream_fetch_s = stream_->fetch_seconds();
        m.stream_drop_s = stream_->drop_seconds();
    } else {
        m.resident_locked = file_->mlocked();
    }
    return m;
}

void DecoderModel::set_n_threads(int n) {
    if (n < 0) throw ValueError("n_threads must be >= 0, got " + std::to_string(n));
    std::lock_guard<std::mutex> lock(mu_);
    n_threads_ = n > 0 ? n : physical_cores();
}

void DecoderModel::eval(const int32_t* ids, int64_t n, bool all_logits, float* logits) {
    run_chunks(ids, n, all_logits, false, logits);
}

void DecoderModel::eval_embeddings(const int32_t* ids, int64_t n, float* out) {
    run_chunks(ids, n, true, true, out);
}

void DecoderModel::run_chunks(const int32_t* ids, int64_t n, bool all_rows, bool embeddings, float* out_rows) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw ValueError("eval: the model is closed");
    if (n <= 0) throw ValueError("eval: no tokens given");
    for (int64_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= hp_.n_vocab)
            throw ValueError("eval: token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(hp_.n_vocab) + ")");
    std::atomic<int>& past = seq_past_[0];
    if ((int64_t)past + n > n_ctx_)
        throw ContextFullError("context full: " + std::to_string(past) + " tokens in the cache + " +
                               std::to_string(n) + " new > n_ctx " + std::to_string(n_ctx_) +
                               " (reset() or load with a larger n_ctx)");

    const int n_batch = params_.n_batch;
    const int64_t row = embeddings ? hp_.n_embd : hp_.n_vocab;  // floats per output row
    for (int64_t start = 0; start < n; start += n_batch) {
        const int nt = (int)std::min<int64_t>(n_batch, n - start);
        const bool last_chunk = start + nt == n;
        graph_ctx_.clear();
        BatchInput in;
        in.n_tokens = nt;
        in.seqs = {SeqSpan{0, 0, nt, past}};
        // rows wanted from this chunk: all, the last one, or none (prefill only)
        in.n_outputs = all_rows ? nt : (last_chunk ? 1 : 0);
        in.embeddings = embeddings;
        in.ids = graph_ctx_.new_tensor_external(DType::I32, {nt}, ids + start);
        pos_.resize((size_t)nt);
        for (int i = 0; i < nt; ++i) pos_[(size_t)i] = past + i;
        run_graph(in, all_rows ? out_rows + start * row : out_rows, row);
        past += nt;
    }
    graph_ctx_.clear();
}

void DecoderModel::run_graph(BatchInput& in, float* dst, int64_t row) {
    const int nt = in.n_tokens;
    in.pos = graph_ctx_.new_tensor_external(DType::I32, {nt}, pos_.data());
    if (in.seqs.size() > 1) {
        const size_t need = (size_t)nt * hp_.n_head * hp_.head_dim;
        for (auto& b : attn_out_) {
            if (b.size() < need) b.resize(need);
        }
        in.attn_out[0] = attn_out_[0].data();
        in.attn_out[1] = attn_out_[1].data();
    }
    Graph g;
    Tensor* out = build_graph(graph_ctx_, g, in);  // [row, n_outputs] or nullptr
    if (out) g.build_forward(out);
    compute(g, *pool_, n_threads_, &buf_, stream_.get());
    for (int r = 0; r < in.n_outputs; ++r)
        std::memcpy(dst + (size_t)r * row, (const char*)out->data + r * out->nb[1], (size_t)row * sizeof(float));
}

void DecoderModel::eval_batch(const std::vector<SeqTokens>& batch, float* logits) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw ValueError("eval_batch: the model is closed");
    if (batch.empty()) throw ValueError("eval_batch: no sequences given");
    std::vector<char> seen(seq_past_.size(), 0);
    for (const SeqTokens& e : batch) {
        check_seq("eval_batch", e.seq);
        const std::string who = "eval_batch: sequence " + std::to_string(e.seq);
        if (seen[(size_t)e.seq]++) throw ValueError(who + " appears more than once");
        if (e.n <= 0) throw ValueError(who + ": no tokens given");
        for (int64_t i = 0; i < e.n; ++i)
            if (e.ids[i] < 0 || e.ids[i] >= hp_.n_vocab)
                throw ValueError(who + ": token id " + std::to_string(e.ids[i]) + " at index " + std::to_string(i) +
                                 " is outside the vocabulary [0, " + std::to_string(hp_.n_vocab) + ")");
        const int past = seq_past_[(size_t)e.seq];
        if ((int64_t)past + e.n > n_ctx_)
            throw ContextFullError(who + ": context full: " + std::to_string(past) + " tokens in the cache + " +
                                   std::to_string(e.n) + " new > n_ctx " + std::to_string(n_ctx_));
    }
    // Chunks of at most n_batch rows, filled with the entries in order; an entry longer than the
    // room left continues in the next chunk. The row after an entry's last token is its output.
    const int n_batch = params_.n_batch;
    size_t e = 0;
    int64_t done = 0;  // tokens of batch[e] already in earlier chunks
    std::vector<int32_t> ids;
    std::vector<int> out_entry;  // entry of each output row of the chunk
    while (e < batch.size()) {
        graph_ctx_.clear();
        BatchInput in;
        ids.clear();
        pos_.clear();
        out_rows_.clear();
        out_entry.clear();
        while (e < batch.size() && (int)ids.size() < n_batch) {
            const SeqTokens& t = batch[e];
            const int take = (int)std::min<int64_t>(t.n - done, n_batch - (int)ids.size());
            const int past = seq_past_[(size_t)t.seq];
            in.seqs.push_back(SeqSpan{t.seq, (int)ids.size(), take, past});
            for (int i = 0; i < take; ++i) {
                ids.push_back(t.ids[done + i]);
                pos_.push_back(past + i);
            }
            done += take;
            if (done == t.n) {
                out_rows_.push_back((int32_t)ids.size() - 1);
                out_entry.push_back((int)e);
                ++e;
                done = 0;
            }
        }
        in.n_tokens = (int)ids.size();
        in.ids = graph_ctx_.new_tensor_external(DType::I32, {in.n_tokens}, ids.data());
        in.n_outputs = (int)out_rows_.size();
        // out_rows only when it is not "the last row" or "every row" (the old fast paths)
        if (in.n_outputs > 0 && in.n_outputs < in.n_tokens && !(in.n_outputs == 1 && out_rows_[0] == in.n_tokens - 1))
            in.out_rows = graph_ctx_.new_tensor_external(DType::I32, {in.n_outputs}, out_rows_.data());
        rows_.resize((size_t)in.n_outputs * hp_.n_vocab);
        run_graph(in, rows_.data(), hp_.n_vocab);
        for (const SeqSpan& sp : in.seqs) seq_past_[(size_t)sp.seq] += sp.n;
        for (int r = 0; r < in.n_outputs; ++r)
            std::memcpy(logits + (size_t)out_entry[(size_t)r] * hp_.n_vocab, rows_.data() + (size_t)r * hp_.n_vocab,
                        (size_t)hp_.n_vocab * sizeof(float));
    }
    graph_ctx_.clear();
}

}  // namespace ggmlpy
