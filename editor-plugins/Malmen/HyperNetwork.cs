using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// The hyper-network of MALMEN and MEND for one edited weight shape (d_k, d_v), shared by the M modules of that shape,
/// which it tells apart by a module index: a running normaliser over the rows [k, g] (width D = d_k + d_v), then
/// residual low-rank blocks o = y + scale[m] ⊙ max(y·A·B + bias, 0) + shift[m] (A ~ N(0, 1), B = 0, bias = 0, scale = 1,
/// shift = 0: every block starts as the identity; the ReLU's derivative at 0 is 1, or B would never train), and the
/// output split into a pseudo key k̃ (d_k) and a pseudo value-gradient g̃ (d_v). Per module it also holds the learned
/// step size η_m (init lr) and the log ridge coefficient lamda_m (init 0), both trained with the rest.
/// </summary>
internal sealed class HyperNetwork : IDisposable
{
    /// <summary>float32's machine epsilon: the normaliser's ε (torch.finfo(float32).eps), in the std and in the division.</summary>
    public const float Epsilon = 1.1920929e-7f;

    private readonly IBackend _be;
    private readonly List<(string Name, Tensor Value)> _params = new();
    private readonly Tensor[] _a, _b, _bias;
    private readonly Tensor[,] _scale, _shift;
    private readonly Tensor[] _lr, _lamda;
    // The normaliser's running statistics (the authors' buffers: n, mean, and "var", which sums squares), on the host in
    // float64; its mean and std on the device for the forward.
    private double _n;
    private readonly double[] _mean, _m2;
    private Tensor _meanT, _stdT;

    public HyperNetwork(IBackend backend, int dk, int dv, int rank, int blocks, int modules, float lr, SeededRandom rng)
    {
        _be = backend;
        (Dk, Dv, Rank, Blocks, Modules) = (dk, dv, rank, blocks, modules);
        int d = dk + dv;
        _a = new Tensor[blocks]; _b = new Tensor[blocks]; _bias = new Tensor[blocks];
        _scale = new Tensor[blocks, modules]; _shift = new Tensor[blocks, modules];
        _lr = new Tensor[modules]; _lamda = new Tensor[modules];
        _mean = new double[d]; _m2 = new double[d];
        try
        {
            for (int b = 0; b < blocks; b++)
            {
                _a[b] = Add($"block{b}.A", backend.FromArray(rng.Normal((long)d * rank), d, rank));
                _b[b] = Add($"block{b}.B", Filled(0f, rank, d));
                _bias[b] = Add($"block{b}.bias", Filled(0f, d));
                for (int m = 0; m < modules; m++)
                {
                    _scale[b, m] = Add($"block{b}.scale.{m}", Filled(1f, d));
                    _shift[b, m] = Add($"block{b}.shift.{m}", Filled(0f, d));
                }
            }
            for (int m = 0; m < modules; m++)
            {
                _lr[m] = Add($"lr.{m}", Filled(lr, 1));
                _lamda[m] = Add($"lamda.{m}", Filled(0f, 1));
            }
            _meanT = Filled(0f, d);
            _stdT = Filled(0f, d);
        }
        catch { Dispose(); throw; }
    }

    public int Dk { get; }
    public int Dv { get; }
    public int D => Dk + Dv;
    public int Rank { get; }
    public int Blocks { get; }
    public int Modules { get; }
    /// <summary>Rows normalised so far (the normaliser's n).</summary>
    public double NormaliserRows => _n;

    /// <summary>Every trained tensor, in a fixed order, with its name in the file (without the net's prefix).</summary>
    public IReadOnlyList<(string Name, Tensor Value)> Parameters => _params;
    public long ParameterCount => _params.Sum(p => p.Value.Count);

    /// <summary>η_m and λ_m = e^lamda_m of a module, read back from the device.</summary>
    public (float Eta, float Lambda) Coefficients(int module) =>
        (_be.ToFloatArray(_lr[module])[0], MathF.Exp(_be.ToFloatArray(_lamda[module])[0]));

