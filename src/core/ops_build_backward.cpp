// Builders of the backward ops (ops.h "Backward ops"): the same build-time checks as the forward
// builders (ValueError naming the op and the shapes), then one f32 node.
#include <string>

#include "core/op_params.h"
#include "ggmlpy/error.h"
#include "ggmlpy/ops.h"
#include "quant/quant.h"

namespace ggmlpy {
namespace {

[[noreturn]] void fail(const char* op, const std::string& msg) { throw ValueError(std::string(op) + ": " + msg); }

void need_f32(const char* op, const char* arg, const Tensor* t) {
    if (!t) fail(op, std::string("argument ") + arg + " is null");
    if (t->type != DType::F32) fail(op, std::string(arg) + " must be f32, got " + t->shape_str());
}

// f32 node of x's shape from two same-shaped f32 operands.
Tensor* pair_node(const char* op, Op kind, Context& ctx, Tensor* x, Tensor* dy) {
    need_f32(op, "x", x);
    need_f32(op, "dy", dy);
    if (!same_shape(x, dy)) fail(op, "x " + x->shape_str() + " and dy " + dy->shape_str() + ": shapes must match");
    Tensor* t = ctx.new_node(DType::F32, x->ne);
    t->op = kind;
    t->src[0] = x;
    t->src[1] = dy;
    return t;
}

}  // namespace

Tensor* mul_mat_t(Context& ctx, Tensor* a, Tensor* d) {
    if (!a) fail("mul_mat_t", "argument a is null");
    need_f32("mul_mat_t", "d", d);
    const std::string shapes = "a " + a->shape_str() + " and d " + d->shape_str();
    if (a->ne[2] != 1 || a->ne[3] != 1 || d->ne[2] != 1 || d->ne[3] != 1)
        fail("mul_mat_t", shapes + ": both must be 2-D");
    if (a->ne[1] != d->ne[0]) fail("mul_mat_t", shapes + ": a.ne[1] must equal d.ne[0] (the reduced dim M)");
    if (!a->rows_contiguous() || !d->rows_contiguous()) fail("mul_mat_t", shapes + ": rows must be dense");
    if (!can_dequantize(a->type)) fail("mul_mat_t", "a " + a->shape_str() + " has no dequantizer");
    const int64_t ne[MAX_DIMS] = {a->ne[0], d->ne[1], 1, 1};
    Tensor* t = ctx.new_node(DType::F32, ne);
    t->op = Op::MUL_MAT_T;
    t->src[0] = a;
    t->src[1] = d;
    return t;
}

Tensor* rms_norm_back(Context& ctx, Tensor* x, Tensor* dy, float eps) {
    if (!(eps >= 0.0f)) fail("rms_norm_back", "eps must be >= 0");
    Tensor* t = pair_node("rms_norm_back", Op::RMS_NORM_BACK, ctx, x, dy);
    set_param_f32(t, 0, eps);
    return t;
}

Tensor* layer_norm_back(Context& ctx, Tensor* x, Tensor* dy, float eps) {
    if (!(eps >= 0.0f)) fail("layer_norm_back", "eps must be >= 0");
    Tensor* t = pair_node("layer_norm_back", Op::LAYER_NORM_BACK, ctx, x, dy);
    set_param_f32(t, 0, eps);
    return t;
}

Tensor* soft_max_back(Context& ctx, Tensor* p, Tensor* dp, float scale) {
    Tensor* t = pair_node("soft_max_back", Op::SOFT_MAX_BACK, ctx, p, dp);
    set_param_f32(t, 0, scale);
    return t;
}

Tensor* silu_back(Context& ctx, Tensor* x, Tensor* dy) { return pair_node("silu_back", Op::SILU_BACK, ctx, x, dy); }
Tensor* gelu_back(Context& ctx, Tensor* x, Tensor* dy) { return pair_node("gelu_back", Op::GELU_BACK, ctx, x, dy); }

Tensor* dropout(Context& ctx, Tensor* x, float p, int64_t seed) {
    need_f32("dropout", "x", x);
    if (!(p >= 0.0f && p < 1.0f)) fail("dropout", "p must be in [0, 1)");
    Tensor* t = ctx.new_node(DType::F32, x->ne);
    t->op = Op::DROPOUT;
    t->src[0] = x;
    set_param_f32(t, 0, p);
    set_param_i64(t, 2, seed);
    return t;
}

Tensor* rope_back(Context& ctx, Tensor* dy, Tensor* pos, const RopeParams& p, Tensor* freq_factors) {
    Tensor* t = rope(ctx, dy, pos, p, freq_factors);
    t->op_params[8] = 1;
    return t;
}

}  // namespace ggmlpy
