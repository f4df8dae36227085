// CPU feature detection (include/ggmlpy/cpu.h): cpuid + XGETBV on x86, getauxval on arm64.
// A feature counts only if the CPU has it AND the OS saves its register state (XCR0), because
// that is what decides whether an instruction faults. Names follow /proc/cpuinfo spelling so
// `ggmlpy info` can be checked against the kernel's own list. physical_cores() counts unique
// (package, core) pairs among the CPUs this process may run on: the default thread count.
#include "ggmlpy/cpu.h"

#include <sched.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace ggmlpy {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
struct Regs { unsigned a = 0, b = 0, c = 0, d = 0; };

Regs cpuid(unsigned leaf, unsigned sub) {
    Regs r;
    __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
    return r;
}

// XCR0: which register states the OS saves on context switch. Only valid if OSXSAVE is set.
unsigned long long xgetbv0() {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

inline bool bit(unsigned v, int i) { return (v >> i) & 1u; }

CpuFeatures detect() {
    CpuFeatures f;
    const unsigned max_leaf = cpuid(0, 0).a;
    if (max_leaf < 1) return f;
    const Regs l1 = cpuid(1, 0);
    const bool osxsave = bit(l1.c, 27);
    const unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    // XCR0 bits: 1 SSE, 2 AVX (YMM upper), 5 opmask, 6 ZMM_Hi256, 7 Hi16_ZMM, 17 XTILECFG, 18 XTILEDATA
    const bool os_avx = (xcr0 & 0x6) == 0x6;
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    const bool os_amx = (xcr0 & 0x60000) == 0x60000;

    const bool avx = bit(l1.c, 28) && os_avx;
    f.fma = avx && bit(l1.c, 12);
    f.f16c = avx && bit(l1.c, 29);
    if (max_leaf >= 7) {
        const Regs l7 = cpuid(7, 0);
        f.avx2 = avx && bit(l7.b, 5);
        f.bmi2 = bit(l7.b, 8);  // scalar (GPR) instructions: no OS state needed
        f.avx512f = os_avx512 && bit(l7.b, 16);
        f.avx512dq = f.avx512f && bit(l7.b, 17);
        f.avx512bw = f.avx512f && bit(l7.b, 30);
        f.avx512vl = f.avx512f && bit(l7.b, 31);
        f.avx512vnni = f.avx512f && bit(l7.c, 11);
        f.amx_bf16 = os_amx && bit(l7.d, 22);
        f.amx_tile = os_amx && bit(l7.d, 24);
        f.amx_int8 = os_amx && bit(l7.d, 25);
        if (l7.a >= 1) f.avx512bf16 = f.avx512f && bit(cpuid(7, 1).a, 5);
    }
    // Linux also asks a process to request AMX tile data permission (arch_prctl) before use;
    // an AMX kernel must do that itself. Here we only report what CPU + XCR0 allow.
    return f;
}
#elif defined(__aarch64__) && defined(__linux__)
CpuFeatures detect() {
    CpuFeatures f;
    const unsigned long hw = getauxval(AT_HWCAP);
    f.neon = (hw & HWCAP_ASIMD) != 0;
    f.dotprod = (hw & HWCAP_ASIMDDP) != 0;
    f.fp16 = (hw & HWCAP_FPHP) && (hw & HWCAP_ASIMDHP);
    return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

// Reads one integer from a sysfs file; -1 if missing.
int read_int(const std::string& path) {
    std::ifstream in(path);
    int v = -1;
    if (!(in >> v)) return -1;
    return v;
}

int count_physical_cores() {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    const bool have_mask = sched_getaffinity(0, sizeof(mask), &mask) == 0;
    auto allowed = [&](int cpu) { return !have_mask || (cpu < CPU_SETSIZE && CPU_ISSET(cpu, &mask)); };

    // 1) sysfs topology (x86 and arm64 alike)
    std::set<std::pair<int, int>> cores;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        const int core = read_int(base + "core_id");
        if (core < 0) {
            if (cpu > 0 && read_int("/sys/devices/system/cpu/cpu" + std::to_string(cpu + 1) + "/topology/core_id") < 0)
                break;  // two consecutive misses: past the last CPU (ids may have one gap when offline)
            continue;
        }
        if (!allowed(cpu)) continue;
        cores.insert({read_int(base + "physical_package_id"), core});
    }
    if (!cores.empty()) return (int)cores.size();

    // 2) /proc/cpuinfo "processor" / "physical id" / "core id" (x86 without sysfs)
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    int proc = -1, phys = 0;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
        const std::string val = line.substr(colon + 1);
        try {
            if (key == "processor") proc = std::stoi(val);
            else if (key == "physical id") phys = std::stoi(val);
            else if (key == "core id" && proc >= 0 && allowed(proc)) cores.insert({phys, std::stoi(val)});
        } catch (...) {
        }
    }
    if (!cores.empty()) return (int)cores.size();

    // 3) logical CPUs
    int n = have_mask ? CPU_COUNT(&mask) : (int)std::thread::hardware_concurrency();
    return n > 0 ? n : 1;
}

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

std::vector<std::string> cpu_feature_names() {
    const CpuFeatures& f = cpu_features();
    std::vector<std::string> v;
    const std::pair<bool, const char*> all[] = {
        {f.avx2, "avx2"}, {f.fma, "fma"}, {f.f16c, "f16c"}, {f.bmi2, "bmi2"},
        {f.avx512f, "avx512f"}, {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"},
        {f.avx512dq, "avx512dq"}, {f.avx512vnni, "avx512_vnni"}, {f.avx512bf16, "avx512_bf16"},
        {f.amx_tile, "amx_tile"}, {f.amx_int8, "amx_int8"}, {f.amx_bf16, "amx_bf16"},
        {f.neon, "asimd"}, {f.dotprod, "asimddp"}, {f.fp16, "asimdhp"},
    };
    for (const auto& p : all)
        if (p.first) v.push_back(p.second);
    return v;
}

int physical_cores() {
    static const int n = count_physical_cores();
    return n;
}

}  // namespace ggmlpy
