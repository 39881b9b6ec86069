#version 460
// KL(softmax(ref) || softmax(x)) per row, one workgroup per row; ref, x: (rows, cols).
//   forward (mode 0):  y[r] = Σ_c p[c] * (lr[c] - lx[c]),  lr = log_softmax(ref), lx = log_softmax(x), p = exp(lr)
//                      (a p of 0 contributes 0; the host averages the rows)
//   backward (mode 1): g[r, c] = scale * (softmax(x)[c] - p[c])        (scale = dL/dy / rows)
// Both log-softmaxes subtract the row max first, so no exp overflows.
layout(local_size_x = 128) in;
layout(local_size_x_id = 0) in;
#include "common.glsl"
#include "row_reduce.glsl"
layout(push_constant) uniform Push { FloatRef ref_; FloatRef x; FloatRef y; uint rows; uint cols; uint mode; float scale; } pc;

float nan_max(float m, float v) { return isnan(v) || isnan(m) ? v + m : max(m, v); }

void main() {
    const uint r = group_row();
    if (r >= pc.rows) return;   // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    const uint base = r * pc.cols;
    float mr = uintBitsToFloat(0xff800000u), mx = mr;
    for (uint c = t; c < pc.cols; c += ROW_THREADS) { mr = nan_max(mr, pc.ref_.v[base + c]); mx = nan_max(mx, pc.x.v[base + c]); }
    mr = row_max(mr);
    mx = row_max(mx);
    vec2 s = vec2(0.0);
    for (uint c = t; c < pc.cols; c += ROW_THREADS) s += vec2(exp(pc.ref_.v[base + c] - mr), exp(pc.x.v[base + c] - mx));
    s = row_sum2(s);
    const float zr = mr + log(s.x), zx = mx + log(s.y);
    if (pc.mode == 0u) {
        float acc = 0.0;
        for (uint c = t; c < pc.cols; c += ROW_THREADS) {
            float lr = pc.ref_.v[base + c] - zr, lx = pc.x.v[base + c] - zx;
            float p = exp(lr);
            acc += p == 0.0 ? 0.0 : p * (lr - lx);
        }
        acc = row_sum(acc);
        if (t == 0u) pc.y.v[r] = acc;
    } else {
        for (uint c = t; c < pc.cols; c += ROW_THREADS)
            pc.y.v[base + c] = pc.scale * (exp(pc.x.v[base + c] - zx) - exp(pc.ref_.v[base + c] - zr));
    }
}
