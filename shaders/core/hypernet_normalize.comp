#version 460
// The hyper-network's normaliser, x, y: (rows, cols), mean, std: (cols).
//   forward (mode 0):  y[r, c] = (x[r, c] - mean[c]) / (std[c] + eps)
//   backward (mode 1): y[r, c] = x[r, c] / (std[c] + eps)      (x is the output gradient; mean is not read)
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef x; FloatRef mean; FloatRef std_; FloatRef y; uint n; uint cols; float eps; uint mode; } pc;
void main() {
    uint i = global_index();
    if (i >= pc.n) return;
    uint c = i % pc.cols;
    float v = pc.mode == 0u ? pc.x.v[i] - pc.mean.v[c] : pc.x.v[i];
    pc.y.v[i] = v / (pc.std_.v[c] + pc.eps);
}
