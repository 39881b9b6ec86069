using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Compute;

namespace EditRuntime.Validation;

/// <summary>How one input of a validation case is generated on the host (the same values go to both backends).</summary>
public abstract record Input(int[] Shape)
{
    /// <summary>Standard normal floats times <paramref name="Scale"/> (+ <paramref name="Offset"/>); gets a gradient unless Frozen.</summary>
    public sealed record Floats(int[] Shape, float Scale = 1f, float Offset = 0f, bool Frozen = false) : Input(Shape);
    /// <summary>Uniform integers in [Lo, Hi); each one is replaced by Ignore with probability IgnoreRate.</summary>
    public sealed record Ints(int[] Shape, int Lo, int Hi, double IgnoreRate = 0, int Ignore = -100) : Input(Shape);
    /// <summary>
    /// Uniform integers in [Lo, Hi] times Step, plus Offset, as floats; gets a gradient unless Frozen. For ops with a discontinuity
    /// (a nearest-centre search, a radius test, a top-k after a matmul): sums of products of such values are exact in
    /// float32 on every backend, so both select the same entries (exact ties follow the op's rule, lowest index first)
    /// instead of flipping on a near-tie that rounding decides differently.
    /// </summary>
    public sealed record Grid(int[] Shape, int Lo, int Hi, float Step = 1f, float Offset = 0f, bool Frozen = false) : Input(Shape);
    /// <summary>A (B, T) key mask of ones whose first PadLeft[b] entries of row b are 0 (left padding).</summary>
    public sealed record PaddingMask(int[] Shape, int[] PadLeft) : Input(Shape);
}

/// <summary>
/// One line of the validation table: an op, its inputs, and its forward on a <see cref="Tape"/>.
/// Backward is the tape's: seeded with a random gradient of the output, it runs the backend's
/// backward ops and yields the gradient of every float input.
/// </summary>
public sealed record ValidationCase(string Op, Input[] Inputs, Func<Tape, Var[], Var> Forward, double Limit, bool HasBackward = true)
{
    public string ShapeText => string.Join(" ", Inputs.Select(i => Tensor.Format(i.Shape)));
}

public sealed record ValidationResult(ValidationCase Case, double ForwardError, double BackwardError, string? Error)
{
    /// <summary>NaN or ∞ error never passes.</summary>
    public bool Passed => Error is null && ForwardError <= Case.Limit && (!Case.HasBackward || BackwardError <= Case.Limit);
}

public static partial class OpValidation
{
    public const double Elementwise = 1e-5, Reduction = 1e-4;

    private static Input.Floats F(params int[] shape) => new(shape);

