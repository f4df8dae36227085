// Kernel table dispatch (kernels.h): the compiled-in tables, whether this CPU can run each, and
// the one in use. The first kernels() call picks GGMLPY_ISA if set (ValueError if unknown or not
// runnable here), else the best runnable table: avx512 > avx2 > scalar on x86, neon > scalar on
// arm64. A table is runnable only if the CPU (and OS) has every feature its file is compiled with.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "ggmlpy/cpu.h"
#include "ggmlpy/error.h"
#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

struct Candidate {
    const char* name;
    const KernelTable& (*get)();
    bool (*runnable)(const CpuFeatures&);
    const char* needs;  // for error messages
};

// Worst first, best last. Each ISA file is compiled with the flags in CMakeLists.txt; the
// runnable test requires all of them.
const Candidate CANDIDATES[] = {
    {"scalar", scalar_kernels, [](const CpuFeatures&) { return true; }, "nothing"},
#if defined(GGMLPY_ARCH_X86)
    {"avx2", avx2_kernels,
     [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c && f.bmi2; },
     "AVX2, FMA, F16C, BMI2"},
    {"avx512", avx512_kernels,
     [](const CpuFeatures& f) {
         return f.avx2 && f.fma && f.f16c && f.bmi2 && f.avx512f && f.avx512bw && f.avx512vl &&
                f.avx512dq && f.avx512vnni && f.avx512bf16;
     },
     "AVX-512 F/BW/VL/DQ, VNNI, BF16 (plus AVX2, FMA, F16C, BMI2)"},
#endif
#if defined(GGMLPY_ARCH_ARM64)
    // neon.cpp checks dotprod itself (vdotq_s32 path vs widening-multiply fallback)
    {"neon", neon_kernels, [](const CpuFeatures& f) { return f.neon; }, "NEON (asimd)"},
#endif
};

const Candidate* find_candidate(const std::string& name) {
    for (const Candidate& c : CANDIDATES)
        if (name == c.name) return &c;
    return nullptr;
}

std::string known_names() {
    std::string s;
    for (const Candidate& c : CANDIDATES) s += (s.empty() ? "" : ", ") + std::string(c.name);
    return s;
}

// Resolves a name to a runnable table or throws ValueError saying why not.
const KernelTable& resolve(const std::string& name, const char* origin) {
    const Candidate* c = find_candidate(name);
    if (!c)
        throw ValueError(std::string(origin) + ": unknown kernel table '" + name +
                         "'; this build has: " + known_names() +
                         " (all names: scalar, avx2, avx512, neon)");
    if (!c->runnable(cpu_features()))
        throw ValueError(std::string(origin) + ": kernel table '" + name +
                         "' cannot run on this CPU: it needs " + c->needs);
    return c->get();
}

const KernelTable& best() {
    const Candidate* pick = &CANDIDATES[0];
    for (const Candidate& c : CANDIDATES)
        if (c.runnable(cpu_features())) pick = &c;
    return pick->get();
}

std::atomic<const KernelTable*> g_current{nullptr};
std::mutex g_mutex;

}  // namespace

const KernelTable& kernels() {
    const KernelTable* t = g_current.load(std::memory_order_acquire);
    if (t) return *t;
    std::lock_guard<std::mutex> lock(g_mutex);
    t = g_current.load(std::memory_order_relaxed);
    if (!t) {
        const char* env = std::getenv("GGMLPY_ISA");
        // An invalid GGMLPY_ISA throws here, on every kernels() call, until it is fixed or
        // set_kernels() overrides it: never a silent fallback.
        t = (env && *env) ? &resolve(env, "GGMLPY_ISA") : &best();
        g_current.store(t, std::memory_order_release);
    }
    return *t;
}

const KernelTable* find_kernels(const std::string& name) {
    const Candidate* c = find_candidate(name);
    if (!c || !c->runnable(cpu_features())) return nullptr;
    return &c->get();
}

std::vector<std::string> available_kernels() {
    std::vector<std::string> v;
    for (const Candidate& c : CANDIDATES)
        if (c.runnable(cpu_features())) v.push_back(c.name);
    return v;
}

void set_kernels(const std::string& name) {
    const KernelTable& t = resolve(name, "set_kernels");
    std::lock_guard<std::mutex> lock(g_mutex);
    g_current.store(&t, std::memory_order_release);
}

}  // namespace ggmlpy
