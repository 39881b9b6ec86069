using EditRuntime.Autograd;
using EditRuntime.Models;

namespace EditRuntime.Validation;

// Rows of the LLaMA-family ops (ILlamaOps), listed at the end of OpValidation.Cases. RoPE's frequency table is not random:
// it is RopeFrequencies.Compute's (plain rope_theta, and LLaMA 3.1's llama3 scaling), made on the host and uploaded as a
// constant. The far rows start at position 100000 with per-batch offsets, where the angles are far beyond π and only a
// careful range reduction keeps cos and sin right; the SwiGLU row spans gates in the far tails of the sigmoid.
public static partial class OpValidation
{
    private static readonly Llama3RopeScaling Llama31Scaling = new(8, 1, 4, 8192);

    private static IEnumerable<ValidationCase> LlamaCases() =>
    [
        new("rms_norm", [F(3, 37, 129), new Input.Floats([129], 0.5f, 1f)], (t, x) => t.RmsNorm(x[0], x[1], 1e-6f), Reduction),
        // Rows of small values, where eps is as large as the mean square.
        new("rms_norm_small", [new Input.Floats([37, 257], 1e-3f), new Input.Floats([257], 0.5f, 1f)], (t, x) => t.RmsNorm(x[0], x[1], 1e-6f), Reduction),
        // 633 rows: the weight gradient is summed in three chunks of rows, whose partials are then added.
        new("rms_norm_rows", [F(3, 211, 67), new Input.Floats([67], 0.5f, 1f)], (t, x) => t.RmsNorm(x[0], x[1], 1e-5f), Reduction),
        new("rope", [F(2, 3, 13, 10)], (t, x) => t.Rope(x[0], Frequencies(t, 10, 10000, null), 0), Elementwise),
        new("rope_llama3_far", [F(3, 2, 7, 16), new Input.Ints([3], -6, 7)],
            (t, x) => t.Rope(x[0], Frequencies(t, 16, 500000, Llama31Scaling), 100000, x[1]), Elementwise),
        new("silu_mul", [new Input.Floats([37, 129], 8f), F(37, 129)], (t, x) => t.SiluMul(x[0], x[1]), Elementwise),
        // A LLaMA MLP: RMSNorm, gate and up projections, the gated product, the down projection.
        new("llama_mlp", [F(2, 9, 37), new Input.Floats([37], 0.5f, 1f), new Input.Floats([37, 53], 0.2f), new Input.Floats([37, 53], 0.2f), new Input.Floats([53, 37], 0.2f)],
            (t, x) =>
            {
                var h = t.RmsNorm(x[0], x[1], 1e-5f);
                return t.Matmul(t.SiluMul(t.Matmul(h, x[2]), t.Matmul(h, x[3])), x[4]);
            }, Reduction),
        // LLaMA attention's core: q and k rotated (LLaMA 3.1 frequencies, a KV-cache-like start), then causal attention.
        new("rope_attention", [F(2, 3, 11, 8), F(2, 3, 11, 8), F(2, 3, 11, 8)],
            (t, x) =>
            {
                var f = Frequencies(t, 8, 500000, Llama31Scaling);
                return t.CausalAttention(t.Rope(x[0], f, 37), t.Rope(x[1], f, 37), x[2], null);
            }, Reduction),
    ];

    /// <summary>RopeFrequencies.Compute's table as a constant (owned by the tape).</summary>
    private static Var Frequencies(Tape t, int headDim, double theta, Llama3RopeScaling? scaling)
    {
        var f = t.Backend.FromArray(RopeFrequencies.Compute(headDim, theta, scaling), headDim / 2);
        t.OnDispose([f]);
        return t.Constant(f);
    }
}
