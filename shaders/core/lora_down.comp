#version 460
// Per-sample LoRA "down" product (MELO's dynamic LoRA): rows of u are grouped in samples of T rows;
// each sample s uses block ids[s] of a block bank M, or nothing (id < 0 or ≥ blocks → a zero row).
//   u: (rows, W),  ids: (rows / T) int32,  h: (rows, K)
//   TRANS = 0: M (blocks, W, K),  h[r, j] = alpha · Σ_i u[r, i] · M[id, i, j]   (x·A)
//   TRANS = 1: M (blocks, K, W),  h[r, j] = alpha · Σ_i u[r, i] · M[id, j, i]   (gy·Bᵀ)
// One workgroup per (r, j); its invocations stride over i and add in a fixed tree (deterministic).
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TRANS = 0;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef u; FloatRef m; IntRef ids; FloatRef h; uint rows; uint T; uint W; uint K; uint blocks; float alpha; } pc;
shared float partial[64];

void main() {
    const uint g = group_row();
    if (g >= pc.rows * pc.K) return;   // uniform per workgroup
    const uint r = g / pc.K, j = g - r * pc.K;
    const int id = pc.ids.v[r / pc.T];
    const uint t = gl_LocalInvocationID.x;
    float acc = 0.0;
    if (id >= 0 && uint(id) < pc.blocks) {
        const uint base = uint(id) * pc.W * pc.K;
        for (uint i = t; i < pc.W; i += 64)
            acc += pc.u.v[r * pc.W + i] * (TRANS == 0 ? pc.m.v[base + i * pc.K + j] : pc.m.v[base + j * pc.W + i]);
    }
    partial[t] = acc;
    barrier();
    [[unroll]] for (uint s = 32; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        barrier();
    }
    if (t == 0) pc.h.v[g] = pc.alpha * partial[0];
}
