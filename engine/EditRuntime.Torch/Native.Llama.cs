using System.Runtime.InteropServices;

namespace EditRuntime.Torch;

// LLaMA-family entry points (native/editrt_torch_llama.h).
internal static unsafe partial class Native
{
    [LibraryImport(Lib)] internal static partial int et_rms_norm(TorchHandle x, TorchHandle weight, float eps, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_rms_norm_backward(TorchHandle x, TorchHandle weight, TorchHandle gy, float eps, out TorchHandle gx, out TorchHandle gw);
    [LibraryImport(Lib)] internal static partial int et_rope(TorchHandle x, TorchHandle invFreq, long start, TorchHandle offsets, out TorchHandle y);
    /// <summary>The same entry point without position offsets.</summary>
    [LibraryImport(Lib, EntryPoint = "et_rope")]
    internal static partial int et_rope_nooffsets(TorchHandle x, TorchHandle invFreq, long start, IntPtr noOffsets, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_rope_backward(TorchHandle invFreq, TorchHandle gy, long start, TorchHandle offsets, out TorchHandle gx);
    /// <summary>The same entry point without position offsets.</summary>
    [LibraryImport(Lib, EntryPoint = "et_rope_backward")]
    internal static partial int et_rope_backward_nooffsets(TorchHandle invFreq, TorchHandle gy, long start, IntPtr noOffsets, out TorchHandle gx);
    [LibraryImport(Lib)] internal static partial int et_silu_mul(TorchHandle gate, TorchHandle up, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_silu_mul_backward(TorchHandle gate, TorchHandle up, TorchHandle gy, out TorchHandle ggate, out TorchHandle gup);
}
