// The weight memory plan and the I/O thread that streams (weight_stream.h).
//
// Reading ahead: MADV_WILLNEED (asynchronous readahead of exactly that range) runs two 8 MiB
// chunks in front of the chunk being waited for with MADV_POPULATE_READ (which also maps the pages
// into this process, so the compute threads take no page faults), and carries on into the unit the
// thread will read next, so the disk queue does not drain between units. (MADV_SEQUENTIAL on the
// streamed ranges was tried: slower in 4 of 4 alternating runs on Llama 7B Q8_0.) Dropping after
// the last use: MADV_DONTNEED (unmap) then POSIX_FADV_DONTNEED (evict from the page cache), over
// the whole pages inside the unit only, so a neighbour sharing its first or last page keeps that
// page.
#include "io/weight_stream.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unordered_map>

#include "io/mmap.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace ggmlpy {

namespace {
constexpr size_t CHUNK = size_t(8) << 20;
constexpr size_t AHEAD = 2;  // chunks read ahead of the one being waited for
constexpr uint64_t MAX_WINDOW = uint64_t(256) << 20;

size_t page_size() {
    static const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}
uintptr_t page_down(uintptr_t a) { return a & ~(uintptr_t)(page_size() - 1); }
uintptr_t page_up(uintptr_t a) { return page_down(a + page_size() - 1); }
}  // namespace

namespace {
// The split for one reservation: window + `spare` (the unit the I/O thread may be reading past
// the window) come out of the budget, the resident units get the rest.
void split(WeightPlan& p, uint64_t dense, uint64_t spare) {
    p.resident_bytes = p.streamed_bytes = 0;
    const uint64_t keep = p.budget > p.window_bytes + spare ? p.budget - p.window_bytes - spare : 0;
    // Error diffusion: after each unit, the resident bytes so far stay at keep/dense of the bytes
    // so far (to within half a unit), so streamed units come at an even rate through the pass.
    uint64_t seen = 0;
    for (WeightUnit& u : p.units) {
        if (u.sparse) continue;
        seen += u.len;
        const double target = (double)keep * ((double)seen / (double)dense);
        u.resident = p.resident_bytes + u.len <= keep && (double)p.resident_bytes + 0.5 * (double)u.len <= target;
        if (u.resident) p.resident_bytes += u.len;
        else p.streamed_bytes += u.len;
    }
}

uint64_t largest_streamed(const WeightPlan& p) {
    uint64_t m = 0;
    for (const WeightUnit& u : p.units)
        if (!u.sparse && !u.resident) m = std::max<uint64_t>(m, u.len);
    return m;
}
}  // namespace

WeightPlan plan_weights(std::vector<WeightUnit> units, uint64_t budget) {
    WeightPlan p;
    p.units = std::move(units);
    p.budget = budget;
    uint64_t dense = 0, largest = 0;
    for (WeightUnit& u : p.units) {
        u.resident = true;
        p.total_bytes += u.len;
        if (u.sparse) {
            p.sparse_bytes += u.len;
            continue;
        }
        dense += u.len;
        largest = std::max<uint64_t>(largest, u.len);
    }
    if (dense <= budget) {
        p.resident_bytes = dense;
        return p;
    }
    p.window_bytes = std::max<uint64_t>(std::min(MAX_WINDOW, budget / 8), page_size());
    split(p, dense, largest);
    // Reserving the largest unit is too much when it ended up resident: try the largest streamed
    // one, and keep that split if its own largest streamed unit still fits the reservation.
    const uint64_t spare = largest_streamed(p);
    if (spare < largest) {
        WeightPlan q = p;
        split(q, dense, spare);
        if (largest_streamed(q) <= spare) return q;
    }
    return p;
}

