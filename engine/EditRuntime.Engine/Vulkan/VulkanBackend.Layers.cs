using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

// Bias add, GELU, LayerNorm, softmax and the Adam step on Vulkan (shaders/core/*.comp).
// Row ops (LayerNorm, softmax) give one workgroup to each row; column sums (bias, gamma and beta
// gradients) use col_sum-style kernels that are deterministic: no atomics, fixed summation order.
public sealed partial class VulkanBackend
{
    // ---- push-constant mirrors (checked against the SPIR-V block, member by member, at their first dispatch)
    [StructLayout(LayoutKind.Sequential)] private struct BiasAddPush { public ulong X, Bias, Y; public uint N, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct ColSumPush { public ulong X, Y; public uint Rows, Cols, RowsPerChunk; }
    [StructLayout(LayoutKind.Sequential)] private struct GeluPush { public ulong X, Y; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct GeluBackwardPush { public ulong X, Gy, Gx; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct LayerNormPush { public ulong X, Gamma, Beta, Y; public uint Rows, Cols; public float Eps; }
    [StructLayout(LayoutKind.Sequential)] private struct LayerNormBackwardPush { public ulong X, Gamma, Gy, Gx, Stats; public uint Rows, Cols; public float Eps; }
    [StructLayout(LayoutKind.Sequential)] private struct LayerNormParamsPush { public ulong X, Gy, Stats, PGamma, PBeta; public uint Rows, Cols, RowsPerChunk; }
    [StructLayout(LayoutKind.Sequential)] private struct SoftmaxPush { public ulong X, Y; public uint Rows, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct SoftmaxBackwardPush { public ulong X, Gy, Gx; public uint Rows, Cols; }
    [StructLayout(LayoutKind.Sequential)]
    private struct AdamPush
    {
        public ulong P, G, M, V;
        public uint N;
        public float Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Eps, WeightDecay, Decay, StepSize, Bc2Sqrt;
    }

    /// <summary>Columns per col_sum workgroup (local_size_x in col_sum.comp and layernorm_backward_params.comp).</summary>
    private const int ColumnsPerGroup = 32;
    /// <summary>A column reduction splits its rows into chunks of at least this many rows ...</summary>
    private const int MinRowsPerChunk = 256;
    /// <summary>... and at most this many chunks (also ≤ the device's z limit, at least 65535).</summary>
    private const int MaxChunks = 64;

    private int? _maxRowThreads;

    /// <summary>
    /// Most invocations a row op (LayerNorm, softmax) gives one row; the kernels use the smallest
    /// power of two ≥ C/8, at least 8, up to this. Defaults: 32 on a CPU device (lavapipe runs a
    /// workgroup's invocations one SIMD batch after another, so idle ones cost time; at C = 768,
    /// 16–32 were the fastest), 256 on a GPU. A power of two in [1, 1024].
    /// </summary>
    public int MaxRowThreads
    {
        get => _maxRowThreads ?? (Device.Info.IsCpu ? 32 : 256);
        set
        {
            if (value < 1 || value > 1024 || (value & (value - 1)) != 0)
                throw new ArgumentException($"MaxRowThreads must be a power of two in [1, 1024], got {value}.");
            _maxRowThreads = value;
        }
    }

    /// <summary>Invocations per row for rows of <paramref name="cols"/> elements (specialization constant 0 of the row kernels).</summary>
    public uint RowThreadsFor(int cols)
    {
        uint t = 8;
        while (t * 8 < (uint)cols && t < 1024) t *= 2;
        return (uint)Math.Min(t, MaxRowThreads);
    }

    // ---------------------------------------------------------------- dispatch helpers

    /// <summary>One workgroup of <see cref="RowThreadsFor"/> invocations per row, over the x/y grid (the shaders skip the grid's spare groups).</summary>
    private void DispatchRows<T>(string shader, in T push, int rows, int cols, ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes) where T : unmanaged
    {
        if (rows == 0) return;
        Ops.Groups(Device.Kernels.Get(shader, RowThreadsFor(cols)), push, rows, reads, writes);
    }

    /// <summary>
    /// How a column reduction over <paramref name="rows"/> rows is split: chunks of rows reduced in
    /// parallel (grid z), whose partials a second pass adds. No rows: one empty chunk (writes zeros).
    /// </summary>
    private static (int Chunks, int RowsPerChunk) ColumnChunks(int rows)
    {
        if (rows == 0) return (1, 1);
        int chunks = Math.Clamp((rows + MinRowsPerChunk - 1) / MinRowsPerChunk, 1, MaxChunks);
        int per = (rows + chunks - 1) / chunks;
        return ((rows + per - 1) / per, per);
    }

    /// <summary>Workgroups (x, y) covering <paramref name="cols"/> columns, 32 per group.</summary>
    private (uint X, uint Y) ColumnGrid(int cols) => Ops.Grid((cols + ColumnsPerGroup - 1) / ColumnsPerGroup);

    /// <summary>y[c] = Σ_r x[r, c] for x viewed as (rows, cols), y of cols elements. Deterministic.</summary>
    private void ColSum(GpuTensor x, int rows, int cols, GpuTensor y)
    {
        if ((long)rows * cols != x.Count || y.Count != cols)
            throw new ArgumentException($"col_sum: {x} is not ({rows}, {cols}) or {y} does not have {cols} elements.");
        if (cols == 0) return;
        var (chunks, per) = ColumnChunks(rows);
        if (chunks == 1)
        {
            ColSumPass(x, rows, cols, per, 1, y);
            return;
        }
        using var partial = new GpuTensor(Device, chunks, cols);
        ColSumPass(x, rows, cols, per, chunks, partial);
        ColSumPass(partial, chunks, cols, chunks, 1, y);
    }

    private void ColSumPass(GpuTensor x, int rows, int cols, int rowsPerChunk, int chunks, GpuTensor y)
    {
        var (wx, wy) = ColumnGrid(cols);
        Device.Stream.Dispatch(Device.Kernels.Get("core/col_sum"),
            new ColSumPush { X = x.Address, Y = y.Address, Rows = (uint)rows, Cols = (uint)cols, RowsPerChunk = (uint)rowsPerChunk },
            wx, wy, (uint)chunks, [x.Range], [y.Range]);
    }

    // ---------------------------------------------------------------- bias add

    public Tensor BiasAdd(Tensor x, Tensor bias)
    {
        const string op = "bias_add";
        var xt = G(x, op, "x"); var bt = G(bias, op, "bias");
        var (_, cols) = OpChecks.BiasAdd(op, x, bias);
        var y = New(x.Shape);
        Ops.Elementwise("core/bias_add", new BiasAddPush { X = xt.Address, Bias = bt.Address, Y = y.Address, N = (uint)x.Count, Cols = (uint)cols },
            x.Count, [xt.Range, bt.Range], [y.Range]);
        return y;
    }

    public (Tensor GradX, Tensor GradBias) BiasAddBackward(Tensor x, Tensor bias, Tensor gy)
    {
        const string op = "bias_add_backward";
        G(x, op, "x"); G(bias, op, "bias");
        var gyt = G(gy, op, "gy");
        var (rows, cols) = OpChecks.BiasAddBackward(x, bias, gy);
        var gradX = New(x.Shape);
        if (x.Count > 0) Ops.Copy(gyt, gradX);
        var gradBias = New(cols);
        try { ColSum(gyt, rows, cols, gradBias); }
        catch { gradX.Dispose(); gradBias.Dispose(); throw; }
        return (gradX, gradBias);
    }

    // ---------------------------------------------------------------- GELU

    public Tensor Gelu(Tensor x)
    {
        var xt = G(x, "gelu", "x");
        OpChecks.Unary("gelu", x);
        var y = New(x.Shape);
        Ops.Elementwise("core/gelu_forward", new GeluPush { X = xt.Address, Y = y.Address, N = (uint)x.Count }, x.Count, [xt.Range], [y.Range]);
        return y;
    }

    public Tensor GeluBackward(Tensor x, Tensor gy)
    {
        const string op = "gelu_backward";
        var xt = G(x, op, "x"); var gyt = G(gy, op, "gy");
        OpChecks.GeluBackward(x, gy);
        var grad = New(x.Shape);
        Ops.Elementwise("core/gelu_backward", new GeluBackwardPush { X = xt.Address, Gy = gyt.Address, Gx = grad.Address, N = (uint)x.Count },
            x.Count, [xt.Range, gyt.Range], [grad.Range]);
        return grad;
    }

    // ---------------------------------------------------------------- LayerNorm

    public Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta, float eps = 1e-5f)
    {
        const string op = "layernorm";
        var xt = G(x, op, "x"); var gt = G(gamma, op, "gamma"); var bt = G(beta, op, "beta");
        var (rows, cols) = OpChecks.LayerNorm(op, x, gamma, beta, eps);
        var y = New(x.Shape);
        if (cols > 0)
            DispatchRows("core/layernorm_forward",
                new LayerNormPush { X = xt.Address, Gamma = gt.Address, Beta = bt.Address, Y = y.Address, Rows = (uint)rows, Cols = (uint)cols, Eps = eps },
                rows, cols, [xt.Range, gt.Range, bt.Range], [y.Range]);
        return y;
    }

    public (Tensor GradX, Tensor GradGamma, Tensor GradBeta) LayerNormBackward(Tensor x, Tensor gamma, Tensor beta, Tensor gy, float eps = 1e-5f)
    {
        const string op = "layernorm_backward";
        var xt = G(x, op, "x"); var gt = G(gamma, op, "gamma"); G(beta, op, "beta"); var gyt = G(gy, op, "gy");
        var (rows, cols) = OpChecks.LayerNormBackward(x, gamma, beta, gy, eps);
        var gradX = New(x.Shape);
        var gradGamma = New(cols);
        var gradBeta = New(cols);
        if (cols == 0) return (gradX, gradGamma, gradBeta);

        // Per row: gx, and (shift, corr, rstd) for the parameter gradients.
        using var stats = new GpuTensor(Device, Math.Max(rows, 1), 3);
        DispatchRows("core/layernorm_backward",
            new LayerNormBackwardPush { X = xt.Address, Gamma = gt.Address, Gy = gyt.Address, Gx = gradX.Address, Stats = stats.Address, Rows = (uint)rows, Cols = (uint)cols, Eps = eps },
            rows, cols, [xt.Range, gt.Range, gyt.Range], [gradX.Range, stats.Range]);

        // Per column: Σ gy·x̂ and Σ gy over chunks of rows, then the chunks' partials added.
        var (chunks, per) = ColumnChunks(rows);
        GpuTensor? pg = null, pb = null;
        if (chunks > 1) { pg = new GpuTensor(Device, chunks, cols); pb = new GpuTensor(Device, chunks, cols); }
        var outG = pg ?? gradGamma; var outB = pb ?? gradBeta;
        var (cx, cy) = ColumnGrid(cols);
        Device.Stream.Dispatch(Device.Kernels.Get("core/layernorm_backward_params"),
            new LayerNormParamsPush { X = xt.Address, Gy = gyt.Address, Stats = stats.Address, PGamma = outG.Address, PBeta = outB.Address, Rows = (uint)rows, Cols = (uint)cols, RowsPerChunk = (uint)per },
            cx, cy, (uint)chunks, [xt.Range, gyt.Range, stats.Range], [outG.Range, outB.Range]);
        if (pg != null && pb != null)
        {
            ColSum(pg, chunks, cols, gradGamma);
            ColSum(pb, chunks, cols, gradBeta);
            pg.Dispose(); pb.Dispose();
        }
        return (gradX, gradGamma, gradBeta);
    }

    // ---------------------------------------------------------------- softmax

    public Tensor Softmax(Tensor x)
    {
        const string op = "softmax";
        var xt = G(x, op, "x");
        var (rows, cols) = OpChecks.Softmax(op, x);
        var y = New(x.Shape);
        if (cols > 0)
            DispatchRows("core/softmax_forward", new SoftmaxPush { X = xt.Address, Y = y.Address, Rows = (uint)rows, Cols = (uint)cols },
                rows, cols, [xt.Range], [y.Range]);
        return y;
    }

    public Tensor SoftmaxBackward(Tensor x, Tensor gy)
    {
        const string op = "softmax_backward";
        var xt = G(x, op, "x"); var gyt = G(gy, op, "gy");
        var (rows, cols) = OpChecks.SoftmaxBackward(x, gy);
        var grad = New(x.Shape);
        if (cols > 0)
            DispatchRows("core/softmax_backward", new SoftmaxBackwardPush { X = xt.Address, Gy = gyt.Address, Gx = grad.Address, Rows = (uint)rows, Cols = (uint)cols },
                rows, cols, [xt.Range, gyt.Range], [grad.Range]);
        return grad;
    }

    // ---------------------------------------------------------------- Adam

    public void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamConfig config, int step)
    {
        const string op = "adam_step";
        var pt = G(param, op, "param"); var gt = G(grad, op, "grad"); var mt = G(m, op, "m"); var vt = G(v, op, "v");
        OpChecks.AdamStep(param, grad, m, v, config, step);
        var c = config;
        if (param.Count == 0) return;

        // As PyTorch: bias corrections, step size and the decoupled decay factor in double.
        double lr = c.LearningRate, b1 = c.Beta1, b2 = c.Beta2, wd = c.WeightDecay;
        double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
        var push = new AdamPush
        {
            P = pt.Address, G = gt.Address, M = mt.Address, V = vt.Address, N = (uint)param.Count,
            Beta1 = c.Beta1, OneMinusBeta1 = (float)(1 - b1), Beta2 = c.Beta2, OneMinusBeta2 = (float)(1 - b2), Eps = c.Epsilon,
            WeightDecay = c.Decoupled ? 0f : c.WeightDecay,
            Decay = c.Decoupled ? (float)(1 - lr * wd) : 1f,
            StepSize = (float)(lr / bc1),
            Bc2Sqrt = (float)Math.Sqrt(bc2),
        };
        Ops.Elementwise("core/adam_step", push, param.Count, [pt.Range, gt.Range, mt.Range, vt.Range], [pt.Range, mt.Range, vt.Range]);
    }
}
