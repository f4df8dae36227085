// Op builders (include/ggmlpy/ops.h): validate shapes and types at graph build time, throwing
// ggmlpy::ValueError that names the op and both shapes, and create the result node. No compute.
#include <algorithm>
#include <cmath>
#include <string>

#include "core/op_params.h"
#include "ggmlpy/error.h"
#include "ggmlpy/ops.h"
#include "kernels/kernels.h"

namespace ggmlpy {
namespace {

[[noreturn]] void fail(const char* op, const std::string& msg) { throw ValueError(std::string(op) + ": " + msg); }

void need(const char* op, const char* arg, const Tensor* t) {
    if (!t) fail(op, std::string("argument ") + arg + " is null");
}

void need_f32(const char* op, const char* arg, const Tensor* t) {
    need(op, arg, t);
    if (t->type != DType::F32)
        fail(op, std::string(arg) + " must be f32, got " + t->shape_str());
}

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

std::string two(const Tensor* a, const Tensor* b) { return "a " + a->shape_str() + " and b " + b->shape_str(); }

// A node of the given shape and type with dense strides and no data (the graph allocates it).
Tensor* node(Context& ctx, Op op, DType type, const int64_t ne[MAX_DIMS], Tensor* s0, Tensor* s1 = nullptr,
             Tensor* s2 = nullptr) {
    Tensor* t = ctx.new_node(type, ne);
    t->op = op;
    t->src[0] = s0;
    t->src[1] = s1;
    t->src[2] = s2;
    return t;
}

// A view node of a: type, ne and nb given, offset bytes from a's data.
Tensor* make_view(Context& ctx, Op op, Tensor* a, const int64_t ne[MAX_DIMS], const size_t nb[MAX_DIMS],
                  size_t offset) {
    int64_t dense_ne[MAX_DIMS] = {ne[0], ne[1], ne[2], ne[3]};
    Tensor* t = ctx.new_node(a->type, dense_ne);
    for (int i = 0; i < MAX_DIMS; ++i) t->nb[i] = nb[i];
    t->op = op;
    t->src[0] = a;
    t->view_src = a->view_src ? a->view_src : a;
    t->view_offs = a->view_offs + offset;
    return t;
}

void check_view_bounds(const char* op, const Tensor* a, const Tensor* v) {
    const Tensor* base = a->base();
    const size_t end = v->view_offs + v->nbytes();
    if (v->nelements() > 0 && end > base->view_offs + base->nbytes())
        fail(op, "view " + v->shape_str() + " at byte offset " + std::to_string(v->view_offs) +
                     " ends at byte " + std::to_string(end) + ", past the end of its source " +
                     base->shape_str() + " (" + std::to_string(base->nbytes()) + " bytes)");
}

Tensor* view_nd(const char* op, Context& ctx, Tensor* a, const int64_t ne[MAX_DIMS], const size_t nbin[3],
                size_t offset) {
    need(op, "a", a);
    for (int i = 0; i < MAX_DIMS; ++i)
        if (ne[i] < 0) fail(op, "negative dim " + std::to_string(ne[i]));
    const DTypeTraits& tr = dtype_traits(a->type);
    if (ne[0] % tr.block_size != 0)
        fail(op, "ne[0]=" + std::to_string(ne[0]) + " is not a multiple of the block size of " + a->shape_str());
    size_t nb[MAX_DIMS] = {tr.type_size, nbin[0], nbin[1], nbin[2]};
    Tensor* v = make_view(ctx, Op::VIEW, a, ne, nb, offset);
    check_view_bounds(op, a, v);
    return v;
}

Tensor* binary(const char* opname, Op op, Context& ctx, Tensor* a, Tensor* b) {
    need_f32(opname, "a", a);
    need_f32(opname, "b", b);
    for (int i = 0; i < MAX_DIMS; ++i)
        if (b->ne[i] == 0 || a->ne[i] % b->ne[i] != 0)
            fail(opname, two(a, b) + ": b must broadcast over a (b.ne[" + std::to_string(i) + "] must divide a.ne[" +
                             std::to_string(i) + "])");
    return node(ctx, op, DType::F32, a->ne, a, b);
}

Tensor* unary(const char* opname, Op op, Context& ctx, Tensor* a) {
    need_f32(opname, "a", a);
    return node(ctx, op, DType::F32, a->ne, a);
}

void check_row_param(const char* op, const char* arg, const Tensor* a, const Tensor* w) {
    if (!w) return;
    need_f32(op, arg, w);
    if (w->ne[0] != a->ne[0] || w->nelements() != w->ne[0])
        fail(op, std::string(arg) + " " + w->shape_str() + " must be a row of ne[0] of a " + a->shape_str());
}

}  // namespace

Tensor* view_1d(Context& ctx, Tensor* a, int64_t ne0, size_t offset) {
    need("view_1d", "a", a);
    const int64_t ne[MAX_DIMS] = {ne0, 1, 1, 1};
    const size_t rb = row_size(a->type, ne0);
    const size_t nb[3] = {rb, rb, rb};
    return view_nd("view_1d", ctx, a, ne, nb, offset);
}

Tensor* view_2d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset) {
    const int64_t ne[MAX_DIMS] = {ne0, ne1, 1, 1};
    const size_t nb[3] = {nb1, nb1 * (size_t)ne1, nb1 * (size_t)ne1};
    return view_nd("view_2d", ctx, a, ne, nb, offset);
}

