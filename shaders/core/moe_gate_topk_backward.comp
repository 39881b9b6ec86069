#version 460
// Backward of the MoE gate:  logits: (N, E),  gw: (N, k) gradient of the weights,  gl: (N, E).
//   The selection is recomputed exactly as in the forward (top-k, ties to the lowest index).
//   With p = softmax(logits[n]) and g[e] = gw[n, j] where e = indices[n, j] (0 elsewhere):
//   gl[n, e] = p[e]·(g[e] − Σ_j p[indices[n, j]]·gw[n, j]). One invocation per row; E ≤ 64.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef logits; FloatRef gw; FloatRef gl; uint N; uint E; uint k; } pc;

void main() {
    const uint n = global_index();
    if (n >= pc.N) return;
    const uint base = n * pc.E;
    float mx = pc.logits.v[base];
    for (uint e = 1; e < pc.E; e++) mx = max(mx, pc.logits.v[base + e]);
    float sum = 0.0;
    for (uint e = 0; e < pc.E; e++) sum += exp(pc.logits.v[base + e] - mx);
    // g[e] is kept sparse: slot of expert e (or none) in a 64-entry table of slot+1.
    uint slot[64];
    for (uint e = 0; e < pc.E; e++) slot[e] = 0u;
    float dot = 0.0;
    for (uint j = 0; j < pc.k; j++) {
        int best = -1;
        float bv = 0.0;
        for (uint e = 0; e < pc.E; e++) {
            if (slot[e] != 0u) continue;
            const float v = pc.logits.v[base + e];
            if (best < 0 || v > bv) { best = int(e); bv = v; }
        }
        slot[uint(best)] = j + 1u;
        dot += exp(bv - mx) / sum * pc.gw.v[n * pc.k + j];
    }
    for (uint e = 0; e < pc.E; e++) {
        const float p = exp(pc.logits.v[base + e] - mx) / sum;
        const float g = slot[e] != 0u ? pc.gw.v[n * pc.k + slot[e] - 1u] : 0.0;
        pc.gl.v[base + e] = p * (g - dot);
    }
}
