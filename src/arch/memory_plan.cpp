// DecoderModel::plan_memory (arch.h): the weight memory plan made at load. The order a forward
// pass reads the weights in comes from a one-token graph of the model itself (built, never
// computed), so every architecture gets its plan without naming its tensors.
#include <algorithm>
#include <unordered_map>

#include "arch/arch.h"
#include "ggmlpy/memory_limit.h"
#include "io/mmap.h"

namespace ggmlpy {

void DecoderModel::plan_memory() {
    const MappedFile* map = file_->mapping();
    uint64_t budget = params_.mem_budget;
    if (budget == 0) {  // what is available, less what this model allocates itself, less 1/16 slack
        const uint64_t avail = available_memory(), own = planned_bytes();
        budget = avail > own ? (avail - own) / 16 * 15 : 0;
    }

    // Mapped weights in pass order: by first use other than get_rows (a table only read by
    // get_rows is sparse: a few rows per token, left to the mapping).
    std::vector<WeightUnit> units;
    if (map && map->mapped()) {
        const uint8_t* lo = map->data();
        const uint8_t* hi = lo + map->size();
        std::unordered_map<const void*, size_t> index;
        std::vector<char> dense;
        graph_ctx_.clear();
        int32_t id = 0, pos = 0;
        BatchInput in;
        in.n_tokens = 1;
        in.seqs = {SeqSpan{0, 0, 1, 0}};
        in.n_outputs = 1;
        in.ids = graph_ctx_.new_tensor_external(DType::I32, {1}, &id);
        in.pos = graph_ctx_.new_tensor_external(DType::I32, {1}, &pos);
        Graph g;
        if (Tensor* out = build_graph(graph_ctx_, g, in)) g.build_forward(out);
        std::vector<size_t> first_dense;
        for (size_t k = 0; k < g.nodes().size(); ++k) {
            const Tensor* t = g.nodes()[k];
            for (const Tensor* s : t->src) {
                if (!s) continue;
                const Tensor* leaf = s->view_src ? s->view_src : s;
                const uint8_t* d = (const uint8_t*)leaf->data;
                if (leaf->op != Op::NONE || d < lo || d >= hi) continue;
                auto it = index.find(d);
                if (it == index.end()) {
                    it = index.emplace(d, units.size()).first;
                    WeightUnit u;
                    u.name = leaf->name;
                    u.data = d;
                    u.off = (size_t)(d - lo);
                    u.len = std::min(leaf->nbytes(), (size_t)(hi - d));
                    units.push_back(u);
                    first_dense.push_back(SIZE_MAX);
                }
                const bool rows_only = t->op == Op::GET_ROWS && s == t->src[0];
                if (!rows_only) first_dense[it->second] = std::min(first_dense[it->second], k);
            }
        }
        graph_ctx_.clear();
        std::vector<size_t> order(units.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return first_dense[a] < first_dense[b]; });
        std::vector<WeightUnit> sorted;
        for (size_t i : order) {
            sorted.push_back(units[i]);
            sorted.back().sparse = first_dense[i] == SIZE_MAX;
        }
        units = std::move(sorted);
    }
    plan_ = plan_weights(std::move(units), budget);

    if (plan_.streaming()) {
        stream_ = std::make_unique<WeightStream>(*map, plan_);
        mlock_error_ = params_.use_mlock ? stream_->lock_error() : "";
        return;
    }
    if (map && map->mapped()) file_->advise_willneed();  // readahead into the page cache
    if (params_.use_mlock) {
        file_->lock_tensor_data();
        mlock_error_ = file_->mlock_error();
    }
}

}  // namespace ggmlpy