    /// <summary>The table. Shapes are odd on purpose: not multiples of workgroup or tile sizes.</summary>
    public static IReadOnlyList<ValidationCase> Cases { get; } = new List<ValidationCase>
    {
        new("add", [F(37, 129), F(37, 129)], (t, x) => t.Add(x[0], x[1]), Elementwise),
        new("sub", [F(37, 129), F(37, 129)], (t, x) => t.Sub(x[0], x[1]), Elementwise),
        new("mul", [F(37, 129), F(37, 129)], (t, x) => t.Mul(x[0], x[1]), Elementwise),
        new("scale", [F(3, 37, 129)], (t, x) => t.Scale(x[0], -0.37f), Elementwise),
        new("axpy", [F(37, 129), F(37, 129)], (t, x) => Axpy(t, x), Elementwise, HasBackward: false),
        new("reshape", [F(6, 35, 11)], (t, x) => t.Reshape(x[0], 35, 66), Elementwise),
        new("transpose12", [F(2, 5, 3, 7)], (t, x) => t.Transpose12(x[0]), Elementwise),
        new("split_last", [F(5, 7, 3 * 13)], (t, x) => { var p = t.SplitLast(x[0], 3); return t.Sub(p[2], t.Scale(p[0], 2f)); }, Elementwise),
        new("sum", [F(7, 1001)], (t, x) => t.Sum(x[0]), Reduction),
        new("mean", [F(3, 5, 333)], (t, x) => t.Mean(x[0]), Reduction),
        new("row_sum", [F(37, 3, 129)], (t, x) => t.RowSum(x[0]), Reduction),
        new("row_max", [F(37, 257)], (t, x) => t.RowMax(x[0]), Reduction, HasBackward: false),
        new("matmul", [F(127, 63), F(63, 255)], (t, x) => t.Matmul(x[0], x[1]), Reduction),
        new("matmul_at", [F(63, 127), F(63, 255)], (t, x) => t.Matmul(x[0], x[1], transA: true), Reduction),
        new("matmul_bt", [F(127, 63), F(255, 63)], (t, x) => t.Matmul(x[0], x[1], transB: true), Reduction),
        new("matmul_at_bt", [F(63, 127), F(255, 63)], (t, x) => t.Matmul(x[0], x[1], true, true), Reduction),
        new("matmul_batched", [F(3, 33, 17), F(3, 17, 29)], (t, x) => t.Matmul(x[0], x[1]), Reduction),
        new("matmul_broadcast_b", [F(3, 33, 17), F(17, 29)], (t, x) => t.Matmul(x[0], x[1]), Reduction),
        new("matmul_broadcast_bt", [F(3, 33, 17), F(29, 17)], (t, x) => t.Matmul(x[0], x[1], transB: true), Reduction),
        new("matmul_broadcast_at", [F(3, 17, 33), F(17, 29)], (t, x) => t.Matmul(x[0], x[1], transA: true), Reduction),
        new("bias_add", [F(3, 37, 129), F(129)], (t, x) => t.BiasAdd(x[0], x[1]), Elementwise),
        new("gelu", [F(37, 129)], (t, x) => t.Gelu(x[0]), Elementwise),
        new("layernorm", [F(3, 37, 129), new Input.Floats([129], 0.5f, 1f), F(129)], (t, x) => t.LayerNorm(x[0], x[1], x[2]), Reduction),
        new("softmax", [F(37, 3, 129)], (t, x) => t.Softmax(x[0]), Reduction),
        new("causal_attention", [F(2, 3, 13, 7), F(2, 3, 13, 7), F(2, 3, 13, 7)], (t, x) => t.CausalAttention(x[0], x[1], x[2], null), Reduction),
        new("causal_attention_padded", [F(2, 3, 13, 7), F(2, 3, 13, 7), F(2, 3, 13, 7), new Input.PaddingMask([2, 13], [0, 4])],
            (t, x) => t.CausalAttention(x[0], x[1], x[2], x[3]), Reduction),
        new("embedding", [new Input.Ints([5, 29], 0, 101), F(101, 37)], (t, x) => t.Embedding(x[0], x[1]), Elementwise),
        new("cross_entropy", [F(29, 101), new Input.Ints([29], 0, 101, IgnoreRate: 0.3)], (t, x) => t.CrossEntropy(x[0], x[1]), Reduction),
        // MELO: per-sample LoRA blocks (samples on blocks 2, none, 2, 0 and an out-of-range id; block 2 trained) and the index lookup.
        new("lora_blocks", [F(5, 7, 37), new Input.Floats([4, 37, 3], Frozen: true), new Input.Floats([4, 3, 29], Frozen: true), F(37, 3), F(3, 29)],
            (t, x) => LoraBlocks(t, x), Reduction),
        // Queries, centres and points on the integer grid {-1, 0, 1}: squared distances are exact integers (≈ 49), so
        // both backends pick the same centre and point; radii are half-integers in [4.5, 7.5], at least 0.017 from any
        // distance √n, so the radius test cannot flip on rounding either.
        new("cluster_lookup", [new Input.Grid([23, 37], -1, 1), new Input.Grid([41, 37], -1, 1), new Input.Grid([41], 4, 7, Offset: 0.5f), new Input.Grid([97, 37], -1, 1), new Input.Ints([97, 2], 0, 41)],
            (t, x) => ClusterLookup(t, x), Reduction, HasBackward: false),
        new("adam_step", [F(37, 129), F(37, 129)], (t, x) => Adam(t, x, new AdamConfig(1e-2f, WeightDecay: 0.1f)), Elementwise, HasBackward: false),
        new("adamw_step", [F(37, 129), F(37, 129)], (t, x) => Adam(t, x, AdamConfig.AdamW(1e-2f, 0.1f)), Elementwise, HasBackward: false),
    }.Concat(MoeCases()).Concat(HyperNetCases()).Concat(LlamaCases()).ToList(); // mixture of experts: OpValidation.MoE.cs; hyper-network editors and SPD solves: OpValidation.HyperNet.cs; LLaMA-family ops: OpValidation.Llama.cs

