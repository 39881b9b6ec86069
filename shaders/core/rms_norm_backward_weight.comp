#version 460
// RMSNorm backward, the weight gradient over a chunk of rows (layout as col_sum.comp).
//   x, gy: (rows, C), rstd: (rows) from rms_norm_backward, pweight: (chunks, C)
//   pweight[k, c] = Σ_{r in chunk k} gy[r, c]·(x[r, c]·rstd[r])
// With several chunks the host adds the partials with col_sum. Deterministic (fixed order).
layout(local_size_x = 32, local_size_y = 8) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef x; FloatRef gy; FloatRef rstd; FloatRef pweight; uint rows; uint cols; uint rowsPerChunk; } pc;
shared float partial[8][32];
void main() {
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    const uint c = group_row() * 32 + tx;
    const uint r0 = gl_WorkGroupID.z * pc.rowsPerChunk;
    const uint r1 = min(r0 + pc.rowsPerChunk, pc.rows);
    float acc = 0.0;
    if (c < pc.cols)
        for (uint r = r0 + ty; r < r1; r += 8)
            acc += pc.gy.v[r * pc.cols + c] * (pc.x.v[r * pc.cols + c] * pc.rstd.v[r]);
    partial[ty][tx] = acc;
    barrier();
    [[unroll]] for (uint s = 4; s > 0; s >>= 1) {
        if (ty < s) partial[ty][tx] += partial[ty + s][tx];
        barrier();
    }
    if (ty == 0 && c < pc.cols) pc.pweight.v[gl_WorkGroupID.z * pc.cols + c] = partial[0][tx];
}