    public Tensor Lamda(int module) => _lamda[module];

    private Tensor Add(string name, Tensor t) { _params.Add((name, t)); return t; }

    private Tensor Filled(float value, params int[] shape)
    {
        var t = _be.Empty(DType.F32, shape);
        _be.Fill(t, value);
        return t;
    }

    /// <summary>
    /// The authors' running update with a batch x = [k, g] of m rows (RunningMeanStd.update): n' = n + m, δ = mean(x) − mean,
    /// mean += m·δ/n', M2 += m·var(x) + n·m·δ²/n' (var unbiased: m × it, not Chan's m − 1), std = sqrt(M2 / (n' − 1 + ε)).
    /// </summary>
    public void UpdateNormaliser(Tensor k, Tensor g)
    {
        var hn = _be.Ops<IHyperNetOps>();
        using var x = ConcatColumns(k, g);
        var (meanT, varT) = hn.ColumnMeanVar(x);
        float[] bm, bv;
        using (meanT) using (varT) { bm = _be.ToFloatArray(meanT); bv = _be.ToFloatArray(varT); }
        double m = x.Shape[0], n1 = _n + m;
        var std = new float[D];
        for (int j = 0; j < D; j++)
        {
            double delta = bm[j] - _mean[j];
            _mean[j] += m * delta / n1;
            _m2[j] += m * bv[j] + _n * m * delta * delta / n1;
            std[j] = (float)Math.Sqrt(_m2[j] / (n1 - 1 + Epsilon));
        }
        _n = n1;
        Upload(_mean.Select(v => (float)v).ToArray(), std);
    }

    private void Upload(float[] mean, float[] std)
    {
        var (mt, st) = (_be.FromArray(mean, D), _be.FromArray(std, D));
        _meanT.Dispose(); _stdT.Dispose();
        (_meanT, _stdT) = (mt, st);
    }

    /// <summary>[a | b]: (N, p) and (N, q) → (N, p + q), without a tape.</summary>
    private Tensor ConcatColumns(Tensor a, Tensor b)
    {
        int n = a.Shape[0], p = a.Shape[1], q = b.Shape[1];
        var x = _be.Empty(DType.F32, n, p + q);
        _be.CopyStrided(a, x, n, p, 0, p, 0, p + q);
        _be.CopyStrided(b, x, n, q, 0, q, p, p + q);
        return x;
    }

    /// <summary>The trained tensors bound to a tape (receiving gradients when <paramref name="grad"/>), in <see cref="Parameters"/>' order.</summary>
    public Var[] Bind(Tape tape, bool grad) => _params.Select(p => tape.Param(p.Value, grad, p.Name)).ToArray();

    /// <summary>(k̃, g̃) of rows k (N, d_k), g (N, d_v) for module <paramref name="module"/>, with the tensors bound by <see cref="Bind"/>.</summary>
    public (Var Kt, Var Gt) Forward(Tape tape, Var[] bound, Var k, Var g, int module)
    {
        var x = tape.Normalize(tape.ConcatColumns(k, g), tape.Constant(_meanT), tape.Constant(_stdT), Epsilon);
        for (int b = 0; b < Blocks; b++)
            x = tape.HyperBlock(x, bound[Index(_a[b])], bound[Index(_b[b])], bound[Index(_bias[b])],
                bound[Index(_scale[b, module])], bound[Index(_shift[b, module])]);
        return (tape.SliceColumns(x, 0, Dk), tape.SliceColumns(x, Dk, Dv));
    }

    /// <summary>η_m bound to a tape, from <see cref="Bind"/>'s list.</summary>
    public Var Eta(Var[] bound, int module) => bound[Index(_lr[module])];
    public int LamdaIndex(int module) => Index(_lamda[module]);
    public int EtaIndex(int module) => Index(_lr[module]);

