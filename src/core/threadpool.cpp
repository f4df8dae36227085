// Persistent thread pool (include/ggmlpy/threadpool.h). A run is published as one atomic word
// (generation << 16 | nth) so a worker never mixes the thread count of one run with another.
// Workers spin briefly on that word, then sleep on a condition variable; the barrier is a
// sense-reversing counter that spins with a pause, then yields (the CPU may be oversubscribed).
#include "ggmlpy/threadpool.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ggmlpy/cpu.h"
#include "ggmlpy/error.h"
#include "ggmlpy/graph.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GGMLPY_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define GGMLPY_PAUSE() __asm__ __volatile__("yield")
#else
#define GGMLPY_PAUSE() ((void)0)
#endif

namespace ggmlpy {

namespace {
constexpr int SPIN_BEFORE_YIELD = 300;   // pause iterations before a barrier starts yielding
constexpr int SPIN_BEFORE_SLEEP = 5000; // idle worker: pause iterations before sleeping
constexpr int MAX_THREADS = 512;
}  // namespace

struct ThreadPool::Impl {
    int default_threads = 1;
    std::vector<std::thread> workers;  // worker w runs as ith = w + 1
    std::mutex run_mutex;              // one run at a time

    std::atomic<uint64_t> job{0};      // generation << 16 | nth
    const std::function<void(int, int)>* fn = nullptr;
    std::atomic<int> n_done{0};
    int nth = 1;

    std::mutex sleep_mutex;
    std::condition_variable sleep_cv;
    std::atomic<int> n_sleeping{0};
    std::atomic<bool> stop{false};

    alignas(64) std::atomic<int> barrier_count{0};
    alignas(64) std::atomic<int> barrier_phase{0};

    std::mutex err_mutex;
    std::exception_ptr first_error;
    std::atomic<bool> failed{false};  // a thread threw: barriers stop waiting so nobody hangs

    ComputeBuffer buffer;

    void call(int ith, int n) {
        try {
            (*fn)(ith, n);
        } catch (...) {
            std::lock_guard<std::mutex> lk(err_mutex);
            if (!first_error) first_error = std::current_exception();
            failed.store(true);
        }
    }

    // seen: the job word before the run that started this worker was published
    void worker_loop(int ith, uint64_t seen) {
        for (;;) {
            uint64_t cur = job.load(std::memory_order_acquire);
            for (int spin = 0; cur == seen && spin < SPIN_BEFORE_SLEEP && !stop.load(std::memory_order_relaxed); ++spin) {
                GGMLPY_PAUSE();
                cur = job.load(std::memory_order_acquire);
            }
            if (cur == seen) {
                std::unique_lock<std::mutex> lk(sleep_mutex);
                n_sleeping.fetch_add(1);
                sleep_cv.wait(lk, [&] { return stop.load() || job.load() != seen; });
                n_sleeping.fetch_sub(1);
                if (stop.load()) return;
                continue;
            }
            seen = cur;
            const int n = (int)(cur & 0xffff);
            if (ith < n) {
                call(ith, n);
                n_done.fetch_add(1, std::memory_order_acq_rel);
            }
        }
    }

    void ensure_workers(int n) {
        while ((int)workers.size() < n - 1) {
            const int ith = (int)workers.size() + 1;
            const uint64_t seen = job.load();
            workers.emplace_back([this, ith, seen] { worker_loop(ith, seen); });
        }
    }
};

ThreadPool::ThreadPool(int max_threads) : impl_(new Impl) {
    impl_->default_threads = max_threads > 0 ? max_threads : physical_cores();
    if (impl_->default_threads < 1) impl_->default_threads = 1;
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(impl_->sleep_mutex);
        impl_->stop.store(true);
    }
    impl_->sleep_cv.notify_all();
    for (auto& t : impl_->workers) t.join();
}

int ThreadPool::default_threads() const { return impl_->default_threads; }

ComputeBuffer& ThreadPool::buffer() { return impl_->buffer; }

void ThreadPool::run(int nth, const std::function<void(int, int)>& fn) {
    Impl& p = *impl_;
    if (nth <= 0) nth = p.default_threads;
    if (nth > MAX_THREADS) throw ValueError("n_threads=" + std::to_string(nth) + " exceeds " + std::to_string(MAX_THREADS));
    std::lock_guard<std::mutex> run_lock(p.run_mutex);
    p.first_error = nullptr;
    p.failed.store(false);
    p.nth = nth;
    if (nth == 1) {
        p.fn = &fn;
        p.call(0, 1);
    } else {
        p.ensure_workers(nth);
        p.fn = &fn;
        p.n_done.store(0);
        p.barrier_count.store(0);
        const uint64_t gen = (p.job.load() >> 16) + 1;
        p.job.store((gen << 16) | (uint64_t)nth);
        if (p.n_sleeping.load() > 0) {
            { std::lock_guard<std::mutex> lk(p.sleep_mutex); }
            p.sleep_cv.notify_all();
        }
        p.call(0, nth);
        for (int spin = 0; p.n_done.load(std::memory_order_acquire) < nth - 1; ++spin) {
            if (spin < SPIN_BEFORE_YIELD) GGMLPY_PAUSE();
            else std::this_thread::yield();
        }
    }
    p.fn = nullptr;
    if (p.first_error) {
        std::exception_ptr e = p.first_error;
        p.first_error = nullptr;
        std::rethrow_exception(e);
    }
}

void ThreadPool::barrier() {
    Impl& p = *impl_;
    const int n = p.nth;
    if (n <= 1) return;
    const int phase = p.barrier_phase.load(std::memory_order_acquire);
    if (p.barrier_count.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
        p.barrier_count.store(0, std::memory_order_relaxed);
        p.barrier_phase.fetch_add(1, std::memory_order_acq_rel);
        return;
    }
    for (int spin = 0; p.barrier_phase.load(std::memory_order_acquire) == phase; ++spin) {
        if (p.failed.load(std::memory_order_relaxed)) return;  // the run is lost; do not wait forever
        if (spin < SPIN_BEFORE_YIELD) GGMLPY_PAUSE();
        else std::this_thread::yield();
    }
}

ThreadPool& default_thread_pool() {
    static ThreadPool pool;
    return pool;
}

}  // namespace ggmlpy
