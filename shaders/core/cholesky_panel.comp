#version 460
// Blocked Cholesky, step 2: the panel below the diagonal block, l[r, k:k+b] <- l[r, k:k+b] * L11^-T for every row
// r in [k + b, n): one invocation per row, a forward substitution against the factored block L11 = l[k:k+b, k:k+b].
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef l; uint n; uint k; uint b; } pc;
void main() {
    uint r = pc.k + pc.b + global_index();
    if (r >= pc.n) return;
    float x[32];
    for (uint j = 0; j < pc.b; j++) {
        float v = pc.l.v[r * pc.n + pc.k + j];
        for (uint p = 0; p < j; p++) v -= x[p] * pc.l.v[(pc.k + j) * pc.n + pc.k + p];
        x[j] = v / pc.l.v[(pc.k + j) * pc.n + pc.k + j];
    }
    for (uint j = 0; j < pc.b; j++) pc.l.v[r * pc.n + pc.k + j] = x[j];
}