    private int Index(Tensor t)
    {
        for (int i = 0; i < _params.Count; i++) if (ReferenceEquals(_params[i].Value, t)) return i;
        throw new InvalidOperationException("hyper-network: a tensor that is not one of its parameters.");
    }

    /// <summary>The normaliser's state as tensors for a file, in float32: n (1), mean (D), M2 (D); std is derived from them.</summary>
    public IEnumerable<(string Name, HostTensor Tensor)> NormaliserState() =>
    [
        ("normaliser.n", new HostTensor([1], [(float)_n])),
        ("normaliser.mean", new HostTensor([D], _mean.Select(v => (float)v).ToArray())),
        ("normaliser.m2", new HostTensor([D], _m2.Select(v => (float)v).ToArray())),
    ];

    /// <summary>Replaces the normaliser's statistics (checked: n ≥ 0 finite, M2 ≥ 0 finite, mean finite).</summary>
    public void LoadNormaliser(float n, float[] mean, float[] m2, Func<string, Exception> invalid)
    {
        CheckNormaliser(n, mean, m2, invalid);
        _n = n;
        for (int j = 0; j < D; j++) { _mean[j] = mean[j]; _m2[j] = m2[j]; }
        Upload(mean, _m2.Select(v => n == 0 ? 0f : (float)Math.Sqrt(v / (n - 1 + Epsilon))).ToArray());
    }

    /// <summary>Throws (through <paramref name="invalid"/>) unless the statistics fit this net: n ≥ 0 an integer, mean finite, M2 ≥ 0 finite.</summary>
    public void CheckNormaliser(float n, float[] mean, float[] m2, Func<string, Exception> invalid)
    {
        if (!float.IsFinite(n) || n < 0 || n != MathF.Floor(n)) throw invalid($"normaliser.n is {n}: a row count (an integer ≥ 0) was expected.");
        if (mean.Length != D || m2.Length != D) throw invalid($"the normaliser's statistics have {mean.Length}/{m2.Length} entries, the net's width is {D}.");
        for (int j = 0; j < D; j++)
        {
            if (!float.IsFinite(mean[j])) throw invalid($"normaliser.mean[{j}] is {mean[j]}.");
            if (!float.IsFinite(m2[j]) || m2[j] < 0) throw invalid($"normaliser.m2[{j}] is {m2[j]}: a sum of squares (finite, ≥ 0) was expected.");
        }
    }

    /// <summary>A copy of the normaliser's running statistics (n, mean, M2), exact (float64), for <see cref="RestoreNormaliser"/>.</summary>
    public (double N, double[] Mean, double[] M2) SnapshotNormaliser() => (_n, (double[])_mean.Clone(), (double[])_m2.Clone());

    /// <summary>Puts back statistics taken by <see cref="SnapshotNormaliser"/>, bit for bit.</summary>
    public void RestoreNormaliser((double N, double[] Mean, double[] M2) s)
    {
        if (s.Mean.Length != D || s.M2.Length != D) throw new ArgumentException($"a normaliser snapshot of width {s.Mean.Length}, the net's is {D}.");
        _n = s.N;
        Array.Copy(s.Mean, _mean, D);
        Array.Copy(s.M2, _m2, D);
        Upload(_mean.Select(v => (float)v).ToArray(), _m2.Select(v => _n == 0 ? 0f : (float)Math.Sqrt(v / (_n - 1 + Epsilon))).ToArray());
    }

    /// <summary>Overwrites parameter <paramref name="i"/> with <paramref name="values"/> (same shape).</summary>
    public void Overwrite(int i, float[] values) => _be.Overwrite(_params[i].Value, values);

    public void Dispose()
    {
        foreach (var (_, t) in _params) t.Dispose();
        _params.Clear();
        _meanT?.Dispose();
        _stdT?.Dispose();
    }
}
