// TrainGraph (train_graph.h): forward and backward of the Llama / GPT-J blocks for LoRA training.
// Every backward is written from the forward ops it undoes; the comments give each gradient.
#include "training/train_graph.h"

#include <cmath>

#include "ggmlpy/ops.h"

namespace ggmlpy {

TrainGraph::TrainGraph(Context& ctx, Graph& g, const HParams& hp, const ModelWeights& w, bool gptj, Tensor* pos,
                       const std::unordered_map<const Tensor*, LoraSlot*>& slots, float dropout, int64_t seed)
    : ctx_(ctx), g_(g), hp_(hp), w_(w), gptj_(gptj), pos_(pos), slots_(slots), dropout_(dropout), seed_(seed) {}

// ---- linear maps: y = W x + s B (A x) --------------------------------------------------------

TrainGraph::Lin TrainGraph::lin_forward(Tensor* w, Tensor* x) {
    Lin l;
    l.w = w;
    l.x = x;
    auto it = slots_.find(w);
    if (it != slots_.end()) {
        l.slot = it->second;
        l.a = ctx_.new_tensor_external(DType::F32, {l.slot->n_in, l.slot->r}, l.slot->a.data());
        l.b = ctx_.new_tensor_external(DType::F32, {l.slot->r, l.slot->n_out}, l.slot->b.data());
        l.xd = dropout_ > 0.0f ? dropout(ctx_, x, dropout_, dropout_seed(seed_, l.slot->index)) : x;
        l.u = mul_mat(ctx_, l.a, l.xd);  // [r, T]
    }
    return l;
}

Tensor* TrainGraph::lin_out(const Lin& l) {
    Tensor* y = mul_mat(ctx_, l.w, l.x);  // [n_out, T]
    if (l.slot) y = add(ctx_, y, mul_mat(ctx_, l.b, scale(ctx_, l.u, l.slot->scale)));
    return y;
}

// dx = W^T dy + s D(A^T (B^T dy)); dB = s dy u^T; dA = s (B^T dy) xd^T, with xd = D(x) (dropout's
// mask, the same on the way back; D is the identity without dropout) and u = A xd.
Tensor* TrainGraph::lin_backward(const Lin& l, Tensor* dy) {
    Tensor* dx = mul_mat_t(ctx_, l.w, dy);  // [n_in, T], from W's own blocks
    if (!l.slot) return dx;
    const float s = l.slot->scale;
    Tensor* v = mul_mat_t(ctx_, l.b, dy);  // B^T dy [r, T]
    Tensor* dxd = mul_mat_t(ctx_, l.a, v);  // [n_in, T]
    if (l.xd != l.x) dxd = dropout(ctx_, dxd, dropout_, dropout_seed(seed_, l.slot->index));
    dx = add(ctx_, dx, scale(ctx_, dxd, s));
    // mul_mat(a, b) contracts ne[0]: tokens are made the leading dim of both operands
    Tensor* dyt = cont(ctx_, transpose(ctx_, dy));   // [T, n_out]
    Tensor* ut = cont(ctx_, transpose(ctx_, l.u));   // [T, r]
    Tensor* xt = cont(ctx_, transpose(ctx_, l.xd));  // [T, n_in]
    Tensor* vt = cont(ctx_, transpose(ctx_, v));     // [T, r]
    GradOut go;
    go.slot = l.slot;
    go.db = scale(ctx_, mul_mat(ctx_, ut, dyt), s);  // [r, n_out]
    go.da = scale(ctx_, mul_mat(ctx_, xt, vt), s);   // [n_in, r]
    g_.build_forward(go.db);
    g_.build_forward(go.da);
    grads_.push_back(go);
    return dx;
}

// ---- norms ------------------------------------------------------------------------------------

Tensor* TrainGraph::norm_forward(Tensor* x, Tensor* w, Tensor* b) {
    return gptj_ ? layer_norm(ctx_, x, hp_.norm_eps, w, b) : rms_norm(ctx_, x, hp_.norm_eps, w);
}

// y = norm(x) * w (+ b): d norm(x) = dy * w, then the norm's own backward.
Tensor* TrainGraph::norm_backward(Tensor* x, Tensor* w, Tensor* dy) {
    Tensor* dn = w ? mul(ctx_, dy, w) : dy;
    return gptj_ ? layer_norm_back(ctx_, x, dn, hp_.norm_eps) : rms_norm_back(ctx_, x, dn, hp_.norm_eps);
}

// ---- causal self-attention over the T tokens ---------------------------------------------------

TrainGraph::Attn TrainGraph::attn_forward(const LayerWeights& lw, Tensor* h) {
    const int64_t T = h->ne[1], hd = hp_.head_dim;
    Attn a;
    a.lq = lin_forward(lw.wq, h);
    a.lk = lin_forward(lw.wk, h);
    a.lv = lin_forward(lw.wv, h);
    Tensor* q = reshape_3d(ctx_, lin_out(a.lq), hd, hp_.n_head, T);
    Tensor* k = reshape_3d(ctx_, lin_out(a.lk), hd, hp_.n_head_kv, T);
    a.v = reshape_3d(ctx_, lin_out(a.lv), hd, hp_.n_head_kv, T);
    if (hp_.rope.n_rot > 0) {
        q = rope(ctx_, q, pos_, hp_.rope, w_.rope_freqs);
        k = rope(ctx_, k, pos_, hp_.rope, w_.rope_freqs);
    }
    a.q = q;
    a.k = k;
    Tensor* K = cont(ctx_, permute(ctx_, k, 0, 2, 1, 3));  // [hd, T, n_head_kv]
    Tensor* Q = permute(ctx_, q, 0, 2, 1, 3);              // [hd, T, n_head]
    a.p = soft_max(ctx_, mul_mat(ctx_, K, Q), 1.0f / std::sqrt((float)hd), true, 0);  // [T_k, T_q, n_head]
    a.lo = lin_forward(lw.wo, attn_out(a));
    return a;
}

// o[:, i, h] = sum_j p[j, i, h] v[:, j, h / rep]
Tensor* TrainGraph::attn_out(const Attn& a) {
    const int64_t T = a.v->ne[2], hd = hp_.head_dim;
    Tensor* Vt = cont(ctx_, permute(ctx_, a.v, 1, 2, 0, 3));  // [T, hd, n_head_kv]
    Tensor* o = mul_mat(ctx_, Vt, a.p);                       // [hd, T_q, n_head]
    return reshape_2d(ctx_, cont(ctx_, permute(ctx_, o, 0, 2, 1, 3)), hd * hp_.n_head, T);
}

Tensor* TrainGraph::sum_groups(Tensor* x) {
    const int64_t rep = hp_.n_head / hp_.n_head_kv;
    if (rep == 1) return x;
    // query head h = g * rep + j reads KV head g: view j strides rep heads
    Tensor* s = nullptr;
    for (int64_t j = 0; j < rep; ++j) {
        Tensor* v = view_3d(ctx_, x, x->ne[0], x->ne[1], hp_.n_head_kv, x->nb[1], x->nb[2] * rep, x->nb[2] * j);
        s = s ? add(ctx_, s, v) : cont(ctx_, v);
    }
    return s;
}

// From dy [n_head * hd, T] (the gradient of the attention output): dP = V^T dO, dS =
// softmax_back(P, dP) (with the score scale), dQ = K dS, dK = Q dS^T, dV = dO P^T, the K/V
// gradients summed over each KV head's query heads; then rope back, then the projections.
// Returns dh, the gradient of the attention input (q, k and v paths summed).
Tensor* TrainGraph::attn_backward(const Attn& a, Tensor* dy) {
    const int64_t T = a.v->ne[2], hd = hp_.head_dim;
    Tensor* do3 = reshape_3d(ctx_, lin_backward(a.lo, dy), hd, hp_.n_head, T);
    Tensor* dO = cont(ctx_, permute(ctx_, do3, 0, 2, 1, 3));         // [hd, T_q, n_head]
    Tensor* Vp = cont(ctx_, permute(ctx_, a.v, 0, 2, 1, 3));         // [hd, T_k, n_head_kv]
    Tensor* dP = mul_mat(ctx_, Vp, dO);                              // [T_k, T_q, n_head]
    Tensor* dS = soft_max_back(ctx_, a.p, dP, 1.0f / std::sqrt((float)hd));
    Tensor* Kt = cont(ctx_, permute(ctx_, a.k, 1, 2, 0, 3));         // [T_k, hd, n_head_kv]
    Tensor* dQ = mul_mat(ctx_, Kt, dS);                              // [hd, T_q, n_head]
    Tensor* Qt = cont(ctx_, permute(ctx_, a.q, 1, 2, 0, 3));         // [T_q, hd, n_head]
    Tensor* dSt = cont(ctx_, transpose(ctx_, dS));                   // [T_q, T_k, n_head]
    Tensor* dK = sum_groups(mul_mat(ctx_, Qt, dSt));                 // [hd, T_k, n_head_kv]
    Tensor* dOt = cont(ctx_, transpose(ctx_, dO));                   // [T_q, hd, n_head]
    Tensor* Pt = cont(ctx_, transpose(ctx_, a.p));                   // [T_q, T_k, n_head]
    Tensor* dV = sum_groups(mul_mat(ctx_, dOt, Pt));                 // [hd, T_k, n_head_kv]
    Tensor* dq = cont(ctx_, permute(ctx_, dQ, 0, 2, 1, 3));          // [hd, n_head, T]
    Tensor* dk = cont(ctx_, permute(ctx_, dK, 0, 2, 1, 3));          // [hd, n_head_kv, T]
    Tensor* dv = cont(ctx_, permute(ctx_, dV, 0, 2, 1, 3));
    if (hp_.rope.n_rot > 0) {
        dq = rope_back(ctx_, dq, pos_, hp_.rope, w_.rope_freqs);
        dk = rope_back(ctx_, dk, pos_, hp_.rope, w_.rope_freqs);
    }
    Tensor* dh = lin_backward(a.lq, reshape_2d(ctx_, dq, hd * hp_.n_head, T));
    dh = add(ctx_, dh, lin_backward(a.lk, reshape_2d(ctx_, dk, hd * hp_.n_head_kv, T)));
    return add(ctx_, dh, lin_backward(a.lv, reshape_2d(ctx_, dv, hd * hp_.n_head_kv, T)));
}

// ---- blocks -----------------------------------------------------------------------------------

TrainGraph::LayerAct TrainGraph::layer_forward(int il, Tensor* x) {
    const LayerWeights& l = w_.layers[(size_t)il];
    LayerAct s;
    s.il = il;
    s.x = x;
    s.h = norm_forward(x, l.attn_norm, l.attn_norm_b);
    s.at = attn_forward(l, s.h);
    Tensor* att = lin_out(s.at.lo);
    if (gptj_) {
        // parallel residual: x + attn(h) + down(gelu(up h + b_up)) + b_down
        s.lu = lin_forward(l.ffn_up, s.h);
        s.up = add(ctx_, lin_out(s.lu), l.ffn_up_b);
        s.ld = lin_forward(l.ffn_down, gelu(ctx_, s.up));
        s.out = add(ctx_, add(ctx_, add(ctx_, x, att), lin_out(s.ld)), l.ffn_down_b);
        return s;
    }
    // x2 = x + attn(norm(x)); out = x2 + down(silu(gate h2) * up h2), h2 = norm(x2)
    s.x2 = add(ctx_, x, att);
    s.h2 = norm_forward(s.x2, l.ffn_norm, nullptr);
    s.lg = lin_forward(l.ffn_gate, s.h2);
    s.lu = lin_forward(l.ffn_up, s.h2);
    s.gate = lin_out(s.lg);
    s.up = lin_out(s.lu);
    s.ld = lin_forward(l.ffn_down, swiglu(ctx_, s.gate, s.up));
    s.out = add(ctx_, s.x2, lin_out(s.ld));
    return s;
}

Tensor* TrainGraph::layer_backward(const LayerAct& s, Tensor* dout) {
    const LayerWeights& l = w_.layers[(size_t)s.il];
    if (gptj_) {
        Tensor* da = lin_backward(s.ld, dout);            // d gelu(up)
        Tensor* dup = gelu_back(ctx_, s.up, da);
        Tensor* dh = add(ctx_, lin_backward(s.lu, dup), attn_backward(s.at, dout));
        return add(ctx_, dout, norm_backward(s.x, l.attn_norm, dh));
    }
    // swiglu(g, u) = silu(g) u: dg = silu'(g) u da, du = silu(g) da
    Tensor* da = lin_backward(s.ld, dout);
    Tensor* dgate = silu_back(ctx_, s.gate, mul(ctx_, da, s.up));
    Tensor* dup = mul(ctx_, da, silu(ctx_, s.gate));
    Tensor* dh2 = add(ctx_, lin_backward(s.lg, dgate), lin_backward(s.lu, dup));
    Tensor* dx2 = add(ctx_, dout, norm_backward(s.x2, l.ffn_norm, dh2));
    Tensor* dh = attn_backward(s.at, dx2);
    return add(ctx_, dx2, norm_backward(s.x, l.attn_norm, dh));
}

Tensor* TrainGraph::head_forward(Tensor* x) {
    Tensor* h = norm_forward(x, w_.output_norm, w_.output_norm_b);
    Tensor* y = mul_mat(ctx_, w_.output, h);  // [n_vocab, T]
    return w_.output_b ? add(ctx_, y, w_.output_b) : y;
}

Tensor* TrainGraph::head_backward(Tensor* x, Tensor* dlogits) {
    return norm_backward(x, w_.output_norm, mul_mat_t(ctx_, w_.output, dlogits));
}

}  // namespace ggmlpy
