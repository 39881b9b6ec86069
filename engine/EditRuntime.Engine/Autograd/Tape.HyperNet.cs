using EditRuntime.Backends;

namespace EditRuntime.Autograd;

// The hyper-network editors' ops on the tape (IHyperNetOps: Normalize, the block activation, ValueDiff, KlDivergence), the
// column slices and concatenation their forward needs (through the core op set's CopyStrided), and the SPD solve (ISpdSolveOps).
public sealed partial class Tape
{
    private IHyperNetOps HyperNet => Backend.Ops<IHyperNetOps>();

    /// <summary>Columns [start, start + count) of x (N, D) → (N, count).</summary>
    public Var SliceColumns(Var x, int start, int count)
    {
        if (x.Shape.Length != 2) throw new ArgumentException($"SliceColumns: x must be (N, D), got {x.Value.ShapeString}.");
        int n = x.Shape[0], d = x.Shape[1];
        if (start < 0 || count < 1 || start + count > d) throw new ArgumentOutOfRangeException(nameof(start), $"SliceColumns: columns [{start}, {start + count}) of x {x.Value.ShapeString}.");
        var y = Backend.Empty(DType.F32, n, count);
        Backend.CopyStrided(x.Value, y, n, count, start, d, 0, count);
        return Record(y, [x], g =>
        {
            var gx = Backend.Empty(DType.F32, n, d);
            Backend.Fill(gx, 0);
            Backend.CopyStrided(g, gx, n, count, 0, count, start, d);
            return [gx];
        }, "slice_columns");
    }

    /// <summary>[a | b]: (N, p) and (N, q) → (N, p + q).</summary>
    public Var ConcatColumns(Var a, Var b)
    {
        if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != b.Shape[0])
            throw new ArgumentException($"ConcatColumns: a and b must be (N, p) and (N, q), got {a.Value.ShapeString} and {b.Value.ShapeString}.");
        int n = a.Shape[0], p = a.Shape[1], q = b.Shape[1];
        var y = Backend.Empty(DType.F32, n, p + q);
        Backend.CopyStrided(a.Value, y, n, p, 0, p, 0, p + q);
        Backend.CopyStrided(b.Value, y, n, q, 0, q, p, p + q);
        return Record(y, [a, b], g =>
        {
            Tensor? ga = null, gb = null;
            if (a.RequiresGrad) { ga = Backend.Empty(DType.F32, n, p); Backend.CopyStrided(g, ga, n, p, 0, p + q, 0, p); }
            if (b.RequiresGrad) { gb = Backend.Empty(DType.F32, n, q); Backend.CopyStrided(g, gb, n, q, p, p + q, 0, q); }
            return [ga, gb];
        }, "concat_columns");
    }

    /// <summary>(x − mean) / (std + eps) row-broadcast; mean and std are statistics (no gradient).</summary>
    public Var Normalize(Var x, Var mean, Var std, float eps) =>
        Record(HyperNet.Normalize(x.Value, mean.Value, std.Value, eps), [x], g => [HyperNet.NormalizeBackward(g, std.Value, eps)], "normalize");

    /// <summary>
    /// A residual low-rank block: y + scale ⊙ max(y·A·B + bias, 0) + shift for y (N, D), A (D, r), B (r, D), bias, scale,
    /// shift (D); the ReLU's derivative at 0 is 1. Gradients reach y (directly and through the product), A, B and the vectors.
    /// </summary>
    public Var HyperBlock(Var y, Var a, Var b, Var bias, Var scale, Var shift)
    {
        var h = Matmul(Matmul(y, a), b);
        return Record(HyperNet.HyperBlockActivation(y.Value, h.Value, bias.Value, scale.Value, shift.Value), [y, h, bias, scale, shift], g =>
        {
            var (gh, gb, gs, gt) = HyperNet.HyperBlockActivationBackward(h.Value, bias.Value, scale.Value, g);
            return [y.RequiresGrad ? Backend.Scale(g, 1f) : null, Keep(gh, h), Keep(gb, bias), Keep(gs, scale), Keep(gt, shift)];
        }, "hyper_block");
    }

    /// <summary>d_i = −eta·⟨k_i, kt_i⟩·gt_i (k is data: no gradient).</summary>
    public Var ValueDiff(Var k, Var kt, Var gt, Var eta) =>
        Record(HyperNet.ValueDiff(k.Value, kt.Value, gt.Value, eta.Value), [kt, gt, eta], g =>
        {
            var (gkt, ggt, geta) = HyperNet.ValueDiffBackward(k.Value, kt.Value, gt.Value, eta.Value, g);
            return [Keep(gkt, kt), Keep(ggt, gt), Keep(geta, eta)];
        }, "value_diff");

    /// <summary>KL(softmax(refLogits) ‖ softmax(logits)) averaged over rows → (1); the gradient reaches logits only.</summary>
    public Var KlDivergence(Var refLogits, Var logits) =>
        Record(HyperNet.KlDivergence(refLogits.Value, logits.Value), [logits], g => [HyperNet.KlDivergenceBackward(refLogits.Value, logits.Value, g)], "kl_divergence");

    /// <summary>X with L·Lᵀ·X = B for a Cholesky factor L (ISpdSolveOps); the gradient reaches B only (the same solve of
    /// the output gradient, L·Lᵀ being symmetric). L is a constant here: MALMEN's meta-gradient treats λ apart.</summary>
    public Var CholeskySolve(Var l, Var b)
    {
        var spd = Backend.Ops<ISpdSolveOps>();
        return Record(spd.CholeskySolve(l.Value, b.Value), [b], g => [spd.CholeskySolve(l.Value, g)], "cholesky_solve");
    }
}
