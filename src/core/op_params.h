// Layout of Tensor::op_params per op, shared by the op builders (src/core/ops_build.cpp) and the
// forward functions (src/compute). Words are int32; floats and int64 are stored bitwise.
//   SCALE      [0] f32 s
//   RMS_NORM   [0] f32 eps                       src: a, weight?
//   LAYER_NORM [0] f32 eps                       src: a, weight?, bias?
//   ROPE       [0] n_rot [1] mode [2] f32 base [3] f32 scale [4] f32 l3_factor [5] f32 l3_low
//              [6] f32 l3_high [7] l3_orig_ctx [8] inverse (rope_back: rotate by -theta)
//                                                src: a, pos, freq_factors?
//   RMS_NORM_BACK, LAYER_NORM_BACK [0] f32 eps  src: x, dy
//   SOFT_MAX_BACK [0] f32 scale                  src: p, dp
//   SILU_BACK, GELU_BACK                         src: x, dy
//   DROPOUT    [0] f32 p [2..3] i64 seed         src: x
//   SOFT_MAX   [0] f32 scale [1] causal [2..3] i64 n_past
//   MUL_MAT    [0] causal side (0: none, CausalSide) [2..3] i64 n_past
//   CPY        src: src, dst (the node is a view of dst)
//   FLASH_ATTN [0] f32 scale [2..3] i64 n_past   src: q, k, v
#pragma once
#include <cstdint>
#include <cstring>

#include "ggmlpy/ops.h"
#include "ggmlpy/tensor.h"

namespace ggmlpy {

constexpr int MAX_ROPE_PAIRS = 1024;  // n_rot / 2 limit (stack arrays in forward_rope)

// llama3_freq_factors without allocation: out[0 .. n_rot/2).
void llama3_freq_factors_into(const RopeParams& p, float* out);

inline void set_param_f32(Tensor* t, int i, float v) { std::memcpy(&t->op_params[i], &v, 4); }
inline float param_f32(const Tensor* t, int i) { float v; std::memcpy(&v, &t->op_params[i], 4); return v; }
inline void set_param_i64(Tensor* t, int i, int64_t v) { std::memcpy(&t->op_params[i], &v, 8); }
inline int64_t param_i64(const Tensor* t, int i) { int64_t v; std::memcpy(&v, &t->op_params[i], 8); return v; }

}  // namespace ggmlpy
