namespace EditRuntime.Backends;

/// <summary>Element types of backend tensors. F32 for values, I32 for token ids and targets.</summary>
public enum DType { F32, I32 }

/// <summary>
/// A dense row-major tensor owned by one backend. Ops return new tensors that the caller owns
/// (dispose them, or let an autograd <c>Tape</c> do it).
/// </summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(DType dtype, int[] shape)
    {
        if (shape.Any(d => d < 0)) throw new ArgumentException($"Negative dimension in shape [{string.Join(", ", shape)}].");
        DType = dtype;
        Shape = shape.ToArray();
        Count = shape.Aggregate(1L, (a, d) => a * d);
        if (Count > int.MaxValue) throw new ArgumentException($"Tensor of {Count} elements: at most {int.MaxValue} are supported.");
    }

    public DType DType { get; }
    public int[] Shape { get; }
    public long Count { get; }
    public int Rank => Shape.Length;
    public abstract IBackend Backend { get; }
    public abstract bool IsDisposed { get; }
    public abstract void Dispose();

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";
    public override string ToString() => $"{Backend.Name} {DType} tensor {ShapeString}";

    public static string Format(int[] shape) => "[" + string.Join(", ", shape) + "]";
}

/// <summary>Hyper-parameters of one Adam / AdamW step (PyTorch's formulas).</summary>
public readonly record struct AdamConfig(float LearningRate, float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-8f,
    float WeightDecay = 0f, bool Decoupled = false)
{
    /// <summary>AdamW: decoupled weight decay p ← p·(1 − lr·wd). Adam (Decoupled = false): g ← g + wd·p.</summary>
    public static AdamConfig AdamW(float lr, float weightDecay = 0.01f) => new(lr, WeightDecay: weightDecay, Decoupled: true);
}

/// <summary>An op or dtype that a backend does not implement. Never silently replaced by another backend.</summary>
public sealed class UnsupportedOpException(string op, string backend, string why)
    : NotSupportedException($"Op '{op}' is not supported by the {backend} backend: {why}")
{
    public string Op { get; } = op;
    public string BackendName { get; } = backend;

    /// <summary>A backend asked for an op interface (<see cref="BackendOps.Ops{TOps}"/>) it does not implement.</summary>
    public static UnsupportedOpException MissingInterface(string backend, Type ops) =>
        new(ops.Name, backend, $"the backend does not implement {ops.Name}, so none of its ops can run there.");
}
