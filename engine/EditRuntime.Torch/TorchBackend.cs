using System.Globalization;
using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Torch;

/// <summary>
/// The reference backend: every op of <see cref="IBackend"/> on libtorch (CPU) through the C ABI
/// shim libeditrt_torch.so (native/editrt_torch.cpp). Backward ops are torch's own autograd over
/// the rebuilt forward graph, so they check the Vulkan backward shaders independently.
///
/// Arguments are validated by the checks every backend shares (<see cref="OpChecks"/>: dtype, rank,
/// shapes; ArgumentException naming op and argument); this backend adds its own limit (32 dimensions).
/// The inner and batch dimensions of matmul, ids outside the embedding table and targets outside
/// the vocabulary are checked by libtorch itself: its message comes back in an ArgumentException
/// whose inner exception is the <see cref="TorchException"/>. Any other libtorch failure is a
/// <see cref="TorchException"/>. Every op runs synchronously; outputs are fresh tensors.
///
/// The intra-op thread count is process-wide (libtorch's at::set_num_threads, plus OpenBLAS's
/// pool): the last TorchBackend created sets it.
/// </summary>
public sealed unsafe partial class TorchBackend : IBackend, ILoraOps, IMoEOps
{
    /// <summary>Environment variable with the thread count (wins over OMP_NUM_THREADS).</summary>
    public const string ThreadsVariable = "EDITRT_TORCH_THREADS";
    /// <summary>Environment variable with OpenBLAS's own thread count (default: <see cref="ResolveBlasThreads"/>).</summary>
    public const string BlasThreadsVariable = "EDITRT_BLAS_THREADS";
    private const int MaxRank = 32;

    /// <summary>Loads the shim (first use) and sets the thread count from the environment
    /// (<see cref="ResolveThreads"/>). Throws <see cref="TorchUnavailableException"/> if libtorch or the shim is missing.</summary>
    public TorchBackend() : this(null) { }

    /// <param name="threads">Intra-op threads; null = from the environment (<see cref="ResolveThreads"/>).</param>
    public TorchBackend(int? threads) : this(threads, null) { }

    /// <param name="threads">Intra-op threads; null = from the environment (<see cref="ResolveThreads"/>).</param>
    /// <param name="blasThreads">OpenBLAS's threads; null = from the environment (<see cref="ResolveBlasThreads"/>).</param>
    public TorchBackend(int? threads, int? blasThreads)
    {
        NativeLoader.EnsureLoaded();
        (int n, string source) = threads switch
        {
            null => ResolveThreads(Environment.GetEnvironmentVariable(ThreadsVariable),
                Environment.GetEnvironmentVariable("OMP_NUM_THREADS"), Environment.ProcessorCount),
            >= 1 when threads.Value <= MaxThreads(Environment.ProcessorCount) => (threads.Value, "constructor argument"),
            _ => throw new ArgumentOutOfRangeException(nameof(threads), threads, $"TorchBackend: threads must be in [1, {MaxThreads(Environment.ProcessorCount)}]."),
        };
        (int blasN, string blasSource) = blasThreads is int b
            ? (b >= 1 && b <= MaxThreads(Environment.ProcessorCount) ? b : throw new ArgumentOutOfRangeException(nameof(blasThreads), b, $"TorchBackend: OpenBLAS threads must be in [1, {MaxThreads(Environment.ProcessorCount)}]."), "constructor argument")
            : ResolveBlasThreads(Environment.GetEnvironmentVariable(BlasThreadsVariable), n);
        Check(Native.et_set_num_threads(n, blasN, out int blas), "set_num_threads");
        Check(Native.et_get_num_threads(out int applied), "get_num_threads");
        if (applied != n) throw new InvalidOperationException($"TorchBackend: asked libtorch for {n} threads, it reports {applied}.");
        Check(Native.et_torch_version(out IntPtr version), "torch_version");
        Threads = n;
        ThreadSource = source;
        BlasThreadsSet = blas != 0;
        BlasThreads = blasN;
        BlasThreadSource = blasSource;
        TorchVersion = Marshal.PtrToStringUTF8(version) ?? throw new InvalidOperationException("TorchBackend: the shim returned no version.");
    }

    /// <summary>
    /// The most threads a count may ask for: 4 per processor (at least 8). Far more only costs start-up time
    /// (EDITRT_TORCH_THREADS=1000 took 35 s before the first op; 100000 never started) and never speeds up an op.
    /// </summary>
    public static int MaxThreads(int processorCount) => Math.Max(8, 4 * processorCount);

