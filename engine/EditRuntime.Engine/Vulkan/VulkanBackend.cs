using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

/// <summary>
/// The op set on our Vulkan compute shaders. Work is recorded into the device's command stream
/// and submitted only when the host reads a value (<see cref="ToFloatArray"/>) or calls
/// <see cref="Synchronize"/>. Split over partial files: this one (tensors, elementwise,
/// reductions, matmul, counters and profiler), VulkanBackend.Layers.cs (bias, GELU, LayerNorm, softmax,
/// Adam), VulkanBackend.Sequence.cs (attention, embedding, cross-entropy), and the editor op interfaces
/// beside the core: VulkanBackend.Editors.cs (<see cref="ILoraOps"/>) and VulkanBackend.MoE.cs (<see cref="IMoEOps"/>).
/// Argument checks are <see cref="OpChecks"/>', shared with the Torch backend; kernels go through <see cref="VulkanOps"/>.
/// </summary>
public sealed partial class VulkanBackend : IBackend, ILoraOps, IMoEOps, IDeviceCounters, IKernelProfiler
{
    public VulkanDevice Device { get; }
    public VulkanOps Ops { get; }
    private readonly bool _ownsDevice;

    public VulkanBackend(VulkanDevice device, bool ownsDevice = false)
    {
        Device = device;
        Ops = new VulkanOps(device);
        _ownsDevice = ownsDevice;
    }

    public static VulkanBackend Open(DeviceOptions? options = null) => new(VulkanDevice.Open(options), ownsDevice: true);

    public string Name => "vulkan";
    public string DeviceDescription => $"{Device.Info.Name} ({Device.Info.TypeName})";
    public bool PoisonAllocations { get; set; }

    // ---------------------------------------------------------------- tensors

    /// <summary>The live Vulkan tensor of this device behind <paramref name="t"/>, or an error naming the op and argument.
    /// Dtypes and shapes are the op's check in <see cref="OpChecks"/>, shared with every backend.</summary>
    internal GpuTensor G(Tensor t, string op, string arg) =>
        t is GpuTensor g && ReferenceEquals(g.Device, Device) && !g.IsDisposed ? g : throw OpChecks.NotOwned(op, arg, t, Name);

    internal GpuTensor New(DType dtype, params int[] shape)
    {
        var t = new GpuTensor(Device, dtype, shape, this);
        if (PoisonAllocations && t.Count > 0) Ops.Fill(t, float.NaN);
        return t;
    }

    internal GpuTensor New(params int[] shape) => New(DType.F32, shape);

    public Tensor Empty(DType dtype, params int[] shape)
    {
        OpChecks.Empty(dtype, shape);
        return New(dtype, shape);
    }

    public Tensor FromArray(float[] data, params int[] shape)
    {
        OpChecks.FromArray(data, shape);
        var t = new GpuTensor(Device, DType.F32, shape, this);
        t.Upload(data);
        return t;
    }

    public Tensor FromArray(int[] data, params int[] shape)
    {
        OpChecks.FromArray(data, shape);
        var t = new GpuTensor(Device, DType.I32, shape, this);
        t.Upload(data);
        return t;
    }

    public float[] ToFloatArray(Tensor t)
    {
        var g = G(t, "ToFloatArray", "tensor");
        OpChecks.DType("ToFloatArray", "tensor", t);
        return g.ToArray();
    }

    public int[] ToIntArray(Tensor t)
    {
        var g = G(t, "ToIntArray", "tensor");
        OpChecks.DType("ToIntArray", "tensor", t, DType.I32);
        return g.ToIntArray();
    }

    public void Synchronize() => Device.Stream.Flush();

    public double DeviceBusySeconds => Device.Stream.BusySeconds;
    public long PeakDeviceBytes => (long)Device.Stats.PeakInUseBytes;
    public void ResetPeakDeviceBytes() => Device.Stats.PeakInUseBytes = Device.Stats.InUseBytes;

    public void BeginProfiling()
    {
        Device.Stream.Timings.Clear();
        Device.Stream.Profiling = true;
    }

    public IReadOnlyList<KernelTiming> EndProfiling()
    {
        var stream = Device.Stream;
        stream.Flush();   // timings are read when their commands complete
        stream.Profiling = false;
        var timings = stream.Timings.ToArray();
        stream.Timings.Clear();
        return timings;
    }

    public long Submits => Device.Stream.Submits;

    // ---------------------------------------------------------------- elementwise

