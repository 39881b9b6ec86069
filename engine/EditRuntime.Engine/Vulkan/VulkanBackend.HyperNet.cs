using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// The hyper-network editors' ops (shaders/core/hypernet_*.comp, kl_divergence.comp) and the SPD solves
// (cholesky_*.comp, spd_*.comp) on Vulkan. Every kernel is deterministic: each output element is owned by one
// invocation, column and row reductions run in a fixed order, and the few scalars (the gradient of eta, the KL's
// mean over rows) go through the core Sum op.
public sealed partial class VulkanBackend : IHyperNetOps, ISpdSolveOps
{
    [StructLayout(LayoutKind.Sequential)] private struct ColumnStatsPush { public ulong X, Mean, Var; public uint Rows, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct NormalizePush { public ulong X, Mean, Std, Y; public uint N, Cols; public float Eps; public uint Mode; }
    [StructLayout(LayoutKind.Sequential)] private struct BlockForwardPush { public ulong Y, H, Bias, Scale, Shift, O; public uint N, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct BlockBackwardHPush { public ulong H, Bias, Scale, Go, Gh; public uint N, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct BlockBackwardParamsPush { public ulong H, Bias, Scale, Go, GBias, GScale, GShift; public uint Rows, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct ValueDiffPush { public ulong K, Kt, Gt, Eta, Gd, Out0, Out1, Ce; public uint Rows, Dk, Dv, Mode; }
    [StructLayout(LayoutKind.Sequential)] private struct KlPush { public ulong Ref, X, Y; public uint Rows, Cols, Mode; public float Scale; }
    [StructLayout(LayoutKind.Sequential)] private struct AddDiagonalPush { public ulong S; public uint N; public float Value; }
    [StructLayout(LayoutKind.Sequential)] private struct TrilPush { public ulong S, L; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct CholeskyPush { public ulong L; public uint N, K, B; }
    [StructLayout(LayoutKind.Sequential)] private struct SolvePush { public ulong L, X; public uint N, M, K, B, Mode; }

    /// <summary>The block size of the blocked Cholesky and solves (the shaders hold a block of 32 × 32).</summary>
    private const int SpdBlock = 32;

    public (Tensor Mean, Tensor Var) ColumnMeanVar(Tensor x)
    {
        var gx = G(x, "column_mean_var", "x");
        var (n, d) = OpChecks.ColumnMeanVar(x);
        var mean = New(d);
        var var_ = New(d);
        Ops.Elementwise("core/hypernet_column_mean_var", new ColumnStatsPush { X = gx.Address, Mean = mean.Address, Var = var_.Address, Rows = (uint)n, Cols = (uint)d },
            d, [gx.Range], [mean.Range, var_.Range]);
        return (mean, var_);
    }

    public Tensor Normalize(Tensor x, Tensor mean, Tensor std, float eps)
    {
        const string op = "normalize";
        var (gx, gm, gs) = (G(x, op, "x"), G(mean, op, "mean"), G(std, op, "std"));
        var (_, d) = OpChecks.Normalize(x, mean, std, eps);
        var y = New(x.Shape);
        Ops.Elementwise("core/hypernet_normalize", new NormalizePush { X = gx.Address, Mean = gm.Address, Std = gs.Address, Y = y.Address, N = (uint)x.Count, Cols = (uint)d, Eps = eps, Mode = 0 },
            x.Count, [gx.Range, gm.Range, gs.Range], [y.Range]);
        return y;
    }

    public Tensor NormalizeBackward(Tensor gy, Tensor std, float eps)
    {
        const string op = "normalize_backward";
        var (gg, gs) = (G(gy, op, "gy"), G(std, op, "std"));
        var (_, d) = OpChecks.NormalizeBackward(gy, std, eps);
        var gx = New(gy.Shape);
        Ops.Elementwise("core/hypernet_normalize", new NormalizePush { X = gg.Address, Mean = gs.Address, Std = gs.Address, Y = gx.Address, N = (uint)gy.Count, Cols = (uint)d, Eps = eps, Mode = 1 },
            gy.Count, [gg.Range, gs.Range], [gx.Range]);
        return gx;
    }

    public Tensor HyperBlockActivation(Tensor y, Tensor h, Tensor bias, Tensor scale, Tensor shift)
    {
        const string op = "hyper_block_activation";
        var (gy, gh, gb, gsc, gsh) = (G(y, op, "y"), G(h, op, "h"), G(bias, op, "bias"), G(scale, op, "scale"), G(shift, op, "shift"));
        var (_, d) = OpChecks.HyperBlockActivation(y, h, bias, scale, shift);
        var o = New(y.Shape);
        Ops.Elementwise("core/hypernet_block_forward",
            new BlockForwardPush { Y = gy.Address, H = gh.Address, Bias = gb.Address, Scale = gsc.Address, Shift = gsh.Address, O = o.Address, N = (uint)y.Count, Cols = (uint)d },
            y.Count, [gy.Range, gh.Range, gb.Range, gsc.Range, gsh.Range], [o.Range]);
        return o;
    }

    public (Tensor GradH, Tensor GradBias, Tensor GradScale, Tensor GradShift) HyperBlockActivationBackward(Tensor h, Tensor bias, Tensor scale, Tensor go)
    {
        const string op = "hyper_block_activation_backward";
        var (gh, gb, gsc, gg) = (G(h, op, "h"), G(bias, op, "bias"), G(scale, op, "scale"), G(go, op, "go"));
        var (n, d) = OpChecks.HyperBlockActivationBackward(h, bias, scale, go);
        var dh = New(n, d);
        var db = New(d); var ds = New(d); var dt = New(d);
        Ops.Elementwise("core/hypernet_block_backward_h",
            new BlockBackwardHPush { H = gh.Address, Bias = gb.Address, Scale = gsc.Address, Go = gg.Address, Gh = dh.Address, N = (uint)h.Count, Cols = (uint)d },
            h.Count, [gh.Range, gb.Range, gsc.Range, gg.Range], [dh.Range]);
        Ops.Elementwise("core/hypernet_block_backward_params",
            new BlockBackwardParamsPush { H = gh.Address, Bias = gb.Address, Scale = gsc.Address, Go = gg.Address, GBias = db.Address, GScale = ds.Address, GShift = dt.Address, Rows = (uint)n, Cols = (uint)d },
            d, [gh.Range, gb.Range, gsc.Range, gg.Range], [db.Range, ds.Range, dt.Range]);
        return (dh, db, ds, dt);
    }

    public Tensor ValueDiff(Tensor k, Tensor kt, Tensor gt, Tensor eta)
    {
        const string op = "value_diff";
        var (gk, gkt, ggt, ge) = (G(k, op, "k"), G(kt, op, "kt"), G(gt, op, "gt"), G(eta, op, "eta"));
        var (n, dk, dv) = OpChecks.ValueDiff(k, kt, gt, eta);
        var d = New(n, dv);
        Ops.Groups(Device.Kernels.Get("core/hypernet_value_diff", RowThreadsFor(Math.Max(dk, dv))),
            new ValueDiffPush { K = gk.Address, Kt = gkt.Address, Gt = ggt.Address, Eta = ge.Address, Gd = ggt.Address, Out0 = d.Address, Out1 = d.Address, Ce = d.Address,
                Rows = (uint)n, Dk = (uint)dk, Dv = (uint)dv, Mode = 0 },
            n, [gk.Range, gkt.Range, ggt.Range, ge.Range], [d.Range]);
        return d;
    }

    public (Tensor GradKt, Tensor GradGt, Tensor GradEta) ValueDiffBackward(Tensor k, Tensor kt, Tensor gt, Tensor eta, Tensor gd)
    {
        const string op = "value_diff_backward";
        var (gk, gkt, ggt, ge, gg) = (G(k, op, "k"), G(kt, op, "kt"), G(gt, op, "gt"), G(eta, op, "eta"), G(gd, op, "gd"));
        var (n, dk, dv) = OpChecks.ValueDiffBackward(k, kt, gt, eta, gd);
        var dkt = New(n, dk);
        var dgt = New(n, dv);
        using var ce = New(n);
        Ops.Groups(Device.Kernels.Get("core/hypernet_value_diff", RowThreadsFor(Math.Max(dk, dv))),
            new ValueDiffPush { K = gk.Address, Kt = gkt.Address, Gt = ggt.Address, Eta = ge.Address, Gd = gg.Address, Out0 = dkt.Address, Out1 = dgt.Address, Ce = ce.Address,
                Rows = (uint)n, Dk = (uint)dk, Dv = (uint)dv, Mode = 1 },
            n, [gk.Range, gkt.Range, ggt.Range, ge.Range, gg.Range], [dkt.Range, dgt.Range, ce.Range]);
        using var sum = New(1);
        Ops.Sum(ce, sum);
        var deta = New(1);
        Ops.Scale(sum, -1f, deta);
        return (dkt, dgt, deta);
    }

    public Tensor KlDivergence(Tensor refLogits, Tensor logits)
    {
        const string op = "kl_divergence";
        var (gr, gl) = (G(refLogits, op, "refLogits"), G(logits, op, "logits"));
        var (n, v) = OpChecks.KlDivergence(refLogits, logits);
        using var rows = New(n);
        Ops.Groups(Device.Kernels.Get("core/kl_divergence", RowThreadsFor(v)),
            new KlPush { Ref = gr.Address, X = gl.Address, Y = rows.Address, Rows = (uint)n, Cols = (uint)v, Mode = 0, Scale = 1 },
            n, [gr.Range, gl.Range], [rows.Range]);
        using var sum = New(1);
        Ops.Sum(rows, sum);
        var y = New(1);
        Ops.Scale(sum, 1f / n, y);
        return y;
    }

    public Tensor KlDivergenceBackward(Tensor refLogits, Tensor logits, Tensor gy)
    {
        const string op = "kl_divergence_backward";
        var (gr, gl, gg) = (G(refLogits, op, "refLogits"), G(logits, op, "logits"), G(gy, op, "gy"));
        var (n, v) = OpChecks.KlDivergenceBackward(refLogits, logits, gy);
        // The scale dL/dy / N is one float on the device: read it back (a 4-byte wait) rather than add a broadcast input.
        float scale = ToFloatArray(gy)[0] / n;
        var g = New(n, v);
        Ops.Groups(Device.Kernels.Get("core/kl_divergence", RowThreadsFor(v)),
            new KlPush { Ref = gr.Address, X = gl.Address, Y = g.Address, Rows = (uint)n, Cols = (uint)v, Mode = 1, Scale = scale },
            n, [gr.Range, gl.Range], [g.Range]);
        return g;
    }

    // ---------------------------------------------------------------- SPD systems

    public void AddDiagonal(Tensor s, float value)
    {
        var gs = G(s, "add_diagonal", "s");
        int n = OpChecks.AddDiagonal(s, value);
        Ops.Elementwise("core/spd_add_diagonal", new AddDiagonalPush { S = gs.Address, N = (uint)n, Value = value }, n, [gs.Range], [gs.Range]);
    }

    /// <summary>Right-looking blocked Cholesky: per block column, the diagonal block in one workgroup, the panel below it
    /// (a triangular solve per row), then the trailing lower matrix minus the panel's outer product (16 × 16 tiles).</summary>
    public Tensor CholeskyFactor(Tensor s)
    {
        var gs = G(s, "cholesky_factor", "s");
        int n = OpChecks.CholeskyFactor(s);
        var l = New(n, n);
        Ops.Elementwise("core/cholesky_tril", new TrilPush { S = gs.Address, L = l.Address, N = (uint)n }, (long)n * n, [gs.Range], [l.Range]);
        var diag = Device.Kernels.Get("core/cholesky_diag");
        var panel = Device.Kernels.Get("core/cholesky_panel");
        var update = Device.Kernels.Get("core/cholesky_update");
        for (int k = 0; k < n; k += SpdBlock)
        {
            int b = Math.Min(SpdBlock, n - k), rest = n - k - b;
            var push = new CholeskyPush { L = l.Address, N = (uint)n, K = (uint)k, B = (uint)b };
            Device.Stream.Dispatch(diag, push, 1, 1, 1, [l.Range], [l.Range]);
            if (rest == 0) break;
            Ops.Elementwise(panel, push, rest, [l.Range], [l.Range]);
            uint tiles = (uint)((rest + 15) / 16);
            Device.Stream.Dispatch(update, push, tiles, tiles, 1, [l.Range], [l.Range]);
        }
        return l;
    }

    /// <summary>L·Lᵀ·X = B: blocked forward substitution (each block: the rows above subtracted, then the block's
    /// triangle per column), then the same backwards with Lᵀ.</summary>
    public Tensor CholeskySolve(Tensor l, Tensor b)
    {
        const string op = "cholesky_solve";
        var (gl, gb) = (G(l, op, "l"), G(b, op, "b"));
        var (n, m) = OpChecks.CholeskySolve(l, b);
        var x = New(n, m);
        Ops.Copy(gb, x);
        var update = Device.Kernels.Get("core/spd_solve_update");
        var diag = Device.Kernels.Get("core/spd_solve_diag");
        int blocks = (n + SpdBlock - 1) / SpdBlock;
        for (int q = 0; q < 2 * blocks; q++)
        {
            bool backward = q >= blocks;
            int blk = backward ? 2 * blocks - 1 - q : q;
            int k = blk * SpdBlock, bs = Math.Min(SpdBlock, n - k);
            var push = new SolvePush { L = gl.Address, X = x.Address, N = (uint)n, M = (uint)m, K = (uint)k, B = (uint)bs, Mode = backward ? 1u : 0u };
            bool hasRest = backward ? k + bs < n : k > 0;
            if (hasRest) Ops.Elementwise(update, push, (long)bs * m, [gl.Range, x.Range], [x.Range]);
            Ops.Elementwise(diag, push, m, [gl.Range, x.Range], [x.Range]);
        }
        return x;
    }
}
