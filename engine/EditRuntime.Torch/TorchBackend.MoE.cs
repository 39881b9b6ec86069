using EditRuntime.Backends;

namespace EditRuntime.Torch;

// Mixture-of-experts ops on libtorch (native/editrt_torch_moe.h): the reference for the Vulkan kernels.
// Arguments are checked by OpChecks, shared with the Vulkan backend; backward ops are torch's autograd over
// the rebuilt forward.
public sealed unsafe partial class TorchBackend
{
    /// <summary>Wraps several outputs of mixed dtypes; if one fails, frees all of them.</summary>
    private TorchTensor[] WrapMixed(string op, params (TorchHandle Handle, DType DType, int[] Shape)[] outs)
    {
        var r = new TorchTensor[outs.Length];
        int i = 0;
        try
        {
            for (; i < outs.Length; i++) r[i] = Wrap(outs[i].Handle, op, outs[i].DType, outs[i].Shape);
            return r;
        }
        catch
        {
            for (int j = 0; j < i; j++) r[j].Dispose();
            for (int j = i + 1; j < outs.Length; j++) outs[j].Handle.Dispose();
            throw;
        }
    }

    public (Tensor Weights, Tensor Indices) MoeGateTopK(Tensor logits, int k)
    {
        const string op = "moe_gate_topk";
        var tl = T(logits, op, "logits");
        var (n, _) = OpChecks.MoeGateTopK(logits, k);
        Check(Native.et_moe_gate_topk(tl.Handle, k, out var w, out var idx), op);
        var r = WrapMixed(op, (w, DType.F32, [n, k]), (idx, DType.I32, [n, k]));
        return (r[0], r[1]);
    }

    public Tensor MoeGateTopKBackward(Tensor logits, int k, Tensor gWeights)
    {
        const string op = "moe_gate_topk_backward";
        var tl = T(logits, op, "logits");
        var tg = T(gWeights, op, "gWeights");
        OpChecks.MoeGateTopKBackward(logits, k, gWeights);
        Check(Native.et_moe_gate_topk_backward(tl.Handle, k, tg.Handle, out var h), op);
        return Wrap(h, op, DType.F32, logits.Shape);
    }

    public (Tensor Order, Tensor Position, Tensor Offsets) MoeRoute(Tensor indices, int experts)
    {
        const string op = "moe_route";
        var ti = T(indices, op, "indices");
        int m = OpChecks.MoeRoute(indices, experts);
        Check(Native.et_moe_route(ti.Handle, experts, out var o, out var p, out var off), op);
        var r = WrapMixed(op, (o, DType.I32, [m]), (p, DType.I32, [m]), (off, DType.I32, [experts + 1]));
        return (r[0], r[1], r[2]);
    }

    public Tensor MoeDispatch(Tensor x, Tensor order, int k)
    {
        const string op = "moe_dispatch";
        var tx = T(x, op, "x");
        var to = T(order, op, "order");
        var (_, c, m) = OpChecks.MoeDispatch(x, order, k);
        Check(Native.et_moe_dispatch(tx.Handle, to.Handle, k, out var h), op);
        return Wrap(h, op, DType.F32, [m, c]);
    }

    public Tensor MoeDispatchBackward(Tensor position, Tensor gxs, int k)
    {
        const string op = "moe_dispatch_backward";
        var tp = T(position, op, "position");
        var tg = T(gxs, op, "gxs");
        var (_, c, n) = OpChecks.MoeDispatchBackward(position, gxs, k);
        Check(Native.et_moe_dispatch_backward(tp.Handle, tg.Handle, k, out var h), op);
        return Wrap(h, op, DType.F32, [n, c]);
    }

    public Tensor GroupedMatmul(Tensor xs, Tensor w, Tensor offsets)
    {
        const string op = "grouped_matmul";
        var tx = T(xs, op, "xs"); var tw = T(w, op, "w"); var to = T(offsets, op, "offsets");
        var (m, _, nout, _) = OpChecks.GroupedMatmul(op, xs, w, offsets);
        CheckArgument(Native.et_grouped_matmul(tx.Handle, tw.Handle, to.Handle, out var h), op, $"{op}: offsets", nameof(offsets));
        return Wrap(h, op, DType.F32, [m, nout]);
    }

    public (Tensor GradXs, Tensor GradW) GroupedMatmulBackward(Tensor xs, Tensor w, Tensor offsets, Tensor gy)
    {
        const string op = "grouped_matmul_backward";
        var tx = T(xs, op, "xs"); var tw = T(w, op, "w"); var to = T(offsets, op, "offsets"); var tg = T(gy, op, "gy");
        OpChecks.GroupedMatmulBackward(xs, w, offsets, gy);
        CheckArgument(Native.et_grouped_matmul_backward(tx.Handle, tw.Handle, to.Handle, tg.Handle, out var gx, out var gw), op, $"{op}: offsets", nameof(offsets));
        var r = WrapMixed(op, (gx, DType.F32, xs.Shape), (gw, DType.F32, w.Shape));
        return (r[0], r[1]);
    }

    public Tensor MoeCombine(Tensor ys, Tensor weights, Tensor position)
    {
        const string op = "moe_combine";
        var ty = T(ys, op, "ys"); var tw = T(weights, op, "weights"); var tp = T(position, op, "position");
        var (n, c, _) = OpChecks.MoeCombine(op, ys, weights, position);
        Check(Native.et_moe_combine(ty.Handle, tw.Handle, tp.Handle, out var h), op);
        return Wrap(h, op, DType.F32, [n, c]);
    }

    public (Tensor GradYs, Tensor GradWeights) MoeCombineBackward(Tensor ys, Tensor weights, Tensor position, Tensor gy)
    {
        const string op = "moe_combine_backward";
        var ty = T(ys, op, "ys"); var tw = T(weights, op, "weights"); var tp = T(position, op, "position"); var tg = T(gy, op, "gy");
        OpChecks.MoeCombineBackward(ys, weights, position, gy);
        Check(Native.et_moe_combine_backward(ty.Handle, tw.Handle, tp.Handle, tg.Handle, out var gys, out var gw), op);
        var r = WrapMixed(op, (gys, DType.F32, ys.Shape), (gw, DType.F32, weights.Shape));
        return (r[0], r[1]);
    }
}