    public void Fill(Tensor x, float value)
    {
        var gx = G(x, "fill", "x");
        OpChecks.Unary("fill", x);
        Ops.Fill(gx, value);
    }

    public Tensor Reshape(Tensor x, params int[] shape)
    {
        var gx = G(x, "reshape", "x");
        OpChecks.Reshape(x, shape);
        var y = New(x.DType, shape);
        Device.Stream.Copy(gx.Buffer.Slice(0, gx.Bytes), y.Buffer.Slice(0, y.Bytes));
        return y;
    }

    public Tensor Add(Tensor a, Tensor b) => Binary("add", a, b, Ops.Add);
    public Tensor Sub(Tensor a, Tensor b) => Binary("sub", a, b, Ops.Sub);
    public Tensor Mul(Tensor a, Tensor b) => Binary("mul", a, b, Ops.Mul);

    private Tensor Binary(string op, Tensor a, Tensor b, Action<GpuTensor, GpuTensor, GpuTensor> kernel)
    {
        var ga = G(a, op, "a"); var gb = G(b, op, "b");
        OpChecks.Binary(op, a, b);
        var c = New(a.Shape);
        kernel(ga, gb, c);
        return c;
    }

    public Tensor Scale(Tensor x, float alpha)
    {
        var gx = G(x, "scale", "x");
        OpChecks.Unary("scale", x);
        var y = New(x.Shape);
        Ops.Scale(gx, alpha, y);
        return y;
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        var gx = G(x, "axpy", "x"); var gy = G(y, "axpy", "y");
        OpChecks.Axpy(x, y);
        Ops.Axpy(alpha, gx, gy);
    }

    // ---------------------------------------------------------------- layout

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct CopyStridedPush { public ulong Src, Dst; public uint Rows, Cols, SrcStride, DstStride; }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Transpose12Push { public ulong X, Y; public uint A, B, C, D; }

    public void CopyStrided(Tensor src, Tensor dst, int rows, int cols, long srcOffset, long srcStride, long dstOffset, long dstStride)
    {
        var s = G(src, "copy_strided", "src");
        var d = G(dst, "copy_strided", "dst");
        OpChecks.CopyStrided(src, dst, rows, cols, srcOffset, srcStride, dstOffset, dstStride);
        if (rows == 0 || cols == 0) return;
        var push = new CopyStridedPush
        {
            Src = s.Address + (ulong)srcOffset * 4, Dst = d.Address + (ulong)dstOffset * 4,
            Rows = (uint)rows, Cols = (uint)cols, SrcStride = (uint)srcStride, DstStride = (uint)dstStride,
        };
        Ops.Elementwise("core/copy_strided", push, (long)rows * cols, [s.Range], [d.Range]);
    }

    public Tensor Transpose12(Tensor x)
    {
        var gx = G(x, "transpose12", "x");
        var shape = OpChecks.Transpose12(x);
        int A = x.Shape[0], B = x.Shape[1], C = x.Shape[2], D = x.Shape[3];
        var y = New(x.DType, shape);
        if (y.Count == 0) return y;
        Ops.Elementwise("core/transpose12", new Transpose12Push { X = gx.Address, Y = y.Address, A = (uint)A, B = (uint)B, C = (uint)C, D = (uint)D },
            y.Count, [gx.Range], [y.Range]);
        return y;
    }

    // ---------------------------------------------------------------- reductions

    public Tensor Sum(Tensor x)
    {
        var gx = G(x, "sum", "x");
        OpChecks.Unary("sum", x);
        var y = New(1);
        Ops.Sum(gx, y);
        return y;
    }

    public Tensor RowSum(Tensor x) => RowReduce("row_sum", x, Ops.RowSum);
    public Tensor RowMax(Tensor x) => RowReduce("row_max", x, Ops.RowMax);

    private Tensor RowReduce(string op, Tensor x, Action<GpuTensor, GpuTensor> kernel)
    {
        var gx = G(x, op, "x");
        var y = New(OpChecks.RowReduce(op, x));
        if (y.Count > 0) kernel(gx, y);   // one value per row, also for rows of no element
        return y;
    }

    public Tensor SumBackward(Tensor gy, int[] shape, float scale)
    {
        var g = G(gy, "sum_backward", "gy");
        OpChecks.SumBackward(gy, shape);
        var y = New(shape);
        Ops.BroadcastRows(g, y, scale);
        return y;
    }

