#version 460
// MoE combine (weighted scatter back to tokens, written as a gather so that no two invocations write
// one element):  ys: (M, C),  weights: (N, k),  position: (M) int32,  y: (N, C), M = N·k.
//   y[n, c] = Σ_j weights[n, j]·ys[position[n·k + j], c], j in order. One invocation per element of y.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef ys; FloatRef weights; IntRef position; FloatRef y; uint N; uint C; uint k; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.N * pc.C) return;
    const uint n = idx / pc.C, c = idx - n * pc.C;
    float s = 0.0;
    for (uint j = 0; j < pc.k; j++) {
        const uint i = n * pc.k + j;
        s += pc.weights.v[i] * pc.ys.v[uint(pc.position.v[i]) * pc.C + c];
    }
    pc.y.v[idx] = s;
}
