namespace EditRuntime.Backends;

// Argument checks of the hyper-network editors' ops (IHyperNetOps) and of the SPD solves (ISpdSolveOps): one method per
// op, called by every backend, so the messages cannot drift.
public static partial class OpChecks
{
    // ---------------------------------------------------------------- IHyperNetOps

    /// <summary>x F32 (N, D) with N ≥ 1, D ≥ 1; returns (N, D).</summary>
    private static (int N, int D) Rows2(string op, string arg, Tensor x)
    {
        DType(op, arg, x);
        if (x.Rank != 2 || x.Shape[0] < 1 || x.Shape[1] < 1) throw new ArgumentException($"{op}: {arg} must be (N, D) with N ≥ 1 and D ≥ 1, got {x.ShapeString}.");
        return (x.Shape[0], x.Shape[1]);
    }

    /// <summary>A row-broadcast vector (D).</summary>
    private static void Vector(string op, string arg, Tensor v, int d)
    {
        DType(op, arg, v);
        if (v.Rank != 1 || v.Shape[0] != d) throw new ArgumentException($"{op}: {arg} must be ({d}), got {v.ShapeString}.");
    }

    private static void Eps(string op, float eps)
    {
        if (!float.IsFinite(eps) || eps < 0) throw new ArgumentOutOfRangeException(nameof(eps), $"{op}: eps must be finite and ≥ 0, got {eps}.");
    }

    public static (int N, int D) ColumnMeanVar(Tensor x) => Rows2("column_mean_var", "x", x);

    public static (int N, int D) Normalize(Tensor x, Tensor mean, Tensor std, float eps)
    {
        const string op = "normalize";
        var (n, d) = Rows2(op, "x", x);
        Vector(op, "mean", mean, d); Vector(op, "std", std, d); Eps(op, eps);
        return (n, d);
    }

    public static (int N, int D) NormalizeBackward(Tensor gy, Tensor std, float eps)
    {
        const string op = "normalize_backward";
        var (n, d) = Rows2(op, "gy", gy);
        Vector(op, "std", std, d); Eps(op, eps);
        return (n, d);
    }

    public static (int N, int D) HyperBlockActivation(Tensor y, Tensor h, Tensor bias, Tensor scale, Tensor shift)
    {
        const string op = "hyper_block_activation";
        var (n, d) = Rows2(op, "y", y);
        DType(op, "h", h); SameShape(op, y, h, "y", "h");
        Vector(op, "bias", bias, d); Vector(op, "scale", scale, d); Vector(op, "shift", shift, d);
        return (n, d);
    }

    public static (int N, int D) HyperBlockActivationBackward(Tensor h, Tensor bias, Tensor scale, Tensor go)
    {
        const string op = "hyper_block_activation_backward";
        var (n, d) = Rows2(op, "h", h);
        Vector(op, "bias", bias, d); Vector(op, "scale", scale, d);
        Gy(op, go, [n, d], "go");
        return (n, d);
    }

    /// <summary>k, kt (N, dk), gt (N, dv), eta (1); returns (N, dk, dv).</summary>
    public static (int N, int Dk, int Dv) ValueDiff(Tensor k, Tensor kt, Tensor gt, Tensor eta, string op = "value_diff")
    {
        var (n, dk) = Rows2(op, "k", k);
        DType(op, "kt", kt); SameShape(op, k, kt, "k", "kt");
        var (ng, dv) = Rows2(op, "gt", gt);
        if (ng != n) throw new ArgumentException($"{op}: gt {gt.ShapeString} must have the {n} rows of k {k.ShapeString}.");
        DType(op, "eta", eta);
        if (eta.Rank != 1 || eta.Shape[0] != 1) throw new ArgumentException($"{op}: eta must be (1), got {eta.ShapeString}.");
        return (n, dk, dv);
    }

    public static (int N, int Dk, int Dv) ValueDiffBackward(Tensor k, Tensor kt, Tensor gt, Tensor eta, Tensor gd)
    {
        const string op = "value_diff_backward";
        var s = ValueDiff(k, kt, gt, eta, op);
        Gy(op, gd, [s.N, s.Dv], "gd");
        return s;
    }

    public static (int N, int V) KlDivergence(Tensor refLogits, Tensor logits, string op = "kl_divergence")
    {
        var (n, v) = Rows2(op, "refLogits", refLogits);
        DType(op, "logits", logits); SameShape(op, refLogits, logits, "refLogits", "logits");
        return (n, v);
    }

    public static (int N, int V) KlDivergenceBackward(Tensor refLogits, Tensor logits, Tensor gy)
    {
        const string op = "kl_divergence_backward";
        var s = KlDivergence(refLogits, logits, op);
        Gy(op, gy, [1]);
        return s;
    }

    // ---------------------------------------------------------------- ISpdSolveOps

    /// <summary>s F32 (n, n), n ≥ 1; returns n.</summary>
    private static int Square(string op, string arg, Tensor s)
    {
        DType(op, arg, s);
        if (s.Rank != 2 || s.Shape[0] != s.Shape[1] || s.Shape[0] < 1) throw new ArgumentException($"{op}: {arg} must be square (n, n) with n ≥ 1, got {s.ShapeString}.");
        return s.Shape[0];
    }

    public static int AddDiagonal(Tensor s, float value)
    {
        const string op = "add_diagonal";
        int n = Square(op, "s", s);
        if (!float.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), $"{op}: value must be finite, got {value}.");
        return n;
    }

    public static int CholeskyFactor(Tensor s) => Square("cholesky_factor", "s", s);

    /// <summary>l (n, n), b (n, m) with m ≥ 1; returns (n, m).</summary>
    public static (int N, int M) CholeskySolve(Tensor l, Tensor b)
    {
        const string op = "cholesky_solve";
        int n = Square(op, "l", l);
        DType(op, "b", b);
        if (b.Rank != 2 || b.Shape[0] != n || b.Shape[1] < 1) throw new ArgumentException($"{op}: b must be ({n}, m) with m ≥ 1 (the rows of l {l.ShapeString}), got {b.ShapeString}.");
        return (n, b.Shape[1]);
    }
}