Tensor* view_3d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2,
                size_t offset) {
    const int64_t ne[MAX_DIMS] = {ne0, ne1, ne2, 1};
    const size_t nb[3] = {nb1, nb2, nb2 * (size_t)ne2};
    return view_nd("view_3d", ctx, a, ne, nb, offset);
}

Tensor* view_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, size_t nb1,
                size_t nb2, size_t nb3, size_t offset) {
    const int64_t ne[MAX_DIMS] = {ne0, ne1, ne2, ne3};
    const size_t nb[3] = {nb1, nb2, nb3};
    return view_nd("view_4d", ctx, a, ne, nb, offset);
}

Tensor* reshape(Context& ctx, Tensor* a, const std::vector<int64_t>& shape) {
    need("reshape", "a", a);
    if (shape.empty() || shape.size() > (size_t)MAX_DIMS) fail("reshape", "expected 1 to 4 dims");
    int64_t ne[MAX_DIMS] = {1, 1, 1, 1};
    int64_t n = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] < 0) fail("reshape", "negative dim " + std::to_string(shape[i]));
        ne[i] = shape[i];
        n *= shape[i];
    }
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    want += "]";
    if (n != a->nelements())
        fail("reshape", "a " + a->shape_str() + " has " + std::to_string(a->nelements()) + " elements, shape " +
                            want + " has " + std::to_string(n));
    if (!a->is_contiguous()) fail("reshape", "a " + a->shape_str() + " is not contiguous (use cont first)");
    const DTypeTraits& tr = dtype_traits(a->type);
    if (ne[0] % tr.block_size != 0) fail("reshape", "ne[0] of " + want + " is not a multiple of the block size");
    size_t nb[MAX_DIMS];
    nb[0] = tr.type_size;
    nb[1] = (size_t)(ne[0] / tr.block_size) * tr.type_size;
    nb[2] = nb[1] * (size_t)ne[1];
    nb[3] = nb[2] * (size_t)ne[2];
    return make_view(ctx, Op::RESHAPE, a, ne, nb, 0);
}

