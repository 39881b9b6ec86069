using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Validation;

// Rows of the hyper-network editors' ops (IHyperNetOps) and of the SPD solves (ISpdSolveOps), listed at the end of
// OpValidation.Cases. The block activation's ReLU is discontinuous in its derivative: its rows take grid inputs, whose
// products and sums are exact in float32 on both backends, so h + bias is the same number on both — exact zeros
// included, where the derivative must be 1 (the row with B = 0 and bias = 0 is all zeros, as a fresh block is).
// SPD matrices are built as KᵀK/rows + 0.5·I from random K, the conditioning MALMEN's normal equations have.
public static partial class OpValidation
{
    private static IEnumerable<ValidationCase> HyperNetCases() =>
    [
        new("column_mean_var", [new Input.Floats([37, 129], 1f, 1000f)], (t, x) =>
        {
            var (m, v) = t.Backend.Ops<IHyperNetOps>().ColumnMeanVar(x[0].Value);
            t.OnDispose([m, v]);
            return t.ConcatColumns(t.Reshape(t.Constant(m), 1, 129), t.Reshape(t.Constant(v), 1, 129));
        }, Reduction, HasBackward: false),
        new("column_mean_var_one_row", [F(1, 129)], (t, x) =>
        {
            var (m, v) = t.Backend.Ops<IHyperNetOps>().ColumnMeanVar(x[0].Value);
            t.OnDispose([m, v]);
            return t.ConcatColumns(t.Reshape(t.Constant(m), 1, 129), t.Reshape(t.Constant(v), 1, 129));
        }, Elementwise, HasBackward: false),
        new("normalize", [F(37, 129), new Input.Floats([129], Frozen: true), new Input.Floats([129], 0.3f, 1f, Frozen: true)],
            (t, x) => t.Normalize(x[0], x[1], x[2], 1.1920929e-7f), Elementwise),
        new("hyper_block", [new Input.Grid([37, 29], -2, 2, 0.25f), new Input.Grid([29, 7], -2, 2, 0.25f), new Input.Grid([7, 29], -2, 2, 0.25f),
                new Input.Grid([29], -4, 4, 0.25f), new Input.Grid([29], -2, 2, 0.5f), new Input.Grid([29], -2, 2, 0.5f)],
            (t, x) => t.HyperBlock(x[0], x[1], x[2], x[3], x[4], x[5]), Reduction),
        new("hyper_block_fresh", [F(37, 129), F(129, 5), new Input.Grid([5, 129], 0, 0), new Input.Grid([129], 0, 0), new Input.Grid([129], 1, 1), new Input.Grid([129], 0, 0)],
            (t, x) => t.HyperBlock(x[0], x[1], x[2], x[3], x[4], x[5]), Reduction),
        new("value_diff", [new Input.Floats([37, 129], Frozen: true), F(37, 129), F(37, 29), new Input.Floats([1], 0.1f, 0.5f)],
            (t, x) => t.ValueDiff(x[0], x[1], x[2], x[3]), Reduction),
        new("kl_divergence", [new Input.Floats([37, 257], 3f, Frozen: true), new Input.Floats([37, 257], 3f)], (t, x) => t.KlDivergence(x[0], x[1]), Reduction),
        new("slice_concat_columns", [F(37, 29), F(37, 13)], (t, x) => t.SliceColumns(t.ConcatColumns(x[0], x[1]), 7, 30), Elementwise),
        // A whole hyper-network pass as MALMEN runs it: [k, g] normalised, one block, split, value differences.
        new("hypernet_forward", [new Input.Floats([37, 29], Frozen: true), F(37, 13), new Input.Floats([42], Frozen: true), new Input.Floats([42], 0.2f, 1f, Frozen: true),
                F(42, 5), new Input.Floats([5, 42], 0.1f), F(42), new Input.Floats([42], 0.1f, 1f), F(42), new Input.Floats([1], 0.1f, 0.5f)],
            (t, x) =>
            {
                var y = t.HyperBlock(t.Normalize(t.ConcatColumns(x[0], x[1]), x[2], x[3], 1e-3f), x[4], x[5], x[6], x[7], x[8]);
                return t.ValueDiff(x[0], t.SliceColumns(y, 0, 29), t.SliceColumns(y, 29, 13), x[9]);
            }, Reduction),
        ..new[] { 1, 37, 129, 512 }.Select(n => new ValidationCase($"cholesky_factor_{n}", [new Input.Floats([n + 17, n], Frozen: true)],
            (t, x) => t.Constant(Factor(t, x[0], n)), Reduction, HasBackward: false)),
        ..new[] { 1, 37, 129 }.Select(n => new ValidationCase($"cholesky_solve_{n}", [new Input.Floats([n + 17, n], Frozen: true), F(n, 13)],
            (t, x) => t.CholeskySolve(t.Constant(Factor(t, x[0], n)), x[1]), Reduction)),
    ];

    /// <summary>The Cholesky factor of KᵀK/rows + 0.5·I (owned by the tape).</summary>
    private static Tensor Factor(Tape t, Var k, int n)
    {
        var be = t.Backend;
        var spd = be.Ops<ISpdSolveOps>();
        using var gram = be.Matmul(k.Value, k.Value, transA: true);
        using var s = be.Scale(gram, 1f / k.Shape[0]);
        spd.AddDiagonal(s, 0.5f);
        var l = spd.CholeskyFactor(s);
        t.OnDispose([l]);
        return l;
    }
}
