// flash_attn (the fused attention over a row-per-position cache) against a naive float64 softmax
// attention written here, for f32 / f16 / q8_0 / q4_0 caches, grouped heads (rep 3), causal
// chunks that start at 0 and past a tile's edge, at 1 and 2 threads. The reference reads the
// dequantized cache, and for a quantized K the query rounded through q8_0 (the partner type the
// op converts it to), so what is left is float32 summation error.
// Invariance: every query row of a chunk equals, bit for bit, the same query evaluated alone
// (n = 1 at its position), and 1 thread equals 2 threads.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/graph.h"
#include "ggmlpy/ops.h"
#include "quant/quant.h"

using namespace ggmlpy;

namespace {

std::mt19937 rng(7);

constexpr int64_t HD = 64, NH = 6, NHKV = 2, CELLS = 700;

struct Cache {
    Context ctx;
    Tensor* k = nullptr;  // [HD * NHKV, CELLS], one row per position
    Tensor* v = nullptr;
    std::vector<float> kd, vd;  // dequantized, [CELLS][HD * NHKV]

    explicit Cache(DType t) {
        const int64_t row = HD * NHKV;
        k = ctx.new_tensor(t, {row, CELLS});
        v = ctx.new_tensor(t, {row, CELLS});
        kd.resize((size_t)(row * CELLS));
        vd.resize((size_t)(row * CELLS));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> x((size_t)row);
        for (Tensor* c : {k, v})
            for (int64_t j = 0; j < CELLS; ++j) {
                for (int64_t e = 0; e < row; ++e) x[e] = nd(rng) * (e % 17 == 3 ? 4.0f : 1.0f);  // a few outlier channels
                char* dst = static_cast<char*>(c->data) + j * c->nb[1];
                quantize_row(t, x.data(), dst, row);
                dequantize_row(t, dst, (c == k ? kd : vd).data() + j * row, row);
            }
    }
    // [HD, n_kv, NHKV] views of the first n_kv positions
    Tensor* view(Context& g, Tensor* c, int64_t n_kv) const {
        return view_3d(g, c, HD, n_kv, NHKV, c->nb[1], row_size(c->type, HD), 0);
    }
};

// flash_attn over query rows [i0, i0 + n) of qall (f32 [HD, NH, N_ALL]) at positions
// n_past .. n_past + n - 1, through a strided view of qall -> a copy of out [n][NH][HD] (the
// compute buffer is reused by the next compute).
std::vector<float> run(ThreadPool& pool, int nth, const Cache& c, Tensor* qall, int64_t i0, int64_t n, int64_t n_past) {
    Context g(false);
    Tensor* q = view_3d(g, qall, HD, NH, n, qall->nb[1], qall->nb[2], (size_t)i0 * qall->nb[2]);
    Tensor* o = flash_attn(g, q, c.view(g, c.k, n_past + n), c.view(g, c.v, n_past + n), 0.125f, n_past);
    Graph gr;
    build_forward(gr, o);
    compute(gr, pool, nth);
    CHECK(o->ne[0] == HD && o->ne[1] == NH && o->ne[2] == n && o->is_contiguous());
    const float* p = o->ptr<float>();
    return std::vector<float>(p, p + HD * NH * n);
}

void test_type(DType t, ThreadPool& pool) {
    const Cache c(t);
    const bool q8_partner = t == DType::Q8_0 || t == DType::Q4_0;
    Context qc;
    const int64_t N_ALL = 48;
    Tensor* qall = qc.new_tensor(DType::F32, {HD, NH, N_ALL});
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t i = 0; i < qall->nelements(); ++i) qall->ptr<float>()[i] = nd(rng);

