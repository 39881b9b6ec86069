using EditRuntime.Backends;

namespace EditRuntime.Torch;

// The hyper-network editors' ops and the SPD solves on libtorch (native/editrt_torch_hypernet.h): the reference for the
// Vulkan kernels. Arguments are checked by OpChecks, shared with the Vulkan backend.
public sealed unsafe partial class TorchBackend : IHyperNetOps, ISpdSolveOps
{
    public (Tensor Mean, Tensor Var) ColumnMeanVar(Tensor x)
    {
        const string op = "column_mean_var";
        var tx = T(x, op, "x");
        var (_, d) = OpChecks.ColumnMeanVar(x);
        Check(Native.et_column_mean_var(tx.Handle, out var m, out var v), op);
        var r = WrapMixed(op, (m, DType.F32, [d]), (v, DType.F32, [d]));
        return (r[0], r[1]);
    }

    public Tensor Normalize(Tensor x, Tensor mean, Tensor std, float eps)
    {
        const string op = "normalize";
        var (tx, tm, ts) = (T(x, op, "x"), T(mean, op, "mean"), T(std, op, "std"));
        OpChecks.Normalize(x, mean, std, eps);
        Check(Native.et_normalize(tx.Handle, tm.Handle, ts.Handle, eps, out var h), op);
        return Wrap(h, op, DType.F32, x.Shape);
    }

    public Tensor NormalizeBackward(Tensor gy, Tensor std, float eps)
    {
        const string op = "normalize_backward";
        var (tg, ts) = (T(gy, op, "gy"), T(std, op, "std"));
        OpChecks.NormalizeBackward(gy, std, eps);
        Check(Native.et_normalize_backward(tg.Handle, ts.Handle, eps, out var h), op);
        return Wrap(h, op, DType.F32, gy.Shape);
    }

    public Tensor HyperBlockActivation(Tensor y, Tensor h, Tensor bias, Tensor scale, Tensor shift)
    {
        const string op = "hyper_block_activation";
        var (ty, th, tb, tsc, tsh) = (T(y, op, "y"), T(h, op, "h"), T(bias, op, "bias"), T(scale, op, "scale"), T(shift, op, "shift"));
        OpChecks.HyperBlockActivation(y, h, bias, scale, shift);
        Check(Native.et_hyper_block_activation(ty.Handle, th.Handle, tb.Handle, tsc.Handle, tsh.Handle, out var o), op);
        return Wrap(o, op, DType.F32, y.Shape);
    }

    public (Tensor GradH, Tensor GradBias, Tensor GradScale, Tensor GradShift) HyperBlockActivationBackward(Tensor h, Tensor bias, Tensor scale, Tensor go)
    {
        const string op = "hyper_block_activation_backward";
        var (th, tb, tsc, tg) = (T(h, op, "h"), T(bias, op, "bias"), T(scale, op, "scale"), T(go, op, "go"));
        var (n, d) = OpChecks.HyperBlockActivationBackward(h, bias, scale, go);
        Check(Native.et_hyper_block_activation_backward(th.Handle, tb.Handle, tsc.Handle, tg.Handle, out var gh, out var gb, out var gs, out var gt), op);
        var r = WrapMixed(op, (gh, DType.F32, [n, d]), (gb, DType.F32, [d]), (gs, DType.F32, [d]), (gt, DType.F32, [d]));
        return (r[0], r[1], r[2], r[3]);
    }

    public Tensor ValueDiff(Tensor k, Tensor kt, Tensor gt, Tensor eta)
    {
        const string op = "value_diff";
        var (tk, tkt, tgt, te) = (T(k, op, "k"), T(kt, op, "kt"), T(gt, op, "gt"), T(eta, op, "eta"));
        var (n, _, dv) = OpChecks.ValueDiff(k, kt, gt, eta);
        Check(Native.et_value_diff(tk.Handle, tkt.Handle, tgt.Handle, te.Handle, out var h), op);
        return Wrap(h, op, DType.F32, [n, dv]);
    }

    public (Tensor GradKt, Tensor GradGt, Tensor GradEta) ValueDiffBackward(Tensor k, Tensor kt, Tensor gt, Tensor eta, Tensor gd)
    {
        const string op = "value_diff_backward";
        var (tk, tkt, tgt, te, tg) = (T(k, op, "k"), T(kt, op, "kt"), T(gt, op, "gt"), T(eta, op, "eta"), T(gd, op, "gd"));
        var (n, dk, dv) = OpChecks.ValueDiffBackward(k, kt, gt, eta, gd);
        Check(Native.et_value_diff_backward(tk.Handle, tkt.Handle, tgt.Handle, te.Handle, tg.Handle, out var a, out var b, out var c), op);
        var r = WrapMixed(op, (a, DType.F32, [n, dk]), (b, DType.F32, [n, dv]), (c, DType.F32, [1]));
        return (r[0], r[1], r[2]);
    }

    public Tensor KlDivergence(Tensor refLogits, Tensor logits)
    {
        const string op = "kl_divergence";
        var (tr, tl) = (T(refLogits, op, "refLogits"), T(logits, op, "logits"));
        OpChecks.KlDivergence(refLogits, logits);
        Check(Native.et_kl_divergence(tr.Handle, tl.Handle, out var h), op);
        return Wrap(h, op, DType.F32, [1]);
    }

    public Tensor KlDivergenceBackward(Tensor refLogits, Tensor logits, Tensor gy)
    {
        const string op = "kl_divergence_backward";
        var (tr, tl, tg) = (T(refLogits, op, "refLogits"), T(logits, op, "logits"), T(gy, op, "gy"));
        OpChecks.KlDivergenceBackward(refLogits, logits, gy);
        Check(Native.et_kl_divergence_backward(tr.Handle, tl.Handle, tg.Handle, out var h), op);
        return Wrap(h, op, DType.F32, logits.Shape);
    }

    public void AddDiagonal(Tensor s, float value)
    {
        const string op = "add_diagonal";
        var ts = T(s, op, "s");
        OpChecks.AddDiagonal(s, value);
        Check(Native.et_add_diagonal(ts.Handle, value), op);
    }

    public Tensor CholeskyFactor(Tensor s)
    {
        const string op = "cholesky_factor";
        var ts = T(s, op, "s");
        OpChecks.CholeskyFactor(s);
        Check(Native.et_cholesky_factor(ts.Handle, out var h), op);
        return Wrap(h, op, DType.F32, s.Shape);
    }

    public Tensor CholeskySolve(Tensor l, Tensor b)
    {
        const string op = "cholesky_solve";
        var (tl, tb) = (T(l, op, "l"), T(b, op, "b"));
        OpChecks.CholeskySolve(l, b);
        Check(Native.et_cholesky_solve(tl.Handle, tb.Handle, out var h), op);
        return Wrap(h, op, DType.F32, b.Shape);
    }
}
