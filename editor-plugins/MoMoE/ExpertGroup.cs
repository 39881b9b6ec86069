using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// One set of MOMoE experts and their gate, on the backend:
///   gate  W_g = [Wx; Wa]: (in + C, E) — logits = x·Wx + anchor·Wa, the same as W_g·concat(x, anchor);
///   experts E_e(x) = GELU(x·A_e)·B_e, A (E, in, rank), B (E, rank, out), no biases.
/// B starts at zero, so a new group adds nothing until it is trained. Adam moments live beside the
/// weights while the group is being trained.
/// </summary>
public sealed class ExpertGroup : IDisposable
{
    public const int ParamCount = 4;
    public static readonly string[] ParamNames = ["wx", "wa", "a", "b"];

    private readonly IBackend _be;
    private AdamMoments? _adam;

    public ExpertGroup(IBackend be, Tensor[] weights)
    {
        if (weights.Length != ParamCount) throw new ArgumentException($"MOMoE: an expert group has {ParamCount} tensors, got {weights.Length}.");
        _be = be;
        Weights = weights;
    }

    /// <summary>A fresh group: gate N(0, 0.02²), A N(0, 1/in), B zero.</summary>
    public static ExpertGroup Create(IBackend be, int inWidth, int anchorWidth, int outWidth, int experts, int rank, int seed)
    {
        var rng = new SeededRandom(seed);
        float[] Normal(long n, double std) => rng.Normal(n, (float)std);
        return new ExpertGroup(be,
        [
            be.FromArray(Normal((long)inWidth * experts, 0.02), inWidth, experts),
            be.FromArray(Normal((long)anchorWidth * experts, 0.02), anchorWidth, experts),
            be.FromArray(Normal((long)experts * inWidth * rank, 1.0 / Math.Sqrt(inWidth)), experts, inWidth, rank),
            be.FromArray(new float[(long)experts * rank * outWidth], experts, rank, outWidth),
        ]);
    }

    /// <summary>Wx, Wa, A, B.</summary>
    public Tensor[] Weights { get; }
    public int Experts => Weights[0].Shape[1];
    public long ParameterCount => Weights.Sum(w => w.Count);

    public sealed record Bound(Var Wx, Var Wa, Var A, Var B);

    public Bound Bind(Tape tape, bool trainable) =>
        new(tape.Param(Weights[0], trainable, "momoe.wx"), tape.Param(Weights[1], trainable, "momoe.wa"),
            tape.Param(Weights[2], trainable, "momoe.a"), tape.Param(Weights[3], trainable, "momoe.b"));

    /// <summary>Starts (or restarts) Adam: zero moments.</summary>
    public void BeginTraining()
    {
        EndTraining();
        _adam = new AdamMoments(_be, Weights);
    }

    /// <summary>One Adam step on every tensor whose bound variable has a gradient; clears the gradients.</summary>
    public void Step(Bound b, AdamConfig cfg, int step)
    {
        if (_adam is null) throw new InvalidOperationException("MOMoE: BeginTraining first.");
        _adam.Step([b.Wx, b.Wa, b.A, b.B], cfg, step);
    }

    public void EndTraining()
    {
        _adam?.Dispose();
        _adam = null;
    }

    public void Dispose()
    {
        EndTraining();
        foreach (var w in Weights) w.Dispose();
    }
}