    private static Var Axpy(Tape t, Var[] x)
    {
        var y = t.Backend.Scale(x[1].Value, 1f);
        t.Backend.Axpy(-1.7f, x[0].Value, y);
        return t.Constant(y); // caller disposes via OwnedResults
    }

    /// <summary>Block 2 of copies of the banks holds the trained parameters x[3], x[4]; five samples route to blocks 2, none, 2, 0 and 4 (out of range: none).</summary>
    private static Var LoraBlocks(Tape t, Var[] x)
    {
        var be = t.Backend;
        const int block = 2;
        int inW = x[3].Shape[0], k = x[3].Shape[1], outW = x[4].Shape[1];
        var a = be.Scale(x[1].Value, 1f);
        var b = be.Scale(x[2].Value, 1f);
        be.CopyStrided(x[3].Value, a, 1, inW * k, 0, inW * k, (long)block * inW * k, inW * k);
        be.CopyStrided(x[4].Value, b, 1, k * outW, 0, k * outW, (long)block * k * outW, k * outW);
        var ids = be.FromArray(new[] { 2, -1, 2, 0, 4 }, 5);
        t.OnDispose([a, b, ids]);
        return t.LoraBlocks(x[0], a, b, ids, 1.7f, new LoraTrainedBlock(block, x[3], x[4]));
    }

    /// <summary>The lookup's blocks (as floats) followed by its distances.</summary>
    private static Var ClusterLookup(Tape t, Var[] x)
    {
        var be = t.Backend;
        var (blocks, dist) = be.Ops<ILoraOps>().ClusterLookup(x[0].Value, x[1].Value, x[2].Value, x[3].Value, x[4].Value);
        using (blocks) using (dist)
            return t.Constant(be.FromArray([.. be.ToIntArray(blocks).Select(i => (float)i), .. be.ToFloatArray(dist)], 2 * blocks.Shape[0]));
    }

    /// <summary>Two steps from zero moments; the output is the parameter after both.</summary>
    private static Var Adam(Tape t, Var[] x, AdamConfig cfg)
    {
        var be = t.Backend;
        var p = be.Scale(x[0].Value, 1f);
        using var m = be.Empty(DType.F32, x[0].Shape);
        using var v = be.Empty(DType.F32, x[0].Shape);
        be.Fill(m, 0); be.Fill(v, 0);
        be.AdamStep(p, x[1].Value, m, v, cfg, 1);
        using var g2 = be.Scale(x[1].Value, -0.5f);
        be.AdamStep(p, g2, m, v, cfg, 2);
        return t.Constant(p);
    }

    /// <summary>Host data for every input of a case.</summary>
    public static object[] MakeInputs(ValidationCase c, Random rng) => c.Inputs.Select<Input, object>(i => i switch
    {
        Input.Floats f => HostReference.RandomNormal(rng, Count(f.Shape), f.Scale).Select(v => v + f.Offset).ToArray(),
        Input.Grid g => Enumerable.Range(0, (int)Count(g.Shape)).Select(_ => rng.Next(g.Lo, g.Hi + 1) * g.Step + g.Offset).ToArray(),
        Input.Ints n => Enumerable.Range(0, (int)Count(n.Shape)).Select(_ => rng.NextDouble() < n.IgnoreRate ? n.Ignore : rng.Next(n.Lo, n.Hi)).ToArray(),
        Input.PaddingMask m => Enumerable.Range(0, (int)Count(m.Shape)).Select(k => k % m.Shape[1] < m.PadLeft[k / m.Shape[1]] ? 0f : 1f).ToArray(),
        _ => throw new InvalidOperationException(),
    }).ToArray();

