// FLASH_ATTN: causal attention over a cache with one row per position (K and V alike), without a
// score matrix. For query i, KV head g and a tile of kTile keys, a tile partial is
//   s_j = scale * (k_j . q_h) (the kernel table's decode on q converted to K's partner type),
//   m = max s_j, p_j = exp(s_j - m), l = sum p_j, acc = sum p_j v_j (the table's accum)
// for each of the rep query heads h of g; the tiles of a query are merged in tile order
// (M = max(m1, m2), acc = acc1 e^(m1-M) + acc2 e^(m2-M), likewise l), and out = acc / l.
// Tiles start at multiples of kTile from key 0, so a query's result depends on its own row and
// keys only: the same bits whatever the chunk size, the batch or the thread count.
// Work split: with enough (query, KV head) pairs each thread takes whole pairs and merges as it
// goes; with few (decode: 1 query x a few KV heads) each (pair, tile) is an item whose partial goes
// to scratch, and the pairs are merged after a barrier, with the same arithmetic in the same order.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "compute/forward.h"
#include "core/op_params.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace ggmlpy {
namespace {

constexpr int64_t kTile = 256;  // keys per tile: scores 1 KiB per head, K and V tiles in L2

inline size_t align64(size_t n) { return (n + 63) / 64 * 64; }

struct AttnPlan {
    int64_t hd, n_head, n, n_hkv, rep, n_past, n_tiles;  // n_tiles: of the last query (the most)
    const TypeKernels* tk;
    DType vdt;       // K's partner type: queries are converted to it once
    bool prep;       // q8_0_prep data for the decode kernel
    bool split;      // (pair, tile) items with partials in scratch
    size_t q_row, prep_row, prep_off, thr_off, thr_bytes, part_off;
    int64_t part_floats;  // one tile partial: rep * hd acc, rep m, rep l
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
    a.prep = a.vdt == DType::Q8_0 && a.tk->decode;
    a.split = a.n * a.n_hkv < 4 * (int64_t)nth && a.n_tiles > 1;
    const int64_t rows = a.n * a.n_head;
    a.q_row = align64(row_size(a.vdt, a.hd));
    a.prep_row = a.prep ? align64(q8_0_prep_size(a.hd)) : 0;
    a.prep_off = a.q_row * (size_t)rows;
    a.thr_off = a.prep_off + a.prep_row * (size_t)rows;
    a.part_floats = a.rep * (a.hd + 2);
    // per thread: scores rep x kTile, the running state and one tile partial
    a.thr_bytes = align64(sizeof(float) * (size_t)(a.rep * kTile + 2 * a.part_floats));
    a.part_off = a.thr_off + a.thr_bytes * (size_t)nth;
    return a;
}

// rep heads' softmax state: acc [rep][hd], m [rep], l [rep], back to back
struct Part {
    float* acc;
    float* m;
    float* l;
    Part(float* base, const AttnPlan& a) : acc(base), m(base + a.rep * a.hd), l(base + a.rep * a.hd + a.rep) {}
};

struct AttnRun {
    const Tensor* t;
    const AttnPlan& a;
    const ComputeParams& p;
    float scale;

    const char* qrow(int64_t i, int64_t h) const { return p.wdata + (size_t)(i * a.n_head + h) * a.q_row; }
    const char* prep(int64_t i, int64_t h) const {
        return a.prep ? p.wdata + a.prep_off + (size_t)(i * a.n_head + h) * a.prep_row : nullptr;
    }
    int64_t tiles_of(int64_t i) const { return (a.n_past + i + kTile) / kTile; }  // keys 0 .. n_past + i

    // The partial of query i, KV head g, tile c into out; s: rep * kTile floats of scratch.
    void tile(int64_t i, int64_t g, int64_t c, Part out, float* s) const {
        const Tensor* k = t->src[1];
        const Tensor* v = t->src[2];
        const KernelTable& kt = kernels();
        const int64_t j0 = c * kTile, len = std::min(kTile, a.n_past + i + 1 - j0);
        const char* kp = static_cast<const char*>(k->data) + g * k->nb[2] + j0 * k->nb[1];
        const char* vp = static_cast<const char*>(v->data) + g * v->nb[2] + j0 * v->nb[1];
        for (int64_t r = 0; r < a.rep; ++r) {
            const int64_t h = g * a.rep + r;
            float* sr = s + r * kTile;
            if (a.tk->decode) {
                a.tk->decode(a.hd, sr, kp, k->nb[1], len, qrow(i, h), prep(i, h));
            } else {
                for (int64_t j = 0; j < len; ++j) a.tk->vec_dot(a.hd, sr + j, kp + j * k->nb[1], qrow(i, h));
            }
            kt.vec_scale_f32(len, sr, scale);
            float mx = sr[0];
            for (int64_t j = 1; j < len; ++j) mx = std::max(mx, sr[j]);
            out.m[r] = mx;
            out.l[r] = (float)kt.vec_exp_sum_f32(len, sr, sr, mx);
            float* acc = out.acc + r * a.hd;
            std::memset(acc, 0, sizeof(float) * (size_t)a.hd);
            a.tk->accum(a.hd, acc, vp, v->nb[1], len, sr);
        }
    }

