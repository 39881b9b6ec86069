using System.Reflection;
using System.Runtime.InteropServices;

namespace EditRuntime.Torch;

/// <summary>
/// The entry points of libeditrt_torch.so (native/editrt_torch.cpp). Every function returns a
/// status (0 = ok) and leaves its error in <c>et_last_error()</c>; tensors are opaque handles
/// owned by <see cref="TorchHandle"/>. Nothing here may be called before <see cref="NativeLoader.EnsureLoaded"/>.
/// </summary>
internal static unsafe partial class Native
{
    internal const string Lib = "editrt_torch";

    /// <summary>Must equal kAbiVersion in editrt_torch.cpp.</summary>
    internal const int AbiVersion = 8;

    [LibraryImport(Lib)] internal static partial IntPtr et_last_error();
    [LibraryImport(Lib)] internal static partial int et_abi_version(out int version);
    [LibraryImport(Lib)] internal static partial int et_torch_version(out IntPtr version);
    [LibraryImport(Lib)] internal static partial int et_set_num_threads(int n, int blasThreads, out int blas);
    [LibraryImport(Lib)] internal static partial int et_blas_info(out IntPtr core, out int threads);
    [LibraryImport(Lib)] internal static partial int et_get_num_threads(out int n);

    [LibraryImport(Lib)] internal static partial int et_free(IntPtr t);
    [LibraryImport(Lib)] internal static partial int et_empty(int dtype, long* shape, int rank, int poison, out TorchHandle t);
    [LibraryImport(Lib)] internal static partial int et_from_data(int dtype, void* data, long* shape, int rank, out TorchHandle t);
    [LibraryImport(Lib)] internal static partial int et_to_data(TorchHandle t, int dtype, void* dst, long count);
    [LibraryImport(Lib)] internal static partial int et_shape(TorchHandle t, long* sizes, int maxRank, out int rank);
    [LibraryImport(Lib)] internal static partial int et_dtype(TorchHandle t, out int dtype);

