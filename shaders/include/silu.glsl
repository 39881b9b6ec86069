// SiLU for SwiGLU's gated product:  silu(g) = g·σ(g),  σ(g) = 1 / (1 + e^(−g)).
// Evaluated with a single e^(−|g|) ∈ (0, 1], so nothing overflows and 1 − σ never cancels: finite for every
// finite g, and accurate in the far negative tail where σ is tiny.

// (σ(g), 1 − σ(g))
vec2 silu_sigmoids(float g) {
    float e = exp(-abs(g));
    float r = 1.0 / (1.0 + e);
    return g >= 0.0 ? vec2(r, e * r) : vec2(e * r, r);
}
