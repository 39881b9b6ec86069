#version 460
// Gradients of a block's per-column vectors, one invocation per column, rows summed in order (deterministic):
//   gbias[c]  = Σ_r go[r, c] * scale[c] * [h + bias >= 0]
//   gscale[c] = Σ_r go[r, c] * max(h[r, c] + bias[c], 0)
//   gshift[c] = Σ_r go[r, c]
layout(local_size_x = 64) in;
#include "common.glsl"
layout(push_constant) uniform Push { FloatRef h; FloatRef bias; FloatRef scale; FloatRef go; FloatRef gbias; FloatRef gscale; FloatRef gshift; uint rows; uint cols; } pc;
void main() {
    uint c = global_index();
    if (c >= pc.cols) return;
    float b = pc.bias.v[c], s = pc.scale.v[c];
    float sb = 0.0, ss = 0.0, st = 0.0;
    for (uint r = 0; r < pc.rows; r++) {
        uint i = r * pc.cols + c;
        float g = pc.go.v[i], z = pc.h.v[i] + b;
        sb += z >= 0.0 ? g * s : 0.0;
        ss += g * max(z, 0.0);
        st += g;
    }
    pc.gbias.v[c] = sb;
    pc.gscale.v[c] = ss;
    pc.gshift.v[c] = st;
}
