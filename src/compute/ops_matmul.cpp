// MUL_MAT and GET_ROWS. mul_mat never switches on the weight type: the kernel table says which
// partner type (vec_dot_type) activations become; each activation row is converted ONCE into the
// shared scratch (rows split over threads, then a barrier), then weight rows are split over
// threads in chunks taken from an atomic counter (so 2 threads balance under load). Prefill uses
// the table's gemm on tiles (gemm_rows_x weight rows x gemm_rows_y activation rows), or gemm_pack
// on panels of 8 activation rows packed once (kernels.h) where the table has it; decode
// (one activation row) uses the table's decode on each chunk of weight rows where it has one, else
// vec_dot per weight row, or vec_dot_prep with that per-block data.
// mul_mat_causal nodes (attention) skip the products a causal mask discards.
#include <algorithm>
#include <cstring>

#include "compute/forward.h"
#include "core/op_params.h"
#include "ggmlpy/error.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace ggmlpy {
namespace {

struct MatmulPlan {
    const TypeKernels* tk;
    DType vdt;
    bool direct;        // b's rows are used in place (f32 partner and dense rows)
    size_t y_row;       // bytes per converted activation row
    size_t temp_off;    // per-thread gather rows (strided b, non-f32 partner), from wdata
    bool gemm_pack;     // prefill with gemm_pack on q8_0_pack8 panels of 8 activation rows
    bool gemm;          // prefill with gemm (no gemm_pack)
    int rx, ry;         // tile: weight rows x activation rows per gemm / gemm_pack call
    bool decode;        // one activation row: the table's decode on each chunk of weight rows
    bool prep;          // per activation row q8_0_prep data at prep_off (decode, vec_dot_prep)
    size_t prep_row;    // bytes of prep data per activation row
    size_t prep_off;
    int64_t n_panels;   // gemm_pack: panels per batch (ceil(rows / 8)), pack_size bytes each at pack_off
    size_t pack_size;
    size_t pack_off;
};

MatmulPlan plan_of(const Tensor* t) {
    const Tensor* a = t->src[0];
    const Tensor* b = t->src[1];
    MatmulPlan m;
    m.tk = &kernels().type[(int)a->type];
    m.vdt = m.tk->vec_dot_type;
    m.direct = m.vdt == DType::F32 && b->nb[0] == sizeof(float);
    m.y_row = row_size(m.vdt, b->ne[0]);
    m.temp_off = (m.y_row * (size_t)b->nrows() + 63) / 64 * 64;
    // Two activation rows (two sequences decoding together) go through the decode kernel row by
    // row: a gemm tile of 8 rows with 2 filled was slower than two decodes (Zen 3, 2 threads:
    // Q8_0 SmolLM2 83 vs 142 t/s aggregate). Decode and gemm give the same bits, so this choice
    // never changes a result.
    const bool many = b->ne[1] > (m.tk->decode ? 2 : 1), q80 = m.vdt == DType::Q8_0;
    m.gemm_pack = many && q80 && m.tk->gemm_pack;
    m.gemm = many && !m.gemm_pack && m.tk->gemm;
    m.decode = !many && m.tk->decode;
    m.rx = std::max(1, m.gemm_pack ? m.tk->gemm_pack_rows_x : m.gemm ? m.tk->gemm_rows_x : 1);
    m.ry = m.gemm_pack ? 8 : std::max(1, m.tk->gemm_rows_y);
    // derive each activation row's per-block data once (kernels.h) where the table's decode
    // kernels (decode, vec_dot_prep) take it
    m.prep = q80 && !m.gemm_pack && (m.decode || (!m.gemm && m.tk->vec_dot_prep));
    m.prep_row = m.prep ? (q8_0_prep_size(b->ne[0]) + 63) / 64 * 64 : 0;
    m.prep_off = m.temp_off;  // the gather rows follow the prep rows or panels
    m.temp_off += m.prep_row * (size_t)b->nrows();
    m.n_panels = m.gemm_pack ? (b->ne[1] + 7) / 8 : 0;
    m.pack_size = m.gemm_pack ? (q8_0_pack8_size(b->ne[0]) + 63) / 64 * 64 : 0;
    m.pack_off = m.temp_off;
    m.temp_off += m.pack_size * (size_t)(m.n_panels * b->ne[2] * b->ne[3]);
    return m;
}

}  // namespace