    [LibraryImport(Lib)] internal static partial int et_fill(TorchHandle x, float value);
    [LibraryImport(Lib)] internal static partial int et_reshape(TorchHandle x, long* shape, int rank, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_add(TorchHandle a, TorchHandle b, out TorchHandle c);
    [LibraryImport(Lib)] internal static partial int et_sub(TorchHandle a, TorchHandle b, out TorchHandle c);
    [LibraryImport(Lib)] internal static partial int et_mul(TorchHandle a, TorchHandle b, out TorchHandle c);
    [LibraryImport(Lib)] internal static partial int et_scale(TorchHandle x, float alpha, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_axpy(float alpha, TorchHandle x, TorchHandle y);

    [LibraryImport(Lib)] internal static partial int et_copy_strided(TorchHandle src, TorchHandle dst, long rows, long cols, long srcOffset, long srcStride, long dstOffset, long dstStride);
    [LibraryImport(Lib)] internal static partial int et_transpose12(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)]
    internal static partial int et_gpt2_loss_grads(IntPtr* parameters, int count, int layers, int heads, double eps, TorchHandle ids,
        IntPtr keyMask, TorchHandle targets, out TorchHandle loss, IntPtr* grads);

    [LibraryImport(Lib)] internal static partial int et_sum(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_row_sum(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_row_max(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_sum_backward(TorchHandle gy, long* shape, int rank, float scale, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_row_sum_backward(TorchHandle gy, long* shape, int rank, float scale, out TorchHandle y);

    [LibraryImport(Lib)] internal static partial int et_matmul(TorchHandle a, TorchHandle b, int transA, int transB, out TorchHandle c);
    [LibraryImport(Lib)]
    internal static partial int et_matmul_backward(TorchHandle a, TorchHandle b, TorchHandle gy, int transA, int transB,
        out TorchHandle gradA, out TorchHandle gradB);

    [LibraryImport(Lib)] internal static partial int et_bias_add(TorchHandle x, TorchHandle bias, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_bias_add_backward(TorchHandle x, TorchHandle bias, TorchHandle gy, out TorchHandle gx, out TorchHandle gb);
    [LibraryImport(Lib)] internal static partial int et_gelu(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_gelu_backward(TorchHandle x, TorchHandle gy, out TorchHandle gx);
    [LibraryImport(Lib)] internal static partial int et_layer_norm(TorchHandle x, TorchHandle gamma, TorchHandle beta, float eps, out TorchHandle y);
    [LibraryImport(Lib)]
    internal static partial int et_layer_norm_backward(TorchHandle x, TorchHandle gamma, TorchHandle beta, TorchHandle gy, float eps,
        out TorchHandle gx, out TorchHandle gGamma, out TorchHandle gBeta);
    [LibraryImport(Lib)] internal static partial int et_softmax(TorchHandle x, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_softmax_backward(TorchHandle x, TorchHandle gy, out TorchHandle gx);

    [LibraryImport(Lib)] internal static partial int et_causal_attention(TorchHandle q, TorchHandle k, TorchHandle v, TorchHandle keyMask, out TorchHandle y);
    /// <summary>The same entry point with a null key mask.</summary>
    [LibraryImport(Lib, EntryPoint = "et_causal_attention")]
    internal static partial int et_causal_attention_nomask(TorchHandle q, TorchHandle k, TorchHandle v, IntPtr noMask, out TorchHandle y);
    [LibraryImport(Lib)]
    internal static partial int et_causal_attention_backward(TorchHandle q, TorchHandle k, TorchHandle v, TorchHandle keyMask, TorchHandle gy,
        out TorchHandle gq, out TorchHandle gk, out TorchHandle gv);
    [LibraryImport(Lib, EntryPoint = "et_causal_attention_backward")]
    internal static partial int et_causal_attention_backward_nomask(TorchHandle q, TorchHandle k, TorchHandle v, IntPtr noMask, TorchHandle gy,
        out TorchHandle gq, out TorchHandle gk, out TorchHandle gv);

    [LibraryImport(Lib)] internal static partial int et_embedding(TorchHandle ids, TorchHandle table, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_embedding_backward(TorchHandle ids, TorchHandle gy, long vocabSize, out TorchHandle gTable);
    [LibraryImport(Lib)] internal static partial int et_cross_entropy(TorchHandle logits, TorchHandle targets, long ignoreIndex, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_cross_entropy_backward(TorchHandle logits, TorchHandle targets, TorchHandle gy, long ignoreIndex, out TorchHandle gLogits);

    [LibraryImport(Lib)] internal static partial int et_lora_forward(TorchHandle x, TorchHandle a, TorchHandle b, TorchHandle ids, float scale, out TorchHandle y);
    [LibraryImport(Lib)]
    internal static partial int et_lora_backward(TorchHandle x, TorchHandle a, TorchHandle b, TorchHandle ids, TorchHandle gy, float scale, long block,
        out TorchHandle gx, out TorchHandle ga, out TorchHandle gb);
    [LibraryImport(Lib)]
    internal static partial int et_cluster_lookup(TorchHandle queries, TorchHandle centres, TorchHandle radii, TorchHandle points, TorchHandle pointInfo,
        out TorchHandle blocks, out TorchHandle distances);

    [LibraryImport(Lib)]
    internal static partial int et_adam_step(TorchHandle param, TorchHandle grad, TorchHandle m, TorchHandle v,
        double lr, double beta1, double beta2, double eps, double weightDecay, int decoupled, long step);

    /// <summary>The message of the last failed call on this thread.</summary>
    internal static string LastError() => Marshal.PtrToStringUTF8(et_last_error()) ?? "(no message)";
}

/// <summary>Owns one native tensor handle (a heap <c>torch::Tensor*</c>); releasing it frees the tensor.</summary>
internal sealed class TorchHandle : SafeHandle
{
    public TorchHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    /// <summary>Takes ownership of a raw handle returned through an array out-parameter.</summary>
    public TorchHandle(IntPtr raw) : base(IntPtr.Zero, ownsHandle: true) => SetHandle(raw);
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() => Native.et_free(handle) == 0;
}

/// <summary>Finds and loads libeditrt_torch.so once; the first TorchBackend triggers it.</summary>
internal static class NativeLoader
{
    internal const string LibraryFile = "libeditrt_torch.so";
    internal const string InstallHint = "Install libtorch with 'make deps' (or 'sudo apt-get install libtorch-dev') and rebuild";

    // A failure is cached: every later TorchBackend throws the same error.
    private static readonly Lazy<IntPtr> s_library = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    internal static void EnsureLoaded() => _ = s_library.Value;

    /// <summary>Where the shim is expected: next to this assembly (the build copies it there).</summary>
    internal static string ExpectedPath
    {
        get
        {
            string dir = Path.GetDirectoryName(typeof(NativeLoader).Assembly.Location) is { Length: > 0 } d ? d : AppContext.BaseDirectory;
            return Path.Combine(dir, LibraryFile);
        }
    }

    internal static string MissingShimMessage(string path) =>
        $"The Torch backend's native library {LibraryFile} was not found at {path}. It is built only when libtorch's " +
        "headers (/usr/include/torch/csrc/api/include/torch/torch.h) are present at build time, and the build warned " +
        $"that they were missing. {InstallHint}.";

    internal static string LoadFailedMessage(string path, string why) =>
        $"The Torch backend's native library {path} could not be loaded: {why}. It needs libtorch 1.13 " +
        $"(libtorch.so, libtorch_cpu.so, libc10.so). {InstallHint}.";

    /// <summary>The dynamic loader's own reason (dlerror, the last line of .NET's message), e.g.
    /// "libtorch_cpu.so: cannot open shared object file: No such file or directory".</summary>
    internal static string LoaderReason(string message) =>
        message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? message;

    /// <summary>How the OpenBLAS kernel family was decided, e.g. "OPENBLAS_CORETYPE from the environment",
    /// "OpenBLAS's own detection", or "set to SkylakeX: OpenBLAS's detection fell back to Prescott" (null before loading).</summary>
    internal static string? OpenBlasCoreSource { get; private set; }

    /// <summary>The probe next to this assembly that prints OpenBLAS's own choice (native/editrt_blas_probe.c).</summary>
    internal const string BlasProbeFile = "editrt-blas-probe";

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    /// <summary>
    /// OpenBLAS 0.3.21 (Debian 12) does not recognise some recent CPUs (seen: a Sapphire Rapids Xeon) and
    /// falls back to its SSE3 "Prescott" kernels, ~60 GFLOP/s for a 2048² fp32 matmul on 2 cores instead of
    /// ~200–350. It reads OPENBLAS_CORETYPE once, when it loads (with the shim), so its own choice is asked
    /// first of a probe process: only on that fallback is the family set from the CPU's features. A variable
    /// the environment set is never changed, and a CPU OpenBLAS recognises keeps OpenBLAS's choice: side-by-side
    /// runs on one machine did not agree on which forced family is faster, so no flag-based rule beats it.
    /// </summary>
    private static void ChooseOpenBlasCore(string dir)
    {
        if (Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is { Length: > 0 } set)
        {
            OpenBlasCoreSource = $"OPENBLAS_CORETYPE={set} from the environment";
            return;
        }
        string? detected = ProbeOpenBlasCore(Path.Combine(dir, BlasProbeFile));
        if (detected is null || !detected.Equals("Prescott", StringComparison.OrdinalIgnoreCase))
        {
            OpenBlasCoreSource = detected is null ? "OpenBLAS's own detection (probe unavailable)" : "OpenBLAS's own detection";
            return;
        }
        string? core =
            System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported
            && System.Runtime.Intrinsics.X86.Avx512DQ.IsSupported && System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported ? "SkylakeX"
            : System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported ? "Haswell"
            : null;
        OpenBlasCoreSource = core is not null && SetEnv("OPENBLAS_CORETYPE", core, 0) == 0
            ? $"set to {core}: OpenBLAS's own detection fell back to {detected}"
            : $"OpenBLAS's own detection ({detected}; no faster family this CPU supports)";
    }

    /// <summary>OMP_WAIT_POLICY as libgomp will read it, and whether we set it (null before loading).</summary>
    internal static string? OmpWaitPolicySource { get; private set; }

    /// <summary>
    /// libgomp's threads spin after every parallel region by default (OMP_WAIT_POLICY=active); on a machine with
    /// as many threads as cores, OpenBLAS's threads and any other process then compete with spinning threads.
    /// Measured with `editrt bench torch-threads` (2 cores, quiet): with 2 OpenBLAS threads, a model step took 214 ms
    /// active against 58 ms passive, and a 256³ matmul 3.7 ms against 0.2 ms. Unless the environment set it, passive,
    /// before libgomp loads with the shim.
    /// </summary>
    private static void ChooseOmpWaitPolicy()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 } set)
        {
            OmpWaitPolicySource = $"OMP_WAIT_POLICY={set} from the environment";
            return;
        }
        OmpWaitPolicySource = SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0 ? "OMP_WAIT_POLICY=PASSIVE (default)" : "OMP_WAIT_POLICY unset (setenv failed)";
    }

    /// <summary>OpenBLAS's own kernel family on this CPU, from the probe (null when it is missing or fails).</summary>
    internal static string? ProbeOpenBlasCore(string probe)
    {
        if (!File.Exists(probe)) return null;
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo(probe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.Environment.Remove("OPENBLAS_CORETYPE");
            psi.Environment["OPENBLAS_NUM_THREADS"] = "1";  // no thread pool for a probe
            using var p = System.Diagnostics.Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(10_000)) { p.Kill(); return null; }
            return p.ExitCode == 0 && output.Trim() is { Length: > 0 } name ? name : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    private static IntPtr Load()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            throw new TorchUnavailableException($"The Torch backend's native library is built for Linux x86-64 only (this is {RuntimeInformation.RuntimeIdentifier}).");
        string path = ExpectedPath;
        if (!File.Exists(path)) throw new TorchUnavailableException(MissingShimMessage(path));
        ChooseOpenBlasCore(Path.GetDirectoryName(path)!);
        ChooseOmpWaitPolicy();
        IntPtr lib;
        try { lib = NativeLibrary.Load(path); }
        catch (DllNotFoundException e) { throw new TorchUnavailableException(LoadFailedMessage(path, LoaderReason(e.Message)), e); }
        catch (BadImageFormatException e) { throw new TorchUnavailableException(LoadFailedMessage(path, LoaderReason(e.Message)), e); }
        NativeLibrary.SetDllImportResolver(typeof(NativeLoader).Assembly,
            (name, _, _) => name == Native.Lib ? lib : IntPtr.Zero);
        int abi;
        try
        {
            if (Native.et_abi_version(out abi) != 0) throw new TorchUnavailableException($"{path}: et_abi_version failed: {Native.LastError()}");
        }
        catch (EntryPointNotFoundException e)
        {
            throw new TorchUnavailableException($"{path} is not this version's shim (no et_abi_version). Rebuild the solution.", e);
        }
        if (abi != Native.AbiVersion)
            throw new TorchUnavailableException($"{path} has ABI version {abi}, this assembly expects {Native.AbiVersion}: the shim is stale. Rebuild the solution.");
        return lib;
    }
}

/// <summary>The Torch backend cannot run here: its native library (or libtorch) is missing or does not match.</summary>
public sealed class TorchUnavailableException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

/// <summary>libtorch reported an error (a <c>c10::Error</c> or another C++ exception, caught in the shim).</summary>
public sealed class TorchException(string op, int status, string message)
    : Exception($"libtorch error in {op}: {message}")
{
    /// <summary>The shim function that failed, e.g. "matmul".</summary>
    public string Op { get; } = op;
    /// <summary>1 = c10::Error, 2 = another C++ exception, 3 = unknown exception, 4 = bad argument caught by the shim.</summary>
    public int Status { get; } = status;
    /// <summary>The shim's message: "op: torch's message (without its C++ backtrace)".</summary>
    public string TorchMessage { get; } = message;
}
