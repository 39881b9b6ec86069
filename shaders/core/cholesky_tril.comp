#version 460
// l (n, n) = the lower triangle of s (diagonal included), 0 above it: what the blocked factorisation starts from
// (the upper triangle of s is never read).
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef s; FloatRef l; uint n; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n * pc.n) return;
    uint r = i / pc.n, c = i % pc.n;
    pc.l.v[i] = c <= r ? pc.s.v[i] : 0.0;
}
