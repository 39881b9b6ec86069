using System.Runtime.InteropServices;

namespace EditRuntime.Torch;

// Hyper-network editors' entry points and the SPD solves (native/editrt_torch_hypernet.h).
internal static unsafe partial class Native
{
    [LibraryImport(Lib)] internal static partial int et_column_mean_var(TorchHandle x, out TorchHandle mean, out TorchHandle var);
    [LibraryImport(Lib)] internal static partial int et_normalize(TorchHandle x, TorchHandle mean, TorchHandle std, double eps, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_normalize_backward(TorchHandle gy, TorchHandle std, double eps, out TorchHandle gx);
    [LibraryImport(Lib)] internal static partial int et_hyper_block_activation(TorchHandle y, TorchHandle h, TorchHandle bias, TorchHandle scale, TorchHandle shift, out TorchHandle o);
    [LibraryImport(Lib)] internal static partial int et_hyper_block_activation_backward(TorchHandle h, TorchHandle bias, TorchHandle scale, TorchHandle go,
        out TorchHandle gh, out TorchHandle gbias, out TorchHandle gscale, out TorchHandle gshift);
    [LibraryImport(Lib)] internal static partial int et_value_diff(TorchHandle k, TorchHandle kt, TorchHandle gt, TorchHandle eta, out TorchHandle d);
    [LibraryImport(Lib)] internal static partial int et_value_diff_backward(TorchHandle k, TorchHandle kt, TorchHandle gt, TorchHandle eta, TorchHandle gd,
        out TorchHandle gkt, out TorchHandle ggt, out TorchHandle geta);
    [LibraryImport(Lib)] internal static partial int et_kl_divergence(TorchHandle refLogits, TorchHandle logits, out TorchHandle y);
    [LibraryImport(Lib)] internal static partial int et_kl_divergence_backward(TorchHandle refLogits, TorchHandle logits, TorchHandle gy, out TorchHandle gl);
    [LibraryImport(Lib)] internal static partial int et_add_diagonal(TorchHandle s, double value);
    [LibraryImport(Lib)] internal static partial int et_cholesky_factor(TorchHandle s, out TorchHandle l);
    [LibraryImport(Lib)] internal static partial int et_cholesky_solve(TorchHandle l, TorchHandle b, out TorchHandle x);
}
