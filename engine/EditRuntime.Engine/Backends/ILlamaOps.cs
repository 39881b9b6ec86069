namespace EditRuntime.Backends;

/// <summary>
/// The ops LLaMA-family models need beyond GPT-2's: RMSNorm, rotary position embedding (Hugging Face's "rotate_half"
/// layout) and the SiLU-gated product of SwiGLU. A backend implements them beside <see cref="IBackend"/>; callers reach
/// them with <c>backend.Ops&lt;ILlamaOps&gt;()</c>. Conventions as in <see cref="IBackend"/>: F32 tensors (I32 position
/// offsets), new outputs, backward methods stateless.
/// </summary>
public interface ILlamaOps
{
    /// <summary>
    /// RMSNorm over the last dimension: y = x / √(mean(x², last dim) + eps) · weight, x (..., C), weight (C), no bias,
    /// as Hugging Face's LlamaRMSNorm in float32. The statistics are float32 sums of squares reduced in a fixed order.
    /// </summary>
    Tensor RmsNorm(Tensor x, Tensor weight, float eps = 1e-6f);
    /// <summary>Gradients given gy (..., C): with r = (mean(x²) + eps)^(−1/2), x̂ = x·r and g = gy·weight,
    /// of x = r·(g − x̂·mean(g·x̂)) per row; of weight (C) = Σ_rows gy·x̂.</summary>
    (Tensor GradX, Tensor GradWeight) RmsNormBackward(Tensor x, Tensor weight, Tensor gy, float eps = 1e-6f);

    /// <summary>
    /// Rotary position embedding of x (B, H, T, D) (q or k in the attention layout), D even, in Hugging Face's LLaMA
    /// layout: element i is paired with i + D/2 (not interleaved), and with θ_i = pos·invFreq[i] for i &lt; D/2,
    /// y[i] = x[i]·cos θ_i − x[i + D/2]·sin θ_i, y[i + D/2] = x[i + D/2]·cos θ_i + x[i]·sin θ_i.
    /// The position of (b, t) is start + t (+ positionOffsets[b] when given: I32 (B), e.g. minus the left padding of row b).
    /// invFreq (D/2) is the frequency table (see <c>RopeFrequencies.Compute</c>). The angle is the float32 product
    /// float(pos)·invFreq[i], rounded once, and its cosine and sine are those of that float32 number, as Hugging Face
    /// computes them; start + T must not exceed 2²⁴ (every position exact in float32).
    /// </summary>
    Tensor Rope(Tensor x, Tensor invFreq, int start, Tensor? positionOffsets = null);
    /// <summary>The gradient of x given gy (B, H, T, D): the rotation of gy by −θ (the op is a rotation, linear in x,
    /// so x itself is not needed). invFreq and the offsets get no gradient.</summary>
    Tensor RopeBackward(Tensor invFreq, Tensor gy, int start, Tensor? positionOffsets = null);

    /// <summary>SwiGLU's gated product: y = silu(gate) ⊙ up = gate·σ(gate)·up, gate and up of one shape.</summary>
    Tensor SiluMul(Tensor gate, Tensor up);
    /// <summary>Gradients given gy: of gate = gy·up·σ(gate)·(1 + gate·(1 − σ(gate))); of up = gy·silu(gate).</summary>
    (Tensor GradGate, Tensor GradUp) SiluMulBackward(Tensor gate, Tensor up, Tensor gy);
}
