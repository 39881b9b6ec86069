using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// ILoraOps on Vulkan: MELO's per-sample LoRA blocks and its vector-database lookup.
//
// LoRA forward is two kernels: h = x·A[id] (core/lora_down, rank k per row) and y = scale·h·B[id]
// (core/lora_up). The backward recomputes h, then gh = scale·gy·B[id]ᵀ (lora_down, transposed
// bank), gx = gh·A[id]ᵀ (lora_up, transposed bank) and the two gradients of the one trained block
// (core/lora_grad): gA = Σ xᵀ·gh and gB = scale·Σ hᵀ·gy over the samples routed to it.
// The lookup is one kernel (core/cluster_lookup): everything stays on the device, the caller reads
// back only the block ids if it wants them.
public sealed partial class VulkanBackend
{
    [StructLayout(LayoutKind.Sequential)] private struct LoraRowsPush { public ulong U, M, Ids, H; public uint Rows, T, W, K, Blocks; public float Alpha; }
    [StructLayout(LayoutKind.Sequential)] private struct LoraGradPush { public ulong U, V, Ids, O; public uint Rows, T, P, Q; public int Block; public float Alpha; }
    [StructLayout(LayoutKind.Sequential)] private struct ClusterLookupPush { public ulong Q, C, Radii, Pts, Info, Blocks, Dist; public uint B, N, P, D; }

    private void LoraRows(string shader, uint trans, GpuTensor u, GpuTensor m, GpuTensor ids, GpuTensor h, int rows, int T, int W, int K, int blocks, float alpha, long work)
    {
        if (work == 0) return;
        var k = Device.Kernels.Get(shader, trans);
        var push = new LoraRowsPush { U = u.Address, M = m.Address, Ids = ids.Address, H = h.Address, Rows = (uint)rows, T = (uint)T, W = (uint)W, K = (uint)K, Blocks = (uint)blocks, Alpha = alpha };
        ReadOnlySpan<BufferRange> reads = [u.Range, m.Range, ids.Range];
        // lora_down: one workgroup per output element (it reduces over W); lora_up: one invocation per element.
        if (shader == "core/lora_down") Ops.Groups(k, push, work, reads, [h.Range]);
        else Ops.Elementwise(k, push, work, reads, [h.Range]);
    }

    /// <summary>h (rows, k) = alpha·u·M[id] (trans 0: M (blocks, W, k); 1: M (blocks, k, W) read transposed).</summary>
    private GpuTensor LoraDown(GpuTensor u, GpuTensor m, GpuTensor ids, int rows, int T, int W, int K, int blocks, uint trans, float alpha)
    {
        var h = New(rows, K);
        if (T == 0 || K == 0) return h;
        LoraRows("core/lora_down", trans, u, m, ids, h, rows, T, W, K, blocks, alpha, (long)rows * K);
        return h;
    }

    /// <summary>y (shape) = alpha·h·M[id] (trans 0: M (blocks, k, W); 1: M (blocks, W, k) read transposed).</summary>
    private GpuTensor LoraUp(GpuTensor h, GpuTensor m, GpuTensor ids, int[] shape, int rows, int T, int W, int K, int blocks, uint trans, float alpha)
    {
        var y = New(shape);
        if (T == 0 || W == 0) return y;
        LoraRows("core/lora_up", trans, h, m, ids, y, rows, T, W, K, blocks, alpha, (long)rows * W);
        return y;
    }

    public Tensor LoraForward(Tensor x, Tensor a, Tensor b, Tensor blockIds, float scale)
    {
        const string op = "lora_forward";
        GpuTensor gx = G(x, op, "x"), ga = G(a, op, "a"), gb = G(b, op, "b"), gi = G(blockIds, op, "blockIds");
        var (S, T, inW, K, outW, blocks) = OpChecks.LoraForward(x, a, b, blockIds);
        int rows = S * T;
        using var h = LoraDown(gx, ga, gi, rows, T, inW, K, blocks, 0, 1f);
        return LoraUp(h, gb, gi, [S, T, outW], rows, T, outW, K, blocks, 0, scale);
    }

    public (Tensor GradX, Tensor GradA, Tensor GradB) LoraBackward(Tensor x, Tensor a, Tensor b, Tensor blockIds, Tensor gy, float scale, int block)
    {
        const string op = "lora_backward";
        GpuTensor gx = G(x, op, "x"), ga = G(a, op, "a"), gb = G(b, op, "b"), gi = G(blockIds, op, "blockIds"), ggy = G(gy, op, "gy");
        var (S, T, inW, K, outW, blocks) = OpChecks.LoraBackward(x, a, b, blockIds, gy, block);
        int rows = S * T;
        using var h = LoraDown(gx, ga, gi, rows, T, inW, K, blocks, 0, 1f);        // x·A
        using var gh = LoraDown(ggy, gb, gi, rows, T, outW, K, blocks, 1, scale);  // scale·gy·Bᵀ
        var gradX = LoraUp(gh, ga, gi, x.Shape, rows, T, inW, K, blocks, 1, 1f);     // gh·Aᵀ
        var gradA = New(inW, K);
        var gradB = New(K, outW);
        LoraGrad(gx, gh, gi, gradA, rows, T, inW, K, block, 1f);
        LoraGrad(h, ggy, gi, gradB, rows, T, K, outW, block, scale);
        return (gradX, gradA, gradB);
    }

    /// <summary>o (P, Q) = alpha·Σ_{rows of samples routed to block} uᵀ·v.</summary>
    private void LoraGrad(GpuTensor u, GpuTensor v, GpuTensor ids, GpuTensor o, int rows, int T, int P, int Q, int block, float alpha)
    {
        long n = (long)P * Q;
        if (n == 0) return;
        var push = new LoraGradPush { U = u.Address, V = v.Address, Ids = ids.Address, O = o.Address, Rows = (uint)(T == 0 ? 0 : rows), T = (uint)Math.Max(T, 1), P = (uint)P, Q = (uint)Q, Block = block, Alpha = alpha };
        Ops.Elementwise("core/lora_grad", push, n, [u.Range, v.Range, ids.Range], [o.Range]);
    }

    public (Tensor Blocks, Tensor Distances) ClusterLookup(Tensor queries, Tensor centres, Tensor radii, Tensor points, Tensor pointInfo)
    {
        const string op = "cluster_lookup";
        GpuTensor gq = G(queries, op, "queries"), gc = G(centres, op, "centres"), gr = G(radii, op, "radii"),
            gp = G(points, op, "points"), gi = G(pointInfo, op, "pointInfo");
        var (Q, N, P, D) = OpChecks.ClusterLookup(queries, centres, radii, points, pointInfo);
        var blocks = New(DType.I32, Q);
        var dist = New(Q);
        if (Q == 0) return (blocks, dist);
        var push = new ClusterLookupPush
        {
            Q = gq.Address, C = gc.Address, Radii = gr.Address, Pts = gp.Address, Info = gi.Address, Blocks = blocks.Address, Dist = dist.Address,
            B = (uint)Q, N = (uint)N, P = (uint)P, D = (uint)D,
        };
        Ops.Groups(Device.Kernels.Get("core/cluster_lookup"), push, Q,   // one workgroup per query
            [gq.Range, gc.Range, gr.Range, gp.Range, gi.Range], [blocks.Range, dist.Range]);
        return (blocks, dist);
    }
}