Tensor* permute(Context& ctx, Tensor* a, int ax0, int ax1, int ax2, int ax3) {
    need("permute", "a", a);
    const int ax[MAX_DIMS] = {ax0, ax1, ax2, ax3};
    bool used[MAX_DIMS] = {false, false, false, false};
    for (int i = 0; i < MAX_DIMS; ++i) {
        if (ax[i] < 0 || ax[i] >= MAX_DIMS || used[ax[i]])
            fail("permute", "axes (" + std::to_string(ax0) + ", " + std::to_string(ax1) + ", " + std::to_string(ax2) +
                                ", " + std::to_string(ax3) + ") are not a permutation of 0..3");
        used[ax[i]] = true;
    }
    if (dtype_traits(a->type).quantized && ax0 != 0) fail("permute", "cannot move the row dim of quantized " + a->shape_str());
    int64_t ne[MAX_DIMS];
    size_t nb[MAX_DIMS];
    for (int i = 0; i < MAX_DIMS; ++i) {
        ne[ax[i]] = a->ne[i];
        nb[ax[i]] = a->nb[i];
    }
    return make_view(ctx, Op::PERMUTE, a, ne, nb, 0);
}

Tensor* transpose(Context& ctx, Tensor* a) {
    Tensor* t = permute(ctx, a, 1, 0, 2, 3);
    t->op = Op::TRANSPOSE;
    return t;
}

Tensor* cont(Context& ctx, Tensor* a) {
    need("cont", "a", a);
    if (!is_float_type(a->type)) fail("cont", "a must be f32, f16 or bf16, got " + a->shape_str());
    return node(ctx, Op::CONT, a->type, a->ne, a);
}

Tensor* cpy(Context& ctx, Tensor* src, Tensor* dst) {
    need("cpy", "src", src);
    need("cpy", "dst", dst);
    if (dtype_traits(dst->type).quantized) {
        // f32 rows quantized into dst's rows (K/V into a quantized cache): same shape, dense rows
        if (src->type != DType::F32 || !same_shape(src, dst) || !src->rows_contiguous() || !dst->rows_contiguous() ||
            dst->ne[0] % dtype_traits(dst->type).block_size != 0 || !kernels().type[(int)dst->type].from_float)
            fail("cpy", "src " + src->shape_str() + " to " + dtype_name(dst->type) + " dst " + dst->shape_str() +
                            ": a quantized dst takes f32 rows of its shape, ne[0] a multiple of its block");
    } else if (!is_float_type(src->type) || !is_float_type(dst->type)) {
        fail("cpy", "src " + src->shape_str() + " and dst " + dst->shape_str() + ": types must be f32, f16 or bf16");
    }
    if (src->nelements() != dst->nelements())
        fail("cpy", "src " + src->shape_str() + " and dst " + dst->shape_str() + " have different element counts");
    Tensor* t = make_view(ctx, Op::CPY, dst, dst->ne, dst->nb, 0);
    t->src[0] = src;
    t->src[1] = dst;
    return t;
}

Tensor* cast(Context& ctx, Tensor* a, DType type) {
    need("cast", "a", a);
    if (!is_float_type(a->type) || !is_float_type(type))
        fail("cast", std::string("a ") + a->shape_str() + " to " +
                         (dtype_supported((int32_t)type) ? dtype_name(type) : "?") + ": types must be f32, f16 or bf16");
    return node(ctx, Op::CPY, type, a->ne, a);
}

Tensor* get_rows(Context& ctx, Tensor* a, Tensor* ids) {
    need("get_rows", "a", a);
    need("get_rows", "ids", ids);
    if (ids->type != DType::I32) fail("get_rows", "ids must be i32, got " + ids->shape_str());
    if (ids->nelements() != ids->ne[0]) fail("get_rows", "ids must be 1-D, got " + ids->shape_str());
    if (ids->nb[0] != 4) fail("get_rows", "ids must be contiguous, got " + ids->shape_str());
    if (ids->base()->op != Op::NONE) fail("get_rows", "ids must be an input tensor (a leaf or a view of one)");
    if (a->ne[2] != 1 || a->ne[3] != 1) fail("get_rows", "a must be 2-D [n_embd, n_rows], got " + two(a, ids));
    if (!a->rows_contiguous()) fail("get_rows", "rows of a " + a->shape_str() + " must be contiguous");
    if (!is_float_type(a->type) && !dtype_traits(a->type).quantized)
        fail("get_rows", "a " + a->shape_str() + " must be a float or quantized type");
    const int64_t ne[MAX_DIMS] = {a->ne[0], ids->ne[0], 1, 1};
    return node(ctx, Op::GET_ROWS, DType::F32, ne, a, ids);
}

