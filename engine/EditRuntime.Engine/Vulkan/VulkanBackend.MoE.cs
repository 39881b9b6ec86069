using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// Mixture-of-experts ops on Vulkan (shaders/core/moe_*.comp, grouped_matmul_*.comp). Every kernel is
// deterministic: routing is a stable counting sort in one workgroup, and each output element is owned by
// one invocation (the combine and the dispatch backward read through the inverse permutation instead of
// scattering with atomics). The grouped matmul is a plain per-element loop: expert shapes are small
// (low rank), and the group of a row is found on the device from offsets, so nothing waits on a read-back.
public sealed partial class VulkanBackend
{
    [StructLayout(LayoutKind.Sequential)] private struct MoeGatePush { public ulong Logits, Weights, Indices; public uint N, E, K; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeGateBackwardPush { public ulong Logits, Gw, Gl; public uint N, E, K; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeRoutePush { public ulong Indices, Order, Position, Offsets; public uint M, E; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeDispatchPush { public ulong X, Order, Xs; public uint M, C, K; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeDispatchBackwardPush { public ulong Position, Gxs, Gx; public uint N, C, K; }
    [StructLayout(LayoutKind.Sequential)] private struct GroupedMatmulPush { public ulong A, W, Offsets, Y; public uint M, K, Nout, E; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeCombinePush { public ulong Ys, Weights, Position, Y; public uint N, C, K; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeCombineBackwardYsPush { public ulong Weights, Position, Gy, Gys; public uint M, C, K; }
    [StructLayout(LayoutKind.Sequential)] private struct MoeCombineBackwardWPush { public ulong Ys, Position, Gy, Gw; public uint M, C, K; }

    public (Tensor Weights, Tensor Indices) MoeGateTopK(Tensor logits, int k)
    {
        const string op = "moe_gate_topk";
        var gl = G(logits, op, "logits");
        var (n, e) = OpChecks.MoeGateTopK(logits, k);
        var w = New(n, k);
        var idx = New(DType.I32, n, k);
        Ops.Elementwise("core/moe_gate_topk_forward",
            new MoeGatePush { Logits = gl.Address, Weights = w.Address, Indices = idx.Address, N = (uint)n, E = (uint)e, K = (uint)k },
            n, [gl.Range], [w.Range, idx.Range]);
        return (w, idx);
    }

    public Tensor MoeGateTopKBackward(Tensor logits, int k, Tensor gWeights)
    {
        const string op = "moe_gate_topk_backward";
        var gl = G(logits, op, "logits"); var gw = G(gWeights, op, "gWeights");
        var (n, e) = OpChecks.MoeGateTopKBackward(logits, k, gWeights);
        var g = New(n, e);
        Ops.Elementwise("core/moe_gate_topk_backward",
            new MoeGateBackwardPush { Logits = gl.Address, Gw = gw.Address, Gl = g.Address, N = (uint)n, E = (uint)e, K = (uint)k },
            n, [gl.Range, gw.Range], [g.Range]);
        return g;
    }

    public (Tensor Order, Tensor Position, Tensor Offsets) MoeRoute(Tensor indices, int experts)
    {
        const string op = "moe_route";
        var gi = G(indices, op, "indices");
        int m = OpChecks.MoeRoute(indices, experts);
        var order = New(DType.I32, m);
        var position = New(DType.I32, m);
        var offsets = New(DType.I32, experts + 1);
        Device.Stream.Dispatch(Device.Kernels.Get("core/moe_route"),
            new MoeRoutePush { Indices = gi.Address, Order = order.Address, Position = position.Address, Offsets = offsets.Address, M = (uint)m, E = (uint)experts },
            1, 1, 1, [gi.Range], [order.Range, position.Range, offsets.Range]);
        return (order, position, offsets);
    }

    public Tensor MoeDispatch(Tensor x, Tensor order, int k)
    {
        const string op = "moe_dispatch";
        var gx = G(x, op, "x"); var go = G(order, op, "order");
        var (_, c, m) = OpChecks.MoeDispatch(x, order, k);
        var xs = New(m, c);
        Ops.Elementwise("core/moe_dispatch_forward",
            new MoeDispatchPush { X = gx.Address, Order = go.Address, Xs = xs.Address, M = (uint)m, C = (uint)c, K = (uint)k },
            (long)m * c, [gx.Range, go.Range], [xs.Range]);
        return xs;
    }

    public Tensor MoeDispatchBackward(Tensor position, Tensor gxs, int k)
    {
        const string op = "moe_dispatch_backward";
        var gp = G(position, op, "position"); var gg = G(gxs, op, "gxs");
        var (_, c, n) = OpChecks.MoeDispatchBackward(position, gxs, k);
        var gx = New(n, c);
        Ops.Elementwise("core/moe_dispatch_backward",
            new MoeDispatchBackwardPush { Position = gp.Address, Gxs = gg.Address, Gx = gx.Address, N = (uint)n, C = (uint)c, K = (uint)k },
            (long)n * c, [gp.Range, gg.Range], [gx.Range]);
        return gx;
    }

    public Tensor GroupedMatmul(Tensor xs, Tensor w, Tensor offsets)
    {
        const string op = "grouped_matmul";
        var ga = G(xs, op, "xs"); var gw = G(w, op, "w"); var go = G(offsets, op, "offsets");
        var (m, k, nout, e) = OpChecks.GroupedMatmul(op, xs, w, offsets);
        var y = New(m, nout);
        Ops.Elementwise("core/grouped_matmul_forward",
            new GroupedMatmulPush { A = ga.Address, W = gw.Address, Offsets = go.Address, Y = y.Address, M = (uint)m, K = (uint)k, Nout = (uint)nout, E = (uint)e },
            (long)m * nout, [ga.Range, gw.Range, go.Range], [y.Range]);
        return y;
    }

    public (Tensor GradXs, Tensor GradW) GroupedMatmulBackward(Tensor xs, Tensor w, Tensor offsets, Tensor gy)
    {
        const string op = "grouped_matmul_backward";
        var ga = G(xs, op, "xs"); var gw = G(w, op, "w"); var go = G(offsets, op, "offsets"); var gg = G(gy, op, "gy");
        var (m, k, nout, e) = OpChecks.GroupedMatmulBackward(xs, w, offsets, gy);
        var gxs = New(m, k);
        var gW = New(e, k, nout);
        Ops.Elementwise("core/grouped_matmul_backward_x",
            new GroupedMatmulPush { A = gg.Address, W = gw.Address, Offsets = go.Address, Y = gxs.Address, M = (uint)m, K = (uint)k, Nout = (uint)nout, E = (uint)e },
            (long)m * k, [gg.Range, gw.Range, go.Range], [gxs.Range]);
        Ops.Elementwise("core/grouped_matmul_backward_w",
            new GroupedMatmulPush { A = ga.Address, W = gg.Address, Offsets = go.Address, Y = gW.Address, M = (uint)m, K = (uint)k, Nout = (uint)nout, E = (uint)e },
            (long)e * k * nout, [ga.Range, gg.Range, go.Range], [gW.Range]);
        return (gxs, gW);
    }

    public Tensor MoeCombine(Tensor ys, Tensor weights, Tensor position)
    {
        const string op = "moe_combine";
        var gy = G(ys, op, "ys"); var gw = G(weights, op, "weights"); var gp = G(position, op, "position");
        var (n, c, k) = OpChecks.MoeCombine(op, ys, weights, position);
        var y = New(n, c);
        Ops.Elementwise("core/moe_combine_forward",
            new MoeCombinePush { Ys = gy.Address, Weights = gw.Address, Position = gp.Address, Y = y.Address, N = (uint)n, C = (uint)c, K = (uint)k },
            (long)n * c, [gy.Range, gw.Range, gp.Range], [y.Range]);
        return y;
    }

    public (Tensor GradYs, Tensor GradWeights) MoeCombineBackward(Tensor ys, Tensor weights, Tensor position, Tensor gy)
    {
        const string op = "moe_combine_backward";
        var gys = G(ys, op, "ys"); var gw = G(weights, op, "weights"); var gp = G(position, op, "position"); var gg = G(gy, op, "gy");
        var (n, c, k) = OpChecks.MoeCombineBackward(ys, weights, position, gy);
        int m = n * k;
        var dYs = New(m, c);
        var dW = New(n, k);
        Ops.Elementwise("core/moe_combine_backward_ys",
            new MoeCombineBackwardYsPush { Weights = gw.Address, Position = gp.Address, Gy = gg.Address, Gys = dYs.Address, M = (uint)m, C = (uint)c, K = (uint)k },
            (long)m * c, [gw.Range, gp.Range, gg.Range], [dYs.Range]);
        Ops.Elementwise("core/moe_combine_backward_weights",
            new MoeCombineBackwardWPush { Ys = gys.Address, Position = gp.Address, Gy = gg.Address, Gw = dW.Address, M = (uint)m, C = (uint)c, K = (uint)k },
            m, [gys.Range, gp.Range, gg.Range], [dW.Range]);
        return (dYs, dW);
    }
}
