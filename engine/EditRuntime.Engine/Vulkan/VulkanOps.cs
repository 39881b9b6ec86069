using System.Runtime.InteropServices;

namespace EditRuntime.Vulkan;

/// <summary>
/// Kernels on device tensors the caller allocated, recorded into the device's command stream (nothing
/// waits until a value is read back), and the dispatch helpers every Vulkan op goes through
/// (<see cref="Elementwise{T}(string, in T, long, ReadOnlySpan{BufferRange}, ReadOnlySpan{BufferRange})"/>,
/// <see cref="Groups{T}"/>). Each method checks shapes, declares what it reads and writes (for barriers)
/// and mirrors its shader's push-constant block in a struct below. <see cref="VulkanBackend"/> builds the op
/// set (allocating outputs) on top of this.
/// </summary>
public sealed class VulkanOps(VulkanDevice device)
{
    public VulkanDevice Device { get; } = device;
    private CommandStream Stream => Device.Stream;

    // ---- push-constant mirrors (checked against the SPIR-V block, member by member, at their first dispatch)
    [StructLayout(LayoutKind.Sequential)] private struct CopyPush { public ulong Src, Dst; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct BinaryPush { public ulong A, B, C; public uint N; }
    [StructLayout(LayoutKind.Sequential)] private struct ScalePush { public ulong X, Y; public uint N; public float Alpha; }
    [StructLayout(LayoutKind.Sequential)] private struct RowPush { public ulong X, Y; public uint Rows, Cols; }
    [StructLayout(LayoutKind.Sequential)] private struct SumPartialPush { public ulong X, Partial; public uint N, Chunk; }
    [StructLayout(LayoutKind.Sequential)] private struct BroadcastRowsPush { public ulong G, Y; public uint N, Cols; public float Scale; }
    [StructLayout(LayoutKind.Sequential)]
    private struct MatmulPush
    {
        public ulong A, B, C;
        public uint M, N, K, Lda, Ldb, Ldc, StrideA, StrideB, StrideC;
        public float Alpha, Beta;
    }

    /// <summary>Splits <paramref name="groups"/> workgroups over x and y so neither exceeds the device limit.</summary>
    public (uint X, uint Y) Grid(long groups)
    {
        uint maxX = Device.Info.MaxWorkgroupCount[0];
        if (groups <= maxX) return ((uint)Math.Max(groups, 1), 1);
        uint y = (uint)((groups + maxX - 1) / maxX);
        if (y > Device.Info.MaxWorkgroupCount[1]) throw new InvalidOperationException($"{groups} workgroups do not fit the device's grid.");
        return (maxX, y);
    }

    /// <summary>One invocation per element: ⌈n / local size x⌉ workgroups over the x/y grid. Nothing for n = 0.</summary>
    public void Elementwise<T>(string shader, in T push, long n, ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes) where T : unmanaged =>
        Elementwise(Device.Kernels.Get(shader), push, n, reads, writes);

    /// <inheritdoc cref="Elementwise{T}(string, in T, long, ReadOnlySpan{BufferRange}, ReadOnlySpan{BufferRange})"/>
    public void Elementwise<T>(Kernel k, in T push, long n, ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes) where T : unmanaged
    {
        if (n == 0) return;
        Groups(k, push, (n + k.LocalSize[0] - 1) / k.LocalSize[0], reads, writes);
    }

    /// <summary><paramref name="groups"/> workgroups (e.g. one per row) over the x/y grid (<see cref="Grid"/>; the shaders skip the spare ones).</summary>
    public void Groups<T>(Kernel k, in T push, long groups, ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes) where T : unmanaged
    {
        var (gx, gy) = Grid(groups);
        Stream.Dispatch(k, push, gx, gy, 1, reads, writes);
    }

    private static void SameCount(string op, GpuTensor a, GpuTensor b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{op}: {a} and {b} differ in element count.");
    }

    /// <summary>x[:] = value (a transfer-stage fill of the bit pattern; also right for I32 tensors given the int's bits).</summary>
    public void Fill(GpuTensor x, float value)
    {
        if (x.Count > 0) Stream.FillBuffer(x.Buffer.Slice(0, x.Bytes), BitConverter.SingleToUInt32Bits(value));
    }

    /// <summary>dst[:] = src[:]</summary>
    public void Copy(GpuTensor src, GpuTensor dst)
    {
        SameCount("copy", src, dst);
        Elementwise("core/copy", new CopyPush { Src = src.Address, Dst = dst.Address, N = (uint)src.Count }, src.Count, [src.Range], [dst.Range]);
    }

    /// <summary>c = a + b (elementwise; c may be a or b)</summary>
    public void Add(GpuTensor a, GpuTensor b, GpuTensor c) => Binary("core/add", a, b, c);

    /// <summary>c = a * b (elementwise; c may be a or b)</summary>
    public void Mul(GpuTensor a, GpuTensor b, GpuTensor c) => Binary("core/mul", a, b, c);

    private void Binary(string shader, GpuTensor a, GpuTensor b, GpuTensor c)
    {
        SameCount(shader, a, b); SameCount(shader, a, c);
        Elementwise(shader, new BinaryPush { A = a.Address, B = b.Address, C = c.Address, N = (uint)a.Count }, a.Count, [a.Range, b.Range], [c.Range]);
    }

    /// <summary>c = a - b (elementwise; c may be a or b)</summary>
    public void Sub(GpuTensor a, GpuTensor b, GpuTensor c) => Binary("core/sub", a, b, c);

    /// <summary>y += alpha * x</summary>
    public void Axpy(float alpha, GpuTensor x, GpuTensor y)
    {
        SameCount("axpy", x, y);
        Elementwise("core/axpy", new ScalePush { X = x.Address, Y = y.Address, N = (uint)x.Count, Alpha = alpha }, x.Count, [x.Range, y.Range], [y.Range]);
    }

    /// <summary>y[0] = Σ x (two passes: per-workgroup partial sums, then one row sum).</summary>
    public void Sum(GpuTensor x, GpuTensor y)
    {
        if (y.Count != 1) throw new ArgumentException($"sum: the output must have one element, got {y}.");
        const uint chunk = 16384;
        long groups = Math.Max(1, (x.Count + chunk - 1) / chunk);
        using var partial = new GpuTensor(Device, (int)groups);
        Groups(Device.Kernels.Get("core/sum_partial"), new SumPartialPush { X = x.Address, Partial = partial.Address, N = (uint)x.Count, Chunk = chunk },
            groups, [x.Range], [partial.Range]);
        Stream.Dispatch(Device.Kernels.Get("core/row_sum"), new RowPush { X = partial.Address, Y = y.Address, Rows = 1, Cols = (uint)groups },
            1, 1, 1, [partial.Range], [y.Range]);
    }

    /// <summary>y[r, c] = scale * g[r] for y viewed as (g.Count, cols).</summary>
    public void BroadcastRows(GpuTensor g, GpuTensor y, float scale)
    {
        long cols = g.Count == 0 ? 0 : y.Count / g.Count;
        if (cols * g.Count != y.Count) throw new ArgumentException($"broadcast_rows: {y} is not a whole number of rows of {g.Count}.");
        if (y.Count == 0) return;
        Elementwise("core/broadcast_rows", new BroadcastRowsPush { G = g.Address, Y = y.Address, N = (uint)y.Count, Cols = (uint)cols, Scale = scale },
            y.Count, [g.Range], [y.Range]);
    }

    /// <summary>y = alpha * x (y may be x)</summary>
    public void Scale(GpuTensor x, float alpha, GpuTensor y)
    {
        SameCount("scale", x, y);
        Elementwise("core/scale", new ScalePush { X = x.Address, Y = y.Address, N = (uint)x.Count, Alpha = alpha }, x.Count, [x.Range], [y.Range]);
    }

    /// <summary>y[r] = Σ_c x[r, c]; x viewed as (rows, last dimension).</summary>
    public void RowSum(GpuTensor x, GpuTensor y) => Row("core/row_sum", x, y);

    /// <summary>y[r] = max_c x[r, c]; x viewed as (rows, last dimension).</summary>
    public void RowMax(GpuTensor x, GpuTensor y) => Row("core/row_max", x, y);

    private void Row(string shader, GpuTensor x, GpuTensor y)
    {
        if (x.Shape.Length == 0) throw new ArgumentException($"{shader}: needs at least one dimension, got a scalar.");
        int cols = x.Shape[^1];
        long rows = cols == 0 ? x.Shape[..^1].Aggregate(1L, (a, d) => a * d) : x.Count / cols;
        if (y.Count != rows) throw new ArgumentException($"{shader}: {x} has {rows} rows but the output {y} has {y.Count} elements.");
        if (rows == 0) return;
        Groups(Device.Kernels.Get(shader), new RowPush { X = x.Address, Y = y.Address, Rows = (uint)rows, Cols = (uint)cols }, rows, [x.Range], [y.Range]);
    }

    /// <summary>
    /// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] for row-major matrices.
    /// A: (batch, M, K) or (batch, K, M) if transA; B: (batch, K, N) or (batch, N, K) if transB;
    /// C: (batch, M, N). A rank-2 operand is one matrix (batch 1). beta = 0 never reads C.
    /// </summary>
    public void Matmul(GpuTensor a, GpuTensor b, GpuTensor c, bool transA = false, bool transB = false, float alpha = 1f, float beta = 0f)
    {
        var (ba, ra, ca) = Matrix("A", a);
        var (bb, rb, cb) = Matrix("B", b);
        var (bc, M, N) = Matrix("C", c);
        int K = transA ? ra : ca;
        int mA = transA ? ca : ra;
        int kB = transB ? cb : rb, nB = transB ? rb : cb;
        if (mA != M || nB != N || kB != K)
            throw new ArgumentException($"matmul: op(A) is {mA}x{K}, op(B) is {kB}x{nB}, C is {M}x{N} (transA={transA}, transB={transB}).");
        if (ba != bc || bb != bc)
            throw new ArgumentException($"matmul: batch sizes differ: A {ba}, B {bb}, C {bc}.");
        Matmul(a.Address, b.Address, c.Address, a.Range, b.Range, c.Range, bc, M, N, K,
            lda: ca, ldb: cb, ldc: N, strideA: (long)ra * ca, strideB: (long)rb * cb, strideC: (long)M * N,
            transA, transB, alpha, beta);
    }

    private static (int Batch, int Rows, int Cols) Matrix(string name, GpuTensor t) => t.Shape.Length switch
    {
        2 => (1, t.Shape[0], t.Shape[1]),
        3 => (t.Shape[0], t.Shape[1], t.Shape[2]),
        _ => throw new ArgumentException($"matmul: {name} must be rank 2 or 3, got {t}."),
    };

    /// <summary>Matmul on raw addresses (views into larger buffers); strides in elements.</summary>
    public void Matmul(ulong a, ulong b, ulong c, BufferRange aRange, BufferRange bRange, BufferRange cRange,
        int batch, int M, int N, int K, int lda, int ldb, int ldc, long strideA, long strideB, long strideC,
        bool transA, bool transB, float alpha, float beta)
    {
        if (batch == 0 || M == 0 || N == 0) return;
        bool vec4 = M % 4 == 0 && N % 4 == 0 && K % 4 == 0 && lda % 4 == 0 && ldb % 4 == 0 && ldc % 4 == 0
                    && strideA % 4 == 0 && strideB % 4 == 0 && strideC % 4 == 0 && a % 16 == 0 && b % 16 == 0 && c % 16 == 0;
        var k = Device.Kernels.Get("core/matmul", transA ? 1u : 0u, transB ? 1u : 0u, vec4 ? 1u : 0u);
        uint tileN = k.LocalSize[0] * 8, tileM = k.LocalSize[1] * 8; // TM = TN = 8 in the shader
        uint maxZ = Device.Info.MaxWorkgroupCount[2];
        // Rows and columns beyond one grid's reach (65535 tiles) are done in blocks: each block
        // offsets the A, B and C addresses (multiples of 4 elements, so vec4 alignment holds).
        long maxM = (long)Device.Info.MaxWorkgroupCount[1] * tileM, maxN = (long)Device.Info.MaxWorkgroupCount[0] * tileN;
        ReadOnlySpan<BufferRange> reads = beta != 0 ? [aRange, bRange, cRange] : [aRange, bRange];
        for (long m0 = 0; m0 < M; m0 += maxM)
        for (long n0 = 0; n0 < N; n0 += maxN)
        {
            long mb = Math.Min(maxM, M - m0), nbCols = Math.Min(maxN, N - n0);
            uint gx = (uint)((nbCols + tileN - 1) / tileN), gy = (uint)((mb + tileM - 1) / tileM);
            long aOff = transA ? m0 : m0 * lda, bOff = transB ? n0 * ldb : n0, cOff = m0 * ldc + n0;
            for (int b0 = 0; b0 < batch; b0 += (int)maxZ)
            {
                int nb = (int)Math.Min(maxZ, batch - b0);
                var push = new MatmulPush
                {
                    A = a + (ulong)((b0 * strideA + aOff) * 4), B = b + (ulong)((b0 * strideB + bOff) * 4), C = c + (ulong)((b0 * strideC + cOff) * 4),
                    M = (uint)mb, N = (uint)nbCols, K = (uint)K, Lda = (uint)lda, Ldb = (uint)ldb, Ldc = (uint)ldc,
                    StrideA = (uint)strideA, StrideB = (uint)strideB, StrideC = (uint)strideC, Alpha = alpha, Beta = beta,
                };
                Stream.Dispatch(k, push, gx, gy, (uint)nb, reads, [cRange]);
            }
        }
    }
}
