#version 460
// Gradient of h through a block's activation: gh[r, c] = go[r, c] * scale[c] * [h[r, c] + bias[c] >= 0]
// (the ReLU's derivative is 1 at 0, as torch's clamp_min: what lets a block with B = 0 and bias = 0 train).
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef h; FloatRef bias; FloatRef scale; FloatRef go; FloatRef gh; uint n; uint cols; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n) return;
    uint c = i % pc.cols;
    float g = pc.go.v[i] * pc.scale.v[c];
    pc.gh.v[i] = pc.h.v[i] + pc.bias.v[c] >= 0.0 ? g : 0.0;
}
