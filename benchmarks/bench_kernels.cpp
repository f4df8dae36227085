// Kernel benchmark (not a test): memory read bandwidth, decode-shaped matmul (1 activation row,
// weights >> L3, GB/s of weights read) and prefill-shaped matmul (512 activation rows, GFLOP/s)
// straight on the kernel tables, rows split over 1 or 2 std::threads. Built with the C++ tests
// (x86 only: the bandwidth probe uses AVX2 loads): cmake --build build/tests --target bench_kernels
// Usage: bench_kernels [table] [types,...] [weight MiB] [rounds]   (defaults: best table, all
// types, 256, 5). Every figure is the median over `rounds`. Each round takes 6 decode passes
// and 6 of each bandwidth probe (1 and 8 read streams per thread, on 256 MiB) in turn, and keeps
// the best of each: the machine is shared, so a percentage only means something against bandwidth
// measured under the same load, and with as many tries. "L2 GB/s" is decode with the weights in
// cache, the compute-bound speed; "% 1-strm" compares decode with the bandwidth of one read stream
// per thread, the access pattern decode itself has. BENCH_NOGEMM=1 runs the prefill shape with one
// vec_dot per pair instead of the gemm tiles (gemm_pack or gemm). BENCH_TILE=1 times only the
// gemm_pack tile (one weight row x a panel of 8 activation rows, weights in L2, one thread).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "quant/quant.h"

using namespace ggmlpy;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// run f(thread_index) on nth threads, return wall seconds
double run_threads(int nth, const std::function<void(int)>& f) {
    const double t0 = now();
    std::vector<std::thread> th;
    for (int i = 1; i < nth; ++i) th.emplace_back(f, i);
    f(0);
    for (auto& t : th) t.join();
    return now() - t0;
}

// Read bandwidth: each thread sums its half of the buffer with `streams` interleaved sequential
// streams (more streams = more prefetchers in flight). Best of reps, GB/s.
double read_bw(const uint8_t* buf, size_t bytes, int nth, int streams, int reps = 5) {
    double best = 1e30;
    volatile long sink = 0;
    for (int rep = 0; rep < reps; ++rep) {
        const double t = run_threads(nth, [&](int ti) {
            const size_t per = bytes / nth, sl = per / streams;
            const uint8_t* base = buf + ti * per;
            __m256i acc[8];
            for (auto& a : acc) a = _mm256_setzero_si256();
            for (size_t off = 0; off < sl; off += 64)
                for (int s = 0; s < streams; ++s) {
                    const __m256i* p = (const __m256i*)(base + s * sl + off);
                    acc[s & 7] = _mm256_add_epi64(acc[s & 7], _mm256_xor_si256(_mm256_loadu_si256(p), _mm256_loadu_si256(p + 1)));
                }
            long r = 0;
            for (auto& a : acc) r += _mm256_extract_epi64(a, 0);
            sink += r;
        });
        best = std::min(best, t);
    }
    return bytes / best / 1e9;
}

struct Mat {
    DType t;
    int64_t k, rows;
    size_t rs;
    std::vector<uint8_t> data;
};

// rows x k weights: 64 distinct quantized rows repeated (values do not change the speed)
Mat make_weights(DType t, int64_t k, int64_t rows) {
    Mat m{t, k, rows, row_size(t, k), {}};
    m.data.resize(m.rs * rows);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 1);
    std::vector<float> x(k);
    const int64_t uniq = std::min<int64_t>(64, rows);
    for (int64_t r = 0; r < uniq; ++r) {
        for (auto& v : x) v = nd(rng);
        quantize_row(t, x.data(), &m.data[r * m.rs], k);
    }
    for (int64_t r = uniq; r < rows; ++r) std::memcpy(&m.data[r * m.rs], &m.data[(r % uniq) * m.rs], m.rs);
    return m;
}

std::vector<uint8_t> make_acts(const KernelTable& kt, DType p, int64_t k, int64_t nrows, size_t* prs) {
    const size_t rs = row_size(p, k);
    std::vector<uint8_t> y(rs * nrows);
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0, 1);
    std::vector<float> x(k);
    for (int64_t r = 0; r < nrows; ++r) {
        for (auto& v : x) v = nd(rng);
        kt.type[(int)p].from_float(x.data(), &y[r * rs], k);
    }
    *prs = rs;
    return y;
}

