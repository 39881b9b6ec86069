using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Validation;

// Rows of the mixture-of-experts ops (listed at the end of OpValidation.Cases). Shapes: N = 37 tokens,
// E = 7 experts, k = 3 slots, M = N·k = 111 rows, widths 29 and 13. Logits given as input are the same
// floats on both backends (an exact tie goes to the lowest index on both); logits a row computes by a matmul
// come from grid inputs (exact sums, see Input.Grid), so the top-k cannot flip on a near-tie that rounding
// decides. Index inputs include −1 and 7 (outside [0, 7)) to exercise dropped entries.
public static partial class OpValidation
{
    private const int MoeN = 37, MoeE = 7, MoeK = 3, MoeM = MoeN * MoeK;

    /// <summary>Expert ids per (token, slot): mostly in [0, E), some −1 and some E (dropped).</summary>
    private static Input.Ints MoeIndices() => new([MoeN, MoeK], 0, MoeE + 1, IgnoreRate: 0.1, Ignore: -1);

    private static IEnumerable<ValidationCase> MoeCases() =>
    [
        new("moe_gate_topk", [F(MoeN, MoeE)], (t, x) => t.MoeGateTopK(x[0], MoeK).Weights, Reduction),
        new("moe_gate_topk_indices", [F(MoeN, MoeE)], (t, x) => IntsAsFloats(t, t.MoeGateTopK(x[0], MoeK).Indices), Elementwise, HasBackward: false),
        new("moe_route", [MoeIndices()], (t, x) =>
        {
            var r = t.MoeRoute(x[0], MoeE);
            return IntsAsFloats(t, r.Order, r.Position, r.Offsets);
        }, Elementwise, HasBackward: false),
        new("moe_dispatch", [F(MoeN, 29), MoeIndices()], (t, x) => t.MoeDispatch(x[0], t.MoeRoute(x[1], MoeE)), Elementwise),
        new("grouped_matmul", [F(MoeM, 29), F(MoeE, 29, 13), MoeIndices()], (t, x) => t.GroupedMatmul(x[0], x[1], t.MoeRoute(x[2], MoeE)), Reduction),
        new("moe_combine", [F(MoeM, 13), F(MoeN, MoeK), MoeIndices()], (t, x) => t.MoeCombine(x[0], x[1], t.MoeRoute(x[2], MoeE)), Reduction),
        // The whole bypass MoE: gate logits x·Wg, top-2, route, dispatch, GELU(xs·A_e)·B_e, weighted combine.
        new("moe_layer", [new Input.Grid([MoeN, 29], -2, 2, 0.25f), new Input.Grid([29, MoeE], -2, 2, 0.25f), new Input.Floats([MoeE, 29, 5], 0.3f), new Input.Floats([MoeE, 5, 13], 0.3f)], (t, x) =>
        {
            var (w, idx) = t.MoeGateTopK(t.Matmul(x[0], x[1]), 2);
            var r = t.MoeRoute(idx, MoeE);
            var h = t.Gelu(t.GroupedMatmul(t.MoeDispatch(x[0], r), x[2], r));
            return t.MoeCombine(t.GroupedMatmul(h, x[3], r), w, r);
        }, Reduction),
    ];

    /// <summary>I32 tensors as one float vector (read back through the host), so integer outputs are compared too.</summary>
    private static Var IntsAsFloats(Tape t, params Var[] ints)
    {
        var all = ints.SelectMany(v => t.Backend.ToIntArray(v.Value)).Select(i => (float)i).ToArray();
        return t.Constant(t.Backend.FromArray(all, all.Length));
    }
}
