using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// Causal attention, embedding and cross-entropy on Vulkan.
//
// Attention is three kernels: S = q·kᵀ/√D (one batched matmul over B·H), a fused masked softmax
// (core/attn_softmax_forward, in place S → P) and y = P·v. The backward recomputes P, then
// gv = Pᵀ·gy, gP = gy·vᵀ, gS = softmax backward (core/attn_softmax_backward, in place on gP),
// gq = gS·k/√D and gk = gSᵀ·q/√D. Memory: two (B, H, T, T) temporaries in the backward.
//
// Cross-entropy keeps everything on the GPU: per-row losses, then one workgroup counts the
// counted positions and takes the mean (or, backward, gy/count), so recording never waits on
// a read-back.
public sealed partial class VulkanBackend
{
    /// <summary>
    /// When true, <see cref="Embedding"/> and <see cref="EmbeddingBackward"/> read the ids back to
    /// the host before recording (this waits for pending work) and throw an ArgumentException naming
    /// the first id outside [0, V) and its position. When false (the default) such an id gives a
    /// zero row in the forward and is skipped in the backward.
    /// </summary>
    public bool CheckIds { get; set; }

    [StructLayout(LayoutKind.Sequential)] private struct AttnSoftmaxPush { public ulong S, Mask; public uint Rows, T, H, HasMask; }
    [StructLayout(LayoutKind.Sequential)] private struct AttnSoftmaxBackwardPush { public ulong P, G, Mask; public uint Rows, T, H, HasMask; }
    [StructLayout(LayoutKind.Sequential)] private struct EmbeddingPush { public ulong Ids, Table, Y; public uint N, C, V; }
    [StructLayout(LayoutKind.Sequential)] private struct EmbeddingBackwardPush { public ulong Ids, Gy, GTable; public uint N, C, V; }
    [StructLayout(LayoutKind.Sequential)] private struct CrossEntropyPush { public ulong Logits, Targets, Losses; public uint N, V; public int IgnoreIndex; }
    [StructLayout(LayoutKind.Sequential)] private struct CrossEntropyReducePush { public ulong Losses, Targets, Gy, Y; public uint N, V; public int IgnoreIndex; public uint Mode; }
    [StructLayout(LayoutKind.Sequential)] private struct CrossEntropyBackwardPush { public ulong Logits, Targets, Scale, G; public uint N, V; public int IgnoreIndex; }

    // ---------------------------------------------------------------- attention

    /// <summary>The shared checks (<see cref="OpChecks.Attention"/>), and this backend's limit: the (B, H, T, T) temporary.</summary>
    private static (int B, int H, int T, int D) AttentionShape(string op, Tensor q, Tensor k, Tensor v, Tensor? keyMask, Tensor? gy)
    {
        var (B, H, T, D) = OpChecks.Attention(op, q, k, v, keyMask, gy);
        if ((long)B * H * T * T > int.MaxValue)
            throw new ArgumentException($"{op}: the attention matrix B·H·T·T = {B}·{H}·{T}·{T} exceeds {int.MaxValue} elements.");
        return (B, H, T, D);
    }

    /// <summary>P = masked causal softmax(q·kᵀ/√D), a new (B, H, T, T) tensor. Needs B·H·T &gt; 0 and D &gt; 0.</summary>
    private GpuTensor AttentionProbabilities(GpuTensor q, GpuTensor k, GpuTensor? mask, int B, int H, int T, int D)
    {
        int bh = B * H;
        var p = New(B, H, T, T);
        Ops.Matmul(q.Address, k.Address, p.Address, q.Range, k.Range, p.Range, bh, T, T, D,
            lda: D, ldb: D, ldc: T, strideA: (long)T * D, strideB: (long)T * D, strideC: (long)T * T,
            transA: false, transB: true, alpha: (float)(1.0 / Math.Sqrt(D)), beta: 0f);
        long rows = (long)bh * T;
        var push = new AttnSoftmaxPush
        {
            S = p.Address, Mask = mask?.Address ?? p.Address, Rows = (uint)rows, T = (uint)T, H = (uint)H, HasMask = mask != null ? 1u : 0u,
        };
        ReadOnlySpan<BufferRange> reads = mask != null ? [p.Range, mask.Range] : [p.Range];
        Ops.Elementwise("core/attn_softmax_forward", push, rows, reads, [p.Range]);   // one invocation per row
        return p;
    }

    /// <inheritdoc/>
    /// <remarks>Vulkan: matmul, core/attn_softmax_forward, matmul; a (B, H, T, T) temporary. B·H·T·T must fit in int.</remarks>
    public Tensor CausalAttention(Tensor q, Tensor k, Tensor v, Tensor? keyMask)
    {
        const string op = "causal_attention";
        GpuTensor gq = G(q, op, "q"), gk = G(k, op, "k"), gv = G(v, op, "v");
        GpuTensor? mask = keyMask == null ? null : G(keyMask, op, "keyMask");
        var (B, H, T, D) = AttentionShape(op, q, k, v, keyMask, null);
        var y = New(q.Shape);
        if (y.Count == 0) return y;   // B, H, T or D is 0
        using var p = AttentionProbabilities(gq, gk, mask, B, H, T, D);
        // y = P·v per (b, h): (T, T)·(T, D)
        Ops.Matmul(p.Address, gv.Address, y.Address, p.Range, gv.Range, y.Range, B * H, T, D, T,
            lda: T, ldb: D, ldc: D, strideA: (long)T * T, strideB: (long)T * D, strideC: (long)T * D,
            transA: false, transB: false, alpha: 1f, beta: 0f);
        return y;
    }

