#version 460
// MoE dispatch (gather of token rows grouped per expert):
//   x: (N, C),  order: (M) int32,  xs: (M, C).   xs[p, c] = x[order[p] / k, c].
//   One invocation per element of xs.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef x; IntRef order; FloatRef xs; uint M; uint C; uint k; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.M * pc.C) return;
    const uint p = idx / pc.C, c = idx - p * pc.C;
    const uint n = uint(pc.order.v[p]) / pc.k;
    pc.xs.v[idx] = pc.x.v[n * pc.C + c];
}
