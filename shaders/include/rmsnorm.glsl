// The row statistic of RMSNorm, shared by rms_norm_forward and rms_norm_backward so that the backward
// recomputes exactly what the forward used. Include after row_reduce.glsl.
//
//   rstd = 1/√(Σ x² / C + eps)   over the row x[base .. base + C), in float32
//
// Each invocation adds the squares of its strided slice of the row, then row_sum adds the partial sums in a
// fixed tree (deterministic). All terms are ≥ 0, so nothing cancels: the relative error of the sum is at most
// about (C / ROW_THREADS + log2 ROW_THREADS)·2⁻²⁴. As in torch, a square beyond float32's range is ∞ (rstd 0).
float rms_rstd(FloatRef x, uint base, uint cols, float eps) {
    const uint t = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint c = t; c < cols; c += ROW_THREADS) {
        float v = x.v[base + c];
        s += v * v;
    }
    return inversesqrt(row_sum(s) / float(cols) + eps);
}
