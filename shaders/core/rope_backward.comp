#version 460
// Rotary position embedding backward (rope.glsl): the rotation by −θ.  x = gy, y = gx: (B, H, T, D).
//   gx[i]       = gy[i]·cos θ + gy[i + D/2]·sin θ
//   gx[i + D/2] = gy[i + D/2]·cos θ − gy[i]·sin θ
// One invocation per pair, on a 2-D grid of workgroups.
layout(local_size_x = 256) in;
#include "common.glsl"
#include "rope.glsl"
void main() {
    const uint idx = global_index();
    if (idx >= pc.pairs) return;
    const RopePair p = rope_pair(idx);
    const vec2 cs = rope_cos_sin(p.angle);
    const float g1 = pc.x.v[p.lo], g2 = pc.x.v[p.hi];
    pc.y.v[p.lo] = g1 * cs.x + g2 * cs.y;
    pc.y.v[p.hi] = g2 * cs.x - g1 * cs.y;
}
