#version 460
// Column statistics of x (rows, cols): mean[c] and the unbiased variance var[c] (0 when rows = 1).
// One invocation per column; two passes over the rows (the mean, then the squared deviations from it), each a
// compensated (Kahan) sum, so a large common offset costs no accuracy. Deterministic: a fixed order per column.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef x; FloatRef mean; FloatRef var_; uint rows; uint cols; } pc;
void main() {
    uint c = global_index();
    if (c >= pc.cols) return;
    precise float s = 0.0, comp = 0.0;
    for (uint r = 0; r < pc.rows; r++) {
        precise float y = pc.x.v[r * pc.cols + c] - comp;
        precise float t = s + y;
        comp = (t - s) - y;
        s = t;
    }
    float m = s / float(pc.rows);
    precise float q = 0.0, qc = 0.0;
    for (uint r = 0; r < pc.rows; r++) {
        float d = pc.x.v[r * pc.cols + c] - m;
        precise float y = d * d - qc;
        precise float t = q + y;
        qc = (t - q) - y;
        q = t;
    }
    pc.mean.v[c] = m;
    pc.var_.v[c] = pc.rows > 1 ? q / float(pc.rows - 1) : 0.0;
}
