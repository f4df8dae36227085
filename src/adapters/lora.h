// LoRA adapters applied unmerged at inference. For a targeted weight W [n_in, n_out] (ggml order,
// one row per output), the layer computes y = W x + sum_k s_k * B_k (A_k x) with A_k [n_in, r_k]
// and B_k [r_k, n_out]: two small matmuls per adapter, so the base weights stay the mapped file
// (any type) and an adapter can be swapped without touching them.
//
// Files use llama.cpp's GGUF adapter layout, so adapters move between the two projects:
//   general.type = "adapter", adapter.type = "lora", general.architecture = the base's,
//   adapter.lora.alpha (float; 0 or absent: no alpha scaling), and per target "<name>.lora_a"
//   [n_in, r] and "<name>.lora_b" [r, n_out], where <name> is the base tensor ("blk.3.attn_q.weight").
// s_k = user scale * alpha / r (the user scale alone when alpha is 0), as PEFT and llama.cpp do.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggmlpy/gguf.h"
#include "ggmlpy/tensor.h"

namespace ggmlpy {

struct LoraSpec {
    std::string path;
    float scale = 1.0f;  // the user's multiplier (llama.cpp's --lora-scaled)
};

// One adapter's pair for one weight.
struct LoraTerm {
    Tensor* a = nullptr;  // [n_in, r]
    Tensor* b = nullptr;  // [r, n_out]
    float scale = 1.0f;   // user scale * alpha / r
};

class LoraSet {
public:
    // Opens each adapter (mapped read-only) and binds its pairs to `targets` (base tensor name ->
    // the bound weight). Throws FileError / FormatError naming the adapter file and tensor: not an
    // adapter, another architecture, a target the base lacks, unpaired or misshapen A/B, a type
    // with no matmul kernel; ValueError for a scale that is not finite.
    void load(const std::vector<LoraSpec>& specs, const std::string& arch, const std::string& base_path,
              const std::map<std::string, Tensor*>& targets);
    // The adapters of weight w (nullptr when it has none).
    const std::vector<LoraTerm>* find(const Tensor* w) const;
    bool empty() const { return terms_.empty(); }

private:
    std::vector<std::unique_ptr<GGUFFile>> files_;
    Context ctx_{false};  // leaves over the adapter mappings
    std::unordered_map<const Tensor*, std::vector<LoraTerm>> terms_;
};

// w x, plus every adapter of w when lora has some: x [n_in, n_tokens] -> [n_out, n_tokens].
Tensor* lora_mul_mat(Context& ctx, Tensor* w, Tensor* x, const LoraSet* lora);

}  // namespace ggmlpy
