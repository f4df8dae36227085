// Models larger than RAM: a memory plan that keeps as many weights resident as the budget allows
// and streams the rest from the file mapping ahead of the compute.
//
// Why: a forward pass reads every weight once, in the same order, every token. When the weights
// do not fit, the page cache's LRU evicts each page just before the next pass needs it again, so
// every token re-reads the whole file. Here the plan picks the resident set (spread evenly over
// the pass, so the reads of the streamed part overlap compute all the way through) and an I/O
// thread reads each streamed tensor a window ahead of the op that uses it and drops it from the
// page cache right after its last use, so the streamed pages never push out the resident ones.
// The weights stay the same read-only mapping: the bytes the ops read do not change, only when
// they are in memory.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ggmlpy/graph.h"

namespace ggmlpy {

class MappedFile;

// One weight tensor as the plan sees it: bytes [off, off + len) of the file.
struct WeightUnit {
    std::string name;
    const void* data = nullptr;  // where the tensor's bytes are in the mapping
    size_t off = 0, len = 0;     // file offset and size
    bool sparse = false;  // only read by get_rows (a few rows per token): left to the mapping
    bool resident = true;
};

struct WeightPlan {
    std::vector<WeightUnit> units;  // in the order a forward pass first reads them
    uint64_t budget = 0;          // bytes the weights may hold in RAM (resident + window)
    uint64_t total_bytes = 0;     // every unit
    uint64_t resident_bytes = 0;  // dense units kept in memory
    uint64_t streamed_bytes = 0;  // dense units read from the file on every pass
    uint64_t sparse_bytes = 0;    // embedding tables read by rows
    uint64_t window_bytes = 0;    // streamed bytes the I/O thread may hold ahead of the compute
    bool streaming() const { return streamed_bytes > 0; }
};

// Splits units (in pass order) into resident and streamed for a budget in bytes. Everything fits
// (dense bytes <= budget): all resident. Otherwise window = min(256 MiB, budget / 8) (at least a
// page), and resident units fill budget - window - the largest streamed unit (the I/O thread may
// be reading one unit past the window), chosen by error diffusion over the pass order so each
// stretch of the pass streams the same share of its bytes.
WeightPlan plan_weights(std::vector<WeightUnit> units, uint64_t budget);

// Follows the compute (graph.h ComputeObserver) and keeps the streamed units of plan a window
// ahead of it on its own I/O thread, dropping them after their last use on another. Resident units are locked (mlock) where the system allows,
// else kept by never letting the streamed pages accumulate.
class WeightStream : public ComputeObserver {
public:
    WeightStream(const MappedFile& file, WeightPlan plan);
    ~WeightStream() override;
    WeightStream(const WeightStream&) = delete;
    WeightStream& operator=(const WeightStream&) = delete;

    void begin(const std::vector<const Tensor*>& ops) override;
    void op_done(size_t k) override;

    const WeightPlan& plan() const { return plan_; }
    bool resident_locked() const { return lock_error_.empty(); }
    const std::string& lock_error() const { return lock_error_; }  // why mlock failed ("" if it did not)
    uint64_t bytes_prefetched() const { return prefetched_.load(); }  // by the I/O thread, in all
    uint64_t bytes_dropped() const { return dropped_.load(); }
    uint64_t passes() const { return passes_.load(); }
    double fetch_seconds() const { return fetch_ns_.load() * 1e-9; }  // I/O thread time reading ahead
    double drop_seconds() const { return drop_ns_.load() * 1e-9; }    // and dropping

private:
    enum class State : uint8_t { IDLE, FETCHING, READY, DROPPING };
    void io_loop();
    // Dropping a unit costs about as much time as a third of reading it (unmapping and evicting
    // every page), so a second thread does it: the reads never wait behind a drop.
    void drop_loop();
    void fetch(size_t p, size_t next);  // reads p, starting the read-ahead of next (or SIZE_MAX)
    void drop(size_t u);
    // The next idle streamed unit within the window ahead of cursor_, or SIZE_MAX.
    size_t pick_locked() const;

    const MappedFile& file_;
    WeightPlan plan_;
    std::vector<size_t> streamed_;  // indices into plan_.units, pass order
    std::string lock_error_;

    // per pass, from begin(): the streamed-order positions whose last use is op k
    std::vector<std::vector<size_t>> done_at_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<State> state_;        // per streamed position
    std::vector<char> drop_pending_;  // finished while being read or dropped: drop after that
    std::vector<size_t> to_drop_;   // positions in DROPPING, for drop_loop
    size_t cursor_ = 0;  // streamed position the compute reads next
    std::atomic<bool> stop_{false};  // read by fetch() between chunks without the lock
    std::atomic<uint64_t> prefetched_{0}, dropped_{0}, passes_{0}, fetch_ns_{0}, drop_ns_{0};
    std::thread io_, dropper_;
};

}  // namespace ggmlpy
