// FLASH_ATTN: causal attention over a cache with one row per position (K and V alike), without a
// score matrix. For query i and a tile of kTile keys, a tile partial is, for every head h,
//   s_j = scale * (k_j . q_h) (the table's attn_dot, else decode / vec_dot, on q converted to K's
//   partner type), m = max s_j, p_j = exp(s_j - m), l = sum p_j, acc = sum p_j v_j (accum),
// KV head g serving its rep query heads at once (its K and V rows read once for them). The tiles
// of a query are merged in tile order (M = max(m1, m2), acc = acc1 e^(m1-M) + acc2 e^(m2-M),
// likewise l), and out = acc / l. A tile covers every KV head, so its rows (back to back in the
// cache) stream from memory in one pass. Tiles start at multiples of kTile from key 0, so a query's
// result depends on its own row and keys only: the same bits whatever the chunk size, the batch or
// the thread count.
// Work split: with enough queries each thread takes whole queries and merges as it goes; with few
// (decode) each (query, tile) is an item whose partial goes to scratch, and the queries are merged
// after a barrier, with the same arithmetic in the same order.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "compute/forward.h"
#include "core/op_params.h"
#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

constexpr int64_t kTile = 128;  // keys per tile: a KV head's K and V slices of a tile (2 lines per row) fit L1

inline size_t align64(size_t n) { return (n + 63) / 64 * 64; }

struct AttnPlan {
    int64_t hd, n_head, n, n_hkv, rep, n_past, n_tiles;  // n_tiles: of the last query (the most)
    const TypeKernels* tk;
    DType vdt;       // K's partner type: queries are converted to it once
    bool decode;     // no attn_dot: the table's decode per head (where it needs no q8_0_prep data)
    bool split;      // (query, tile) items with partials in scratch
    size_t q_row, thr_off, thr_bytes, part_off;
    int64_t part_floats;  // one tile partial: n_head * hd acc, n_head m, n_head l
};

AttnPlan plan_of(const Tensor* t, int nth) {
    const Tensor* q = t->src[0];
    const Tensor* k = t->src[1];
    AttnPlan a;
    a.hd = q->ne[0];
    a.n_head = q->ne[1];
    a.n = q->ne[2];
    a.n_hkv = k->ne[2];
    a.rep = a.n_head / a.n_hkv;
    a.n_past = param_i64(t, 2);
    a.n_tiles = (a.n_past + a.n + kTile - 1) / kTile;
    a.tk = &kernels().type[(int)k->type];
    a.vdt = a.tk->vec_dot_type;
    a.decode = a.tk->decode && a.vdt != DType::Q8_0;
    a.split = a.n < 2 * (int64_t)nth && a.n_tiles > 1;
    const int64_t rows = a.n * a.n_head;
    a.q_row = align64(row_size(a.vdt, a.hd));
    a.thr_off = a.q_row * (size_t)rows;
    a.part_floats = a.n_head * (a.hd + 2);
    // per thread: scores n_head x kTile, the running state and one tile partial
    a.thr_bytes = align64(sizeof(float) * (size_t)(a.n_head * kTile + 2 * a.part_floats));
    a.part_off = a.thr_off + a.thr_bytes * (size_t)nth;
    return a;
}

// every head's softmax state: acc [n_head][hd], m [n_head], l [n_head], back to back
struct Part {
    float* acc;
    float* m;
    float* l;
    Part(float* base, const AttnPlan& a)
        : acc(base), m(base + a.n_head * a.hd), l(base + a.n_head * a.hd + a.n_head) {}
};

struct AttnRun {
    const Tensor* t;
    const AttnPlan& a;
    const ComputeParams& p;
    float scale;

    const char* qrow(int64_t i, int64_t h) const { return p.wdata + (size_t)(i * a.n_head + h) * a.q_row; }
    int64_t tiles_of(int64_t i) const { return (a.n_past + i + kTile) / kTile; }  // keys 0 .. n_past + i

    // The partial of query i, tile c (every head) into out; s: n_head * kTile floats of scratch.
    void tile(int64_t i, int64_t c, Part out, float* s) const {
        const Tensor* k = t->src[1];
        const Tensor* v = t->src[2];
        const KernelTable& kt = kernels();
        const int64_t j0 = c * kTile, len = std::min(kTile, a.n_past + i + 1 - j0);
        for (int64_t g = 0; g < a.n_hkv; ++g) {
            const char* kp = static_cast<const char*>(k->data) + g * k->nb[2] + j0 * k->nb[1];
            const char* vp = static_cast<const char*>(v->data) + g * v->nb[2] + j0 * v->nb[1];
            const int64_t h0 = g * a.rep;  // its query heads h0 .. h0 + rep - 1 (rows h0.. of query i)
            float* sg = s + h0 * kTile;
            if (a.tk->attn_dot) {
                a.tk->attn_dot(a.hd, sg, kTile, kp, k->nb[1], (int)len, qrow(i, h0), a.q_row, (int)a.rep);
            } else {
                for (int64_t r = 0; r < a.rep; ++r) {
                    float* sr = sg + r * kTile;
                    if (a.decode) a.tk->decode(a.hd, sr, kp, k->nb[1], len, qrow(i, h0 + r), nullptr);
                    else
                        for (int64_t j = 0; j < len; ++j) a.tk->vec_dot(a.hd, sr + j, kp + j * k->nb[1], qrow(i, h0 + r));
                }
            }
            for (int64_t r = 0; r < a.rep; ++r) {
                float* sr = sg + r * kTile;
                kt.vec_scale_f32(len, sr, scale);
                float mx = sr[0];
                for (int64_t j = 1; j < len; ++j) mx = std::max(mx, sr[j]);
                out.m[h0 + r] = mx;
                out.l[h0 + r] = (float)kt.vec_exp_sum_f32(len, sr, sr, mx);
            }
            float* acc = out.acc + h0 * a.hd;
            std::memset(acc, 0, sizeof(float) * (size_t)(a.rep * a.hd));
            a.tk->accum(a.hd, acc, (size_t)a.hd, (int)a.rep, vp, v->nb[1], len, sg, (size_t)kTile);
        }
    }

