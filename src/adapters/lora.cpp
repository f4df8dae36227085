// LoraSet (lora.h): adapter files checked against the base model and bound to its weights.
#include "adapters/lora.h"

#include <cmath>

#include "ggmlpy/error.h"
#include "ggmlpy/ops.h"
#include "kernels/kernels.h"

namespace ggmlpy {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape2(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

}  // namespace

void LoraSet::load(const std::vector<LoraSpec>& specs, const std::string& arch, const std::string& base_path,
                   const std::map<std::string, Tensor*>& targets) {
    for (const LoraSpec& spec : specs) {
        if (!std::isfinite(spec.scale))
            throw ValueError("lora scale for " + spec.path + " must be a finite number");
        std::unique_ptr<GGUFFile> f = GGUFFile::open(spec.path);
        const std::string& p = f->path();
        const std::string type = f->get_string("general.type", "");
        if (type != "adapter")
            throw FormatError(p + ": not a LoRA adapter (key general.type is " +
                              (type.empty() ? std::string("absent") : "'" + type + "'") + ", expected 'adapter')");
        const std::string atype = f->get_string("adapter.type", "");
        if (atype != "lora")
            throw FormatError(p + ": key adapter.type is '" + atype + "', expected 'lora'");
        const std::string a_arch = f->require_string("general.architecture");
        if (a_arch != arch)
            throw FormatError(p + ": adapter for architecture '" + a_arch + "' (key general.architecture), but " +
                              base_path + " is '" + arch + "'");
        const double alpha = f->get_float("adapter.lora.alpha", 0.0);
        if (!std::isfinite(alpha)) throw FormatError(p + ": key adapter.lora.alpha is not finite");

        // pair up <target>.lora_a / <target>.lora_b
        std::map<std::string, std::pair<const GGUFTensorInfo*, const GGUFTensorInfo*>> pairs;
        for (const GGUFTensorInfo& t : f->tensors()) {
            const bool is_a = ends_with(t.name, ".lora_a"), is_b = ends_with(t.name, ".lora_b");
            if (!is_a && !is_b)
                throw FormatError(p + ": tensor '" + t.name + "' is neither <target>.lora_a nor <target>.lora_b");
            auto& slot = pairs[t.name.substr(0, t.name.size() - 7)];
            (is_a ? slot.first : slot.second) = &t;
        }
        if (pairs.empty()) throw FormatError(p + ": the adapter has no lora_a / lora_b tensors");
        for (const auto& e : pairs) {
            const std::string& target = e.first;
            const GGUFTensorInfo* ta = e.second.first;
            const GGUFTensorInfo* tb = e.second.second;
            if (!ta || !tb)
                throw FormatError(p + ": tensor '" + target + (ta ? ".lora_a" : ".lora_b") + "' has no matching '" +
                                  target + (ta ? ".lora_b" : ".lora_a") + "'");
            auto it = targets.find(target);
            if (it == targets.end())
                throw FormatError(p + ": tensor '" + ta->name + "' targets '" + target + "', which is not a weight " +
                                  base_path + " can adapt (the layer matrices and output.weight)");
            Tensor* w = it->second;
            const int64_t n_in = w->ne[0], n_out = w->ne[1], r = ta->ne[1];
            if (ta->n_dims > 2 || tb->n_dims > 2 || ta->ne[0] != n_in || r < 1 || tb->ne[0] != r || tb->ne[1] != n_out)
                throw FormatError(p + ": tensors '" + ta->name + "' " + ta->shape_string() + " and '" + tb->name + "' " +
                                  tb->shape_string() + " do not fit " + target + " " + shape2(n_in, n_out) +
                                  " of " + base_path + " (expected " + shape2(n_in, r) + " and " + shape2(r, n_out) +
                                  " for some rank r)");
            for (const GGUFTensorInfo* t : {ta, tb}) {
                if (kernels().type[(int)t->type].vec_dot == nullptr ||
                    (dtype_traits(t->type).quantized && t->ne[0] % dtype_traits(t->type).block_size != 0))
                    throw FormatError(p + ": tensor '" + t->name + "' has type " + dtype_name(t->type) +
                                      ", which has no matmul kernel for rows of " + std::to_string(t->ne[0]));
            }
            Tensor* a = ctx_.new_tensor_external(ta->type, {n_in, r}, ta->data);
            Tensor* b = ctx_.new_tensor_external(tb->type, {r, n_out}, tb->data);
            a->set_name(ta->name);
            b->set_name(tb->name);
            const float s = alpha != 0.0 ? (float)(spec.scale * alpha / (double)r) : spec.scale;
            terms_[w].push_back(LoraTerm{a, b, s});
        }
        files_.push_back(std::move(f));
    }
}

const std::vector<LoraTerm>* LoraSet::find(const Tensor* w) const {
    auto it = terms_.find(w);
    return it == terms_.end() ? nullptr : &it->second;
}

Tensor* lora_mul_mat(Context& ctx, Tensor* w, Tensor* x, const LoraSet* lora) {
    Tensor* y = mul_mat(ctx, w, x);  // [n_out, n]
    const std::vector<LoraTerm>* terms = lora ? lora->find(w) : nullptr;
    if (!terms) return y;
    for (const LoraTerm& t : *terms) {
        // the scale goes on the rank-r product [r, n], the smallest tensor of the three
        Tensor* ax = scale(ctx, mul_mat(ctx, t.a, x), t.scale);
        y = add(ctx, y, mul_mat(ctx, t.b, ax));
    }
    return y;
}

}  // namespace ggmlpy
