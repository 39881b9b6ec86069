using System.Runtime.InteropServices;

namespace EditRuntime.Torch;

// Mixture-of-experts entry points (native/editrt_torch_moe.h).
internal static unsafe partial class Native
{
    [LibraryImport(Lib)] internal static partial int et_moe_gate_topk(TorchHandle logits, long k, out TorchHandle weights, out TorchHandle indices);
    [LibraryImport(Lib)] internal static partial int et_moe_gate_topk_backward(TorchHandle logits, long k, TorchHandle gw, out TorchHandle gLogits);
    [LibraryImport(Lib)] internal static partial int et_moe_route(TorchHandle indices, long experts, out TorchHandle order, out TorchHandle position, out TorchHandle offsets);
    [LibraryImport(Lib)] internal static partial int et_moe_dispatch(TorchHandle x, TorchHandle order, long k, out TorchHandle xs);
    [LibraryImport(Lib)] internal static partial int et_moe_dispatch_backward(TorchHandle position, TorchHandle gxs, long k, out TorchHandle gx);
    [LibraryImport(Lib)] internal static partial int et_grouped_matmul(TorchHandle xs, TorchHandle w, TorchHandle offsets, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_grouped_matmul_backward(TorchHandle xs, TorchHandle w, TorchHandle offsets, TorchHandle gy, out TorchHandle gxs, out TorchHandle gw);
    [LibraryImport(Lib)] internal static partial int et_moe_combine(TorchHandle ys, TorchHandle weights, TorchHandle position, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_moe_combine_backward(TorchHandle ys, TorchHandle weights, TorchHandle position, TorchHandle gy, out TorchHandle gys, out TorchHandle gw);
}