WeightStream::WeightStream(const MappedFile& file, WeightPlan plan) : file_(file), plan_(std::move(plan)) {
    for (size_t i = 0; i < plan_.units.size(); ++i) {
        const WeightUnit& u = plan_.units[i];
        if (u.sparse) continue;
        if (!u.resident) {
            streamed_.push_back(i);
            continue;
        }
        // Resident: locked (which reads it in now), or at least read ahead.
        if (!lock_error_.empty()) {
            madvise((void*)page_down((uintptr_t)u.data), page_up((uintptr_t)u.data + u.len) - page_down((uintptr_t)u.data),
                    MADV_WILLNEED);
            continue;
        }
        const uintptr_t a = page_down((uintptr_t)u.data);
        if (mlock((void*)a, page_up((uintptr_t)u.data + u.len) - a) != 0)
            lock_error_ = file_.path() + ": mlock of the resident weights failed at '" + u.name +
                          "': " + std::strerror(errno) + " (they are kept by dropping the streamed pages instead)";
    }
    if (plan_.resident_bytes == 0 && lock_error_.empty()) lock_error_ = "no resident weights";
    state_.assign(streamed_.size(), State::IDLE);
    drop_pending_.assign(streamed_.size(), 0);
    if (!streamed_.empty()) {
        io_ = std::thread([this] { io_loop(); });
        dropper_ = std::thread([this] { drop_loop(); });
    }
}

WeightStream::~WeightStream() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (io_.joinable()) io_.join();
    if (dropper_.joinable()) dropper_.join();
    // munmap of the mapping (after this) releases the locks
}

void WeightStream::begin(const std::vector<const Tensor*>& ops) {
    std::unordered_map<const void*, size_t> pos;  // data pointer -> streamed position
    for (size_t p = 0; p < streamed_.size(); ++p) pos[plan_.units[streamed_[p]].data] = p;
    std::vector<size_t> last(streamed_.size(), SIZE_MAX);
    size_t first_pos = SIZE_MAX, first_op = SIZE_MAX;
    for (size_t k = 0; k < ops.size(); ++k)
        for (const Tensor* s : ops[k]->src) {
            if (!s) continue;
            const Tensor* leaf = s->view_src ? s->view_src : s;
            if (leaf->op != Op::NONE) continue;
            auto it = pos.find(leaf->data);
            if (it == pos.end()) continue;
            last[it->second] = k;
            if (k < first_op) first_op = k, first_pos = it->second;
        }
    std::vector<std::vector<size_t>> done_at(ops.size());
    for (size_t p = 0; p < last.size(); ++p)
        if (last[p] != SIZE_MAX) done_at[last[p]].push_back(p);
    {
        std::lock_guard<std::mutex> lock(mu_);
        done_at_ = std::move(done_at);
        if (first_pos != SIZE_MAX) cursor_ = first_pos;
    }
    passes_.fetch_add(1);
    cv_.notify_all();
}

void WeightStream::op_done(size_t k) {
    if (k >= done_at_.size() || done_at_[k].empty()) return;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (size_t p : done_at_[k]) {
            if (state_[p] == State::FETCHING || state_[p] == State::DROPPING) {
                drop_pending_[p] = 1;  // again once the read or the drop under way ends
            } else {
                state_[p] = State::DROPPING;
                to_drop_.push_back(p);
            }
            cursor_ = (p + 1) % streamed_.size();
        }
    }
    cv_.notify_all();
}

size_t WeightStream::pick_locked() const {
    const size_t n = streamed_.size();
    uint64_t ahead = 0;  // streamed bytes in memory (or on their way) from the cursor on
    for (size_t i = 0; i < n && ahead < plan_.window_bytes; ++i) {
        const size_t p = (cursor_ + i) % n;
        if (state_[p] == State::IDLE) return p;
        ahead += plan_.units[streamed_[p]].len;
    }
    return SIZE_MAX;
}

