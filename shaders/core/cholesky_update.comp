#version 460
// Blocked Cholesky, step 3: the trailing lower matrix, l[i, j] -= Σ_p l[i, k+p] * l[j, k+p] (p < b) for
// k + b <= j <= i < n. Tiles of 16 x 16 elements; each tile stages its 16 + 16 panel rows in shared memory.
// Tiles entirely above the diagonal return at once. Each element is owned by one invocation (deterministic).
layout(local_size_x = 16, local_size_y = 16) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef l; uint n; uint k; uint b; } pc;
shared float pi_[16][33];
shared float pj_[16][33];
void main() {
    const uint s0 = pc.k + pc.b;
    const uint ti = gl_WorkGroupID.y, tj = gl_WorkGroupID.x;
    if (tj > ti) return;   // uniform per workgroup: the tile is above the diagonal
    const uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    const uint i0 = s0 + ti * 16u, j0 = s0 + tj * 16u;
    // Stage: row (i0 + ly) and row (j0 + ly) of the panel, columns k .. k + b.
    for (uint p = lx; p < pc.b; p += 16u) {
        uint ri = i0 + ly, rj = j0 + ly;
        pi_[ly][p] = ri < pc.n ? pc.l.v[ri * pc.n + pc.k + p] : 0.0;
        pj_[ly][p] = rj < pc.n ? pc.l.v[rj * pc.n + pc.k + p] : 0.0;
    }
    barrier();
    const uint i = i0 + ly, j = j0 + lx;
    if (i >= pc.n || j > i) return;
    float acc = 0.0;
    for (uint p = 0; p < pc.b; p++) acc += pi_[ly][p] * pj_[lx][p];
    pc.l.v[i * pc.n + j] -= acc;
}
