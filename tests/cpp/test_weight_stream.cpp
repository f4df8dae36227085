// The weight memory plan (plan_weights) and the WeightStream over a real file.
// Plan: everything that fits stays resident; sparse tables are never counted; over budget, the
// resident bytes stay within budget - window - largest unit and are spread through the pass (no
// long run of streamed units). Stream: a temp file of page-aligned units with known bytes, mapped
// like a model; passes of fake ops read every unit (checksums must match) and report op_done.
// mincore() then shows the page cache: a streamed unit's pages are gone once the stream has
// dropped it, resident ones stay; the I/O thread's counters advance with the passes.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "check.h"
#include "ggmlpy/tensor.h"
#include "io/mmap.h"
#include "io/weight_stream.h"

using namespace ggmlpy;

namespace {

constexpr uint64_t MiB = 1 << 20;

std::vector<WeightUnit> units_of(const std::vector<uint64_t>& sizes) {
    std::vector<WeightUnit> out;
    uint64_t off = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        WeightUnit u;
        u.name = "w" + std::to_string(i);
        u.off = off;
        u.len = sizes[i];
        off += sizes[i];
        out.push_back(u);
    }
    return out;
}

void test_plan_fits() {
    std::vector<WeightUnit> u = units_of({10 * MiB, 20 * MiB, 30 * MiB});
    u[0].sparse = true;  // an embedding table read by rows
    WeightPlan p = plan_weights(u, 50 * MiB);
    CHECK(!p.streaming());
    CHECK(p.resident_bytes == 50 * MiB);
    CHECK(p.sparse_bytes == 10 * MiB);
    CHECK(p.window_bytes == 0);
    CHECK(p.total_bytes == 60 * MiB);
}

void test_plan_spread() {
    std::vector<uint64_t> sizes(60, 16 * MiB);
    sizes[30] = 40 * MiB;  // the largest unit
    WeightPlan p = plan_weights(units_of(sizes), 600 * MiB);
    CHECK(p.streaming());
    CHECK(p.window_bytes == 75 * MiB);  // budget / 8
    CHECK(p.resident_bytes + p.streamed_bytes == 59 * 16 * MiB + 40 * MiB);
    uint64_t spare = 0;  // the largest streamed unit: the I/O thread may read it past the window
    for (const WeightUnit& u : p.units)
        if (!u.resident) spare = std::max<uint64_t>(spare, u.len);
    CHECK(p.resident_bytes + p.window_bytes + spare <= 600 * MiB);
    CHECK(p.resident_bytes >= 600 * MiB - 75 * MiB - 40 * MiB - 16 * MiB);  // no unit left out that fits
    int run = 0, longest = 0, first_half = 0;
    for (size_t i = 0; i < p.units.size(); ++i) {
        run = p.units[i].resident ? 0 : run + 1;
        longest = std::max(longest, run);
        if (i < 30 && p.units[i].resident) ++first_half;
    }
    CHECK(longest <= 2);                        // streamed units come at an even rate
    CHECK(first_half >= 14 && first_half <= 18);  // about half the resident ones in each half
}

void test_plan_tiny_budget() {
    WeightPlan p = plan_weights(units_of({8 * MiB, 8 * MiB, 8 * MiB}), 1 * MiB);
    CHECK(p.streaming());
    CHECK(p.resident_bytes == 0);
    CHECK(p.streamed_bytes == 24 * MiB);
    CHECK(p.window_bytes > 0);
}

// Pages of [p, p + n) in the page cache.
size_t cached_pages(const void* p, size_t n) {
    const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> v((n + ps - 1) / ps);
    if (mincore(const_cast<void*>(p), n, v.data()) != 0) return SIZE_MAX;
    size_t c = 0;
    for (unsigned char b : v) c += b & 1;
    return c;
}

template <typename F>
bool wait_for(F cond) {
    for (int i = 0; i < 500; ++i) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
}

void test_stream_file() {
    const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    const int n_units = 12;
    const size_t unit = 64 * ps;  // 256 KiB with 4 KiB pages
    char path[] = "/tmp/ggmlpy_stream_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    std::vector<uint8_t> bytes(unit);
    for (int u = 0; u < n_units; ++u) {
        for (size_t i = 0; i < unit; ++i) bytes[i] = (uint8_t)(u * 31 + i * 7);
        CHECK(write(fd, bytes.data(), unit) == (ssize_t)unit);
    }
    fsync(fd);
    close(fd);
    {
        MappedFile file(path, true);
        std::vector<WeightUnit> units = units_of(std::vector<uint64_t>(n_units, unit));
        for (WeightUnit& u : units) u.data = file.data() + u.off;
        // budget: window = budget / 8 rounded to pages, largest = one unit; a third resident
        WeightPlan plan = plan_weights(units, 8 * unit);
        CHECK(plan.streaming());
        CHECK(plan.resident_bytes > 0 && plan.streamed_bytes > 0);

        // one op per unit, reading it (ops[k]->src[0] is the leaf over unit k)
        std::vector<Tensor> leaves(n_units), nodes(n_units);
        std::vector<const Tensor*> ops;
        for (int u = 0; u < n_units; ++u) {
            leaves[u].type = DType::I8;
            leaves[u].ne[0] = (int64_t)unit;
            leaves[u].data = (void*)units[u].data;
            nodes[u].op = Op::CONT;
            nodes[u].src[0] = &leaves[u];
            ops.push_back(&nodes[u]);
        }
        WeightStream stream(file, plan);
        for (int pass = 0; pass < 3; ++pass) {
            stream.begin(ops);
            for (int u = 0; u < n_units; ++u) {
                const uint8_t* d = (const uint8_t*)units[u].data;
                bool same = true;
                for (size_t i = 0; i < unit; i += 997) same &= d[i] == (uint8_t)(u * 31 + i * 7);
                CHECK(same);
                stream.op_done((size_t)u);
            }
        }
        CHECK(stream.passes() == 3);
        CHECK(wait_for([&] { return stream.bytes_prefetched() > 0; }));
        // every streamed unit dropped at least once (a unit finished again while it is being dropped
        // is dropped once more afterwards, not queued twice)
        CHECK(wait_for([&] { return stream.bytes_dropped() >= plan.streamed_bytes; }));
        // The last streamed unit of the pass was dropped after its use and lies beyond the window
        // the stream reads ahead (the window wraps to the next pass's first units), so its pages
        // have left the page cache; the resident units stay.
        int last_streamed = -1;
        for (int u = 0; u < n_units; ++u)
            if (!plan.units[u].resident) last_streamed = u;
        CHECK(last_streamed >= 0);
        const size_t window_units = plan.window_bytes / unit + 1;
        CHECK((size_t)(plan.streamed_bytes / unit) > window_units);  // so it is outside the window
        const bool gone = wait_for([&] { return cached_pages(units[last_streamed].data, unit) == 0; });
        CHECK(gone);
        if (!gone)
            for (int u = 0; u < n_units; ++u)
                std::fprintf(stderr, "unit %d %s: %zu pages cached\n", u, plan.units[u].resident ? "resident" : "streamed",
                             cached_pages(units[u].data, unit));
        for (int u = 0; u < n_units; ++u)
            if (plan.units[u].resident) CHECK(cached_pages(units[u].data, unit) == unit / ps);
    }
    unlink(path);
}

}  // namespace

int main() {
    test_plan_fits();
    test_plan_spread();
    test_plan_tiny_budget();
    test_stream_file();
    return test_exit_code("test_weight_stream");
}
