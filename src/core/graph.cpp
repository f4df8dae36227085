// Graph building and execution (include/ggmlpy/graph.h). compute() plans memory first, single
// threaded: each op result gets an offset in the ComputeBuffer (best-fit free list), and is freed
// after its last consumer, views extending their source's life. Then one pool run walks the
// nodes, every thread calling forward(ith, nth), with a barrier between compute nodes.
#include "ggmlpy/graph.h"

#include <algorithm>
#include <cstdlib>
#include <unordered_map>

#include "compute/forward.h"
#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {
constexpr size_t ALIGN = 64;
size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

bool is_noop(Op op) { return op == Op::NONE || op == Op::VIEW || op == Op::RESHAPE || op == Op::PERMUTE || op == Op::TRANSPOSE; }

// Offsets in a virtual buffer; best fit with merging of neighbours on free.
class Planner {
public:
    size_t alloc(size_t n) {
        n = align_up(n ? n : 1);
        size_t best = free_.size();
        for (size_t i = 0; i < free_.size(); ++i)
            if (free_[i].size >= n && (best == free_.size() || free_[i].size < free_[best].size)) best = i;
        if (best < free_.size()) {
            const size_t off = free_[best].off;
            free_[best].off += n;
            free_[best].size -= n;
            if (free_[best].size == 0) free_.erase(free_.begin() + (long)best);
            return off;
        }
        // grow at the end; a free block touching the end is extended
        if (!free_.empty() && free_.back().off + free_.back().size == top_) {
            const size_t off = free_.back().off;
            top_ = off + n;
            free_.pop_back();
            return off;
        }
        const size_t off = top_;
        top_ += n;
        return off;
    }
    void release(size_t off, size_t n) {
        n = align_up(n ? n : 1);
        auto it = std::lower_bound(free_.begin(), free_.end(), off, [](const Block& b, size_t o) { return b.off < o; });
        it = free_.insert(it, Block{off, n});
        // merge with next, then previous
        if (it + 1 != free_.end() && it->off + it->size == (it + 1)->off) {
            it->size += (it + 1)->size;
            free_.erase(it + 1);
        }
        if (it != free_.begin() && (it - 1)->off + (it - 1)->size == it->off) {
            (it - 1)->size += it->size;
            free_.erase(it);
        }
    }
    size_t peak() const { return top_; }

private:
    struct Block { size_t off, size; };
    std::vector<Block> free_;
    size_t top_ = 0;
};
}  // namespace

void Graph::visit(Tensor* t) {
    if (!seen_.insert(t).second) return;
    for (Tensor* s : t->src)
        if (s) visit(s);
    if (t->view_src) visit(t->view_src);
    if (t->op == Op::NONE) leafs_.push_back(t);
    else nodes_.push_back(t);
}

void Graph::build_forward(Tensor* t) {
    if (!t) throw ValueError("build_forward: tensor is null");
    t->is_output = true;
    visit(t);
}

ComputeBuffer::~ComputeBuffer() { release(); }

char* ComputeBuffer::reserve(size_t n) {
    if (n <= cap_ && mem_) return mem_;
    release();
    const size_t sz = align_up(n ? n : 1);
    mem_ = static_cast<char*>(std::aligned_alloc(ALIGN, sz));
    if (!mem_) throw ValueError("compute: cannot allocate a " + std::to_string(sz) + "-byte compute buffer");
    cap_ = sz;
    return mem_;
}

void ComputeBuffer::release() {
    std::free(mem_);
    mem_ = nullptr;
    cap_ = 0;
}