size_t mul_mat_work_size(const Tensor* t, int nth) {
    const MatmulPlan m = plan_of(t);
    if (m.direct) return 0;
    const Tensor* b = t->src[1];
    size_t n = m.temp_off;
    if (b->nb[0] != sizeof(float)) n += (size_t)nth * (size_t)b->ne[0] * sizeof(float);
    return n;
}

void forward_mul_mat(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* b = t->src[1];
    const MatmulPlan m = plan_of(t);
    const int64_t K = a->ne[0], M = a->ne[1], N = b->ne[1];
    const int64_t B2 = b->ne[2], B3 = b->ne[3];
    const int64_t r2 = B2 / a->ne[2], r3 = B3 / a->ne[3];

    // 1. activations -> partner type, rows split over threads
    if (!m.direct) {
        float* tmp = reinterpret_cast<float*>(p.wdata + m.temp_off) + (size_t)p.ith * (size_t)K;
        const auto convert = [&](int64_t r) {  // activation row r (i1 fastest) -> partner row r
            const int64_t i1 = r % N, i2 = (r / N) % B2, i3 = r / (N * B2);
            const char* src = static_cast<const char*>(b->data) + i1 * b->nb[1] + i2 * b->nb[2] + i3 * b->nb[3];
            const float* row = reinterpret_cast<const float*>(src);
            if (b->nb[0] != sizeof(float)) {
                for (int64_t k = 0; k < K; ++k) tmp[k] = *reinterpret_cast<const float*>(src + (size_t)k * b->nb[0]);
                row = tmp;
            }
            kernels().type[(int)m.vdt].from_float(row, p.wdata + (size_t)r * m.y_row, K);
            if (m.prep) q8_0_prep(p.wdata + (size_t)r * m.y_row, p.wdata + m.prep_off + (size_t)r * m.prep_row, K);
        };
        int64_t q0, q1;
        if (m.gemm_pack) {  // whole panels per thread: its 8 rows converted, then packed
            split_rows(m.n_panels * B2 * B3, p.ith, p.nth, q0, q1);
            for (int64_t pi = q0; pi < q1; ++pi) {
                const int64_t r0 = (pi / m.n_panels) * N + (pi % m.n_panels) * 8;
                const int nr = (int)std::min<int64_t>(8, N - (pi % m.n_panels) * 8);
                for (int64_t r = r0; r < r0 + nr; ++r) convert(r);
                q8_0_pack8(p.wdata + (size_t)r0 * m.y_row, m.y_row, nr, p.wdata + m.pack_off + (size_t)pi * m.pack_size, K);
            }
        } else {
            split_rows(b->nrows(), p.ith, p.nth, q0, q1);
            for (int64_t r = q0; r < q1; ++r) convert(r);
        }
        p.barrier();
    }
    auto yrow = [&](int64_t i1, int64_t i2, int64_t i3) -> const char* {
        if (m.direct) return static_cast<const char*>(b->data) + i1 * b->nb[1] + i2 * b->nb[2] + i3 * b->nb[3];
        return p.wdata + (size_t)((i3 * B2 + i2) * N + i1) * m.y_row;
    };
    const size_t by = m.direct ? b->nb[1] : m.y_row;
    // causal attention (mul_mat_causal): query n sees keys j <= n_past + n. Rows side: output rows
    // past that are zeros, whole tiles of them skipped. K side: the reduced length of queries
    // n0..n1-1 is cut to n_past + n1 (rounded up to the partner's block; b is 0 past the mask), not
    // with prep data or panels, whose layouts depend on the length.
    const auto side = (CausalSide)t->op_params[0];
    const int64_t n_past = t->op_params[0] ? param_i64(t, 2) : 0;
    const int64_t kblk = dtype_traits(m.vdt).block_size;
    const auto k_len = [&](int64_t n1) {
        if (side != CausalSide::K || m.prep || m.gemm_pack) return K;
        return std::min(K, (n_past + n1 + kblk - 1) / kblk * kblk);
    };
    const auto first_masked = [&](int64_t n) { return side == CausalSide::Rows ? n_past + n + 1 : M; };

    // Weight rows that are not back to back (attention's K and V^T views of the KV cache: short
    // rows, a cache row apart) defeat the hardware prefetcher at every row start. On the first
    // activation tile (every tile in decode) the gemm path starts the next two tiles' rows by
    // hand; later tiles find them in L2. SmolLM2 Q4_0 decode up to 600 cached positions (perf):
    // the float tile went from 21% to 9% of the time.
    const size_t row_bytes = row_size(a->type, K);
    const bool sparse_rows = a->nb[1] != row_bytes;
    const size_t pf_bytes = std::min<size_t>(row_bytes, 1024);

    // 2. chunks of weight rows x batches, taken dynamically
    const int rx = m.rx, ry = m.ry;
    const int64_t nbatch = B2 * B3;
    int64_t chunk_m = M;
    if (p.nth > 1) {
        const int64_t want = std::max<int64_t>(1, (int64_t)p.nth * 4 / std::max<int64_t>(1, nbatch));
        chunk_m = std::max<int64_t>(16, (M + want - 1) / want);
        chunk_m = (chunk_m + rx - 1) / rx * rx;
    }
    const int64_t n_mchunks = (M + chunk_m - 1) / chunk_m;
    const int64_t n_chunks = n_mchunks * nbatch;
    for (int64_t c = p.ith; c < n_chunks; c = p.chunk->fetch_add(1, std::memory_order_relaxed)) {
        const int64_t ib = c / n_mchunks, mc = c % n_mchunks;
        const int64_t i2 = ib % B2, i3 = ib / B2;
        const int64_t m0 = mc * chunk_m, m1 = std::min(M, m0 + chunk_m);
        const char* abase = static_cast<const char*>(a->data) + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        char* dbase = static_cast<char*>(t->data) + i2 * t->nb[2] + i3 * t->nb[3];
        if (m.gemm || m.gemm_pack) {
            // weight sub-blocks of ~128 KB stay in L2 while every activation tile passes over them
            const size_t bs = t->nb[1] / sizeof(float);
            int64_t mb = (int64_t)((128 * 1024) / std::max<size_t>(1, a->nb[1]));
            mb = std::max<int64_t>(rx, mb / rx * rx);
            for (int64_t b0 = m0; b0 < m1; b0 += mb) {
                const int64_t b1 = std::min(m1, b0 + mb);
                for (int64_t n0 = 0; n0 < N; n0 += ry) {
                    const int nry = (int)std::min<int64_t>(ry, N - n0);
                    const char* y = yrow(n0, i2, i3);
                    const char* pan = p.wdata + m.pack_off + (size_t)((i3 * B2 + i2) * m.n_panels + n0 / 8) * m.pack_size;
                    const int64_t kn = k_len(n0 + nry);
                    // tiles from mend on have every entry masked (none unless causal rows)
                    const int64_t mend = std::min(b1, first_masked(n0 + nry - 1));
                    float* s0 = reinterpret_cast<float*>(dbase + n0 * t->nb[1]);
                    for (int64_t mm = b0; mm < mend; mm += rx) {
                        const int nrx = (int)std::min<int64_t>(rx, b1 - mm);
                        if (n0 == 0 && sparse_rows)
                            for (int64_t r = mm + rx; r < mm + 3 * rx; ++r)
                                for (size_t o = 0; o < pf_bytes; o += 64) __builtin_prefetch(abase + r * a->nb[1] + o);
                        if (m.gemm_pack) m.tk->gemm_pack(kn, s0 + mm, bs, abase + mm * a->nb[1], a->nb[1], nrx, pan, 0, nry);
                        else m.tk->gemm(kn, s0 + mm, bs, abase + mm * a->nb[1], a->nb[1], nrx, y, by, nry);
                    }
                    if (first_masked(n0) < b1)  // query n0 sees the fewest keys
                        for (int c = 0; c < nry; ++c) {  // the masked entries of query n0 + c: 0
                            const int64_t r0 = std::max(b0, first_masked(n0 + c));
                            if (r0 < b1) std::memset(s0 + c * bs + r0, 0, (size_t)(b1 - r0) * sizeof(float));
                        }
                }
            }
        } else {
            for (int64_t n = 0; n < N; ++n) {
                const char* y = yrow(n, i2, i3);
                float* s = reinterpret_cast<float*>(dbase + n * t->nb[1]);
                const int64_t mend = std::min(m1, std::max(m0, first_masked(n))), kn = k_len(n + 1);
                const char* pr = m.prep ? p.wdata + m.prep_off + (size_t)((i3 * B2 + i2) * N + n) * m.prep_row : nullptr;
                if (m.decode) {
                    m.tk->decode(kn, s + m0, abase + m0 * a->nb[1], a->nb[1], mend - m0, y, pr);
                } else if (m.prep) {
                    for (int64_t mm = m0; mm < mend; ++mm) m.tk->vec_dot_prep(K, s + mm, abase + mm * a->nb[1], y, pr);
                } else {
                    for (int64_t mm = m0; mm < mend; ++mm) m.tk->vec_dot(kn, s + mm, abase + mm * a->nb[1], y);
                }
                for (int64_t mm = mend; mm < m1; ++mm) s[mm] = 0.0f;
            }
        }
    }
}