    public Tensor RowSumBackward(Tensor gy, int[] shape, float scale)
    {
        var g = G(gy, "row_sum_backward", "gy");
        OpChecks.RowSumBackward(gy, shape);
        var y = New(shape);
        Ops.BroadcastRows(g, y, scale);
        return y;
    }

    // ---------------------------------------------------------------- matmul

    public Tensor Matmul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        var ga = G(a, "matmul", "A"); var gb = G(b, "matmul", "B");
        var (batch, M, N, K, bcast) = OpChecks.Matmul("matmul", a, b, transA, transB);
        var c = New(a.Rank == 3 ? new[] { batch, M, N } : new[] { M, N });
        if (K == 0) { Ops.Fill(c, 0); return c; }
        Ops.Matmul(ga.Address, gb.Address, c.Address, ga.Range, gb.Range, c.Range, batch, M, N, K,
            lda: a.Shape[^1], ldb: b.Shape[^1], ldc: N, strideA: (long)M * K, strideB: bcast ? 0 : (long)K * N, strideC: (long)M * N,
            transA, transB, 1f, 0f);
        return c;
    }

    public (Tensor GradA, Tensor GradB) MatmulBackward(Tensor a, Tensor b, Tensor gy, bool transA = false, bool transB = false)
    {
        G(a, "matmul_backward", "A"); G(b, "matmul_backward", "B"); G(gy, "matmul_backward", "gy");
        var (batch, M, N, _, bcast) = OpChecks.Matmul("matmul_backward", a, b, transA, transB);
        OpChecks.MatmulGy(gy, a.Rank == 3 ? new[] { batch, M, N } : new[] { M, N });
        // C = A'·B' with A' = op(A), B' = op(B):  dA' = dC·B'ᵀ,  dB' = A'ᵀ·dC; stored operands get the transpose back.
        Tensor gA;
        if (!transA) gA = Matmul(gy, b, false, !transB);
        else if (!bcast) gA = Matmul(b, gy, transB, true);
        else
        {
            // Stored A is (batch, K, M) but B is rank 2: dA' = dC·B'ᵀ (batch, M, K), then transposed per batch
            // (a (batch, M, K, 1) → (batch, K, M, 1) swap of the middle axes).
            using var gt = Matmul(gy, b, false, !transB);
            using var v4 = Reshape(gt, batch, M, gt.Shape[^1], 1);
            using var t4 = Transpose12(v4);
            gA = Reshape(t4, a.Shape);
        }
        if (!bcast)
            return (gA, transB ? Matmul(gy, a, true, transA) : Matmul(a, gy, !transA, false));
        var ga = G(a, "matmul_backward", "A"); var gg = G(gy, "matmul_backward", "gy");
        var gB = New(b.Shape);
        int rowsAll = batch * M;
        if (!transA)
        {
            // B was broadcast over the batch: its gradient sums the batches, which is one 2-D product over
            // all batch·M rows of A (batch·M, K) and gy (batch·M, N), read in place.
            int K = a.Shape[^1];
            if (!transB) // gB (K, N) = Aᵀ·gy
                Ops.Matmul(ga.Address, gg.Address, gB.Address, ga.Range, gg.Range, gB.Range, 1, K, N, rowsAll,
                    lda: K, ldb: N, ldc: N, 0, 0, 0, transA: true, transB: false, 1f, 0f);
            else         // gB (N, K) = gyᵀ·A
                Ops.Matmul(gg.Address, ga.Address, gB.Address, gg.Range, ga.Range, gB.Range, 1, N, K, rowsAll,
                    lda: N, ldb: K, ldc: K, 0, 0, 0, transA: true, transB: false, 1f, 0f);
            return (gA, gB);
        }
        // transA: per-batch gradients (batch, ·, ·), then Σ over the batch as flatᵀ (rows, batch) · ones (batch, 1).
        using var per = transB ? Matmul(gy, a, true, transA) : Matmul(a, gy, !transA, false);
        int rows = b.Shape[0] * b.Shape[1];
        using var ones = New(batch, 1);
        Ops.Fill(ones, 1f);
        var g = G(per, "matmul_backward", "per-batch gradient");
        Ops.Matmul(g.Address, ones.Address, gB.Address, g.Range, ones.Range, gB.Range, 1, rows, 1, batch,
            lda: rows, ldb: 1, ldc: 1, strideA: 0, strideB: 0, strideC: 0, transA: true, transB: false, 1f, 0f);
        return (gA, gB);
    }

    public void Dispose()
    {
        if (_ownsDevice) Device.Dispose();
    }
}
