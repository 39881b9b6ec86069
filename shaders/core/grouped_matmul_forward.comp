#version 460
// Grouped matmul (the experts' linear maps):  xs: (M, K),  w: (E, K, Nout),  offsets: (E + 1) int32,  y: (M, Nout).
//   y[p, o] = Σ_c xs[p, c]·w[e, c, o] for offsets[e] ≤ p < offsets[e+1]; 0 for rows in no group (p ≥ offsets[E]).
//   One invocation per output element; the group is found by a linear scan of offsets (E ≤ 64).
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef xs; FloatRef w; IntRef offsets; FloatRef y; uint M; uint K; uint Nout; uint E; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.M * pc.Nout) return;
    const uint p = idx / pc.Nout, o = idx - p * pc.Nout;
    int e = -1;
    for (uint g = 0; g < pc.E; g++)
        if (int(p) >= pc.offsets.v[g] && int(p) < pc.offsets.v[g + 1]) { e = int(g); break; }
    float s = 0.0;
    if (e >= 0) {
        const uint wb = uint(e) * pc.K * pc.Nout + o, xb = p * pc.K;
        for (uint c = 0; c < pc.K; c++) s += pc.xs.v[xb + c] * pc.w.v[wb + c * pc.Nout];
    }
    pc.y.v[idx] = s;
}