// One activation row against weight rows [r0, r1), as mul_mat decodes a chunk: through the table's
// decode where it has one (kernels.h), else one vec_dot_prep (with the activation row's prepared
// per-block data) or vec_dot per row.
struct Decoder {
    const TypeKernels& tk;
    const Mat& w;
    std::vector<uint8_t> y, prep;
    Decoder(const KernelTable& kt, const Mat& w_) : tk(kt.type[(int)w_.t]), w(w_) {
        size_t yrs;
        y = make_acts(kt, tk.vec_dot_type, w.k, 1, &yrs);
        if (tk.vec_dot_type == DType::Q8_0 && (tk.vec_dot_prep || tk.decode)) {
            prep.resize(q8_0_prep_size(w.k));
            q8_0_prep(y.data(), prep.data(), w.k);
        }
    }
    void run(float* out, int64_t r0, int64_t r1) const {
        const uint8_t* x = &w.data[r0 * w.rs];
        if (tk.decode) {
            tk.decode(w.k, &out[r0], x, w.rs, r1 - r0, y.data(), prep.size() ? prep.data() : nullptr);
        } else if (tk.vec_dot_prep && prep.size()) {
            for (int64_t r = r0; r < r1; ++r, x += w.rs) tk.vec_dot_prep(w.k, &out[r], x, y.data(), prep.data());
        } else {
            for (int64_t r = r0; r < r1; ++r, x += w.rs) tk.vec_dot(w.k, &out[r], x, y.data());
        }
    }
};

// decode: out[r] = dot(W row r, y) for all rows, split in nth contiguous ranges; seconds
double decode_pass(const Decoder& dec, float* out, int nth) {
    const int64_t rows = dec.w.rows;
    return run_threads(nth, [&](int ti) { dec.run(out, rows * ti / nth, rows * (ti + 1) / nth); });
}

// decode with the weights in cache: every thread makes passes over the same ~192 KiB matrix (each
// core keeps its copy in L2), so this is the kernel's compute-bound speed, GB/s of weights over all
// threads. Against the DRAM figure it says which of the two bounds a type.
double bench_decode_cached(const KernelTable& kt, DType t, int nth) {
    const int64_t k = 4096;
    const Mat w = make_weights(t, k, std::max<int64_t>(4, (192 << 10) / row_size(t, k)));
    const Decoder dec(kt, w);
    const int passes = 2000;
    std::vector<float> out(w.rows * nth);
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        const double t = run_threads(nth, [&](int ti) {
            for (int p = 0; p < passes; ++p) dec.run(&out[w.rows * ti], 0, w.rows);
        });
        best = std::min(best, t);
    }
    return (double)nth * passes * w.data.size() / best / 1e9;
}

