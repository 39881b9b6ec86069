#version 460
// Backward of the grouped matmul, input side:  gy: (M, Nout),  w: (E, K, Nout),  offsets: (E + 1),  gxs: (M, K).
//   gxs[p, c] = Σ_o gy[p, o]·w[e, c, o] for p in group e; 0 for rows in no group. One invocation per element.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef gy; FloatRef w; IntRef offsets; FloatRef gxs; uint M; uint K; uint Nout; uint E; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.M * pc.K) return;
    const uint p = idx / pc.K, c = idx - p * pc.K;
    int e = -1;
    for (uint g = 0; g < pc.E; g++)
        if (int(p) >= pc.offsets.v[g] && int(p) < pc.offsets.v[g + 1]) { e = int(g); break; }
    float s = 0.0;
    if (e >= 0) {
        const uint wb = (uint(e) * pc.K + c) * pc.Nout, gb = p * pc.Nout;
        for (uint o = 0; o < pc.Nout; o++) s += pc.gy.v[gb + o] * pc.w.v[wb + o];
    }
    pc.gxs.v[idx] = s;
}
