#version 460
// Backward of the MoE combine, weight side:  ys: (M, C),  position: (M),  gy: (N, C),  gw: (N, k).
//   gw[n, j] = Σ_c ys[position[n·k + j], c]·gy[n, c]. One invocation per entry.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef ys; IntRef position; FloatRef gy; FloatRef gw; uint M; uint C; uint k; } pc;

void main() {
    const uint i = global_index();
    if (i >= pc.M) return;
    const uint yb = uint(pc.position.v[i]) * pc.C, gb = (i / pc.k) * pc.C;
    float s = 0.0;
    for (uint c = 0; c < pc.C; c++) s += pc.ys.v[yb + c] * pc.gy.v[gb + c];
    pc.gw.v[i] = s;
}