    private static long Count(int[] shape) => shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>Runs one case: forward output and input gradients as host arrays.</summary>
    public static (float[] Output, int[] OutputShape, List<float[]> Grads) Run(IBackend backend, ValidationCase c, object[] host, Func<int[], float[]> seedFor)
    {
        bool poison = backend.PoisonAllocations;
        backend.PoisonAllocations = true;
        var leaves = new List<Tensor>();
        try
        {
            using var tape = new Tape(backend);
            var vars = new Var[c.Inputs.Length];
            for (int i = 0; i < c.Inputs.Length; i++)
            {
                var spec = c.Inputs[i];
                Tensor t = host[i] is int[] ints ? backend.FromArray(ints, spec.Shape) : backend.FromArray((float[])host[i], spec.Shape);
                leaves.Add(t);
                vars[i] = spec is Input.Floats { Frozen: false } or Input.Grid { Frozen: false } ? tape.Param(t) : tape.Constant(t);
            }
            var y = c.Forward(tape, vars);
            if (y.IsLeaf) leaves.Add(y.Value); // forward-only cases return a tensor they made
            var output = backend.ToFloatArray(y.Value);
            var grads = new List<float[]>();
            if (c.HasBackward)
            {
                using var seed = backend.FromArray(seedFor(y.Shape), y.Shape);
                tape.Backward(y, seed);
                foreach (var v in vars.Where(v => v.RequiresGrad))
                {
                    grads.Add(backend.ToFloatArray(v.Grad!));
                    v.ClearGrad();
                }
            }
            return (output, y.Shape, grads);
        }
        finally
        {
            foreach (var t in leaves) t.Dispose();
            backend.PoisonAllocations = poison;
        }
    }

    /// <summary>‖x − ref‖/‖ref‖ in float64 with ref from the reference backend; NaN or ∞ in either gives +∞.</summary>
    public static double Compare(float[] x, float[] reference)
    {
        if (x.Length != reference.Length) return double.PositiveInfinity;
        if (reference.Any(v => !float.IsFinite(v))) return double.PositiveInfinity;
        return HostReference.RelativeError(x, reference.Select(v => (double)v).ToArray());
    }

    /// <summary>Checks <paramref name="backend"/> against <paramref name="reference"/> on one case with fresh random inputs.</summary>
    public static ValidationResult Validate(IBackend backend, IBackend reference, ValidationCase c, Random rng)
    {
        try
        {
            var host = MakeInputs(c, rng);
            var seeds = new Dictionary<string, float[]>();
            float[] SeedFor(int[] shape)
            {
                var key = Tensor.Format(shape);
                if (!seeds.TryGetValue(key, out var s)) seeds[key] = s = HostReference.RandomNormal(rng, Count(shape));
                return s;
            }
            var (refOut, refShape, refGrads) = Run(reference, c, host, SeedFor);
            var (out_, shape, grads) = Run(backend, c, host, SeedFor);
            if (!shape.SequenceEqual(refShape))
                return new ValidationResult(c, double.PositiveInfinity, double.PositiveInfinity, $"output shape {Tensor.Format(shape)} but the reference gives {Tensor.Format(refShape)}");
            double fwd = Compare(out_, refOut);
            double bwd = 0;
            if (c.HasBackward)
            {
                if (grads.Count != refGrads.Count) return new ValidationResult(c, fwd, double.PositiveInfinity, "different number of gradients");
                for (int i = 0; i < grads.Count; i++) bwd = Math.Max(bwd, Compare(grads[i], refGrads[i]));
            }
            return new ValidationResult(c, fwd, bwd, null);
        }
        catch (Exception e)
        {
            return new ValidationResult(c, double.NaN, double.NaN, e.GetType().Name + ": " + e.Message);
        }
    }
}