void forward_get_rows(const Tensor* t, const ComputeParams& p) {
    const Tensor* a = t->src[0];
    const Tensor* ids = t->src[1];
    const int32_t* id = static_cast<const int32_t*>(ids->data);
    int64_t r0, r1;
    split_rows(ids->ne[0], p.ith, p.nth, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
        const char* src = static_cast<const char*>(a->data) + (size_t)id[r] * a->nb[1];
        float* dst = reinterpret_cast<float*>(static_cast<char*>(t->data) + r * t->nb[1]);
        dequantize_row(a->type, src, dst, a->ne[0]);
    }
}

size_t forward_work_size(const Tensor* t, int nth) {
    if (t->op == Op::FLASH_ATTN) return flash_attn_work_size(t, nth);
    if (t->op == Op::MUL_MAT_T) return mul_mat_t_work_size(t, nth);
    return t->op == Op::MUL_MAT ? mul_mat_work_size(t, nth) : 0;
}

void forward_validate(const Tensor* t) {
    if (t->op != Op::GET_ROWS) return;
    const Tensor* a = t->src[0];
    const Tensor* ids = t->src[1];
    const int32_t* id = static_cast<const int32_t*>(ids->data);
    for (int64_t i = 0; i < ids->ne[0]; ++i)
        if (id[i] < 0 || id[i] >= a->ne[1])
            throw ValueError("get_rows: id " + std::to_string(id[i]) + " at index " + std::to_string(i) +
                             " is outside [0, " + std::to_string(a->ne[1]) + ") for a " + a->shape_str());
}