Tensor* mul_mat(Context& ctx, Tensor* a, Tensor* b) {
    need("mul_mat", "a", a);
    need_f32("mul_mat", "b", b);
    if (a->ne[0] != b->ne[0]) fail("mul_mat", two(a, b) + ": ne[0] (the reduced dim K) must match");
    if (a->ne[2] == 0 || a->ne[3] == 0 || b->ne[2] % a->ne[2] != 0 || b->ne[3] % a->ne[3] != 0)
        fail("mul_mat", two(a, b) + ": b.ne[2] and b.ne[3] must be multiples of a.ne[2] and a.ne[3]");
    if (!a->rows_contiguous()) fail("mul_mat", "rows of a " + a->shape_str() + " must be contiguous");
    const TypeKernels& tk = kernels().type[(int)a->type];
    if (!tk.vec_dot)
        fail("mul_mat", "weight type of a " + a->shape_str() + " has no matmul kernel in table " + kernels().name);
    if (!kernels().type[(int)tk.vec_dot_type].from_float)
        fail("mul_mat", std::string("no conversion to the activation type ") + dtype_name(tk.vec_dot_type) +
                            " in table " + kernels().name);
    const DTypeTraits& vt = dtype_traits(tk.vec_dot_type);
    if (b->ne[0] % vt.block_size != 0)
        fail("mul_mat", two(a, b) + ": K must be a multiple of " + std::to_string(vt.block_size));
    const int64_t ne[MAX_DIMS] = {a->ne[1], b->ne[1], b->ne[2], b->ne[3]};
    return node(ctx, Op::MUL_MAT, DType::F32, ne, a, b);
}

Tensor* mul_mat_causal(Context& ctx, Tensor* a, Tensor* b, CausalSide side, int64_t n_past) {
    if (side != CausalSide::Rows && side != CausalSide::K)
        fail("mul_mat_causal", "side must be CausalSide::Rows or CausalSide::K, got " + std::to_string((int)side));
    if (n_past < 0) fail("mul_mat_causal", "n_past must be >= 0, got " + std::to_string(n_past));
    Tensor* t = mul_mat(ctx, a, b);
    t->op_params[0] = (int32_t)side;
    set_param_i64(t, 2, n_past);
    return t;
}

Tensor* add(Context& ctx, Tensor* a, Tensor* b) { return binary("add", Op::ADD, ctx, a, b); }
Tensor* mul(Context& ctx, Tensor* a, Tensor* b) { return binary("mul", Op::MUL, ctx, a, b); }

Tensor* scale(Context& ctx, Tensor* a, float s) {
    Tensor* t = unary("scale", Op::SCALE, ctx, a);
    set_param_f32(t, 0, s);
    return t;
}

Tensor* silu(Context& ctx, Tensor* a) { return unary("silu", Op::SILU, ctx, a); }
Tensor* gelu(Context& ctx, Tensor* a) { return unary("gelu", Op::GELU, ctx, a); }
Tensor* gelu_erf(Context& ctx, Tensor* a) { return unary("gelu_erf", Op::GELU_ERF, ctx, a); }

Tensor* swiglu(Context& ctx, Tensor* a, Tensor* b) {
    need_f32("swiglu", "a", a);
    need_f32("swiglu", "b", b);
    if (!same_shape(a, b)) fail("swiglu", two(a, b) + ": shapes must match");
    return node(ctx, Op::SWIGLU, DType::F32, a->ne, a, b);
}

Tensor* rms_norm(Context& ctx, Tensor* a, float eps, Tensor* weight) {
    need_f32("rms_norm", "a", a);
    check_row_param("rms_norm", "weight", a, weight);
    if (!(eps >= 0.0f)) fail("rms_norm", "eps must be >= 0");
    Tensor* t = node(ctx, Op::RMS_NORM, DType::F32, a->ne, a, weight);
    set_param_f32(t, 0, eps);
    return t;
}

