#version 460
// Backward of the MoE combine, expert-output side:  weights: (N, k),  position: (M),  gy: (N, C),  gys: (M, C).
//   gys[position[i], c] = weights[i]·gy[i / k, c] for entry i = n·k + j; position is a permutation, so
//   every row of gys is written exactly once. One invocation per (entry, column).
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef weights; IntRef position; FloatRef gy; FloatRef gys; uint M; uint C; uint k; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.M * pc.C) return;
    const uint i = idx / pc.C, c = idx - i * pc.C;
    pc.gys.v[uint(pc.position.v[i]) * pc.C + c] = pc.weights.v[i] * pc.gy.v[(i / pc.k) * pc.C + c];
}
