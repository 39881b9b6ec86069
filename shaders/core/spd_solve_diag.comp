#version 460
// The diagonal block of a blocked triangular solve, in place: one invocation per right-hand side column c.
//   forward  (mode 0): x[k+i] = (x[k+i] - Σ_{p < i} l[k+i, k+p] x[k+p]) / l[k+i, k+i],  i = 0 .. b-1
//   backward (mode 1): x[k+i] = (x[k+i] - Σ_{p > i} l[k+p, k+i] x[k+p]) / l[k+i, k+i],  i = b-1 .. 0
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef l; FloatRef x; uint n; uint m; uint k; uint b; uint mode; } pc;
void main() {
    uint c = global_index();
    if (c >= pc.m) return;
    float y[32];
    for (uint i = 0; i < pc.b; i++) y[i] = pc.x.v[(pc.k + i) * pc.m + c];
    if (pc.mode == 0u) {
        for (uint i = 0; i < pc.b; i++) {
            float v = y[i];
            for (uint p = 0; p < i; p++) v -= pc.l.v[(pc.k + i) * pc.n + pc.k + p] * y[p];
            y[i] = v / pc.l.v[(pc.k + i) * pc.n + pc.k + i];
        }
    } else {
        for (uint q = 0; q < pc.b; q++) {
            uint i = pc.b - 1u - q;
            float v = y[i];
            for (uint p = i + 1u; p < pc.b; p++) v -= pc.l.v[(pc.k + p) * pc.n + pc.k + i] * y[p];
            y[i] = v / pc.l.v[(pc.k + i) * pc.n + pc.k + i];
        }
    }
    for (uint i = 0; i < pc.b; i++) pc.x.v[(pc.k + i) * pc.m + c] = y[i];
}