    // run <- part (first tile), else run merged with the next tile's part
    void merge(Part run, Part part, bool first) const {
        if (first) {
            std::memcpy(run.acc, part.acc, sizeof(float) * (size_t)a.part_floats);
            return;
        }
        const KernelTable& kt = kernels();
        for (int64_t r = 0; r < a.rep; ++r) {
            const float M = std::max(run.m[r], part.m[r]);
            const float e1 = std::exp(run.m[r] - M), e2 = std::exp(part.m[r] - M);
            kt.vec_scale_f32(a.hd, run.acc + r * a.hd, e1);
            kt.vec_mad_f32(a.hd, run.acc + r * a.hd, part.acc + r * a.hd, e2);
            run.l[r] = run.l[r] * e1 + part.l[r] * e2;
            run.m[r] = M;
        }
    }

    void finish(int64_t i, int64_t g, Part run) const {
        for (int64_t r = 0; r < a.rep; ++r) {
            float* o = reinterpret_cast<float*>(static_cast<char*>(t->data) + i * t->nb[2] + (g * a.rep + r) * t->nb[1]);
            const float inv = 1.0f / run.l[r];
            const float* acc = run.acc + r * a.hd;
            for (int64_t d = 0; d < a.hd; ++d) o[d] = acc[d] * inv;
        }
    }
};

}  // namespace

size_t flash_attn_work_size(const Tensor* t, int nth) {
    const AttnPlan a = plan_of(t, nth);
    size_t n = a.part_off;
    if (a.split) n += sizeof(float) * (size_t)(a.n * a.n_hkv * a.n_tiles * a.part_floats);
    return n;
}

void forward_flash_attn(const Tensor* t, const ComputeParams& p) {
    const Tensor* q = t->src[0];
    const AttnPlan a = plan_of(t, p.nth);
    const AttnRun run{t, a, p, param_f32(t, 0)};

    // 1. every query row (i, h) -> K's partner type (and its prep data), rows split over threads
    int64_t r0, r1;
    split_rows(a.n * a.n_head, p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r / a.n_head, h = r % a.n_head;
        const float* x = reinterpret_cast<const float*>(static_cast<const char*>(q->data) + i * q->nb[2] + h * q->nb[1]);
        char* y = p.wdata + (size_t)r * a.q_row;
        kernels().type[(int)a.vdt].from_float(x, y, a.hd);
        if (a.prep) q8_0_prep(y, p.wdata + a.prep_off + (size_t)r * a.prep_row, a.hd);
    }
    p.barrier();

    float* thr = reinterpret_cast<float*>(p.wdata + a.thr_off + (size_t)p.ith * a.thr_bytes);
    float* scores = thr;
    const Part state(thr + a.rep * kTile, a), tmp(thr + a.rep * kTile + a.part_floats, a);
    const int64_t pairs = a.n * a.n_hkv;  // item (g, i) = g * n + i: neighbours share K/V tiles
    if (!a.split) {
        // 2. whole (query, KV head) pairs, taken dynamically, tiles merged in order
        for (int64_t it = p.ith; it < pairs; it = p.chunk->fetch_add(1, std::memory_order_relaxed)) {
            const int64_t g = it / a.n, i = it % a.n;
            for (int64_t c = 0; c < run.tiles_of(i); ++c) {
                run.tile(i, g, c, tmp, scores);
                run.merge(state, tmp, c == 0);
            }
            run.finish(i, g, state);
        }
        return;
    }
    // 2'. (pair, tile) items into scratch, then each pair's tiles merged in the same order
    float* parts = reinterpret_cast<float*>(p.wdata + a.part_off);
    const auto part = [&](int64_t pair, int64_t c) { return Part(parts + (pair * a.n_tiles + c) * a.part_floats, a); };
    const int64_t items = pairs * a.n_tiles;
    for (int64_t it = p.ith; it < items; it = p.chunk->fetch_add(1, std::memory_order_relaxed)) {
        const int64_t pair = it / a.n_tiles, c = it % a.n_tiles;
        const int64_t g = pair / a.n, i = pair % a.n;
        if (c < run.tiles_of(i)) run.tile(i, g, c, part(pair, c), scores);
    }
    p.barrier();
    split_rows(pairs, p.ith, p.nth, r0, r1);
    for (int64_t pair = r0; pair < r1; ++pair) {
        const int64_t g = pair / a.n, i = pair % a.n;
        for (int64_t c = 0; c < run.tiles_of(i); ++c) run.merge(state, part(pair, c), c == 0);
        run.finish(i, g, state);
    }
}

}  // namespace ggmlpy