void forward(const Tensor* t, const ComputeParams& p) {
    switch (t->op) {
        case Op::CONT:
        case Op::CPY: forward_dup(t, p); break;
        case Op::ADD:
        case Op::MUL: forward_binary(t, p); break;
        case Op::SCALE:
        case Op::SILU:
        case Op::GELU:
        case Op::GELU_ERF:
        case Op::SWIGLU: forward_unary(t, p); break;
        case Op::RMS_NORM: forward_rms_norm(t, p); break;
        case Op::LAYER_NORM: forward_layer_norm(t, p); break;
        case Op::SOFT_MAX: forward_soft_max(t, p); break;
        case Op::ROPE: forward_rope(t, p); break;
        case Op::GET_ROWS: forward_get_rows(t, p); break;
        case Op::MUL_MAT: forward_mul_mat(t, p); break;
        case Op::FLASH_ATTN: forward_flash_attn(t, p); break;
        case Op::MUL_MAT_T: forward_mul_mat_t(t, p); break;
        case Op::RMS_NORM_BACK: forward_rms_norm_back(t, p); break;
        case Op::LAYER_NORM_BACK: forward_layer_norm_back(t, p); break;
        case Op::SOFT_MAX_BACK: forward_soft_max_back(t, p); break;
        case Op::SILU_BACK:
        case Op::GELU_BACK: forward_act_back(t, p); break;
        case Op::DROPOUT: forward_dropout(t, p); break;
        default: break;
    }
}

}  // namespace ggmlpy
