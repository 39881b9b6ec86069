#version 460
// MELO's vector-database lookup, one workgroup per query:
//   queries: (B, D),  centres: (N, D),  radii: (N),  points: (P, D),  point_info: (P, 2) int32 = (cluster, block).
//   1. nearest centre c* by Euclidean distance d (ties → the lowest index);
//   2. d > radii[c*] → block −1 (no LoRA); else the block of the nearest point of cluster c*
//      (−1 if the cluster has no point).
//   blocks: (B) int32,  dist: (B) = d.  Needs N ≥ 1.
// Each invocation scans a strided share of centres (then points); a fixed tree picks the minimum.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef q; FloatRef c; FloatRef radii; FloatRef pts; IntRef info; IntRef blocks; FloatRef dist; uint B; uint N; uint P; uint D; } pc;
shared float best_d[64];
shared uint best_i[64];

// Workgroup argmin of (d, i): smaller d wins, ties go to the smaller index. Uniform control flow.
void argmin_tree(uint t) {
    barrier();
    [[unroll]] for (uint s = 32; s > 0; s >>= 1) {
        if (t < s) {
            float d2 = best_d[t + s]; uint i2 = best_i[t + s];
            if (d2 < best_d[t] || (d2 == best_d[t] && i2 < best_i[t])) { best_d[t] = d2; best_i[t] = i2; }
        }
        barrier();
    }
}

void main() {
    const uint b = group_row();
    if (b >= pc.B) return;   // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    const float inf = uintBitsToFloat(0x7f800000u);
    float bd = inf; uint bi = 0xffffffffu;
    for (uint n = t; n < pc.N; n += 64) {
        float s = 0.0;
        for (uint i = 0; i < pc.D; i++) { float e = pc.q.v[b * pc.D + i] - pc.c.v[n * pc.D + i]; s += e * e; }
        if (s < bd) { bd = s; bi = n; }
    }
    best_d[t] = bd; best_i[t] = bi;
    argmin_tree(t);
    const uint cstar = best_i[0];
    const float d = sqrt(best_d[0]);
    const bool inside = cstar < pc.N && d <= pc.radii.v[cstar];
    barrier();
    bd = inf; bi = 0xffffffffu;
    if (inside)
        for (uint p = t; p < pc.P; p += 64) {
            if (uint(pc.info.v[2 * p]) != cstar) continue;
            float s = 0.0;
            for (uint i = 0; i < pc.D; i++) { float e = pc.q.v[b * pc.D + i] - pc.pts.v[p * pc.D + i]; s += e * e; }
            if (s < bd) { bd = s; bi = p; }
        }
    best_d[t] = bd; best_i[t] = bi;
    argmin_tree(t);
    if (t == 0) {
        const uint p = best_i[0];
        pc.blocks.v[b] = (inside && p < pc.P) ? pc.info.v[2 * p + 1] : -1;
        pc.dist.v[b] = d;
    }
}
