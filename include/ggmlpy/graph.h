// Lazy compute graph: build_forward(g, t) appends t and everything it depends on (in dependency
// order, each tensor once); compute(g, pool, n_threads) allocates op results from a reusable
// ComputeBuffer, runs each op's forward(ith, nth) over the pool with a barrier between ops, and
// frees each result after its last consumer (views keep their source alive), so peak activation
// memory stays small. Roots of build_forward and tensors marked is_output keep their memory
// until the next compute on the same buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "ggmlpy/tensor.h"
#include "ggmlpy/threadpool.h"

namespace ggmlpy {

class Graph {
public:
    Graph() = default;
    // Appends t and its not-yet-seen ancestors; t becomes an output. Call in the order effects
    // must happen (e.g. the cpy of K/V into the cache before the attention that reads the cache).
    void build_forward(Tensor* t);
    const std::vector<Tensor*>& nodes() const { return nodes_; }  // op results, in compute order
    const std::vector<Tensor*>& leafs() const { return leafs_; }  // tensors with op NONE
    size_t n_nodes() const { return nodes_.size(); }

private:
    void visit(Tensor* t);
    std::vector<Tensor*> nodes_, leafs_;
    std::unordered_set<const Tensor*> seen_;
};

inline void build_forward(Graph& g, Tensor* t) { g.build_forward(t); }
inline void set_output(Tensor* t) { t->is_output = true; }

// Grows to the largest graph seen and is then reused (no allocation per token).
class ComputeBuffer {
public:
    ComputeBuffer() = default;
    ~ComputeBuffer();
    ComputeBuffer(const ComputeBuffer&) = delete;
    ComputeBuffer& operator=(const ComputeBuffer&) = delete;
    // Ensure at least n bytes (64-byte aligned); contents are not preserved when it grows.
    char* reserve(size_t n);
    size_t capacity() const { return cap_; }
    size_t peak_activation_bytes() const { return peak_; }  // activations of the last compute
    size_t work_bytes() const { return work_; }             // op scratch of the last compute
    void set_stats(size_t peak, size_t work) { peak_ = peak; work_ = work; }
    void release();  // free the memory (next compute reallocates)

private:
    char* mem_ = nullptr;
    size_t cap_ = 0, peak_ = 0, work_ = 0;
};

// Told where a compute is: begin() with the ops about to run, in order, then op_done(k) once op k
// has finished on every thread (called by one thread, between ops). Weight streaming follows the
// compute with it (src/io/weight_stream.h).
struct ComputeObserver {
    virtual ~ComputeObserver() = default;
    virtual void begin(const std::vector<const Tensor*>& ops) = 0;
    virtual void op_done(size_t k) = 0;
};

// Computes every node of g on n_threads threads of pool (n_threads <= 0: pool.default_threads()).
// buf: where activations live (nullptr: pool.buffer()). Throws ValueError for a leaf without
// data or a bad index found before compute; never aborts.
void compute(Graph& g, ThreadPool& pool, int n_threads = 0, ComputeBuffer* buf = nullptr,
             ComputeObserver* observer = nullptr);

}  // namespace ggmlpy
