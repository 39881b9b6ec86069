#version 460
// RMSNorm over the last dimension.  x: (rows, C), weight: (C), y: (rows, C).
//   y[r, c] = (x[r, c]·rstd_r)·weight[c],  rstd_r = 1/√(Σ_c x[r, c]² / C + eps)
// One workgroup per row (rows spread over the x/y grid); the statistic as in rmsnorm.glsl.
layout(local_size_x = 128) in;
layout(local_size_x_id = 0) in;   // threads per row: a power of two picked by the host (see row_reduce.glsl)
#include "common.glsl"
#include "row_reduce.glsl"
#include "rmsnorm.glsl"
layout(push_constant) uniform Push { FloatRef x; FloatRef weight; FloatRef y; uint rows; uint cols; float eps; } pc;
void main() {
    const uint row = group_row();
    if (row >= pc.rows) return;   // uniform per workgroup
    const uint base = row * pc.cols;
    const float rstd = rms_rstd(pc.x, base, pc.cols, pc.eps);
    for (uint c = gl_LocalInvocationID.x; c < pc.cols; c += ROW_THREADS)
        pc.y.v[base + c] = (pc.x.v[base + c] * rstd) * pc.weight.v[c];
}
