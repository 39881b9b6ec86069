#version 460
// A hyper-network block's activation, y, h, o: (rows, cols), bias, scale, shift: (cols).
//   o[r, c] = y[r, c] + scale[c] * max(h[r, c] + bias[c], 0) + shift[c]
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef y; FloatRef h; FloatRef bias; FloatRef scale; FloatRef shift; FloatRef o; uint n; uint cols; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n) return;
    uint c = i % pc.cols;
    float a = max(pc.h.v[i] + pc.bias.v[c], 0.0);
    precise float t = pc.y.v[i] + pc.scale.v[c] * a;
    pc.o.v[i] = t + pc.shift.v[c];
}