void WeightStream::io_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        const size_t p = pick_locked();
        if (p == SIZE_MAX) {
            cv_.wait(lock);
            continue;
        }
        state_[p] = State::FETCHING;
        const size_t q = (p + 1) % streamed_.size();  // read next, most likely
        const size_t next = q != p && state_[q] == State::IDLE ? q : SIZE_MAX;
        lock.unlock();
        const auto t0 = std::chrono::steady_clock::now();
        fetch(p, next);
        fetch_ns_ += (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
        lock.lock();
        state_[p] = State::READY;
        if (drop_pending_[p]) {  // the compute finished with it while it was being read
            drop_pending_[p] = 0;
            state_[p] = State::DROPPING;
            to_drop_.push_back(p);
            cv_.notify_all();
        }
    }
}

void WeightStream::drop_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        if (to_drop_.empty()) {
            cv_.wait(lock);
            continue;
        }
        const size_t p = to_drop_.front();
        to_drop_.erase(to_drop_.begin());
        lock.unlock();
        const auto t0 = std::chrono::steady_clock::now();
        drop(p);
        drop_ns_ += (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
        lock.lock();
        if (drop_pending_[p]) {  // used again while it was being dropped: drop what that read in
            drop_pending_[p] = 0;
            to_drop_.push_back(p);
            continue;
        }
        state_[p] = State::IDLE;  // only now may the I/O thread read it again
        cv_.notify_all();
    }
}

void WeightStream::fetch(size_t p, size_t next) {
    // Chunks of unit p, then of `next` (the unit the I/O thread will most likely read after it):
    // the read-ahead runs AHEAD chunks in front of the chunk being waited for, across the end of
    // p, so the disk queue does not drain between units.
    struct Span { uintptr_t a = 0, e = 0; };
    auto span = [&](size_t q) {
        const WeightUnit& u = plan_.units[streamed_[q]];
        return Span{page_down((uintptr_t)u.data), page_up((uintptr_t)u.data + u.len)};
    };
    const Span cur = span(p), nxt = next == SIZE_MAX ? Span{} : span(next);
    const size_t n_cur = (cur.e - cur.a + CHUNK - 1) / CHUNK;
    auto chunk = [&](size_t k, uintptr_t* a) -> size_t {  // bytes of the k-th chunk (0: none)
        const Span& s = k < n_cur ? cur : nxt;
        const uintptr_t x = s.a + (k < n_cur ? k : k - n_cur) * CHUNK;
        if (x >= s.e) return 0;
        *a = x;
        return std::min<uintptr_t>(CHUNK, s.e - x);
    };
    auto willneed = [&](size_t k) {
        uintptr_t a = 0;
        if (const size_t n = chunk(k, &a)) madvise((void*)a, n, MADV_WILLNEED);
    };
    for (size_t k = 0; k < AHEAD; ++k) willneed(k);
    for (size_t k = 0; k < n_cur; ++k) {
        if (stop_) return;
        willneed(k + AHEAD);
        uintptr_t a = 0;
        const size_t n = chunk(k, &a);
        if (madvise((void*)a, n, MADV_POPULATE_READ) != 0 && errno == EINVAL) {
            // kernels before 5.14: touch a byte per page (the compute would fault them in anyway)
            volatile uint8_t sink = 0;
            for (uintptr_t q = a; q < a + n; q += page_size()) sink ^= *(const volatile uint8_t*)q;
            (void)sink;
        }
        prefetched_.fetch_add(n);
    }
}

void WeightStream::drop(size_t p) {
    const WeightUnit& u = plan_.units[streamed_[p]];
    const uintptr_t begin = page_up((uintptr_t)u.data), end = page_down((uintptr_t)u.data + u.len);
    if (end <= begin) return;
    madvise((void*)begin, end - begin, MADV_DONTNEED);
    const off_t off = (off_t)(begin - (uintptr_t)file_.data());
    if (file_.fd() >= 0) posix_fadvise(file_.fd(), off, (off_t)(end - begin), POSIX_FADV_DONTNEED);
    dropped_.fetch_add(end - begin);
}

}  // namespace ggmlpy
