#version 460
// Per-sample LoRA "up" product: the rank-K rows h back to width W through each sample's block.
//   h: (rows, K),  ids: (rows / T) int32,  y: (rows, W); id < 0 or ≥ blocks → a zero row.
//   TRANS = 0: M (blocks, K, W),  y[r, o] = alpha · Σ_j h[r, j] · M[id, j, o]   (h·B)
//   TRANS = 1: M (blocks, W, K),  y[r, o] = alpha · Σ_j h[r, j] · M[id, o, j]   (gh·Aᵀ)
// One invocation per output element; K (the rank per block) is small.
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint TRANS = 0;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef h; FloatRef m; IntRef ids; FloatRef y; uint rows; uint T; uint W; uint K; uint blocks; float alpha; } pc;

void main() {
    const uint idx = global_index();
    if (idx >= pc.rows * pc.W) return;
    const uint r = idx / pc.W, o = idx - r * pc.W;
    const int id = pc.ids.v[r / pc.T];
    float acc = 0.0;
    if (id >= 0 && uint(id) < pc.blocks) {
        const uint base = uint(id) * pc.W * pc.K;
        for (uint j = 0; j < pc.K; j++)
            acc += pc.h.v[r * pc.K + j] * (TRANS == 0 ? pc.m.v[base + j * pc.W + o] : pc.m.v[base + o * pc.K + j]);
    }
    pc.y.v[idx] = pc.alpha * acc;
}
