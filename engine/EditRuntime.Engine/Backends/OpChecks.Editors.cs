namespace EditRuntime.Backends;

// Argument checks of the editor ops (ILoraOps, IMoEOps): one method per op, called by every backend.
public static partial class OpChecks
{
    // ---------------------------------------------------------------- LoRA blocks and cluster lookup (ILoraOps)

    public static (int S, int T, int In, int K, int Out, int Blocks) LoraForward(Tensor x, Tensor a, Tensor b, Tensor blockIds)
    {
        const string op = "lora_forward";
        DType(op, "x", x); DType(op, "a", a); DType(op, "b", b);
        return Lora(op, x, a, b, blockIds);
    }

    public static (int S, int T, int In, int K, int Out, int Blocks) LoraBackward(Tensor x, Tensor a, Tensor b, Tensor blockIds, Tensor gy, int block)
    {
        const string op = "lora_backward";
        DType(op, "x", x); DType(op, "a", a); DType(op, "b", b);
        var s = Lora(op, x, a, b, blockIds);
        Gy(op, gy, [s.S, s.T, s.Out]);
        if (block < -1 || block >= s.Blocks) throw new ArgumentException($"{op}: block {block} is outside [-1, {s.Blocks}).");
        return s;
    }
    /// <summary>Checks x (S, T, in), a (blocks, in, k), b (blocks, k, out), ids I32 (S); returns the sizes.</summary>
    private static (int S, int T, int In, int K, int Out, int Blocks) Lora(string op, Tensor x, Tensor a, Tensor b, Tensor blockIds)
    {
        if (x.Rank != 3) throw new ArgumentException($"{op}: x must be (S, T, in), got {x.ShapeString}.");
        if (a.Rank != 3 || b.Rank != 3) throw new ArgumentException($"{op}: a must be (blocks, in, k) and b (blocks, k, out), got {a.ShapeString} and {b.ShapeString}.");
        int S = x.Shape[0], T = x.Shape[1], inW = x.Shape[2], blocks = a.Shape[0], k = a.Shape[2], outW = b.Shape[2];
        if (a.Shape[1] != inW) throw new ArgumentException($"{op}: a {a.ShapeString} must be (blocks, {inW}, k) for x {x.ShapeString}.");
        if (b.Shape[0] != blocks || b.Shape[1] != k) throw new ArgumentException($"{op}: b {b.ShapeString} must be ({blocks}, {k}, out) for a {a.ShapeString}.");
        if (blockIds.DType != Backends.DType.I32 || blockIds.Rank != 1 || blockIds.Shape[0] != S)
            throw new ArgumentException($"{op}: blockIds must be I32 ({S}) (one per sample of x {x.ShapeString}), got {blockIds.DType} {blockIds.ShapeString}.");
        return (S, T, inW, k, outW, blocks);
    }

    /// <summary>Checks the lookup's arguments; returns (queries, centres, points, dimension).</summary>
    public static (int Q, int N, int P, int D) ClusterLookup(Tensor queries, Tensor centres, Tensor radii, Tensor points, Tensor pointInfo)
    {
        const string op = "cluster_lookup";
        DType(op, "queries", queries); DType(op, "centres", centres); DType(op, "radii", radii); DType(op, "points", points);
        if (queries.Rank != 2 || centres.Rank != 2 || points.Rank != 2)
            throw new ArgumentException($"{op}: queries, centres and points must be (rows, D), got {queries.ShapeString}, {centres.ShapeString}, {points.ShapeString}.");
        int Q = queries.Shape[0], D = queries.Shape[1], N = centres.Shape[0], P = points.Shape[0];
        if (N < 1) throw new ArgumentException($"{op}: the index has no centre (an empty index routes nothing; do not look it up).");
        if (centres.Shape[1] != D || points.Shape[1] != D)
            throw new ArgumentException($"{op}: centres {centres.ShapeString} and points {points.ShapeString} must have D = {D} columns like queries {queries.ShapeString}.");
        if (radii.Rank != 1 || radii.Shape[0] != N) throw new ArgumentException($"{op}: radii must be ({N}), got {radii.ShapeString}.");
        if (pointInfo.DType != Backends.DType.I32 || pointInfo.Rank != 2 || pointInfo.Shape[0] != P || pointInfo.Shape[1] != 2)
            throw new ArgumentException($"{op}: pointInfo must be I32 ({P}, 2) = (cluster, block), got {pointInfo.DType} {pointInfo.ShapeString}.");
        return (Q, N, P, D);
    }

    // ---------------------------------------------------------------- mixture of experts (IMoEOps)

    private const int MaxExperts = IMoEOps.MaxExperts;

    public static (int N, int E) MoeGateTopK(Tensor logits, int k)
    {
        DType("moe_gate_topk", "logits", logits);
        return MoeGate("moe_gate_topk", logits, k);
    }

    public static (int N, int E) MoeGateTopKBackward(Tensor logits, int k, Tensor gWeights)
    {
        const string op = "moe_gate_topk_backward";
        DType(op, "logits", logits);
        DType(op, "gWeights", gWeights);
        var (n, e) = MoeGate(op, logits, k);
        if (gWeights.Rank != 2 || gWeights.Shape[0] != n || gWeights.Shape[1] != k)
            throw new ArgumentException($"{op}: gWeights is {gWeights.ShapeString}, expected (N, k) = [{n}, {k}].");
        return (n, e);
    }

