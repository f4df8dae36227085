// Bindings for the info area: version, CPU features (cpu.h), kernel tables (kernels.h) and the
// default thread count. info_text() is what `ggmlpy info` prints. Forwarding only.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <vector>
#include <sstream>

#include "bindings.h"
#include "ggmlpy/cpu.h"
#include "ggmlpy/dtype.h"
#include "ggmlpy/error.h"
#include "kernels/kernels.h"

namespace ggmlpy_bind {
namespace {

py::dict features_dict() {
    const ggmlpy::CpuFeatures& f = ggmlpy::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2; d["fma"] = f.fma; d["f16c"] = f.f16c; d["bmi2"] = f.bmi2;
    d["avx512f"] = f.avx512f; d["avx512bw"] = f.avx512bw; d["avx512vl"] = f.avx512vl;
    d["avx512dq"] = f.avx512dq; d["avx512_vnni"] = f.avx512vnni; d["avx512_bf16"] = f.avx512bf16;
    d["amx_tile"] = f.amx_tile; d["amx_int8"] = f.amx_int8; d["amx_bf16"] = f.amx_bf16;
    d["neon"] = f.neon; d["dotprod"] = f.dotprod; d["fp16"] = f.fp16;
    return d;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s.empty() ? "(none)" : s;
}

std::string info_text() {
    std::ostringstream o;
    o << "ggmlpy " << GGMLPY_VERSION << "\n";
#if defined(GGMLPY_ARCH_X86)
    o << "arch:              x86_64\n";
#elif defined(GGMLPY_ARCH_ARM64)
    o << "arch:              arm64\n";
#else
    o << "arch:              generic\n";
#endif
    o << "cpu features:      " << join(ggmlpy::cpu_feature_names()) << "\n";
    o << "kernel table:      " << ggmlpy::kernels().name << "\n";
    o << "available tables:  " << join(ggmlpy::available_kernels()) << "\n";
    o << "default threads:   " << ggmlpy::physical_cores() << " (physical cores)";
    return o.str();
}

// out[c, r] = dot(weight row r, activation row c) through one named table, exactly as matmul
// does it: activations converted once per row to the partner type (from_float), then vec_dot,
// or (use_gemm) the gemm_pack tiles on q8_0_pack8 panels of 8 rows where the table has them, else
// the gemm tiles. w: nrows rows of type t with n elements each (bytes); x: (m, n) float32.
// Returns (out (m, nrows) float32, partner type name, partner rows as bytes). For tests.
py::tuple kernel_matmul(const std::string& table, const std::string& type_name,
                        py::array_t<uint8_t, py::array::c_style> w, int64_t n,
                        py::array_t<float, py::array::c_style> x, bool use_gemm) {
    using namespace ggmlpy;
    const KernelTable* tab = find_kernels(table);
    if (!tab) throw ValueError("kernel_matmul: table '" + table + "' is not available here");
    const DType t = dtype_from_name(type_name);
    const TypeKernels& k = tab->type[(int)t];
    if (!k.vec_dot) throw ValueError("kernel_matmul: type " + type_name + " has no vec_dot");
    if (n <= 0) throw ValueError("kernel_matmul: n must be > 0");
    const size_t rs = row_size(t, n);  // throws if n is not a multiple of the block size
    if (w.ndim() != 1 || (size_t)w.size() % rs != 0)
        throw ValueError("kernel_matmul: w must be 1-d bytes, a multiple of the row size " + std::to_string(rs));
    if (x.ndim() != 2 || x.shape(1) != n)
        throw ValueError("kernel_matmul: x must be (m, " + std::to_string(n) + ") float32");
    const int64_t nrows = (int64_t)((size_t)w.size() / rs), m = x.shape(0);
    const DType p = k.vec_dot_type;
    const FromFloatFn from_float = tab->type[(int)p].from_float;
    if (!from_float) throw ValueError("kernel_matmul: partner type has no from_float");
    const size_t prs = row_size(p, n);
    std::string ybytes(prs * (size_t)m, '\0');
    py::array_t<float> out({m, nrows});
    const uint8_t* wp = w.data();
    const float* xp = x.data();
    float* op = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t c = 0; c < m; ++c) from_float(xp + c * n, &ybytes[(size_t)c * prs], n);
        const char* yp = ybytes.data();
        if (use_gemm && k.gemm_pack && p == DType::Q8_0) {  // prefill on panels of 8 packed rows
            std::vector<char> panel(q8_0_pack8_size(n));
            const int tx = std::max(1, k.gemm_pack_rows_x);
            for (int64_t c0 = 0; c0 < m; c0 += 8) {
                const int ty = (int)std::min<int64_t>(8, m - c0);
                q8_0_pack8(yp + c0 * prs, prs, ty, panel.data(), n);
                for (int64_t r0 = 0; r0 < nrows; r0 += tx)
                    k.gemm_pack(n, op + c0 * nrows + r0, (size_t)nrows, wp + r0 * rs, rs,
                                (int)std::min<int64_t>(tx, nrows - r0), panel.data(), 0, ty);
            }
        } else if (use_gemm && k.gemm) {
            const int tx = std::max(1, k.gemm_rows_x), ty = std::max(1, k.gemm_rows_y);
            for (int64_t c0 = 0; c0 < m; c0 += ty)
                for (int64_t r0 = 0; r0 < nrows; r0 += tx)
                    k.gemm(n, op + c0 * nrows + r0, (size_t)nrows, wp + r0 * rs, rs,
                           (int)std::min<int64_t>(tx, nrows - r0), yp + c0 * prs, prs,
                           (int)std::min<int64_t>(ty, m - c0));
        } else {
            for (int64_t c = 0; c < m; ++c)
                for (int64_t r = 0; r < nrows; ++r) k.vec_dot(n, op + c * nrows + r, wp + r * rs, yp + c * prs);
        }
    }
    return py::make_tuple(out, std::string(dtype_name(p)), py::bytes(ybytes));
}

