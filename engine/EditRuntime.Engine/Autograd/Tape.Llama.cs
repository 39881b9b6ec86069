using EditRuntime.Backends;

namespace EditRuntime.Autograd;

// The LLaMA-family ops on the tape (ILlamaOps): RMSNorm, rotary position embedding and SwiGLU's gated product.
public sealed partial class Tape
{
    private ILlamaOps Llama => Backend.Ops<ILlamaOps>();

    /// <summary>RMSNorm over the last dimension: x / √(mean(x²) + eps) · weight, weight (C); gradients reach x and weight.</summary>
    public Var RmsNorm(Var x, Var weight, float eps = 1e-6f) =>
        Record(Llama.RmsNorm(x.Value, weight.Value, eps), [x, weight], g =>
        {
            var (gx, gw) = Llama.RmsNormBackward(x.Value, weight.Value, g, eps);
            return [Keep(gx, x), Keep(gw, weight)];
        }, "rms_norm");

    /// <summary>
    /// Rotary position embedding of x (B, H, T, D) at positions start + t (+ positionOffsets[b], I32 (B)) with the
    /// frequency table invFreq (D/2), Hugging Face's rotate_half layout (see <see cref="ILlamaOps.Rope"/>). The gradient
    /// reaches x only (the rotation by −θ); invFreq and the offsets are constants.
    /// </summary>
    public Var Rope(Var x, Var invFreq, int start, Var? positionOffsets = null) =>
        Record(Llama.Rope(x.Value, invFreq.Value, start, positionOffsets?.Value), [x],
            g => [Llama.RopeBackward(invFreq.Value, g, start, positionOffsets?.Value)], "rope");

    /// <summary>SwiGLU's gated product silu(gate) ⊙ up (one shape); gradients reach both.</summary>
    public Var SiluMul(Var gate, Var up) =>
        Record(Llama.SiluMul(gate.Value, up.Value), [gate, up], g =>
        {
            var (gg, gu) = Llama.SiluMulBackward(gate.Value, up.Value, g);
            return [Keep(gg, gate), Keep(gu, up)];
        }, "silu_mul");
}