Tensor* layer_norm(Context& ctx, Tensor* a, float eps, Tensor* weight, Tensor* bias) {
    need_f32("layer_norm", "a", a);
    check_row_param("layer_norm", "weight", a, weight);
    check_row_param("layer_norm", "bias", a, bias);
    if (!(eps >= 0.0f)) fail("layer_norm", "eps must be >= 0");
    Tensor* t = node(ctx, Op::LAYER_NORM, DType::F32, a->ne, a, weight, bias);
    set_param_f32(t, 0, eps);
    return t;
}

void llama3_freq_factors_into(const RopeParams& p, float* out) {
    // HF _compute_llama3_parameters: long wavelengths are divided by factor, short ones kept,
    // the band between interpolated; out[i] = inv_freq_i / new_inv_freq_i.
    const int n = p.n_rot / 2;
    const double old_ctx = p.llama3_original_ctx;
    const double low_wl = old_ctx / p.llama3_low_freq_factor;
    const double high_wl = old_ctx / p.llama3_high_freq_factor;
    for (int i = 0; i < n; ++i) {
        if (p.llama3_factor <= 0.0f) { out[i] = 1.0f; continue; }
        const double inv = std::pow((double)p.freq_base, -2.0 * i / p.n_rot);
        const double wl = 2.0 * M_PI / inv;
        double nf;
        if (wl < high_wl) {
            nf = inv;
        } else if (wl > low_wl) {
            nf = inv / p.llama3_factor;
        } else {
            const double smooth = (old_ctx / wl - p.llama3_low_freq_factor) /
                                  (p.llama3_high_freq_factor - p.llama3_low_freq_factor);
            nf = (1.0 - smooth) * inv / p.llama3_factor + smooth * inv;
        }
        out[i] = (float)(inv / nf);
    }
}

std::vector<float> llama3_freq_factors(const RopeParams& p) {
    std::vector<float> f((size_t)std::max(p.n_rot / 2, 0), 1.0f);
    if (!f.empty()) llama3_freq_factors_into(p, f.data());
    return f;
}

Tensor* rope(Context& ctx, Tensor* a, Tensor* pos, const RopeParams& p, Tensor* freq_factors) {
    need_f32("rope", "a", a);
    need("rope", "pos", pos);
    if (a->ne[3] != 1) fail("rope", "a must be [head_dim, n_head, n_tokens], got " + a->shape_str());
    if (pos->type != DType::I32 || pos->nelements() != pos->ne[0] || pos->nb[0] != 4)
        fail("rope", "pos must be a contiguous 1-D i32 tensor, got " + pos->shape_str());
    if (pos->ne[0] != a->ne[2])
        fail("rope", "a " + a->shape_str() + " and pos " + pos->shape_str() + ": pos needs one entry per token (a.ne[2])");
    if (p.n_rot <= 0 || p.n_rot % 2 != 0 || p.n_rot > a->ne[0])
        fail("rope", "n_rot=" + std::to_string(p.n_rot) + " must be even and in (0, head_dim] for a " + a->shape_str());
    if (p.n_rot / 2 > MAX_ROPE_PAIRS) fail("rope", "n_rot=" + std::to_string(p.n_rot) + " exceeds " + std::to_string(2 * MAX_ROPE_PAIRS));
    if (p.mode != RopeMode::NORM && p.mode != RopeMode::NEOX)
        fail("rope", "unknown mode " + std::to_string((int)p.mode) + " (0: interleaved pairs, 2: neox half split)");
    if (!(p.freq_base > 0.0f) || !(p.freq_scale > 0.0f)) fail("rope", "freq_base and freq_scale must be > 0");
    if (p.llama3_factor > 0.0f &&
        (!(p.llama3_high_freq_factor > p.llama3_low_freq_factor) || p.llama3_original_ctx <= 0 ||
         !(p.llama3_low_freq_factor > 0.0f)))
        fail("rope", "llama3 scaling needs 0 < low_freq_factor < high_freq_factor and original_ctx > 0");
    if (freq_factors) {
        need_f32("rope", "freq_factors", freq_factors);
        if (freq_factors->nelements() != p.n_rot / 2 || !freq_factors->is_contiguous())
            fail("rope", "freq_factors " + freq_factors->shape_str() + " must hold n_rot/2 = " +
                             std::to_string(p.n_rot / 2) + " contiguous values");
    }
    Tensor* t = node(ctx, Op::ROPE, DType::F32, a->ne, a, pos, freq_factors);
    t->op_params[0] = p.n_rot;
    t->op_params[1] = (int32_t)p.mode;
    set_param_f32(t, 2, p.freq_base);
    set_param_f32(t, 3, p.freq_scale);
    set_param_f32(t, 4, p.llama3_factor);
    set_param_f32(t, 5, p.llama3_low_freq_factor);
    set_param_f32(t, 6, p.llama3_high_freq_factor);
    t->op_params[7] = p.llama3_original_ctx;
    return t;
}

