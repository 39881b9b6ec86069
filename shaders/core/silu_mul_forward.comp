#version 460
// SwiGLU's gated product (silu.glsl).  gate, up, y: (n).   y = (gate·σ(gate))·up
layout(local_size_x = 256) in;
#include "common.glsl"
#include "silu.glsl"
layout(push_constant) uniform Push { FloatRef gate; FloatRef up; FloatRef y; uint n; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n) return;
    float g = pc.gate.v[i];
    pc.y.v[i] = (g * silu_sigmoids(g).x) * pc.up.v[i];
}