void compute(Graph& g, ThreadPool& pool, int n_threads, ComputeBuffer* buf, ComputeObserver* observer) {
    if (!buf) buf = &pool.buffer();
    const int nth = n_threads > 0 ? n_threads : pool.default_threads();
    const std::vector<Tensor*>& nodes = g.nodes();

    for (Tensor* l : g.leafs())
        if (!l->data && l->nelements() > 0)
            throw ValueError("compute: leaf tensor " + l->shape_str() + " has no data");

    // last use of every tensor whose memory the planner owns (non-view op results)
    std::unordered_map<const Tensor*, size_t> last;
    last.reserve(nodes.size() * 2);
    auto owner = [](const Tensor* t) -> const Tensor* { return t->view_src ? t->view_src : t; };
    for (size_t i = 0; i < nodes.size(); ++i) {
        const Tensor* t = nodes[i];
        last[owner(t)] = std::max(last[owner(t)], i);
        for (const Tensor* s : t->src)
            if (s) last[owner(s)] = std::max(last[owner(s)], i);
    }
    // a view read later, or an output view, keeps its source alive
    std::unordered_map<const Tensor*, bool> keep;
    for (size_t i = 0; i < nodes.size(); ++i) {
        const Tensor* t = nodes[i];
        if (t->is_output) keep[owner(t)] = true;
    }

    Planner planner;
    std::vector<size_t> offset(nodes.size(), 0);
    std::unordered_map<const Tensor*, size_t> index;  // allocated tensor -> node index
    index.reserve(nodes.size());
    size_t work = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
        Tensor* t = nodes[i];
        if (!t->view_src) {  // op result that owns memory
            offset[i] = planner.alloc(t->nbytes());
            index[t] = i;
        }
        if (!is_noop(t->op)) work = std::max(work, forward_work_size(t, nth));
        // free everything whose last use is this node (each owner once)
        const Tensor* cands[MAX_SRC + 1];
        int nc = 0;
        for (const Tensor* s : t->src)
            if (s) cands[nc++] = owner(s);
        cands[nc++] = owner(t);
        for (int c = 0; c < nc; ++c) {
            const Tensor* o = cands[c];
            bool dup = false;
            for (int d = 0; d < c; ++d) dup |= cands[d] == o;
            if (dup || o->op == Op::NONE || keep.count(o)) continue;
            auto li = last.find(o);
            auto ix = index.find(o);
            if (li == last.end() || li->second != i || ix == index.end()) continue;
            planner.release(offset[ix->second], o->nbytes());
        }
    }
    const size_t act = align_up(planner.peak());
    char* mem = buf->reserve(act + work + ALIGN);
    buf->set_stats(act, work);

    for (size_t i = 0; i < nodes.size(); ++i) {
        Tensor* t = nodes[i];
        if (t->view_src) {
            if (!t->view_src->data && t->view_src->nelements() > 0)
                throw ValueError("compute: " + std::string(op_name(t->op)) + " of " + t->view_src->shape_str() +
                                 " which has no data");
            t->data = static_cast<char*>(t->view_src->data) + t->view_offs;
        } else {
            t->data = mem + offset[i];
        }
    }
    std::vector<const Tensor*> run_nodes;
    run_nodes.reserve(nodes.size());
    for (Tensor* t : nodes) {
        if (is_noop(t->op)) continue;
        forward_validate(t);
        run_nodes.push_back(t);
    }
    if (run_nodes.empty()) return;
    if (observer) observer->begin(run_nodes);

    std::atomic<int64_t> counters[2];
    counters[0].store(nth);
    counters[1].store(nth);
    char* wdata = mem + act;
    pool.run(nth, [&](int ith, int n) {
        ComputeParams p;
        p.ith = ith;
        p.nth = n;
        p.wdata = wdata;
        p.wsize = work;
        p.pool = &pool;
        for (size_t k = 0; k < run_nodes.size(); ++k) {
            p.chunk = &counters[k & 1];
            forward(run_nodes[k], p);
            if (k + 1 < run_nodes.size()) {
                // the counter of the next op was last used by op k-1, which every thread has left
                if (ith == 0) counters[(k + 1) & 1].store(n, std::memory_order_relaxed);
                if (n > 1) pool.barrier();
                if (observer && ith == 0) observer->op_done(k);  // every thread has left op k
            }
        }
    });
    if (observer) observer->op_done(run_nodes.size() - 1);
}

}  // namespace ggmlpy
