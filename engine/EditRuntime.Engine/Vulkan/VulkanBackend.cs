using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

/// <summary>
/// The op set on our Vulkan compute shaders. Work is recorded into the device's command stream
/// and submitted only when the host reads a value (<see cref="ToFloatArray"/>) or calls
/// <see cref="Synchronize"/>. Split over partial files: this one (tensors, elementwise,
/// reductions, matmul), VulkanBackend.Layers.cs (bias, GELU, LayerNorm, softmax, Adam) and
/// VulkanBackend.Sequence.cs (attention, embedding, cross-entropy).
/// </summary>
public sealed partial class VulkanBackend : IBackend, ILoraOps, IMoEOps, IDeviceCounters
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

    /// <summary>The Vulkan tensor behind <paramref name="t"/>, or an error naming the op and argument.</summary>
    internal GpuTensor G(Tensor t, string op, string arg, DType dtype = DType.F32)
    {
        if (t is not GpuTensor g || !ReferenceEquals(g.Device, Device))
            throw new ArgumentException($"{op}: {arg} is a {t.Backend.Name} tensor, not one of this Vulkan backend's.");
        if (g.IsDisposed) throw new ObjectDisposedException($"{op}: {arg} was disposed.");
        if (g.DType != dtype) throw new ArgumentException($"{op}: {arg} must be {dtype}, got {g.DType} {g.ShapeString}.");
        return g;
    }

    internal GpuTensor New(DType dtype, params int[] shape)
    {
        var t = new GpuTensor(Device, dtype, shape, this);
        if (PoisonAllocations && t.Count > 0) Ops.Fill(t, float.NaN);
        return t;
    }

    internal GpuTensor New(params int[] shape) => New(DType.F32, shape);

    public Tensor Empty(DType dtype, params int[] shape) => New(dtype, shape);

    public Tensor FromArray(float[] data, params int[] shape)
    {
        var t = new GpuTensor(Device, DType.F32, shape, this);
        if (data.Length != t.Count) { t.Dispose(); throw new ArgumentException($"FromArray: {data.Length} values for shape {Tensor.Format(shape)}."); }
        t.Upload(data);
        return t;
    }

    public Tensor FromArray(int[] data, params int[] shape)
    {
        var t = new GpuTensor(Device, DType.I32, shape, this);
        if (data.Length != t.Count) { t.Dispose(); throw new ArgumentException($"FromArray: {data.Length} values for shape {Tensor.Format(shape)}."); }
        t.Upload(data);
        return t;
    }

    public float[] ToFloatArray(Tensor t) => G(t, "ToFloatArray", "tensor").ToArray();
    public int[] ToIntArray(Tensor t) => G(t, "ToIntArray", "tensor", DType.I32).ToIntArray();
    public void Synchronize() => Device.Stream.Flush();

    public double DeviceBusySeconds => Device.Stream.BusySeconds;
    public long PeakDeviceBytes => (long)Device.Stats.PeakInUseBytes;
    public void ResetPeakDeviceBytes() => Device.Stats.PeakInUseBytes = Device.Stats.InUseBytes;

    internal static void SameShape(string op, Tensor a, Tensor b, string an = "a", string bn = "b")
    {
        if (!a.Shape.SequenceEqual(b.Shape))
            throw new ArgumentException($"{op}: {an} {a.ShapeString} and {bn} {b.ShapeString} must have the same shape.");
    }

    /// <summary>Rows and columns of x viewed as (rows, last dimension).</summary>
    internal static (int Rows, int Cols) RowsCols(Tensor x, string op)
    {
        if (x.Rank == 0) throw new ArgumentException($"{op}: needs at least one dimension, got a scalar.");
        int cols = x.Shape[^1];
        int rows = (int)x.Shape[..^1].Aggregate(1L, (a, d) => a * d);
        return (rows, cols);
    }

    // ---------------------------------------------------------------- elementwise

    public void Fill(Tensor x, float value) => Ops.Fill(G(x, "fill", "x"), value);

    public Tensor Reshape(Tensor x, params int[] shape)
    {
        var gx = G(x, "reshape", "x", x.DType);
        long n = shape.Aggregate(1L, (a, d) => a * d);
        if (n != x.Count) throw new ArgumentException($"reshape: {x.ShapeString} ({x.Count} elements) cannot become {Tensor.Format(shape)} ({n}).");
        var y = New(x.DType, shape);
        Device.Stream.Copy(gx.Buffer.Slice(0, gx.Bytes), y.Buffer.Slice(0, y.Bytes));
        return y;
    }

    public Tensor Add(Tensor a, Tensor b) => Binary("add", a, b, Ops.Add);
    public Tensor Sub(Tensor a, Tensor b) => Binary("sub", a, b, Ops.Sub);
    public Tensor Mul(Tensor a, Tensor b) => Binary("mul", a, b, Ops.Mul);

    private Tensor Binary(string op, Tensor a, Tensor b, Action<GpuTensor, GpuTensor, GpuTensor> kernel)
    {
        SameShape(op, a, b);
        var c = New(a.Shape);
        kernel(G(a, op, "a"), G(b, op, "b"), c);
        return c;
    }

    public Tensor Scale(Tensor x, float alpha)
    {
        var y = New(x.Shape);
        Ops.Scale(G(x, "scale", "x"), alpha, y);
        return y;
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        SameShape("axpy", x, y, "x", "y");
        Ops.Axpy(alpha, G(x, "axpy", "x"), G(y, "axpy", "y"));
    }

    // ---------------------------------------------------------------- layout

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct CopyStridedPush { public ulong Src, Dst; public uint Rows, Cols, SrcStride, DstStride; }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Transpose12Push { public ulong X, Y; public uint A, B, C, D; }

    public void CopyStrided(Tensor src, Tensor dst, int rows, int cols, long srcOffset, long srcStride, long dstOffset, long dstStride)
    {
        var s = G(src, "copy_strided", "src", src.DType);
        var d = G(dst, "copy_strided", "dst", src.DType);
        Tensor.CheckStridedBlock("copy_strided", "src", src.Count, rows, cols, srcOffset, srcStride);
        Tensor.CheckStridedBlock("copy_strided", "dst", dst.Count, rows, cols, dstOffset, dstStride);
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
        if (x.Rank != 4) throw new ArgumentException($"transpose12: x must be rank 4 (A, B, C, D), got {x.ShapeString}.");
        var gx = G(x, "transpose12", "x", x.DType);
        int A = x.Shape[0], B = x.Shape[1], C = x.Shape[2], D = x.Shape[3];
        var y = New(x.DType, A, C, B, D);
        if (y.Count == 0) return y;
        Ops.Elementwise("core/transpose12", new Transpose12Push { X = gx.Address, Y = y.Address, A = (uint)A, B = (uint)B, C = (uint)C, D = (uint)D },
            y.Count, [gx.Range], [y.Range]);
        return y;
    }

    // ---------------------------------------------------------------- reductions

    public Tensor Sum(Tensor x)
    {
        var y = New(1);
        Ops.Sum(G(x, "sum", "x"), y);
        return y;
    }

    public Tensor RowSum(Tensor x)
    {
        var (rows, _) = RowsCols(x, "row_sum");
        var y = New(x.Rank == 1 ? new[] { 1 } : x.Shape[..^1]);
        if (rows > 0) Ops.RowSum(G(x, "row_sum", "x"), y);
        return y;
    }

    public Tensor RowMax(Tensor x)
    {
        var (rows, cols) = RowsCols(x, "row_max");
        if (cols == 0) throw new ArgumentException($"row_max: the last dimension of {x.ShapeString} is empty.");
        var y = New(x.Rank == 1 ? new[] { 1 } : x.Shape[..^1]);
        if (rows > 0) Ops.RowMax(G(x, "row_max", "x"), y);
        return y;
    }

    public Tensor SumBackward(Tensor gy, int[] shape, float scale)
    {
        if (gy.Count != 1) throw new ArgumentException($"sum_backward: gy must have one element, got {gy.ShapeString}.");
        var y = New(shape);
        Ops.BroadcastRows(G(gy, "sum_backward", "gy"), y, scale);
        return y;
    }

    public Tensor RowSumBackward(Tensor gy, int[] shape, float scale)
    {
        long rows = shape.Length <= 1 ? 1 : shape[..^1].Aggregate(1L, (a, d) => a * d);
        if (gy.Count != rows) throw new ArgumentException($"row_sum_backward: gy {gy.ShapeString} must have one value per row of {Tensor.Format(shape)}.");
        var y = New(shape);
        Ops.BroadcastRows(G(gy, "row_sum_backward", "gy"), y, scale);
        return y;
    }

    // ---------------------------------------------------------------- matmul

    /// <summary>Shapes of op(A)·op(B): (batch, M, N, K, broadcastB). Rank-3 A with rank-2 B broadcasts B over the batch.</summary>
    internal static (int Batch, int M, int N, int K, bool BroadcastB) MatmulShape(Tensor a, Tensor b, bool transA, bool transB)
    {
        string Err() => $"matmul: A {a.ShapeString}{(transA ? "ᵀ" : "")} · B {b.ShapeString}{(transB ? "ᵀ" : "")}";
        if (a.Rank is < 2 or > 3 || b.Rank is < 2 or > 3 || (a.Rank == 2 && b.Rank == 3))
            throw new ArgumentException($"{Err()}: A and B must be rank 2 or 3 (rank-3 A may take a rank-2 B, broadcast over the batch).");
        int batch = a.Rank == 3 ? a.Shape[0] : 1;
        if (b.Rank == 3 && b.Shape[0] != batch) throw new ArgumentException($"{Err()}: batch sizes differ.");
        int ra = a.Shape[^2], ca = a.Shape[^1], rb = b.Shape[^2], cb = b.Shape[^1];
        int M = transA ? ca : ra, K = transA ? ra : ca, kB = transB ? cb : rb, N = transB ? rb : cb;
        if (K != kB) throw new ArgumentException($"{Err()}: inner dimensions {K} and {kB} differ.");
        return (batch, M, N, K, a.Rank == 3 && b.Rank == 2);
    }

    public Tensor Matmul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        var (batch, M, N, K, bcast) = MatmulShape(a, b, transA, transB);
        var c = New(a.Rank == 3 ? new[] { batch, M, N } : new[] { M, N });
        var ga = G(a, "matmul", "A"); var gb = G(b, "matmul", "B");
        if (K == 0) { Ops.Fill(c, 0); return c; }
        Ops.Matmul(ga.Address, gb.Address, c.Address, ga.Range, gb.Range, c.Range, batch, M, N, K,
            lda: a.Shape[^1], ldb: b.Shape[^1], ldc: N, strideA: (long)M * K, strideB: bcast ? 0 : (long)K * N, strideC: (long)M * N,
            transA, transB, 1f, 0f);
        return c;
    }

    public (Tensor GradA, Tensor GradB) MatmulBackward(Tensor a, Tensor b, Tensor gy, bool transA = false, bool transB = false)
    {
        var (batch, M, N, _, bcast) = MatmulShape(a, b, transA, transB);
        var expected = a.Rank == 3 ? new[] { batch, M, N } : new[] { M, N };
        if (!gy.Shape.SequenceEqual(expected)) throw new ArgumentException($"matmul_backward: gy is {gy.ShapeString}, expected {Tensor.Format(expected)}.");
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
