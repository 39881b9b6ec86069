// Rotary position embedding, Hugging Face's LLaMA layout: shared by rope_forward and rope_backward.
// Include after common.glsl, in a shader with this push-constant block (one invocation per pair):
//   x: (B, H, T, D) read, invFreq: (D/2), offsets: I32 (B) when hasOffsets ≠ 0, y: (B, H, T, D) written,
//   pairs = B·H·T·D/2, halfD = D/2, start ≥ 0.
// Element i of a head vector pairs with i + D/2 (rotate_half, not interleaved), at the angle
//   θ = float(pos)·invFreq[i]   (one float32 rounding, as Hugging Face's float32 product),  pos = start + t (+ offsets[b]).
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { FloatRef x; FloatRef invFreq; IntRef offsets; FloatRef y; uint pairs; uint halfD; uint T; uint H; int start; uint hasOffsets; } pc;

// (cos a, sin a) of a float32 angle, to about 2e-7 absolute for every |a| < 2²⁴·π/2, on every device:
// Vulkan bounds the built-in sin/cos only on [−π, π] and only to 2⁻¹¹, and positions reach far beyond π.
//  1. a = k·π/2 + r, |r| ≤ π/4, by Cody–Waite: π/2 = P0 + P1 + P2 + P3 (12 significant bits each, exact in float32)
//     and k = kh + kl (kh a multiple of 4096, |kl| < 4096: 12 significant bits each), so every product kh·Pj, kl·Pj is
//     exact and the leading subtractions cancel exactly. A second pass corrects k when a·2/π rounded to the
//     neighbouring integer (|a| beyond ~10⁶).
//  2. Taylor polynomials on |r| ≤ π/4 (truncation below 2e-9): sin to r⁹, cos to r¹⁰.
//  3. The quadrant k mod 4 swaps and negates them.
const float ROPE_P0 = 1.57080078125;              // 0x1.922p+0
const float ROPE_P1 = -4.4535845518112183e-06;    // -0x1.2aep-18
const float ROPE_P2 = -8.7061380327213556e-10;    // -0x1.deap-31
const float ROPE_P3 = 6.2228000530240024e-14;     // 0x1.184p-44
const float ROPE_2_OVER_PI = 0.636619747;

float rope_subtract(float r, float k) {
    precise float kh = trunc(k * (1.0 / 4096.0)) * 4096.0;   // toward 0: kl has k's sign, |kl| < 4096
    precise float kl = k - kh;
    precise float s = r - kh * ROPE_P0;
    s = s - kl * ROPE_P0;
    s = s - kh * ROPE_P1;
    s = s - kl * ROPE_P1;
    s = s - kh * ROPE_P2;
    s = s - kl * ROPE_P2;
    s = s - kh * ROPE_P3;
    s = s - kl * ROPE_P3;
    return s;
}

vec2 rope_cos_sin(float a) {
    float k = roundEven(a * ROPE_2_OVER_PI);
    precise float r = rope_subtract(a, k);
    const float k2 = roundEven(r * ROPE_2_OVER_PI);   // 0 except when the first k was off by one
    if (k2 != 0.0) { r = rope_subtract(r, k2); k += k2; }
    const float r2 = r * r;
    const float s = fma(r * r2, fma(r2, fma(r2, fma(r2, 2.75573188e-06, -1.98412701e-04), 8.33333377e-03), -1.66666672e-01), r);
    const float c = fma(r2, fma(r2, fma(r2, fma(r2, fma(r2, -2.75573200e-07, 2.48015876e-05), -1.38888892e-03), 4.16666679e-02), -0.5), 1.0);
    switch (int(k) & 3) {
        case 0: return vec2(c, s);
        case 1: return vec2(-s, c);
        case 2: return vec2(-c, -s);
        default: return vec2(s, -c);
    }
}

// The pair this invocation rotates: (index of x[.., i], index of x[.., i + D/2], angle θ).
struct RopePair { uint lo; uint hi; float angle; };

RopePair rope_pair(uint idx) {
    const uint i = idx % pc.halfD, row = idx / pc.halfD;   // row over (B, H, T)
    const uint t = row % pc.T, b = row / (pc.T * pc.H);
    const int pos = pc.start + int(t) + (pc.hasOffsets != 0u ? pc.offsets.v[b] : 0);
    precise float angle = float(pos) * pc.invFreq.v[i];
    const uint lo = row * 2u * pc.halfD + i;
    return RopePair(lo, lo + pc.halfD, angle);
}
