#version 460
// Gradient of ONE LoRA block: out[p, q] = alpha · Σ over rows r of samples routed to `block` of u[r, p] · v[r, q].
//   u: (rows, P),  v: (rows, Q),  ids: (rows / T) int32,  out: (P, Q).
// Samples routed elsewhere (or nowhere) add nothing, so only the active block is trained.
// One invocation per output element sums the rows in order (deterministic, no atomics).
layout(local_size_x = 64) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef u; FloatRef v; IntRef ids; FloatRef o; uint rows; uint T; uint P; uint Q; int block; float alpha; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.P * pc.Q) return;
    const uint p = idx / pc.Q, q = idx - p * pc.Q;
    float acc = 0.0;
    for (uint r = 0; r < pc.rows; r++)
        if (pc.ids.v[r / pc.T] == pc.block) acc += pc.u.v[r * pc.P + p] * pc.v.v[r * pc.Q + q];
    pc.o.v[idx] = pc.alpha * acc;
}
