#version 460
// Blocked triangular solves with the Cholesky factor l (n, n) on x (n, m), in place, block rows [k, k + b):
//   forward  (mode 0, L y = rhs):  x[k+i, c] -= Σ_{p < k}     l[k+i, p] * x[p, c]
//   backward (mode 1, Lᵀ x = y):   x[k+i, c] -= Σ_{p >= k+b}  l[p, k+i] * x[p, c]
// One invocation per element of the block (b x m); then spd_solve_diag finishes the block.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef l; FloatRef x; uint n; uint m; uint k; uint b; uint mode; } pc;
void main() {
    uint e = global_index();
    if (e >= pc.b * pc.m) return;
    uint i = pc.k + e / pc.m, c = e % pc.m;
    float acc = 0.0;
    if (pc.mode == 0u) {
        for (uint p = 0; p < pc.k; p++) acc += pc.l.v[i * pc.n + p] * pc.x.v[p * pc.m + c];
    } else {
        for (uint p = pc.k + pc.b; p < pc.n; p++) acc += pc.l.v[p * pc.n + i] * pc.x.v[p * pc.m + c];
    }
    pc.x.v[i * pc.m + c] -= acc;
}