// prefill: S (ny x rows) = Y (ny x k) . W^T with the table's gemm tiles; activations in chunks of
// 64 rows (L2), each weight tile reused across the chunk.
double bench_prefill(const KernelTable& kt, const Mat& w, int64_t ny, int nth) {
    const TypeKernels& tk = kt.type[(int)w.t];
    size_t yrs;
    const auto y = make_acts(kt, tk.vec_dot_type, w.k, ny, &yrs);
    std::vector<float> out((size_t)ny * w.rows);
    // as mul_mat prefills: on panels of 8 packed activation rows where the table has gemm_pack
    const bool gp = tk.gemm_pack && !getenv("BENCH_NOGEMM");
    const size_t prs = gp ? q8_0_pack8_size(w.k) : 0;
    std::vector<uint8_t> panels(prs * (ny + 7) / 8);
    for (int64_t r = 0; gp && r < ny; r += 8)
        q8_0_pack8(&y[r * yrs], yrs, (int)std::min<int64_t>(8, ny - r), &panels[r / 8 * prs], w.k);
    const int tx = std::max(1, gp ? tk.gemm_pack_rows_x : tk.gemm_rows_x);
    const int ty = gp ? 8 : std::max(1, tk.gemm_rows_y);
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        const double t = run_threads(nth, [&](int ti) {
            const int64_t r0 = w.rows * ti / nth, r1 = w.rows * (ti + 1) / nth;
            for (int64_t c0 = 0; c0 < ny; c0 += 64) {
                const int64_t c1 = std::min(ny, c0 + 64);
                for (int64_t r = r0; r < r1; r += tx) {
                    const int nrx = (int)std::min<int64_t>(tx, r1 - r);
                    for (int64_t c = c0; c < c1; c += ty) {
                        const int nry = (int)std::min<int64_t>(ty, c1 - c);
                        if (gp)
                            tk.gemm_pack(w.k, &out[c * w.rows + r], w.rows, &w.data[r * w.rs], w.rs, nrx, &panels[c / 8 * prs], 0, nry);
                        else if (tk.gemm && !getenv("BENCH_NOGEMM"))
                            tk.gemm(w.k, &out[c * w.rows + r], w.rows, &w.data[r * w.rs], w.rs, nrx, &y[c * yrs], yrs, nry);
                        else
                            for (int j = 0; j < nry; ++j)
                                for (int i = 0; i < nrx; ++i)
                                    tk.vec_dot(w.k, &out[(c + j) * w.rows + r + i], &w.data[(r + i) * w.rs], &y[(c + j) * yrs]);
                    }
                }
            }
        });
        best = std::min(best, t);
    }
    return best;
}

