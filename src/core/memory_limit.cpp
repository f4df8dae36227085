// available_memory() / check_memory() (memory_limit.h): reads /proc/meminfo and the cgroup files
// of this process on every call (cheap, and the answer changes as other processes run).
#include "ggmlpy/memory_limit.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <sys/resource.h>
#include <unistd.h>

#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {

constexpr uint64_t NONE = UINT64_MAX;

// First number in a file ("max" or a missing file: NONE).
uint64_t read_number(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    if (!(f >> s) || s == "max") return NONE;
    char* end = nullptr;
    unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    return end && *end == '\0' ? (uint64_t)v : NONE;
}

uint64_t mem_available() {
    std::ifstream f("/proc/meminfo");
    std::string line;
    while (std::getline(f, line)) {
        unsigned long long kb = 0;
        if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kb) == 1) return mul_sat(kb, 1024);
    }
    return NONE;
}

// limit - usage of this process's cgroup (v2 unified, or the v1 memory controller), NONE if unset.
uint64_t cgroup_room() {
    std::ifstream f("/proc/self/cgroup");
    std::string line;
    uint64_t room = NONE;
    while (std::getline(f, line)) {
        // "0::/path" (v2) or "N:memory:/path" / "N:cpu,memory:/path" (v1)
        const size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        const std::string ctrl = line.substr(a + 1, b - a - 1), rel = line.substr(b + 1);
        uint64_t limit = NONE, usage = 0;
        if (ctrl.empty()) {
            for (const std::string& base : {"/sys/fs/cgroup" + rel, std::string("/sys/fs/cgroup")}) {
                limit = read_number(base + "/memory.max");
                if (limit != NONE) { usage = read_number(base + "/memory.current"); break; }
            }
        } else if (("," + ctrl + ",").find(",memory,") != std::string::npos) {
            for (const std::string& base : {"/sys/fs/cgroup/memory" + rel, std::string("/sys/fs/cgroup/memory")}) {
                limit = read_number(base + "/memory.limit_in_bytes");
                if (limit != NONE && limit < (uint64_t(1) << 62)) {  // v1 "no limit" is ~2^63
                    usage = read_number(base + "/memory.usage_in_bytes");
                    break;
                }
                limit = NONE;
            }
        }
        if (limit == NONE) continue;
        if (usage == NONE) usage = 0;
        room = std::min(room, limit > usage ? limit - usage : 0);
    }
    return room;
}

// RLIMIT_AS minus the address space in use (ulimit -v: allocations past it fail).
uint64_t rlimit_room() {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return NONE;
    std::ifstream f("/proc/self/statm");
    uint64_t pages = 0;
    if (!(f >> pages)) return NONE;
    const uint64_t used = mul_sat(pages, (uint64_t)sysconf(_SC_PAGESIZE));
    return rl.rlim_cur > used ? rl.rlim_cur - used : 0;
}

}  // namespace

uint64_t mul_sat(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
uint64_t add_sat(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

uint64_t available_memory() {
    if (const char* env = std::getenv("GGMLPY_MEM_LIMIT")) {
        char* end = nullptr;
        unsigned long long v = std::strtoull(env, &end, 10);
        if (end != env && *end == '\0') return (uint64_t)v;
    }
    return std::min({mem_available(), cgroup_room(), rlimit_room()});
}

uint64_t memory_budget() {
    const uint64_t a = available_memory();
    return a == NONE ? NONE : a - a / 8;
}

void check_memory(uint64_t bytes, const std::string& what, const std::string& hint) {
    const uint64_t budget = memory_budget();
    if (bytes <= budget) return;
    auto mib = [](uint64_t b) {
        std::ostringstream s;
        if (b == UINT64_MAX) return std::string("more than 2^64 bytes");
        s << b << " bytes (" << (b >> 20) << " MiB)";
        return s.str();
    };
    throw MemoryLimitError(what + " needs " + mib(bytes) + ", but only " + mib(available_memory()) +
                           " are available (the limit is 7/8 of that, " + mib(budget) + "); " + hint);
}

}  // namespace ggmlpy