    private static (int N, int E) MoeGate(string op, Tensor logits, int k)
    {
        if (logits.Rank != 2) throw new ArgumentException($"{op}: logits must be (N, E), got {logits.ShapeString}.");
        int n = logits.Shape[0], e = logits.Shape[1];
        if (e < 1 || e > MaxExperts) throw new ArgumentException($"{op}: {e} experts; the MoE kernels take 1 to {MaxExperts}.");
        if (k < 1 || k > e) throw new ArgumentException($"{op}: k = {k} must be in [1, E = {e}].");
        return (n, e);
    }

    /// <summary>indices I32 (N, k), 1 ≤ experts ≤ <see cref="IMoEOps.MaxExperts"/>; returns M = N·k.</summary>
    public static int MoeRoute(Tensor indices, int experts)
    {
        const string op = "moe_route";
        DType(op, "indices", indices, Backends.DType.I32);
        if (indices.Rank != 2) throw new ArgumentException($"{op}: indices must be (N, k), got {indices.ShapeString}.");
        if (experts < 1 || experts > MaxExperts) throw new ArgumentException($"{op}: {experts} experts; the MoE kernels take 1 to {MaxExperts}.");
        return (int)indices.Count;
    }

    private static void MoePermutation(string op, string arg, Tensor t, int m)
    {
        DType(op, arg, t, Backends.DType.I32);
        if (t.Rank != 1 || t.Shape[0] != m) throw new ArgumentException($"{op}: {arg} must be [{m}] (M = N·k), got {t.ShapeString}.");
    }

    /// <summary>Checks x (N, C), order I32 [N·k], k ≥ 1; returns (N, C, M = N·k).</summary>
    public static (int N, int C, int M) MoeDispatch(Tensor x, Tensor order, int k)
    {
        const string op = "moe_dispatch";
        DType(op, "x", x);
        if (x.Rank != 2) throw new ArgumentException($"{op}: x must be (N, C), got {x.ShapeString}.");
        if (k < 1) throw new ArgumentException($"{op}: k must be ≥ 1, got {k}.");
        int n = x.Shape[0], m = n * k;
        MoePermutation(op, "order", order, m);
        return (n, x.Shape[1], m);
    }

    /// <summary>Checks position I32 [M], gxs (M, C) with k dividing M; returns (M, C, N = M / k).</summary>
    public static (int M, int C, int N) MoeDispatchBackward(Tensor position, Tensor gxs, int k)
    {
        const string op = "moe_dispatch_backward";
        DType(op, "gxs", gxs);
        if (gxs.Rank != 2) throw new ArgumentException($"{op}: gxs must be (M, C), got {gxs.ShapeString}.");
        if (k < 1 || gxs.Shape[0] % k != 0) throw new ArgumentException($"{op}: k = {k} must divide the {gxs.Shape[0]} rows of gxs.");
        int m = gxs.Shape[0];
        MoePermutation(op, "position", position, m);
        return (m, gxs.Shape[1], m / k);
    }

    /// <summary>Checks xs (M, K), w (E, K, Nout), offsets I32 [E + 1]; returns (M, K, Nout, E).</summary>
    public static (int M, int K, int Nout, int E) GroupedMatmul(string op, Tensor xs, Tensor w, Tensor offsets)
    {
        DType(op, "xs", xs); DType(op, "w", w); DType(op, "offsets", offsets, Backends.DType.I32);
        if (xs.Rank != 2) throw new ArgumentException($"{op}: xs must be (M, K), got {xs.ShapeString}.");
        if (w.Rank != 3 || w.Shape[1] != xs.Shape[1]) throw new ArgumentException($"{op}: w must be (E, K = {xs.Shape[1]}, N), got {w.ShapeString}.");
        int e = w.Shape[0];
        if (e < 1 || e > MaxExperts) throw new ArgumentException($"{op}: {e} experts; the MoE kernels take 1 to {MaxExperts}.");
        if (offsets.Rank != 1 || offsets.Shape[0] != e + 1) throw new ArgumentException($"{op}: offsets must be [E + 1] = [{e + 1}], got {offsets.ShapeString}.");
        return (xs.Shape[0], xs.Shape[1], w.Shape[2], e);
    }

    public static (int M, int K, int Nout, int E) GroupedMatmulBackward(Tensor xs, Tensor w, Tensor offsets, Tensor gy)
    {
        var s = GroupedMatmul("grouped_matmul_backward", xs, w, offsets);
        Gy("grouped_matmul_backward", gy, [s.M, s.Nout]);
        return s;
    }

    /// <summary>Checks ys (M = N·k, C), weights (N, k), position I32 [M]; returns (N, C, k).</summary>
    public static (int N, int C, int K) MoeCombine(string op, Tensor ys, Tensor weights, Tensor position)
    {
        DType(op, "ys", ys); DType(op, "weights", weights);
        if (weights.Rank != 2) throw new ArgumentException($"{op}: weights must be (N, k), got {weights.ShapeString}.");
        int n = weights.Shape[0], k = weights.Shape[1];
        if (ys.Rank != 2 || ys.Shape[0] != n * k) throw new ArgumentException($"{op}: ys must be (M = N·k = {n * k}, C), got {ys.ShapeString}.");
        MoePermutation(op, "position", position, n * k);
        return (n, ys.Shape[1], k);
    }

    public static (int N, int C, int K) MoeCombineBackward(Tensor ys, Tensor weights, Tensor position, Tensor gy)
    {
        var s = MoeCombine("moe_combine_backward", ys, weights, position);
        Gy("moe_combine_backward", gy, [s.N, s.C]);
        return s;
    }
}
