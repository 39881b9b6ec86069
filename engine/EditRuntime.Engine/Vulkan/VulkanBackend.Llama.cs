using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// The LLaMA-family ops (ILlamaOps) on Vulkan: RMSNorm (shaders/core/rms_norm_*.comp, one workgroup per row as LayerNorm,
// the weight gradient by deterministic column sums), rotary position embedding (rope_*.comp, one invocation per pair,
// cos/sin by our own range reduction and polynomials in rope.glsl) and SwiGLU's gated product (silu_mul_*.comp).
public sealed partial class VulkanBackend : ILlamaOps
{
    [StructLayout(LayoutKind.Sequential)] private struct RmsNormPush { public ulong X, Weight, Y; public uint Rows, Cols; public float Eps; }
    [StructLayout(LayoutKind.Sequential)] private struct RmsNormBackwardPush { public ulong X, Weight, Gy, Gx, Rstd; public uint Rows, Cols; public float Eps; }
    [StructLayout(LayoutKind.Sequential)] private struct RmsNormWeightPush { public ulong X, Gy, Rstd, PWeight; public uint Rows, Cols, RowsPerChunk; }
    [StructLayout(LayoutKind.Sequential)] private struct RopePush { public ulong X, InvFreq, Offsets, Y; public uint Pairs, HalfD, T, H; public int Start; public uint HasOffsets; }
    [StructLayout(LayoutKind.Sequential)] private struct SiluMulPush { public ulong Gate, Up, Y; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct SiluMulBackwardPush { public ulong Gate, Up, Gy, GGate, GUp; public uint N; }

    // ---------------------------------------------------------------- RMSNorm

    public Tensor RmsNorm(Tensor x, Tensor weight, float eps = 1e-6f)
    {
        const string op = "rms_norm";
        var xt = G(x, op, "x"); var wt = G(weight, op, "weight");
        var (rows, cols) = OpChecks.RmsNorm(op, x, weight, eps);
        var y = New(x.Shape);
        if (cols > 0)
            DispatchRows("core/rms_norm_forward",
                new RmsNormPush { X = xt.Address, Weight = wt.Address, Y = y.Address, Rows = (uint)rows, Cols = (uint)cols, Eps = eps },
                rows, cols, [xt.Range, wt.Range], [y.Range]);
        return y;
    }

    public (Tensor GradX, Tensor GradWeight) RmsNormBackward(Tensor x, Tensor weight, Tensor gy, float eps = 1e-6f)
    {
        const string op = "rms_norm_backward";
        var xt = G(x, op, "x"); var wt = G(weight, op, "weight"); var gyt = G(gy, op, "gy");
        var (rows, cols) = OpChecks.RmsNormBackward(x, weight, gy, eps);
        var gradX = New(x.Shape);
        var gradW = New(cols);
        if (cols == 0) return (gradX, gradW);
        try
        {
            if (rows == 0) { Ops.Fill(gradW, 0f); return (gradX, gradW); }
            // Per row: gx, and rstd for the weight gradient.
            using var rstd = new GpuTensor(Device, rows);
            DispatchRows("core/rms_norm_backward",
                new RmsNormBackwardPush { X = xt.Address, Weight = wt.Address, Gy = gyt.Address, Gx = gradX.Address, Rstd = rstd.Address, Rows = (uint)rows, Cols = (uint)cols, Eps = eps },
                rows, cols, [xt.Range, wt.Range, gyt.Range], [gradX.Range, rstd.Range]);

            // Per column: Σ gy·x̂ over chunks of rows, then the chunks' partials added.
            var (chunks, per) = ColumnChunks(rows);
            using var partial = chunks > 1 ? new GpuTensor(Device, chunks, cols) : null;
            var outW = partial ?? gradW;
            var (cx, cy) = ColumnGrid(cols);
            Device.Stream.Dispatch(Device.Kernels.Get("core/rms_norm_backward_weight"),
                new RmsNormWeightPush { X = xt.Address, Gy = gyt.Address, Rstd = rstd.Address, PWeight = outW.Address, Rows = (uint)rows, Cols = (uint)cols, RowsPerChunk = (uint)per },
                cx, cy, (uint)chunks, [xt.Range, gyt.Range, rstd.Range], [outW.Range]);
            if (partial != null) ColSum(partial, chunks, cols, gradW);
            return (gradX, gradW);
        }
        catch { gradX.Dispose(); gradW.Dispose(); throw; }
    }

    // ---------------------------------------------------------------- rotary position embedding

    public Tensor Rope(Tensor x, Tensor invFreq, int start, Tensor? positionOffsets = null) =>
        RopeRotate("rope", "x", "core/rope_forward", x, invFreq, start, positionOffsets);

    public Tensor RopeBackward(Tensor invFreq, Tensor gy, int start, Tensor? positionOffsets = null) =>
        RopeRotate("rope_backward", "gy", "core/rope_backward", gy, invFreq, start, positionOffsets);

    /// <summary>The rotation of <paramref name="x"/> by +θ (rope_forward) or −θ (rope_backward): one invocation per pair.</summary>
    private Tensor RopeRotate(string op, string arg, string shader, Tensor x, Tensor invFreq, int start, Tensor? positionOffsets)
    {
        var xt = G(x, op, arg); var ft = G(invFreq, op, "invFreq");
        var ot = positionOffsets is null ? null : G(positionOffsets, op, "positionOffsets");
        var (_, H, T, D) = OpChecks.Rope(op, arg, x, invFreq, start, positionOffsets);
        var y = New(x.Shape);
        long pairs = x.Count / 2;
        if (pairs == 0) return y;
        var push = new RopePush
        {
            X = xt.Address, InvFreq = ft.Address, Offsets = ot?.Address ?? ft.Address, Y = y.Address,
            Pairs = (uint)pairs, HalfD = (uint)(D / 2), T = (uint)T, H = (uint)H, Start = start, HasOffsets = ot is null ? 0u : 1u,
        };
        if (ot is null) Ops.Elementwise(shader, push, pairs, [xt.Range, ft.Range], [y.Range]);
        else Ops.Elementwise(shader, push, pairs, [xt.Range, ft.Range, ot.Range], [y.Range]);
        return y;
    }

    // ---------------------------------------------------------------- SwiGLU's gated product

    public Tensor SiluMul(Tensor gate, Tensor up)
    {
        const string op = "silu_mul";
        var gt = G(gate, op, "gate"); var ut = G(up, op, "up");
        OpChecks.SiluMul(op, gate, up);
        var y = New(gate.Shape);
        Ops.Elementwise("core/silu_mul_forward", new SiluMulPush { Gate = gt.Address, Up = ut.Address, Y = y.Address, N = (uint)gate.Count },
            gate.Count, [gt.Range, ut.Range], [y.Range]);
        return y;
    }

    public (Tensor GradGate, Tensor GradUp) SiluMulBackward(Tensor gate, Tensor up, Tensor gy)
    {
        const string op = "silu_mul_backward";
        var gt = G(gate, op, "gate"); var ut = G(up, op, "up"); var gyt = G(gy, op, "gy");
        OpChecks.SiluMulBackward(gate, up, gy);
        var gGate = New(gate.Shape);
        var gUp = New(gate.Shape);
        Ops.Elementwise("core/silu_mul_backward",
            new SiluMulBackwardPush { Gate = gt.Address, Up = ut.Address, Gy = gyt.Address, GGate = gGate.Address, GUp = gUp.Address, N = (uint)gate.Count },
            gate.Count, [gt.Range, ut.Range, gyt.Range], [gGate.Range, gUp.Range]);
        return (gGate, gUp);
    }
}