    struct Case { int64_t n_past, n; };
    for (Case cs : {Case{0, 1}, Case{0, 37}, Case{5, 1}, Case{127, 2}, Case{128, 1}, Case{255, 2}, Case{300, 40}, Case{600, 3}}) {
        const std::vector<float> o1 = run(pool, 1, c, qall, 1, cs.n, cs.n_past);
        const std::vector<float> o2 = run(pool, 2, c, qall, 1, cs.n, cs.n_past);
        CHECK(o1 == o2);  // thread count

        double worst = 0;
        std::vector<float> qv(HD);
        std::vector<uint8_t> qq(row_size(DType::Q8_0, HD));
        for (int64_t i = 0; i < cs.n; ++i)
            for (int64_t h = 0; h < NH; ++h) {
                const int64_t g_kv = h / (NH / NHKV), n_keys = cs.n_past + i + 1;
                std::memcpy(qv.data(), qall->at(0, h, 1 + i), HD * sizeof(float));
                if (q8_partner) {  // the op dots a quantized K with the query as q8_0
                    quantize_row(DType::Q8_0, qv.data(), qq.data(), HD);
                    dequantize_row(DType::Q8_0, qq.data(), qv.data(), HD);
                }
                std::vector<double> s((size_t)n_keys);
                double mx = -1e300, l = 0;
                for (int64_t j = 0; j < n_keys; ++j) {
                    double d = 0;
                    for (int64_t e = 0; e < HD; ++e) d += (double)qv[e] * c.kd[(size_t)(j * HD * NHKV + g_kv * HD + e)];
                    s[j] = 0.125 * d;
                    mx = std::fmax(mx, s[j]);
                }
                for (auto& x : s) l += (x = std::exp(x - mx));
                for (int64_t e = 0; e < HD; ++e) {
                    double ref = 0;
                    for (int64_t j = 0; j < n_keys; ++j) ref += s[j] * c.vd[(size_t)(j * HD * NHKV + g_kv * HD + e)];
                    ref /= l;
                    worst = std::fmax(worst, std::fabs(ref - o1[(size_t)((i * NH + h) * HD + e)]));
                }
            }
        if (!(worst < 2e-5)) {
            ++test_failures();
            std::fprintf(stderr, "FAIL flash_attn %s n_past=%lld n=%lld: worst |out - ref| %g\n", dtype_name(t),
                         (long long)cs.n_past, (long long)cs.n, worst);
        }
        // each query alone (n = 1 at its position): the same bits as in the chunk
        for (int64_t i = 0; i < cs.n; i += (cs.n > 8 ? 7 : 1)) {
            const std::vector<float> a = run(pool, 2, c, qall, 1 + i, 1, cs.n_past + i);
            CHECK(std::memcmp(a.data(), &o1[(size_t)(i * NH * HD)], (size_t)(HD * NH) * sizeof(float)) == 0);
        }
    }

    // bad shapes name the op
    Context g(false);
    Tensor* q = view_3d(g, qall, HD, NH, 4, qall->nb[1], qall->nb[2], 0);
    CHECK_THROWS(flash_attn(g, q, c.view(g, c.k, 10), c.view(g, c.v, 10), 1.0f, 5), ValueError);  // n_kv != 5 + 4
    CHECK_THROWS(flash_attn(g, q, c.view(g, c.k, 9), c.view(g, c.v, 8), 1.0f, 5), ValueError);
    CHECK_THROWS(flash_attn(g, q, c.view(g, c.k, 9), c.view(g, c.v, 9), 1.0f, -1), ValueError);
}

void test_bad_types() {
    Context ctx;
    Tensor* q = ctx.new_tensor(DType::F32, {48, 2, 1});
    Tensor* k8 = ctx.new_tensor(DType::Q8_0, {96, 4});  // hd 48 is not a multiple of q8_0's 32
    Context g(false);
    CHECK_THROWS(view_3d(g, k8, 48, 1, 2, k8->nb[1], 0, 0), ValueError);  // no such view, so no such call
    Tensor* q4 = ctx.new_tensor(DType::F32, {32, 2, 1});
    Tensor* k4 = ctx.new_tensor(DType::Q4_1, {64, 4});  // a type the cache does not offer
    Tensor* kv4 = view_3d(g, k4, 32, 1, 2, k4->nb[1], row_size(DType::Q4_1, 32), 0);
    CHECK_THROWS(flash_attn(g, q4, kv4, kv4, 1.0f, 0), ValueError);
    Tensor* k16 = ctx.new_tensor(DType::F16, {64, 4});
    Tensor* k32 = ctx.new_tensor(DType::F32, {64, 4});
    Tensor* q64 = ctx.new_tensor(DType::F32, {64, 1, 1});
    CHECK_THROWS(flash_attn(g, q64, view_3d(g, k16, 64, 1, 1, k16->nb[1], 0, 0), view_3d(g, k32, 64, 1, 1, k32->nb[1], 0, 0), 1.0f, 0),
                 ValueError);  // k and v of different types
}

}  // namespace

int main() {
    ThreadPool pool(2);
    for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) test_type(t, pool);
    test_bad_types();
    return test_exit_code("test_attention");
}
