#version 460
// Backward of the grouped matmul, weight side:  xs: (M, K),  gy: (M, Nout),  offsets: (E + 1),  gw: (E, K, Nout).
//   gw[e, c, o] = Σ_{p in group e} xs[p, c]·gy[p, o], rows in order (deterministic); 0 for an empty group.
//   One invocation per element of gw.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef xs; FloatRef gy; IntRef offsets; FloatRef gw; uint M; uint K; uint Nout; uint E; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.E * pc.K * pc.Nout) return;
    const uint e = idx / (pc.K * pc.Nout), rest = idx - e * pc.K * pc.Nout;
    const uint c = rest / pc.Nout, o = rest - c * pc.Nout;
    const uint lo = uint(pc.offsets.v[e]), hi = min(uint(pc.offsets.v[e + 1]), pc.M);
    float s = 0.0;
    for (uint p = lo; p < hi; p++) s += pc.xs.v[p * pc.K + c] * pc.gy.v[p * pc.Nout + o];
    pc.gw.v[idx] = s;
}
