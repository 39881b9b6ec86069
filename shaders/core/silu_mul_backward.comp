#version 460
// SwiGLU's gated product backward (silu.glsl).  gate, up, gy, ggate, gup: (n).
//   d/dgate [gate·σ(gate)] = σ + gate·σ·(1 − σ) = σ·(1 + gate·(1 − σ))
//   ggate = gy·up·σ·(1 + gate·(1 − σ)),   gup = gy·gate·σ
layout(local_size_x = 256) in;
#include "common.glsl"
#include "silu.glsl"
layout(push_constant) uniform Push { FloatRef gate; FloatRef up; FloatRef gy; FloatRef ggate; FloatRef gup; uint n; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n) return;
    float g = pc.gate.v[i], gy = pc.gy.v[i];
    vec2 s = silu_sigmoids(g);
    pc.ggate.v[i] = (gy * pc.up.v[i]) * (s.x * (1.0 + g * s.y));
    pc.gup.v[i] = gy * (g * s.x);
}
