using EditRuntime.Backends;

namespace EditRuntime.Autograd;

/// <summary>The routing of one MoE layer: <see cref="IMoEOps.MoeRoute"/>'s order, position and offsets (I32, no gradient), and the slots per token.</summary>
public sealed record MoeRouting(Var Order, Var Position, Var Offsets, int K, int Experts);

// Mixture-of-experts ops on the tape (IMoEOps.MoeGateTopK, MoeRoute, MoeDispatch, GroupedMatmul, MoeCombine).
public sealed partial class Tape
{
    /// <summary>The backend's MoE ops (an UnsupportedOpException naming the backend if it has none).</summary>
    private IMoEOps Moe => Backend.Ops<IMoEOps>();

    /// <summary>A value computed on this tape that never receives a gradient (indices, routing).</summary>
    private Var Untracked(Tensor value, string op)
    {
        var v = new Var(value, false, leaf: false, op);
        _owned.Add(v);
        return v;
    }

    /// <summary>Top-k gate: logits (N, E) → weights (N, k) (softmax probabilities, differentiable) and indices (N, k) I32.</summary>
    public (Var Weights, Var Indices) MoeGateTopK(Var logits, int k)
    {
        var (w, idx) = Moe.MoeGateTopK(logits.Value, k);
        var indices = Untracked(idx, "moe_gate_indices");
        var weights = Record(w, [logits], g => [Moe.MoeGateTopKBackward(logits.Value, k, g)], "moe_gate_topk");
        return (weights, indices);
    }

    /// <summary>Groups the entries of indices (N, k) by expert (no gradient).</summary>
    public MoeRouting MoeRoute(Var indices, int experts)
    {
        var (o, p, off) = Moe.MoeRoute(indices.Value, experts);
        return new MoeRouting(Untracked(o, "moe_order"), Untracked(p, "moe_position"), Untracked(off, "moe_offsets"), indices.Shape[1], experts);
    }

    /// <summary>x (N, C) → rows grouped per expert (N·k, C).</summary>
    public Var MoeDispatch(Var x, MoeRouting r) =>
        Record(Moe.MoeDispatch(x.Value, r.Order.Value, r.K), [x], g => [Moe.MoeDispatchBackward(r.Position.Value, g, r.K)], "moe_dispatch");

    /// <summary>Per-group matmul: rows of group e times w[e]; rows in no group give 0.</summary>
    public Var GroupedMatmul(Var xs, Var w, MoeRouting r) =>
        Record(Moe.GroupedMatmul(xs.Value, w.Value, r.Offsets.Value), [xs, w], g =>
        {
            var (gx, gw) = Moe.GroupedMatmulBackward(xs.Value, w.Value, r.Offsets.Value, g);
            return [Keep(gx, xs), Keep(gw, w)];
        }, "grouped_matmul");

    /// <summary>Expert outputs (N·k, C) weighted and summed back per token → (N, C).</summary>
    public Var MoeCombine(Var ys, Var weights, MoeRouting r) =>
        Record(Moe.MoeCombine(ys.Value, weights.Value, r.Position.Value), [ys, weights], g =>
        {
            var (gy, gw) = Moe.MoeCombineBackward(ys.Value, weights.Value, r.Position.Value, g);
            return [Keep(gy, ys), Keep(gw, weights)];
        }, "moe_combine");
}

// Row scatter, the inverse of picking rows with Embedding: used to put the outputs of the routed tokens back.
public sealed partial class Tape
{
    /// <summary>rows (M, C) placed at rows ids[m] of a zero (n, C) tensor (distinct ids; repeated ids would add up).
    /// Forward: the embedding's scatter-add; backward: the embedding's gather.</summary>
    public Var ScatterRows(Var rows, Var ids, int n) =>
        Record(Backend.EmbeddingBackward(ids.Value, rows.Value, n), [rows], g => [Backend.Embedding(ids.Value, g)], "scatter_rows");
}
