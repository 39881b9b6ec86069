#version 460
// Value differences, one workgroup per row: k, kt (rows, dk), gt, d (rows, dv), eta (1).
//   forward (mode 0):  d[r, :] = -eta * <k[r], kt[r]> * gt[r, :]
//   backward (mode 1), gd (rows, dv) given:  gkt[r, :] = -eta * <gd[r], gt[r]> * k[r, :],
//                       ggt[r, :] = -eta * <k[r], kt[r]> * gd[r, :],  ce[r] = <k[r], kt[r]> * <gd[r], gt[r]>
//   (the gradient of eta, -Σ_r ce[r], is summed by the host's Sum op).
layout(local_size_x = 128) in;
layout(local_size_x_id = 0) in;
#include "common.glsl"
#include "row_reduce.glsl"
layout(push_constant) uniform Push { FloatRef k; FloatRef kt; FloatRef gt; FloatRef eta; FloatRef gd; FloatRef out0; FloatRef out1; FloatRef ce;
                                     uint rows; uint dk; uint dv; uint mode; } pc;
void main() {
    const uint r = group_row();
    if (r >= pc.rows) return;   // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    float a = 0.0, e = 0.0;
    for (uint j = t; j < pc.dk; j += ROW_THREADS) a += pc.k.v[r * pc.dk + j] * pc.kt.v[r * pc.dk + j];
    if (pc.mode == 1u)
        for (uint j = t; j < pc.dv; j += ROW_THREADS) e += pc.gd.v[r * pc.dv + j] * pc.gt.v[r * pc.dv + j];
    vec2 s = row_sum2(vec2(a, e));
    const float eta = pc.eta.v[0];
    if (pc.mode == 0u) {
        float c = -eta * s.x;
        for (uint j = t; j < pc.dv; j += ROW_THREADS) pc.out0.v[r * pc.dv + j] = c * pc.gt.v[r * pc.dv + j];
    } else {
        float ck = -eta * s.y, cg = -eta * s.x;
        for (uint j = t; j < pc.dk; j += ROW_THREADS) pc.out0.v[r * pc.dk + j] = ck * pc.k.v[r * pc.dk + j];
        for (uint j = t; j < pc.dv; j += ROW_THREADS) pc.out1.v[r * pc.dv + j] = cg * pc.gd.v[r * pc.dv + j];
        if (t == 0u) pc.ce.v[r] = s.x * s.y;
    }
}
