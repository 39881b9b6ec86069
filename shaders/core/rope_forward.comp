#version 460
// Rotary position embedding (rope.glsl).  x, y: (B, H, T, D), invFreq: (D/2), offsets: I32 (B) or none.
//   y[i]       = x[i]·cos θ − x[i + D/2]·sin θ
//   y[i + D/2] = x[i + D/2]·cos θ + x[i]·sin θ        θ = float(start + t (+ offsets[b]))·invFreq[i]
// One invocation per pair, on a 2-D grid of workgroups.
layout(local_size_x = 256) in;
#include "common.glsl"
#include "rope.glsl"
void main() {
    const uint idx = global_index();
    if (idx >= pc.pairs) return;
    const RopePair p = rope_pair(idx);
    const vec2 cs = rope_cos_sin(p.angle);
    const float x1 = pc.x.v[p.lo], x2 = pc.x.v[p.hi];
    pc.y.v[p.lo] = x1 * cs.x - x2 * cs.y;
    pc.y.v[p.hi] = x2 * cs.x + x1 * cs.y;
}
