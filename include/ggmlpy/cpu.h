// CPU facts detected at run time (cpuid on x86, getauxval on arm64) and the default thread count.
#pragma once
#include <string>
#include <vector>

namespace ggmlpy {

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false, bmi2 = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
    bool avx512vnni = false, avx512bf16 = false;
    bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
    bool neon = false, dotprod = false, fp16 = false;
};

const CpuFeatures& cpu_features();
// Feature names that are present, in /proc/cpuinfo spelling ("avx2", "avx512_vnni", "asimddp"...).
std::vector<std::string> cpu_feature_names();
// Physical cores (not SMT siblings); the default thread count. At least 1.
int physical_cores();

}  // namespace ggmlpy