// Weight types the reference table can multiply (those with a vec_dot).
std::vector<std::string> kernel_types() {
    std::vector<std::string> v;
    for (int id = 0; id < ggmlpy::DTYPE_TABLE_SIZE; ++id)
        if (ggmlpy::scalar_kernels().type[id].vec_dot) v.push_back(ggmlpy::dtype_name((ggmlpy::DType)id));
    return v;
}

}  // namespace

void register_info(py::module_& m) {
    m.attr("__version__") = GGMLPY_VERSION;
    m.def("info_text", &info_text,
          "Version, CPU features, kernel table in use, available tables, default thread count.");
    m.def("cpu_features", &features_dict, "Detected CPU features as {name: bool}.");
    m.def("cpu_feature_names", &ggmlpy::cpu_feature_names,
          "Present CPU features in /proc/cpuinfo spelling (avx2, avx512_vnni, asimddp, ...).");
    m.def("physical_cores", &ggmlpy::physical_cores,
          "Physical cores this process may use: the default thread count.");
    m.def("kernel_name", []() { return std::string(ggmlpy::kernels().name); },
          "Name of the kernel table in use (GGMLPY_ISA if set, else the best this CPU runs).");
    m.def("available_kernels", &ggmlpy::available_kernels,
          "Kernel tables compiled in and runnable on this CPU, best last.");
    m.def("set_kernels", &ggmlpy::set_kernels, py::arg("name"),
          "Use the named kernel table (scalar, avx2, avx512, neon); ValueError if unknown or "
          "this CPU cannot run it.");
    m.def("kernel_types", &kernel_types, "Weight types the kernel tables multiply.");
    m.def("kernel_matmul", &kernel_matmul, py::arg("table"), py::arg("type"), py::arg("w"),
          py::arg("n"), py::arg("x"), py::arg("use_gemm") = false,
          "Test hook: out[c, r] = dot(w row r, x row c) through the named table's from_float + "
          "vec_dot (or gemm tiles). Returns (out, partner type, partner bytes).");
}

}  // namespace ggmlpy_bind
