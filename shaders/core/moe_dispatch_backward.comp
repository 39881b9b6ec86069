#version 460
// Backward of MoE dispatch:  position: (M) int32 (inverse of order),  gxs: (M, C),  gx: (N, C), M = N·k.
//   gx[n, c] = Σ_j gxs[position[n·k + j], c], j = 0 .. k−1 in order (each output sums its own rows: no atomics).
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { IntRef position; FloatRef gxs; FloatRef gx; uint N; uint C; uint k; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.N * pc.C) return;
    const uint n = idx / pc.C, c = idx - n * pc.C;
    float s = 0.0;
    for (uint j = 0; j < pc.k; j++) s += pc.gxs.v[uint(pc.position.v[n * pc.k + j]) * pc.C + c];
    pc.gx.v[idx] = s;
}
