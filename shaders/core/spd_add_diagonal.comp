#version 460
// s (n, n) <- s + value * I, in place: one invocation per diagonal element.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef s; uint n; float value; } pc;
void main() {
    uint i = global_index();
    if (i < pc.n) pc.s.v[i * pc.n + i] += pc.value;
}