    /// <inheritdoc/>
    /// <remarks>Vulkan: recomputes P (two kernels), then four matmuls and core/attn_softmax_backward; two (B, H, T, T) temporaries.</remarks>
    public (Tensor GradQ, Tensor GradK, Tensor GradV) CausalAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor? keyMask, Tensor gy)
    {
        const string op = "causal_attention_backward";
        GpuTensor gq = G(q, op, "q"), gk = G(k, op, "k"), gv = G(v, op, "v"), ggy = G(gy, op, "gy");
        GpuTensor? mask = keyMask == null ? null : G(keyMask, op, "keyMask");
        var (B, H, T, D) = AttentionShape(op, q, k, v, keyMask, gy);
        var dq = New(q.Shape);
        var dk = New(q.Shape);
        var dv = New(q.Shape);
        if (dq.Count == 0) return (dq, dk, dv);
        int bh = B * H;
        long td = (long)T * D, tt = (long)T * T;
        float scale = (float)(1.0 / Math.Sqrt(D));
        using var p = AttentionProbabilities(gq, gk, mask, B, H, T, D);
        // gv = Pᵀ·gy: P stored (T, T), read transposed
        Ops.Matmul(p.Address, ggy.Address, dv.Address, p.Range, ggy.Range, dv.Range, bh, T, D, T,
            lda: T, ldb: D, ldc: D, strideA: tt, strideB: td, strideC: td, transA: true, transB: false, alpha: 1f, beta: 0f);
        // gP = gy·vᵀ: (T, D)·(D, T)
        using var g = New(B, H, T, T);
        Ops.Matmul(ggy.Address, gv.Address, g.Address, ggy.Range, gv.Range, g.Range, bh, T, T, D,
            lda: D, ldb: D, ldc: T, strideA: td, strideB: td, strideC: tt, transA: false, transB: true, alpha: 1f, beta: 0f);
        // gS = P·(gP − Σ P·gP), 0 where masked (in place on g)
        long rows = (long)bh * T;
        var push = new AttnSoftmaxBackwardPush
        {
            P = p.Address, G = g.Address, Mask = mask?.Address ?? p.Address,
            Rows = (uint)rows, T = (uint)T, H = (uint)H, HasMask = mask != null ? 1u : 0u,
        };
        ReadOnlySpan<BufferRange> reads = mask != null ? [p.Range, g.Range, mask.Range] : [p.Range, g.Range];
        Ops.Elementwise("core/attn_softmax_backward", push, rows, reads, [g.Range]);   // one invocation per row
        // gq = gS·k/√D,  gk = gSᵀ·q/√D
        Ops.Matmul(g.Address, gk.Address, dq.Address, g.Range, gk.Range, dq.Range, bh, T, D, T,
            lda: T, ldb: D, ldc: D, strideA: tt, strideB: td, strideC: td, transA: false, transB: false, alpha: scale, beta: 0f);
        Ops.Matmul(g.Address, gq.Address, dk.Address, g.Range, gq.Range, dk.Range, bh, T, D, T,
            lda: T, ldb: D, ldc: D, strideA: tt, strideB: td, strideC: td, transA: true, transB: false, alpha: scale, beta: 0f);
        return (dq, dk, dv);
    }

    // ---------------------------------------------------------------- embedding

    /// <summary>Reads the ids back and throws for the first one outside [0, V).</summary>
    private static void CheckIdRange(string op, GpuTensor ids, int vocab)
    {
        var host = ids.ToIntArray();
        for (int i = 0; i < host.Length; i++)
        {
            int id = host[i];
            if (id >= 0 && id < vocab) continue;
            // flat index → multi-index
            var pos = new int[ids.Rank];
            long rest = i;
            for (int d = ids.Rank - 1; d >= 0; d--) { pos[d] = (int)(rest % ids.Shape[d]); rest /= ids.Shape[d]; }
            throw new ArgumentException($"{op}: ids{Tensor.Format(pos)} (flat position {i}) = {id} is outside the vocabulary [0, {vocab}).");
        }
    }

    /// <inheritdoc/>
    /// <remarks>Vulkan: an id outside [0, V) gives a zero row, unless <see cref="CheckIds"/> makes it an ArgumentException.</remarks>
    public Tensor Embedding(Tensor ids, Tensor table)
    {
        const string op = "embedding";
        var gi = G(ids, op, "ids");
        var gt = G(table, op, "table");
        var (V, C) = OpChecks.Embedding(ids, table);
        if (CheckIds) CheckIdRange(op, gi, V);
        var y = New([.. ids.Shape, C]);
        if (y.Count == 0) return y;
        var push = new EmbeddingPush { Ids = gi.Address, Table = gt.Address, Y = y.Address, N = (uint)y.Count, C = (uint)C, V = (uint)V };
        Ops.Elementwise("core/embedding_forward", push, y.Count, [gi.Range, gt.Range], [y.Range]);
        return y;
    }

    /// <inheritdoc/>
    /// <remarks>Vulkan: deterministic (one invocation per column sums the tokens in order, no atomics); ids outside
    /// [0, vocabSize) are skipped, unless <see cref="CheckIds"/> makes them an ArgumentException.</remarks>
    public Tensor EmbeddingBackward(Tensor ids, Tensor gy, int vocabSize)
    {
        const string op = "embedding_backward";
        var gi = G(ids, op, "ids");
        var ggy = G(gy, op, "gy");
        int C = OpChecks.EmbeddingBackward(ids, gy, vocabSize);
        if (CheckIds) CheckIdRange(op, gi, vocabSize);
        var gt = New(vocabSize, C);
        if (gt.Count == 0) return gt;
        Ops.Fill(gt, 0f);
        if (ids.Count == 0) return gt;
        var push = new EmbeddingBackwardPush { Ids = gi.Address, Gy = ggy.Address, GTable = gt.Address, N = (uint)ids.Count, C = (uint)C, V = (uint)vocabSize };
        Ops.Elementwise("core/embedding_backward", push, C, [gi.Range, ggy.Range, gt.Range], [gt.Range]);   // one invocation per column
        return gt;
    }

    // ---------------------------------------------------------------- cross-entropy
    // A position n is counted iff targets[n] != ignoreIndex and 0 <= targets[n] < V. A target outside
    // [0, V) that is not ignoreIndex is treated like an ignored one (not counted, no gradient), not an error.

    /// <inheritdoc/>
    /// <remarks>Vulkan: a target outside [0, V) that is not <paramref name="ignoreIndex"/> is not counted (like an ignored one),
    /// not an error. Count and mean are computed on the GPU.</remarks>
    public Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
    {
        const string op = "cross_entropy";
        GpuTensor gl = G(logits, op, "logits"), gt = G(targets, op, "targets");
        var (N, V) = OpChecks.CrossEntropy(op, logits, targets);
        var y = New(1);
        using var losses = New(N);
        if (N > 0)
        {
            var push = new CrossEntropyPush { Logits = gl.Address, Targets = gt.Address, Losses = losses.Address, N = (uint)N, V = (uint)V, IgnoreIndex = ignoreIndex };
            Ops.Groups(Device.Kernels.Get("core/cross_entropy_forward"), push, N, [gl.Range, gt.Range], [losses.Range]);   // one workgroup per row
        }
        var reduce = new CrossEntropyReducePush
        {
            Losses = losses.Address, Targets = gt.Address, Gy = losses.Address, Y = y.Address, N = (uint)N, V = (uint)V, IgnoreIndex = ignoreIndex, Mode = 0,
        };
        Device.Stream.Dispatch(Device.Kernels.Get("core/cross_entropy_reduce"), reduce, 1, 1, 1, [losses.Range, gt.Range], [y.Range]);
        return y;
    }

    /// <inheritdoc/>
    /// <remarks>Vulkan: gy/count·(softmax − onehot) for counted rows (same rule as the forward), 0 for the others;
    /// gy/count is computed on the GPU (no read-back).</remarks>
    public Tensor CrossEntropyBackward(Tensor logits, Tensor targets, Tensor gy, int ignoreIndex = -100)
    {
        const string op = "cross_entropy_backward";
        GpuTensor gl = G(logits, op, "logits"), gt = G(targets, op, "targets"), ggy = G(gy, op, "gy");
        var (N, V) = OpChecks.CrossEntropyBackward(logits, targets, gy);
        var g = New(N, V);
        if (g.Count == 0) return g;
        using var scale = New(1);   // gy[0] / count, or 0 when nothing counts
        var reduce = new CrossEntropyReducePush
        {
            Losses = ggy.Address, Targets = gt.Address, Gy = ggy.Address, Y = scale.Address, N = (uint)N, V = (uint)V, IgnoreIndex = ignoreIndex, Mode = 1,
        };
        Device.Stream.Dispatch(Device.Kernels.Get("core/cross_entropy_reduce"), reduce, 1, 1, 1, [ggy.Range, gt.Range], [scale.Range]);
        var push = new CrossEntropyBackwardPush
        {
            Logits = gl.Address, Targets = gt.Address, Scale = scale.Address, G = g.Address, N = (uint)N, V = (uint)V, IgnoreIndex = ignoreIndex,
        };
        Ops.Groups(Device.Kernels.Get("core/cross_entropy_backward"), push, N, [gl.Range, gt.Range, scale.Range], [g.Range]);   // one workgroup per row
        return g;
    }
}
