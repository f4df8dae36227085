// Persistent thread pool: workers are created once and reused for every op of every graph (no
// thread created per op). run(nth, fn) calls fn(ith, nth) on nth threads, the caller being
// thread 0; inside fn, barrier() synchronizes the nth threads (spin briefly, then yield). Idle
// workers spin a little after a run, then sleep on a condition variable.
#pragma once
#include <functional>
#include <memory>

namespace ggmlpy {

class ComputeBuffer;

class ThreadPool {
public:
    // max_threads 0: physical cores. More threads are started on demand by run().
    explicit ThreadPool(int max_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int default_threads() const;  // the count used when a caller passes n_threads <= 0
    // fn(ith, nth) on nth threads (nth <= 0: default_threads()); returns when all have returned.
    // One run at a time per pool (concurrent callers are serialized). If fn throws on any thread,
    // the first exception is rethrown here after all threads finish; once a thread has thrown,
    // barriers of that run stop waiting (results are discarded), so a throw never hangs the pool.
    void run(int nth, const std::function<void(int ith, int nth)>& fn);
    // Wait until all nth threads of the current run() reach this point. Call only inside run().
    void barrier();

    // The reusable compute buffer of graphs computed on this pool (graph.h).
    ComputeBuffer& buffer();

    struct Impl;
private:
    std::unique_ptr<Impl> impl_;
};

// A process-wide pool (created on first use) for callers that do not keep their own.
ThreadPool& default_thread_pool();

}  // namespace ggmlpy