// The prefill / batched-decode tile alone: one weight row against a full panel of 8 activation
// rows, 64 weight rows of k = 2048 (in L2), best of 30 passes; ns per (weight row x activation row
// x 256 elements), the unit the kernel's loop works in. 0 where the table has no gemm_pack.
double bench_tile_ns(const KernelTable& kt, DType t) {
    const TypeKernels& tk = kt.type[(int)t];
    if (!tk.gemm_pack) return 0;
    const int64_t k = 2048;
    const Mat w = make_weights(t, k, 64);
    size_t yrs;
    const auto y = make_acts(kt, DType::Q8_0, k, 8, &yrs);
    std::vector<uint8_t> panel(q8_0_pack8_size(k));
    q8_0_pack8(y.data(), yrs, 8, panel.data(), k);
    std::vector<float> out(64 * 8);
    double best = 1e30;
    for (int rep = 0; rep < 30; ++rep) {
        const double t0 = now();
        for (int it = 0; it < 200; ++it) tk.gemm_pack(k, out.data(), 64, w.data.data(), w.rs, 64, panel.data(), 0, 8);
        best = std::min(best, now() - t0);
    }
    return best / (200.0 * 64 * 8 * (k / 256)) * 1e9;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
    const auto names = available_kernels();
    const std::string table = argc > 1 ? argv[1] : names.back();
    const KernelTable* kt = find_kernels(table);
    if (!kt) { std::fprintf(stderr, "table %s not available\n", table.c_str()); return 1; }
    std::vector<std::string> types = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                      "q4_k", "q5_k", "q6_k", "f16", "bf16", "f32"};
    if (argc > 2) {
        types.clear();
        std::string s = argv[2];
        for (size_t a = 0, b; a <= s.size(); a = b + 1) {
            b = s.find(',', a);
            if (b == std::string::npos) b = s.size();
            if (b > a) types.push_back(s.substr(a, b - a));
        }
    }
    if (std::getenv("BENCH_TILE")) {  // the gemm_pack tile alone, single thread
        for (const auto& tn : types) {
            const double ns = bench_tile_ns(*kt, dtype_from_name(tn));
            if (ns > 0) std::printf("%-6s gemm_pack tile: %.2f ns per row pair and 256 elements\n", tn.c_str(), ns);
        }
        return 0;
    }
    const double mib = argc > 3 ? atof(argv[3]) : 256;
    const int rounds = argc > 4 ? std::max(1, atoi(argv[4])) : 5;

    // bandwidth of this machine (1 GiB buffer, touched first)
    const size_t bwbytes = (size_t)1 << 30;
    std::vector<uint8_t> buf(bwbytes);
    for (size_t i = 0; i < bwbytes; i += 4096) buf[i] = (uint8_t)i;
    double bw[3][2];
    const int streams[3] = {1, 4, 8};
    for (int s = 0; s < 3; ++s)
        for (int nth = 1; nth <= 2; ++nth) bw[s][nth - 1] = read_bw(buf.data(), bwbytes, nth, streams[s]);
    // a 256 MiB buffer kept for the bandwidth taken beside the decode passes
    buf.resize((size_t)256 << 20);
    std::printf("read bandwidth GB/s (1 GiB):   1 thread: %.1f / %.1f / %.1f   2 threads: %.1f / %.1f / %.1f"
                "   (1 / 4 / 8 streams per thread)\n",
                bw[0][0], bw[1][0], bw[2][0], bw[0][1], bw[1][1], bw[2][1]);
    std::printf("table %s; decode: weights %.0f MiB (> 32 MiB L3), k = 4096, 1 activation row; "
                "prefill: 512 activation rows x 1024 weight rows x 4096; medians of %d rounds\n",
                kt->name, mib, rounds);
    std::printf("%-6s %3s %11s %8s %8s %9s %8s %9s %8s %13s %9s\n", "type", "thr", "decode GB/s", "bw GB/s", "% of bw",
                "% 1-strm", "tok/s*", "bound t/s", "L2 GB/s", "prefill GF/s", "gemm rows");
    for (const auto& tn : types) {
        const DType t = dtype_from_name(tn);
        const int64_t k = 4096;
        const int64_t rows = (int64_t)(mib * 1048576.0 / row_size(t, k));
        const Mat w = make_weights(t, k, rows);
        const Mat wp = make_weights(t, k, 1024);
        const TypeKernels& tk = kt->type[(int)t];
        const Decoder dec(*kt, w);
        std::vector<float> out(w.rows);
        for (int nth = 1; nth <= 2; ++nth) {
            std::vector<double> gbs, bws, pct, pct1, gfs, l2s;
            for (int r = 0; r < rounds; ++r) {
                // decode passes and the two bandwidth probes (1 and 8 streams per thread) in
                // turn, 6 of each: all three under the same load, each figure a best of 6
                double td = 1e30, bw1 = 0, bw8 = 0;
                for (int rep = 0; rep < 6; ++rep) {
                    td = std::min(td, decode_pass(dec, out.data(), nth));
                    bw1 = std::max(bw1, read_bw(buf.data(), buf.size(), nth, 1, 1));
                    bw8 = std::max(bw8, read_bw(buf.data(), buf.size(), nth, 8, 1));
                }
                const double bwl = std::max(bw1, bw8);
                gbs.push_back(w.data.size() / td / 1e9);
                bws.push_back(bwl);
                pct.push_back(100.0 * gbs.back() / bwl);
                pct1.push_back(100.0 * gbs.back() / bw1);
                if (r < 3) gfs.push_back(2.0 * 512 * 1024 * k / bench_prefill(*kt, wp, 512, nth) / 1e9);
                if (r < 3) l2s.push_back(bench_decode_cached(*kt, t, nth));
            }
            const double bytes = (double)w.data.size();
            std::printf("%-6s %3d %11.1f %8.1f %7.0f%% %8.0f%% %8.1f %9.1f %8.1f %13.1f %6dx%d\n", tn.c_str(), nth,
                        median(gbs), median(bws), median(pct), median(pct1), median(gbs) * 1e9 / bytes, median(bws) * 1e9 / bytes, median(l2s), median(gfs),
                        tk.gemm_pack ? tk.gemm_pack_rows_x : tk.gemm_rows_x, tk.gemm_pack ? 8 : tk.gemm_rows_y);
            std::fflush(stdout);
        }
    }
    std::printf("* tok/s: passes over this weight matrix per second (decode tokens if it were the whole model);\n"
                "  bound t/s: the same at the measured read bandwidth. %% of bw: median of the per-round ratios.\n"
                "  %% 1-strm: the same against one read stream per thread (decode reads each thread's rows as two).\n"
                "  L2 GB/s: decode with the weights in cache (the kernel's compute-bound speed).\n");
    return 0;
}