    /// <summary>
    /// The thread count: <c>EDITRT_TORCH_THREADS</c> if set, else the first entry of <c>OMP_NUM_THREADS</c>,
    /// else the processor count. A value that is set but not an integer in [1, <see cref="MaxThreads"/>] is an error (never ignored).
    /// </summary>
    public static (int Threads, string Source) ResolveThreads(string? editrtTorchThreads, string? ompNumThreads, int processorCount)
    {
        if (processorCount < 1) throw new ArgumentOutOfRangeException(nameof(processorCount), processorCount, "TorchBackend: processor count must be at least 1.");
        if (!string.IsNullOrWhiteSpace(editrtTorchThreads))
            return (ThreadCount(editrtTorchThreads, ThreadsVariable, processorCount), ThreadsVariable);
        if (!string.IsNullOrWhiteSpace(ompNumThreads))
            return (ThreadCount(ompNumThreads.Split(',')[0], "OMP_NUM_THREADS", processorCount, ompNumThreads), "OMP_NUM_THREADS");
        return (processorCount, "processor count");
    }

    /// <summary>A thread count from an environment variable: an integer in [1, <see cref="MaxThreads"/>], else an error naming it.</summary>
    private static int ThreadCount(string text, string variable, int processorCount, string? raw = null)
    {
        raw ??= text;
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v < 1)
            throw new ArgumentException($"TorchBackend: {variable}='{raw}' is not a positive integer thread count.");
        if (v > MaxThreads(processorCount))
            throw new ArgumentException($"TorchBackend: {variable}='{raw}' asks for more than {MaxThreads(processorCount)} threads (4 per processor on this machine of {processorCount}).");
        return v;
    }

    public string Name => "torch";

    /// <summary>
    /// OpenBLAS's thread count: <c>EDITRT_BLAS_THREADS</c> if set (an integer in [1, <see cref="MaxThreads"/>]), else
    /// <paramref name="torchThreads"/>. A matmul is one OpenBLAS call that libtorch's threads do not split, so OpenBLAS needs
    /// its own threads; beside libgomp's waiting threads that only pays when they wait passively (the default we set):
    /// `editrt bench torch-threads` on the quiet 2-core machine, 2048³ matmul 80 ms with 2 OpenBLAS threads vs 156 ms with 1
    /// (passive), but 158 ms either way and a 3.4× slower model step when libgomp spins (OMP_WAIT_POLICY=ACTIVE).
    /// </summary>
    public static (int Threads, string Source) ResolveBlasThreads(string? editrtBlasThreads, int torchThreads)
    {
        if (!string.IsNullOrWhiteSpace(editrtBlasThreads))
            return (ThreadCount(editrtBlasThreads, BlasThreadsVariable, Environment.ProcessorCount), BlasThreadsVariable);
        return (torchThreads, "default");
    }

    /// <summary>How the OpenBLAS kernel family was decided (the environment, OpenBLAS's own detection, or our override of its Prescott fallback).</summary>
    public static string? BlasCoreSource => NativeLoader.OpenBlasCoreSource;

    /// <summary>How libgomp's wait policy was decided (the environment, or our passive default).</summary>
    public static string? OmpWaitPolicySource => NativeLoader.OmpWaitPolicySource;

    /// <summary>E.g. "CPU (libtorch 1.13.0, 2 threads; OpenBLAS Haswell kernels, 1 thread)"; the version is TORCH_VERSION
    /// of the headers the shim was built with; the OpenBLAS part is what OpenBLAS reports it runs (absent when torch's BLAS is another).</summary>
    public string DeviceDescription
    {
        get
        {
            var (core, blasThreads) = BlasInfo();
            string blas = core is null ? "" : $"; OpenBLAS {core} kernels, {blasThreads} thread{(blasThreads == 1 ? "" : "s")}";
            return $"CPU (libtorch {TorchVersion}, {Threads} thread{(Threads == 1 ? "" : "s")}{blas})";
        }
    }
    /// <summary>Intra-op threads set when this backend was created.</summary>
    public int Threads { get; }
    /// <summary>Where <see cref="Threads"/> came from: "EDITRT_TORCH_THREADS", "OMP_NUM_THREADS", "processor count" or "constructor argument".</summary>
    public string ThreadSource { get; }
    /// <summary>Whether OpenBLAS's own pool was also set to <see cref="Threads"/> (false when torch's BLAS is not OpenBLAS).</summary>
    public bool BlasThreadsSet { get; }
    /// <summary>OpenBLAS's thread count set when this backend was created (applied only when <see cref="BlasThreadsSet"/>).</summary>
    public int BlasThreads { get; }
    /// <summary>Where <see cref="BlasThreads"/> came from: "EDITRT_BLAS_THREADS" or "default".</summary>
    public string BlasThreadSource { get; }

    /// <summary>The kernel family OpenBLAS runs (e.g. "Haswell") and its thread count now; (null, 0) when torch's BLAS is not OpenBLAS.</summary>
    public static (string? Core, int Threads) BlasInfo()
    {
        NativeLoader.EnsureLoaded();
        Check(Native.et_blas_info(out IntPtr core, out int threads), "blas_info");
        return (core == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(core), threads);
    }

    /// <summary>TORCH_VERSION of the libtorch headers the shim was compiled against.</summary>
    public string TorchVersion { get; }
    /// <summary>When set, <see cref="Empty"/> fills F32 tensors with NaN and I32 tensors with NaN's bit pattern.</summary>
    public bool PoisonAllocations { get; set; }

    // ---------------------------------------------------------------- plumbing

    private static void Check(int status, string op)
    {
        if (status != 0) throw new TorchException(op, status, Native.LastError());
    }

    /// <summary>A libtorch failure caused by the arguments (shapes, ids): an ArgumentException carrying torch's message.</summary>
    private static void CheckArgument(int status, string op, string context, string paramName)
    {
        if (status == 0) return;
        var e = new TorchException(op, status, Native.LastError());
        string why = e.TorchMessage.StartsWith(op + ": ", StringComparison.Ordinal) ? e.TorchMessage[(op.Length + 2)..] : e.TorchMessage;
        throw new ArgumentException($"{context}: rejected by libtorch: {why}", paramName, e);
    }

    /// <summary>The live Torch tensor behind <paramref name="t"/> (any dtype), or an error naming the op and argument.
    /// Dtypes and shapes are the op's check in <see cref="OpChecks"/>, shared with every backend.</summary>
    private static TorchTensor T(Tensor? t, string op, string arg) =>
        t is TorchTensor tt && !tt.IsDisposed ? tt : throw OpChecks.NotOwned(op, arg, t, "torch");

    /// <summary>Wraps an output handle, checking that libtorch produced exactly the dtype and shape this op promises.</summary>
    private TorchTensor Wrap(TorchHandle h, string op, DType dtype, int[] expected)
    {
        try
        {
            long* sizes = stackalloc long[MaxRank];
            Check(Native.et_shape(h, sizes, MaxRank, out int rank), op);
            Check(Native.et_dtype(h, out int code), op);
            bool same = rank == expected.Length && code == (int)dtype;
            for (int i = 0; same && i < rank; i++) same = sizes[i] == expected[i];
            if (!same)
            {
                var got = "[" + string.Join(", ", Enumerable.Range(0, Math.Min(rank, MaxRank)).Select(i => sizes[i])) + "]";
                throw new InvalidOperationException($"{op}: libtorch returned a {(DType)code} tensor {got}, expected {dtype} {Tensor.Format(expected)} (a bug in the Torch backend).");
            }
            return new TorchTensor(this, h, dtype, expected);
        }
        catch
        {
            h.Dispose();
            throw;
        }
    }

    private static long[] Dims(int[] shape) => Array.ConvertAll(shape, d => (long)d);

    /// <summary>This backend's own limit on shapes (the shim's fixed-size shape buffers), beside the shared checks.</summary>
    private static void MaxRankOf(string op, int[] shape)
    {
        if (shape.Length > MaxRank) throw new ArgumentException($"{op}: rank {shape.Length} exceeds {MaxRank}.", nameof(shape));
    }

    // ---------------------------------------------------------------- tensors

    public Tensor Empty(DType dtype, params int[] shape)
    {
        OpChecks.Empty(dtype, shape);
        MaxRankOf("empty", shape);
        var dims = Dims(shape);
        TorchHandle h;
        fixed (long* p = dims) Check(Native.et_empty((int)dtype, p, dims.Length, PoisonAllocations ? 1 : 0, out h), "empty");
        return Wrap(h, "empty", dtype, shape);
    }

    public Tensor FromArray(float[] data, params int[] shape) => FromData(data, DType.F32, shape);
    public Tensor FromArray(int[] data, params int[] shape) => FromData(data, DType.I32, shape);

    private Tensor FromData<T>(T[] data, DType dtype, int[] shape) where T : unmanaged
    {
        OpChecks.FromArray(data, shape);
        MaxRankOf("from_array", shape);
        var dims = Dims(shape);
        TorchHandle h;
        fixed (T* d = data)
        fixed (long* p = dims)
            Check(Native.et_from_data((int)dtype, d, p, dims.Length, out h), "from_array");
        return Wrap(h, "from_array", dtype, shape);
    }

    public float[] ToFloatArray(Tensor t)
    {
        var tt = T(t, "ToFloatArray", "tensor");
        OpChecks.DType("ToFloatArray", "tensor", t);
        var r = new float[tt.Count];
        fixed (float* p = r) Check(Native.et_to_data(tt.Handle, (int)DType.F32, p, r.Length), "to_array");
        return r;
    }

    public int[] ToIntArray(Tensor t)
    {
        var tt = T(t, "ToIntArray", "tensor");
        OpChecks.DType("ToIntArray", "tensor", t, DType.I32);
        var r = new int[tt.Count];
        fixed (int* p = r) Check(Native.et_to_data(tt.Handle, (int)DType.I32, p, r.Length), "to_array");
        return r;
    }

    /// <summary>Nothing to wait for: every libtorch CPU op has finished when its call returns.</summary>
    public void Synchronize() { }

    // ---------------------------------------------------------------- elementwise

    public void Fill(Tensor x, float value)
    {
        var tx = T(x, "fill", "x");
        OpChecks.Unary("fill", x);
        Check(Native.et_fill(tx.Handle, value), "fill");
    }

    public Tensor Reshape(Tensor x, params int[] shape)
    {
        var tx = T(x, "reshape", "x");
        OpChecks.Reshape(x, shape);
        MaxRankOf("reshape", shape);
        var dims = Dims(shape);
        TorchHandle h;
        fixed (long* p = dims) Check(Native.et_reshape(tx.Handle, p, dims.Length, out h), "reshape");
        return Wrap(h, "reshape", x.DType, shape);
    }

    public Tensor Add(Tensor a, Tensor b) => Binary("add", a, b, Native.et_add);
    public Tensor Sub(Tensor a, Tensor b) => Binary("sub", a, b, Native.et_sub);
    public Tensor Mul(Tensor a, Tensor b) => Binary("mul", a, b, Native.et_mul);

    private delegate int BinaryFn(TorchHandle a, TorchHandle b, out TorchHandle c);

    private Tensor Binary(string op, Tensor a, Tensor b, BinaryFn fn)
    {
        var ta = T(a, op, "a");
        var tb = T(b, op, "b");
        OpChecks.Binary(op, a, b);
        Check(fn(ta.Handle, tb.Handle, out var h), op);
        return Wrap(h, op, DType.F32, a.Shape);
    }

    public Tensor Scale(Tensor x, float alpha)
    {
        var tx = T(x, "scale", "x");
        OpChecks.Unary("scale", x);
        Check(Native.et_scale(tx.Handle, alpha, out var h), "scale");
        return Wrap(h, "scale", DType.F32, x.Shape);
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        var tx = T(x, "axpy", "x");
        var ty = T(y, "axpy", "y");
        OpChecks.Axpy(x, y);
        Check(Native.et_axpy(alpha, tx.Handle, ty.Handle), "axpy");
    }

    // ---------------------------------------------------------------- layout

    public void CopyStrided(Tensor src, Tensor dst, int rows, int cols, long srcOffset, long srcStride, long dstOffset, long dstStride)
    {
        var s = T(src, "copy_strided", "src");
        var d = T(dst, "copy_strided", "dst");
        OpChecks.CopyStrided(src, dst, rows, cols, srcOffset, srcStride, dstOffset, dstStride);
        Check(Native.et_copy_strided(s.Handle, d.Handle, rows, cols, srcOffset, srcStride, dstOffset, dstStride), "copy_strided");
    }

    public Tensor Transpose12(Tensor x)
    {
        var tx = T(x, "transpose12", "x");
        var shape = OpChecks.Transpose12(x);
        Check(Native.et_transpose12(tx.Handle, out var h), "transpose12");
        return Wrap(h, "transpose12", x.DType, shape);
    }

    // ---------------------------------------------------------------- whole-model reference

    /// <summary>
    /// GPT-2's next-token loss and every parameter gradient from ONE torch graph and ONE backward
    /// (not the per-op tape): the reference the tape's gradients are checked against.
    /// <paramref name="parameters"/> in Gpt2Config.ParameterShapes() order; ids I32 (B, T); keyMask (B, T) or null; targets I32 (B·T).
    /// </summary>
    public (float Loss, float[][] Grads) Gpt2LossAndGradients(IReadOnlyList<Tensor> parameters, int layers, int heads, double eps,
        Tensor ids, Tensor? keyMask, Tensor targets)
    {
        var ps = parameters.Select((t, i) => T(t, "gpt2_loss_grads", $"parameter {i}")).ToArray();
        foreach (var (p, i) in ps.Select((p, i) => (p, i))) OpChecks.DType("gpt2_loss_grads", $"parameter {i}", p);
        var idsT = T(ids, "gpt2_loss_grads", "ids");
        var tgT = T(targets, "gpt2_loss_grads", "targets");
        var maskT = keyMask is null ? null : T(keyMask, "gpt2_loss_grads", "keyMask");
        if (keyMask is not null) OpChecks.DType("gpt2_loss_grads", "keyMask", keyMask);
        var refs = new List<bool>();
        var raw = new IntPtr[ps.Length];
        var grads = new IntPtr[ps.Length];
        try
        {
            foreach (var (p, i) in ps.Select((p, i) => (p, i)))
            {
                bool added = false;
                p.Handle.DangerousAddRef(ref added);
                refs.Add(added);
                raw[i] = p.Handle.DangerousGetHandle();
            }
            bool maskAdded = false;
            maskT?.Handle.DangerousAddRef(ref maskAdded);
            try
            {
                TorchHandle loss;
                fixed (IntPtr* pr = raw)
                fixed (IntPtr* pg = grads)
                    Check(Native.et_gpt2_loss_grads(pr, ps.Length, layers, heads, eps, idsT.Handle,
                        maskT is null ? IntPtr.Zero : maskT.Handle.DangerousGetHandle(), tgT.Handle, out loss, pg), "gpt2_loss_grads");
                using var lossT = Wrap(loss, "gpt2_loss_grads", DType.F32, [1]);
                var result = new float[ps.Length][];
                for (int i = 0; i < ps.Length; i++)
                {
                    var owned = new TorchHandle(grads[i]);
                    grads[i] = IntPtr.Zero; // the SafeHandle owns it now
                    using var g = Wrap(owned, "gpt2_loss_grads", DType.F32, parameters[i].Shape);
                    result[i] = ToFloatArray(g);
                }
                return (ToFloatArray(lossT)[0], result);
            }
            finally { if (maskAdded) maskT!.Handle.DangerousRelease(); }
        }
        finally
        {
            for (int i = 0; i < ps.Length; i++) if (refs.Count > i && refs[i]) ps[i].Handle.DangerousRelease();
            foreach (var g in grads) if (g != IntPtr.Zero) Native.et_free(g);
        }
    }

    // ---------------------------------------------------------------- reductions

    public Tensor Sum(Tensor x)
    {
        var tx = T(x, "sum", "x");
        OpChecks.Unary("sum", x);
        Check(Native.et_sum(tx.Handle, out var h), "sum");
        return Wrap(h, "sum", DType.F32, [1]);
    }

    public Tensor RowSum(Tensor x)
    {
        var tx = T(x, "row_sum", "x");
        var shape = OpChecks.RowReduce("row_sum", x);
        Check(Native.et_row_sum(tx.Handle, out var h), "row_sum");
        return Wrap(h, "row_sum", DType.F32, shape);
    }

    public Tensor RowMax(Tensor x)
    {
        var tx = T(x, "row_max", "x");
        var shape = OpChecks.RowReduce("row_max", x);
        Check(Native.et_row_max(tx.Handle, out var h), "row_max");
        return Wrap(h, "row_max", DType.F32, shape);
    }

    public Tensor SumBackward(Tensor gy, int[] shape, float scale)
    {
        var tg = T(gy, "sum_backward", "gy");
        OpChecks.SumBackward(gy, shape);
        MaxRankOf("sum_backward", shape);
        var dims = Dims(shape);
        TorchHandle h;
        fixed (long* p = dims) Check(Native.et_sum_backward(tg.Handle, p, dims.Length, scale, out h), "sum_backward");
        return Wrap(h, "sum_backward", DType.F32, shape.ToArray());
    }

    public Tensor RowSumBackward(Tensor gy, int[] shape, float scale)
    {
        var tg = T(gy, "row_sum_backward", "gy");
        OpChecks.RowSumBackward(gy, shape);
        MaxRankOf("row_sum_backward", shape);
        var dims = Dims(shape);
        TorchHandle h;
        fixed (long* p = dims) Check(Native.et_row_sum_backward(tg.Handle, p, dims.Length, scale, out h), "row_sum_backward");
        return Wrap(h, "row_sum_backward", DType.F32, shape.ToArray());
    }

    // ---------------------------------------------------------------- matmul

    private static string MatmulText(Tensor a, Tensor b, bool transA, bool transB) =>
        $"matmul: A {a.ShapeString}{(transA ? "ᵀ" : "")} · B {b.ShapeString}{(transB ? "ᵀ" : "")}";

    public Tensor Matmul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        var ta = T(a, "matmul", "A");
        var tb = T(b, "matmul", "B");
        // Ranks here; the inner and batch dimensions are left to libtorch, whose message reaches the user.
        var shape = OpChecks.MatmulRanks("matmul", a, b, transA, transB);
        CheckArgument(Native.et_matmul(ta.Handle, tb.Handle, transA ? 1 : 0, transB ? 1 : 0, out var h), "matmul",
            MatmulText(a, b, transA, transB), "b");
        return Wrap(h, "matmul", DType.F32, shape);
    }

    public (Tensor GradA, Tensor GradB) MatmulBackward(Tensor a, Tensor b, Tensor gy, bool transA = false, bool transB = false)
    {
        var ta = T(a, "matmul_backward", "A");
        var tb = T(b, "matmul_backward", "B");
        var tg = T(gy, "matmul_backward", "gy");
        var shape = OpChecks.MatmulRanks("matmul_backward", a, b, transA, transB);
        OpChecks.MatmulGy(gy, shape);
        CheckArgument(Native.et_matmul_backward(ta.Handle, tb.Handle, tg.Handle, transA ? 1 : 0, transB ? 1 : 0, out var ga, out var gb),
            "matmul_backward", MatmulText(a, b, transA, transB), "b");
        var r = WrapAll("matmul_backward", (ga, a.Shape), (gb, b.Shape));
        return (r[0], r[1]);
    }

    /// <summary>Wraps the outputs of a multi-output op; if one fails, frees all of them.</summary>
    private TorchTensor[] WrapAll(string op, params (TorchHandle Handle, int[] Shape)[] outs)
    {
        var r = new TorchTensor[outs.Length];
        int i = 0;
        try
        {
            for (; i < outs.Length; i++) r[i] = Wrap(outs[i].Handle, op, DType.F32, outs[i].Shape);
            return r;
        }
        catch
        {
            for (int j = 0; j < i; j++) r[j].Dispose();
            for (int j = i + 1; j < outs.Length; j++) outs[j].Handle.Dispose();
            throw;
        }
    }

    // ---------------------------------------------------------------- layers

    public Tensor BiasAdd(Tensor x, Tensor bias)
    {
        var tx = T(x, "bias_add", "x");
        var tb = T(bias, "bias_add", "bias");
        OpChecks.BiasAdd("bias_add", x, bias);
        Check(Native.et_bias_add(tx.Handle, tb.Handle, out var h), "bias_add");
        return Wrap(h, "bias_add", DType.F32, x.Shape);
    }

    public (Tensor GradX, Tensor GradBias) BiasAddBackward(Tensor x, Tensor bias, Tensor gy)
    {
        const string op = "bias_add_backward";
        var tx = T(x, op, "x");
        var tb = T(bias, op, "bias");
        var tg = T(gy, op, "gy");
        OpChecks.BiasAddBackward(x, bias, gy);
        Check(Native.et_bias_add_backward(tx.Handle, tb.Handle, tg.Handle, out var gx, out var gb), op);
        var r = WrapAll(op, (gx, x.Shape), (gb, bias.Shape));
        return (r[0], r[1]);
    }

    public Tensor Gelu(Tensor x)
    {
        var tx = T(x, "gelu", "x");
        OpChecks.Unary("gelu", x);
        Check(Native.et_gelu(tx.Handle, out var h), "gelu");
        return Wrap(h, "gelu", DType.F32, x.Shape);
    }

    public Tensor GeluBackward(Tensor x, Tensor gy)
    {
        var tx = T(x, "gelu_backward", "x");
        var tg = T(gy, "gelu_backward", "gy");
        OpChecks.GeluBackward(x, gy);
        Check(Native.et_gelu_backward(tx.Handle, tg.Handle, out var h), "gelu_backward");
        return Wrap(h, "gelu_backward", DType.F32, x.Shape);
    }

    public Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta, float eps = 1e-5f)
    {
        const string op = "layernorm";
        var tx = T(x, op, "x");
        var tgm = T(gamma, op, "gamma");
        var tbt = T(beta, op, "beta");
        OpChecks.LayerNorm(op, x, gamma, beta, eps);
        Check(Native.et_layer_norm(tx.Handle, tgm.Handle, tbt.Handle, eps, out var h), op);
        return Wrap(h, op, DType.F32, x.Shape);
    }

    public (Tensor GradX, Tensor GradGamma, Tensor GradBeta) LayerNormBackward(Tensor x, Tensor gamma, Tensor beta, Tensor gy, float eps = 1e-5f)
    {
        const string op = "layernorm_backward";
        var tx = T(x, op, "x");
        var tgm = T(gamma, op, "gamma");
        var tbt = T(beta, op, "beta");
        var tg = T(gy, op, "gy");
        OpChecks.LayerNormBackward(x, gamma, beta, gy, eps);
        Check(Native.et_layer_norm_backward(tx.Handle, tgm.Handle, tbt.Handle, tg.Handle, eps, out var gx, out var ggm, out var gbt), op);
        var r = WrapAll(op, (gx, x.Shape), (ggm, gamma.Shape), (gbt, beta.Shape));
        return (r[0], r[1], r[2]);
    }

    public Tensor Softmax(Tensor x)
    {
        var tx = T(x, "softmax", "x");
        OpChecks.Softmax("softmax", x);
        Check(Native.et_softmax(tx.Handle, out var h), "softmax");
        return Wrap(h, "softmax", DType.F32, x.Shape);
    }

    public Tensor SoftmaxBackward(Tensor x, Tensor gy)
    {
        var tx = T(x, "softmax_backward", "x");
        var tg = T(gy, "softmax_backward", "gy");
        OpChecks.SoftmaxBackward(x, gy);
        Check(Native.et_softmax_backward(tx.Handle, tg.Handle, out var h), "softmax_backward");
        return Wrap(h, "softmax_backward", DType.F32, x.Shape);
    }

    // ---------------------------------------------------------------- sequence

    private static (TorchTensor Q, TorchTensor K, TorchTensor V, TorchTensor? Mask) Attention(string op, Tensor q, Tensor k, Tensor v, Tensor? keyMask)
    {
        var tq = T(q, op, "q");
        var tk = T(k, op, "k");
        var tv = T(v, op, "v");
        var tm = keyMask is null ? null : T(keyMask, op, "keyMask");
        return (tq, tk, tv, tm);
    }

    public Tensor CausalAttention(Tensor q, Tensor k, Tensor v, Tensor? keyMask)
    {
        const string op = "causal_attention";
        var (tq, tk, tv, tm) = Attention(op, q, k, v, keyMask);
        OpChecks.Attention(op, q, k, v, keyMask, null);
        TorchHandle h;
        if (tm is null) Check(Native.et_causal_attention_nomask(tq.Handle, tk.Handle, tv.Handle, IntPtr.Zero, out h), op);
        else Check(Native.et_causal_attention(tq.Handle, tk.Handle, tv.Handle, tm.Handle, out h), op);
        return Wrap(h, op, DType.F32, q.Shape);
    }

    public (Tensor GradQ, Tensor GradK, Tensor GradV) CausalAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor? keyMask, Tensor gy)
    {
        const string op = "causal_attention_backward";
        var (tq, tk, tv, tm) = Attention(op, q, k, v, keyMask);
        var tg = T(gy, op, "gy");
        OpChecks.Attention(op, q, k, v, keyMask, gy);
        TorchHandle gq, gk, gv;
        if (tm is null) Check(Native.et_causal_attention_backward_nomask(tq.Handle, tk.Handle, tv.Handle, IntPtr.Zero, tg.Handle, out gq, out gk, out gv), op);
        else Check(Native.et_causal_attention_backward(tq.Handle, tk.Handle, tv.Handle, tm.Handle, tg.Handle, out gq, out gk, out gv), op);
        var r = WrapAll(op, (gq, q.Shape), (gk, k.Shape), (gv, v.Shape));
        return (r[0], r[1], r[2]);
    }

    public Tensor Embedding(Tensor ids, Tensor table)
    {
        var ti = T(ids, "embedding", "ids");
        var tt = T(table, "embedding", "table");
        OpChecks.Embedding(ids, table);
        CheckArgument(Native.et_embedding(ti.Handle, tt.Handle, out var h), "embedding",
            $"embedding: ids {ids.ShapeString} into table {table.ShapeString} (ids must be in [0, {table.Shape[0]}))", nameof(ids));
        return Wrap(h, "embedding", DType.F32, [.. ids.Shape, table.Shape[1]]);
    }

    public Tensor EmbeddingBackward(Tensor ids, Tensor gy, int vocabSize)
    {
        const string op = "embedding_backward";
        var ti = T(ids, op, "ids");
        var tg = T(gy, op, "gy");
        int c = OpChecks.EmbeddingBackward(ids, gy, vocabSize);
        CheckArgument(Native.et_embedding_backward(ti.Handle, tg.Handle, vocabSize, out var h), op,
            $"{op}: ids {ids.ShapeString} (must be in [0, {vocabSize}))", nameof(ids));
        return Wrap(h, op, DType.F32, [vocabSize, c]);
    }

    public Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
    {
        var tl = T(logits, "cross_entropy", "logits");
        var tt = T(targets, "cross_entropy", "targets");
        OpChecks.CrossEntropy("cross_entropy", logits, targets);
        CheckArgument(Native.et_cross_entropy(tl.Handle, tt.Handle, ignoreIndex, out var h), "cross_entropy",
            $"cross_entropy: targets must be in [0, {logits.Shape[1]}) or {ignoreIndex}", nameof(targets));
        return Wrap(h, "cross_entropy", DType.F32, [1]);
    }

    public Tensor CrossEntropyBackward(Tensor logits, Tensor targets, Tensor gy, int ignoreIndex = -100)
    {
        const string op = "cross_entropy_backward";
        var tl = T(logits, op, "logits");
        var tt = T(targets, op, "targets");
        var tg = T(gy, op, "gy");
        OpChecks.CrossEntropyBackward(logits, targets, gy);
        CheckArgument(Native.et_cross_entropy_backward(tl.Handle, tt.Handle, tg.Handle, ignoreIndex, out var h), op,
            $"{op}: targets must be in [0, {logits.Shape[1]}) or {ignoreIndex}", nameof(targets));
        return Wrap(h, op, DType.F32, logits.Shape);
    }

    // ---------------------------------------------------------------- editor ops (MELO)

    public Tensor LoraForward(Tensor x, Tensor a, Tensor b, Tensor blockIds, float scale)
    {
        const string op = "lora_forward";
        TorchTensor tx = T(x, op, "x"), ta = T(a, op, "a"), tb = T(b, op, "b"), ti = T(blockIds, op, "blockIds");
        var (S, len, _, _, outW, _) = OpChecks.LoraForward(x, a, b, blockIds);
        Check(Native.et_lora_forward(tx.Handle, ta.Handle, tb.Handle, ti.Handle, scale, out var h), op);
        return Wrap(h, op, DType.F32, [S, len, outW]);
    }

    public (Tensor GradX, Tensor GradA, Tensor GradB) LoraBackward(Tensor x, Tensor a, Tensor b, Tensor blockIds, Tensor gy, float scale, int block)
    {
        const string op = "lora_backward";
        TorchTensor tx = T(x, op, "x"), ta = T(a, op, "a"), tb = T(b, op, "b"), ti = T(blockIds, op, "blockIds"), tg = T(gy, op, "gy");
        var (_, _, inW, K, outW, _) = OpChecks.LoraBackward(x, a, b, blockIds, gy, block);
        Check(Native.et_lora_backward(tx.Handle, ta.Handle, tb.Handle, ti.Handle, tg.Handle, scale, block, out var gx, out var ga, out var gb), op);
        var r = WrapAll(op, (gx, x.Shape), (ga, [inW, K]), (gb, [K, outW]));
        return (r[0], r[1], r[2]);
    }

    public (Tensor Blocks, Tensor Distances) ClusterLookup(Tensor queries, Tensor centres, Tensor radii, Tensor points, Tensor pointInfo)
    {
        const string op = "cluster_lookup";
        TorchTensor tq = T(queries, op, "queries"), tc = T(centres, op, "centres"), tr = T(radii, op, "radii"),
            tp = T(points, op, "points"), ti = T(pointInfo, op, "pointInfo");
        var (Q, _, _, _) = OpChecks.ClusterLookup(queries, centres, radii, points, pointInfo);
        Check(Native.et_cluster_lookup(tq.Handle, tc.Handle, tr.Handle, tp.Handle, ti.Handle, out var blocks, out var dist), op);
        TorchTensor? bt = null;
        try
        {
            bt = Wrap(blocks, op, DType.I32, [Q]);
            return (bt, Wrap(dist, op, DType.F32, [Q]));
        }
        catch { bt?.Dispose(); if (bt is null) dist.Dispose(); throw; }
    }

    // ---------------------------------------------------------------- optimizer

    public void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamConfig config, int step)
    {
        const string op = "adam_step";
        var tp = T(param, op, "param");
        var tg = T(grad, op, "grad");
        var tm = T(m, op, "m");
        var tv = T(v, op, "v");
        OpChecks.AdamStep(param, grad, m, v, config, step);
        Check(Native.et_adam_step(tp.Handle, tg.Handle, tm.Handle, tv.Handle, config.LearningRate, config.Beta1, config.Beta2,
            config.Epsilon, config.WeightDecay, config.Decoupled ? 1 : 0, step), op);
    }

    /// <summary>Nothing to release: each tensor owns its native memory and frees it on its own Dispose.</summary>
    public void Dispose() { }
}
