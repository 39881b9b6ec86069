#version 460
// Blocked Cholesky, step 1: factor the diagonal block l[k:k+b, k:k+b] (b <= 32) in place, in one workgroup
// (the block in shared memory, left-looking column by column). A pivot that is not > 0 (or not finite) becomes NaN,
// and NaN then reaches every later column: a matrix that is not positive definite gives NaN from that column on.
layout(local_size_x = 256) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef l; uint n; uint k; uint b; } pc;
shared float a[32][33];
void main() {
    const uint t = gl_LocalInvocationID.x, b = pc.b;
    for (uint e = t; e < b * b; e += 256u) {
        uint i = e / b, j = e % b;
        a[i][j] = j <= i ? pc.l.v[(pc.k + i) * pc.n + pc.k + j] : 0.0;
    }
    barrier();
    for (uint j = 0; j < b; j++) {
        if (t == 0u) {
            float d = a[j][j];
            a[j][j] = d > 0.0 && !isinf(d) ? sqrt(d) : uintBitsToFloat(0x7fc00000u);
        }
        barrier();
        const float piv = a[j][j];
        for (uint i = j + 1u + t; i < b; i += 256u) a[i][j] /= piv;
        barrier();
        // Trailing part of the block: a[i][c] -= a[i][j] * a[c][j] for j < c <= i.
        const uint m = b - j - 1u;
        for (uint e = t; e < m * m; e += 256u) {
            uint i = j + 1u + e / m, c = j + 1u + e % m;
            if (c <= i) a[i][c] -= a[i][j] * a[c][j];
        }
        barrier();
    }
    for (uint e = t; e < b * b; e += 256u) {
        uint i = e / b, j = e % b;
        pc.l.v[(pc.k + i) * pc.n + pc.k + j] = j <= i ? a[i][j] : 0.0;
    }
}
