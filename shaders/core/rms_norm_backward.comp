#version 460
// RMSNorm backward, per row.  x, gy, gx: (rows, C), weight: (C), rstd: (rows).
// Recomputes the forward's statistic from x (rmsnorm.glsl), then with x̂ = x·rstd and g = gy·weight:
//   gx[r, c] = rstd_r·(g[c] − x̂[c]·mean_c(g·x̂))
// and stores rstd per row for rms_norm_backward_weight (the weight gradient).
// One workgroup per row (rows spread over the x/y grid).
layout(local_size_x = 128) in;
layout(local_size_x_id = 0) in;   // threads per row: a power of two picked by the host (see row_reduce.glsl)
#include "common.glsl"
#include "row_reduce.glsl"
#include "rmsnorm.glsl"
layout(push_constant) uniform Push { FloatRef x; FloatRef weight; FloatRef gy; FloatRef gx; FloatRef rstd; uint rows; uint cols; float eps; } pc;
void main() {
    const uint row = group_row();
    if (row >= pc.rows) return;   // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    const uint base = row * pc.cols;
    const float r = rms_rstd(pc.x, base, pc.cols, pc.eps);
    float acc = 0.0;   // Σ g·x̂
    for (uint c = t; c < pc.cols; c += ROW_THREADS)
        acc += (pc.gy.v[base + c] * pc.weight.v[c]) * (pc.x.v[base + c] * r);
    const float m = row_sum(acc) / float(pc.cols);
    for (uint c = t; c < pc.cols; c += ROW_THREADS) {
        float g = pc.gy.v[base + c] * pc.weight.v[c];
        float xhat = pc.x.v[base + c] * r;
        pc.gx.v[base + c] = r * (g - xhat * m);
    }
    if (t == 0) pc.rstd.v[row] = r;
}
