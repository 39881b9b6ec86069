#version 460
// MoE gate with top-k selection:  logits: (N, E),  weights: (N, k),  indices: (N, k) int32.
//   p = softmax(logits[n]); the k experts with the largest logits in descending order, ties to the
//   lowest index (strict > while scanning upwards); weights[n, j] = p[indices[n, j]] (not renormalised).
//   One invocation per row; E ≤ 64 (the chosen set is a 64-bit mask in two words).
layout(local_size_x = 64) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef logits; FloatRef weights; IntRef indices; uint N; uint E; uint k; } pc;

void main() {
    const uint n = global_index();
    if (n >= pc.N) return;
    const uint base = n * pc.E;
    float mx = pc.logits.v[base];
    for (uint e = 1; e < pc.E; e++) mx = max(mx, pc.logits.v[base + e]);
    float sum = 0.0;
    for (uint e = 0; e < pc.E; e++) sum += exp(pc.logits.v[base + e] - mx);
    uint chosen[2] = uint[2](0u, 0u);
    for (uint j = 0; j < pc.k; j++) {
        int best = -1;
        float bv = 0.0;
        for (uint e = 0; e < pc.E; e++) {
            if ((chosen[e >> 5] & (1u << (e & 31u))) != 0u) continue;
            const float v = pc.logits.v[base + e];
            if (best < 0 || v > bv) { best = int(e); bv = v; }
        }
        chosen[uint(best) >> 5] |= 1u << (uint(best) & 31u);
        pc.indices.v[n * pc.k + j] = best;
        pc.weights.v[n * pc.k + j] = exp(bv - mx) / sum;
    }
}