    // run <- part (first tile), else run merged with the next tile's part
    void merge(Part run, Part part, bool first) const {
        if (first) {
            std::memcpy(run.acc, part.acc, sizeof(float) * (size_t)a.part_floats);
            return;
        }
        const KernelTable& kt = kernels();
        for (int64_t h = 0; h < a.n_head; ++h) {
            const float M = std::max(run.m[h], part.m[h]);
            const float e1 = std::exp(run.m[h] - M), e2 = std::exp(part.m[h] - M);
            kt.vec_scale_f32(a.hd, run.acc + h * a.hd, e1);
            kt.vec_mad_f32(a.hd, run.acc + h * a.hd, part.acc + h * a.hd, e2);
            run.l[h] = run.l[h] * e1 + part.l[h] * e2;
            run.m[h] = M;
        }
    }

    void finish(int64_t i, Part run) const {
        for (int64_t h = 0; h < a.n_head; ++h) {
            float* o = reinterpret_cast<float*>(static_cast<char*>(t->data) + i * t->nb[2] + h * t->nb[1]);
            const float inv = 1.0f / run.l[h];
            const float* acc = run.acc + h * a.hd;
            for (int64_t d = 0; d < a.hd; ++d) o[d] = acc[d] * inv;
        }
    }
};

}  // namespace

size_t flash_attn_work_size(const Tensor* t, int nth) {
    const AttnPlan a = plan_of(t, nth);
    size_t n = a.part_off;
    if (a.split) n += sizeof(float) * (size_t)(a.n * a.n_tiles * a.part_floats);
    return n;
}

void forward_flash_attn(const Tensor* t, const ComputeParams& p) {
    const Tensor* q = t->src[0];
    const AttnPlan a = plan_of(t, p.nth);
    const AttnRun run{t, a, p, param_f32(t, 0)};

    // 1. every query row (i, h) -> K's partner type, rows split over threads
    int64_t r0, r1;
    split_rows(a.n * a.n_head, p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r / a.n_head, h = r % a.n_head;
        const float* x = reinterpret_cast<const float*>(static_cast<const char*>(q->data) + i * q->nb[2] + h * q->nb[1]);
        char* y = p.wdata + (size_t)r * a.q_row;
        kernels().type[(int)a.vdt].from_float(x, y, a.hd);
    }
    p.barrier();

    float* thr = reinterpret_cast<float*>(p.wdata + a.thr_off + (size_t)p.ith * a.thr_bytes);
    float* scores = thr;
    const Part state(thr + a.n_head * kTile, a), tmp(thr + a.n_head * kTile + a.part_floats, a);
    if (!a.split) {
        // 2. whole queries, taken dynamically, tiles merged in order
        for (int64_t i = p.ith; i < a.n; i = p.chunk->fetch_add(1, std::memory_order_relaxed)) {
            for (int64_t c = 0; c < run.tiles_of(i); ++c) {
                run.tile(i, c, tmp, scores);
                run.merge(state, tmp, c == 0);
            }
            run.finish(i, state);
        }
        return;
    }
    // 2'. (query, tile) items into scratch, then each query's tiles merged in the same order
    float* parts = reinterpret_cast<float*>(p.wdata + a.part_off);
    const auto part = [&](int64_t i, int64_t c) { return Part(parts + (i * a.n_tiles + c) * a.part_floats, a); };
    const int64_t items = a.n * a.n_tiles;
    for (int64_t it = p.ith; it < items; it = p.chunk->fetch_add(1, std::memory_order_relaxed)) {
        const int64_t i = it / a.n_tiles, c = it % a.n_tiles;
        if (c < run.tiles_of(i)) run.tile(i, c, part(i, c), scores);
    }
    p.barrier();
    split_rows(a.n, p.ith, p.nth, r0, r1);
    for (int64_t i = r0; i < r1; ++i) {
        for (int64_t c = 0; c < run.tiles_of(i); ++c) run.merge(state, part(i, c), c == 0);
        run.finish(i, state);
    }
}

}  // namespace ggmlpy
