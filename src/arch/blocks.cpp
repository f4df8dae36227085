// Shared transformer blocks (blocks.h): norm, linear, causal self-attention over the KV cache,
// SwiGLU and GELU MLPs. Shapes in ggml order; n = tokens of this chunk, n_kv = n_past + n.
#include "arch/blocks.h"

#include <cmath>

namespace ggmlpy {

Tensor* block_norm(Context& ctx, Tensor* x, NormKind kind, float eps, Tensor* w, Tensor* b) {
    if (kind == NormKind::RMS) {
        Tensor* y = rms_norm(ctx, x, eps, w);
        return b ? add(ctx, y, b) : y;
    }
    return layer_norm(ctx, x, eps, w, b);
}

Tensor* block_linear(Context& ctx, Tensor* w, Tensor* b, Tensor* x, const LoraSet* lora) {
    Tensor* y = lora_mul_mat(ctx, w, x, lora);
    return b ? add(ctx, y, b) : y;
}

namespace {

// Attention of one sequence's rows: q [hd, n_head, n], k [n_embd_kv, n], v [n_embd_kv, n] (this
// sequence's columns) -> [hd * n_head, n]. Writes k and v into the sequence's cells at n_past
// (appended to g first), then attends causally over its cells 0 .. n_past + n - 1.
Tensor* seq_attention(Context& ctx, Graph& g, const HParams& hp, const KVCache& kv, int il, Tensor* q, Tensor* k,
                      Tensor* v, const SeqSpan& sp) {
    const int64_t n = sp.n, hd = hp.head_dim;
    const int64_t n_kv = (int64_t)sp.n_past + n;
    const int64_t n_embd_kv = hp.n_embd_kv();
    const int64_t base = kv.base(sp.seq);
    const float kq_scale = 1.0f / std::sqrt((float)hd);

    if (!kv.v_trans()) {
        // Quantized cache: K and V rows (one per position) quantized as they are stored, and the
        // fused attention reads the blocks directly (no score matrix, no dequantized copy).
        Tensor* kc = kv.k(il);  // [n_embd_kv, n_seq * n_ctx]
        Tensor* vc = kv.v(il);  // [n_embd_kv, n_seq * n_ctx]
        if (k->ne[0] != n_embd_kv || k->ne[1] != n) k = reshape_2d(ctx, k, n_embd_kv, n);
        const size_t at = (size_t)(base + sp.n_past) * kc->nb[1];
        g.build_forward(cpy(ctx, k, view_2d(ctx, kc, n_embd_kv, n, kc->nb[1], at)));
        g.build_forward(cpy(ctx, v, view_2d(ctx, vc, n_embd_kv, n, vc->nb[1], at)));
        const size_t head = row_size(kc->type, hd);  // bytes of one head's slice of a row
        Tensor* K = view_3d(ctx, kc, hd, n_kv, hp.n_head_kv, kc->nb[1], head, (size_t)base * kc->nb[1]);
        Tensor* V = view_3d(ctx, vc, hd, n_kv, hp.n_head_kv, vc->nb[1], head, (size_t)base * vc->nb[1]);
        return reshape_2d(ctx, flash_attn(ctx, q, K, V, kq_scale, sp.n_past), hd * hp.n_head, n);
    }

    // Store K rows (one per position) and V columns (V^T has one row per channel).
    Tensor* kc = kv.k(il);  // [n_embd_kv, n_seq * n_ctx]
    Tensor* vc = kv.v(il);  // [n_seq * n_ctx, n_embd_kv]
    const size_t esz = kc->element_size();
    Tensor* k_dst = view_1d(ctx, kc, n * n_embd_kv, (size_t)(base + sp.n_past) * kc->nb[1]);
    g.build_forward(cpy(ctx, k, k_dst));
    Tensor* v_dst = view_2d(ctx, vc, n, n_embd_kv, vc->nb[1], (size_t)(base + sp.n_past) * esz);
    g.build_forward(cpy(ctx, transpose(ctx, v), v_dst));  // [n, n_embd_kv] <- v^T

    // scores[j, i, h] = k_j . q_i over the sequence's cached positions j < n_kv
    Tensor* K = view_3d(ctx, kc, hd, n_kv, hp.n_head_kv, kc->nb[1], (size_t)hd * esz, (size_t)base * kc->nb[1]);
    // out[:, i, h] = sum_j p[j, i, h] v_j: rows of V^T are channels, so V^T [n_kv, hd, n_head_kv]
    Tensor* V = view_3d(ctx, vc, n_kv, hd, hp.n_head_kv, vc->nb[1], (size_t)hd * vc->nb[1], (size_t)base * esz);
    const int64_t rep = hp.n_head / hp.n_head_kv;
    if (n == 1 && rep > 1) {
        // One token with grouped-query attention: the rep query heads of a KV head (heads
        // g*rep .. g*rep+rep-1) become that head's rep activation rows, so each cached K and V row
        // is read once for all of them, in the gemm tiles, not once per query head.
        Tensor* Qg = reshape_3d(ctx, q, hd, rep, hp.n_head_kv);                  // [hd, rep, n_head_kv]
        Tensor* kq = mul_mat(ctx, K, Qg);                                         // [n_kv, rep, n_head_kv]
        kq = soft_max(ctx, kq, kq_scale, false, 0);                               // sees every cached key
        return reshape_2d(ctx, mul_mat(ctx, V, kq), hd * hp.n_head, 1);           // [hd, n_head] heads in order
    }
    Tensor* Q = permute(ctx, q, 0, 2, 1, 3);                       // [hd, n, n_head]
    // causal: query i sees keys j <= n_past + i, so the products past that are skipped
    Tensor* kq = mul_mat_causal(ctx, K, Q, CausalSide::Rows, sp.n_past);  // [n_kv, n, n_head]
    kq = soft_max(ctx, kq, kq_scale, true, sp.n_past);
    Tensor* kqv = mul_mat_causal(ctx, V, kq, CausalSide::K, sp.n_past);  // [hd, n, n_head]
    Tensor* o = cont(ctx, permute(ctx, kqv, 0, 2, 1, 3));          // [hd, n_head, n]
    return reshape_2d(ctx, o, hd * hp.n_head, n);
}

}  // namespace

Tensor* block_attention(Context& ctx, Graph& g, const HParams& hp, const LayerWeights& lw,
                        const KVCache& kv, int il, Tensor* cur, const BatchInput& in,
                        Tensor* rope_freqs) {
    const int64_t n = in.n_tokens, hd = hp.head_dim;
    const int64_t n_embd_kv = hp.n_embd_kv();

    // the projections and rope work per row: one product for every sequence's rows
    Tensor* q = block_linear(ctx, lw.wq, lw.bq, cur, lw.lora);  // [n_head * hd, n]
    Tensor* k = block_linear(ctx, lw.wk, lw.bk, cur, lw.lora);  // [n_embd_kv, n]
    Tensor* v = block_linear(ctx, lw.wv, lw.bv, cur, lw.lora);  // [n_embd_kv, n]
    q = reshape_3d(ctx, q, hd, hp.n_head, n);          // [hd, n_head, n]
    k = reshape_3d(ctx, k, hd, hp.n_head_kv, n);       // [hd, n_head_kv, n]
    if (hp.rope.n_rot > 0) {
        q = rope(ctx, q, in.pos, hp.rope, rope_freqs);
        k = rope(ctx, k, in.pos, hp.rope, rope_freqs);
    }
    if (in.seqs.size() == 1) return seq_attention(ctx, g, hp, kv, il, q, k, v, in.seqs[0]);

    // Several sequences: each attends over its own cells with the same ops as alone (so its rows
    // get the same bits), and the outputs are gathered into one [n_head * hd, n] buffer for the
    // output projection.
    Tensor* all = ctx.new_tensor_external(DType::F32, {hd * hp.n_head, n}, in.attn_out[il & 1]);
    Tensor* k2 = reshape_2d(ctx, k, n_embd_kv, n);
    for (const SeqSpan& sp : in.seqs) {
        Tensor* qs = view_3d(ctx, q, hd, hp.n_head, sp.n, q->nb[1], q->nb[2], (size_t)sp.row0 * q->nb[2]);
        Tensor* ks = view_2d(ctx, k2, n_embd_kv, sp.n, k2->nb[1], (size_t)sp.row0 * k2->nb[1]);
        Tensor* vs = view_2d(ctx, v, n_embd_kv, sp.n, v->nb[1], (size_t)sp.row0 * v->nb[1]);
        Tensor* o = seq_attention(ctx, g, hp, kv, il, qs, ks, vs, sp);
        g.build_forward(cpy(ctx, o, view_2d(ctx, all, all->ne[0], sp.n, all->nb[1], (size_t)sp.row0 * all->nb[1])));
    }
    return all;
}

Tensor* block_ffn_swiglu(Context& ctx, const LayerWeights& lw, Tensor* x) {
    Tensor* gate = lora_mul_mat(ctx, lw.ffn_gate, x, lw.lora);  // [n_ff, n]
    Tensor* up = lora_mul_mat(ctx, lw.ffn_up, x, lw.lora); // [n_ff, n]
    return lora_mul_mat(ctx, lw.ffn_down, swiglu(ctx, gate, up), lw.lora);
}

Tensor* block_ffn_gelu(Context& ctx, const LayerWeights& lw, Tensor* x) {
    Tensor* h = gelu(ctx, block_linear(ctx, lw.ffn_up, lw.ffn_up_b, x, lw.lora));  // [n_ff, n]
    return block_linear(ctx, lw.ffn_down, lw.ffn_down_b, h, lw.lora);
}

Tensor* block_last_row(Context& ctx, Tensor* x) {
    if (x->ne[1] == 1) return x;
    return view_2d(ctx, x, x->ne[0], 1, x->nb[1], (size_t)(x->ne[1] - 1) * x->nb[1]);
}

Tensor* block_output_rows(Context& ctx, Tensor* x, const BatchInput& in) {
    if (in.out_rows) return get_rows(ctx, x, in.out_rows);
    if (in.n_outputs < in.n_tokens) return block_last_row(ctx, x);
    return x;
}

}  // namespace ggmlpy