Tensor* soft_max(Context& ctx, Tensor* a, float scale, bool causal, int64_t n_past) {
    need_f32("soft_max", "a", a);
    if (n_past < 0) fail("soft_max", "n_past must be >= 0, got " + std::to_string(n_past));
    Tensor* t = node(ctx, Op::SOFT_MAX, DType::F32, a->ne, a);
    set_param_f32(t, 0, scale);
    t->op_params[1] = causal ? 1 : 0;
    set_param_i64(t, 2, n_past);
    return t;
}

Tensor* flash_attn(Context& ctx, Tensor* q, Tensor* k, Tensor* v, float scale, int64_t n_past) {
    need_f32("flash_attn", "q", q);
    need("flash_attn", "k", k);
    need("flash_attn", "v", v);
    const auto shapes = [&] { return "q " + q->shape_str() + ", k " + k->shape_str() + ", v " + v->shape_str(); };
    const int64_t hd = q->ne[0], n = q->ne[2];
    if (n_past < 0) fail("flash_attn", "n_past must be >= 0, got " + std::to_string(n_past));
    if (k->type != v->type) fail("flash_attn", shapes() + ": k and v must have one type");
    if (k->ne[0] != hd || v->ne[0] != hd || v->ne[1] != k->ne[1] || v->ne[2] != k->ne[2] || q->ne[3] != 1 || k->ne[3] != 1)
        fail("flash_attn", shapes() + ": expected q [hd, n_head, n], k and v [hd, n_kv, n_head_kv]");
    if (k->ne[1] != n_past + n)
        fail("flash_attn", shapes() + ": n_kv must be n_past + n = " + std::to_string(n_past + n));
    if (k->ne[2] == 0 || q->ne[1] % k->ne[2] != 0)
        fail("flash_attn", shapes() + ": n_head must be a multiple of n_head_kv");
    if (!q->rows_contiguous() || !k->rows_contiguous() || !v->rows_contiguous())
        fail("flash_attn", shapes() + ": rows must be dense");
    const TypeKernels& tk = kernels().type[(int)k->type];
    if (!tk.vec_dot || !tk.accum || !kernels().type[(int)tk.vec_dot_type].from_float)
        fail("flash_attn", std::string("cache type ") + dtype_name(k->type) + " is not supported (f32, f16, q8_0, q4_0)");
    if (hd % dtype_traits(tk.vec_dot_type).block_size != 0 || hd % dtype_traits(k->type).block_size != 0)
        fail("flash_attn", shapes() + ": hd must be a multiple of the block of " + dtype_name(k->type));
    const int64_t ne[MAX_DIMS] = {hd, q->ne[1], n, 1};
    Tensor* t = node(ctx, Op::FLASH_ATTN, DType::F32, ne, q, k, v);
    set_param_f32(t, 0, scale);
    set_param_i64(t, 2, n_past);
    return t;
}

}  // namespace ggmlpy
