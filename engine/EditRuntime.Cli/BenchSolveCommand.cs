using System.Diagnostics;
using System.Globalization;
using EditRuntime.Backends;
using EditRuntime.Compute;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>
/// `editrt bench solve`: MALMEN's least-squares shift alone, ΔW = (KᵀK + λI)⁻¹·KᵀD, on random keys K (rows × d_k) and value
/// differences D (rows × d_v), per stage: the Gram matrix KᵀK (2·rows·d_k² flop), the Cholesky factor (d_k³/3), the right-hand
/// side KᵀD (2·rows·d_k·d_v) and the two triangular solves (2·d_k²·d_v); median time and GFLOP/s per stage and in all, and the
/// relative residual ‖S·X − KᵀD‖ / ‖KᵀD‖ of the result.
/// </summary>
internal static class BenchSolveCommand
{
    public static int Run(DeviceOptions options, string shapesText, int rows, string backends, int repeat, int vulkanMaxDk)
    {
        var shapes = shapesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t =>
        {
            var p = t.Split('x');
            return p.Length == 2 && int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int dk) && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int dv) && dk > 0 && dv > 0
                ? (Dk: dk, Dv: dv) : throw new ArgumentException($"--shapes: \"{t}\" is not DKxDV (e.g. 3072x768).");
        }).ToList();
        if (shapes.Count == 0) throw new ArgumentException("--shapes: give at least one DKxDV.");
        if (rows < 1) throw new ArgumentException($"--rows: {rows}; give a positive number of cached rows.");
        if (repeat < 1 || repeat > 50) throw new ArgumentException($"--repeat: {repeat}; 1 to 50.");
        var names = Cli.BackendNames(backends);
        Console.WriteLine($"bench solve: ΔW = (KᵀK + λI)⁻¹·KᵀD, K {rows} × d_k, D {rows} × d_v, λ = 1; median of {repeat}");
        Console.WriteLine("| backend | d_k × d_v | gram ms | cholesky ms | KᵀD ms | solve ms | total ms | GFLOP/s gram | GFLOP/s cholesky | GFLOP/s solve | GFLOP/s total | residual |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in names)
        {
            using var be = BackendFactory.Create(name, options);
            var spd = be.Ops<ISpdSolveOps>();
            Console.Error.WriteLine($"{name}: {be.DeviceDescription}");
            foreach (var (dk, dv) in shapes)
            {
                if (name == "vulkan" && dk > vulkanMaxDk)
                {
                    Console.WriteLine($"| {name} | {dk} × {dv} | skipped: d_k above --vulkan-max-dk {vulkanMaxDk} | | | | | | | | | |");
                    continue;
                }
                var rng = new Random(dk * 31 + dv);
                using var k = be.FromArray(HostReference.RandomNormal(rng, (long)rows * dk), rows, dk);
                using var d = be.FromArray(HostReference.RandomNormal(rng, (long)rows * dv), rows, dv);
                var t = new List<double>[4];
                for (int s = 0; s < 4; s++) t[s] = new();
                double residual = double.NaN;
                for (int rep = 0; rep <= repeat; rep++)   // rep 0 warms the kernels and is not counted
                {
                    var sw = Stopwatch.StartNew();
                    double Lap() { be.Synchronize(); double ms = sw.Elapsed.TotalMilliseconds; sw.Restart(); return ms; }
                    using var gram = be.Matmul(k, k, transA: true);
                    spd.AddDiagonal(gram, 1f);
                    double a = Lap();
                    using var l = spd.CholeskyFactor(gram);
                    double b = Lap();
                    using var rhs = be.Matmul(k, d, transA: true);
                    double c = Lap();
                    using var x = spd.CholeskySolve(l, rhs);
                    double e = Lap();
                    if (rep > 0) { t[0].Add(a); t[1].Add(b); t[2].Add(c); t[3].Add(e); }
                    if (rep == repeat) residual = Residual(be, gram, x, rhs);
                }
                double g = 2.0 * rows * dk * (double)dk, ch = dk * (double)dk * dk / 3, r = 2.0 * rows * dk * dv, so = 2.0 * dk * (double)dk * dv;
                var m = t.Select(Cli.Median).ToArray();
                double total = m.Sum();
                string F(double v) => v.ToString("0.0", CultureInfo.InvariantCulture);
                Console.WriteLine($"| {name} | {dk} × {dv} | {F(m[0])} | {F(m[1])} | {F(m[2])} | {F(m[3])} | {F(total)} | {F(g / m[0] / 1e6)} | {F(ch / m[1] / 1e6)} | {F(so / m[3] / 1e6)} | {F((g + ch + r + so) / total / 1e6)} | {residual.ToString("0.0e0", CultureInfo.InvariantCulture)} |");
                if (!(residual < 1e-3))
                    throw new InvalidOperationException($"{name} {dk}×{dv}: the solve's relative residual is {residual:G3} (limit 1e-3): the least-squares kernels are wrong here.");
            }
        }
        return 0;
    }

    /// <summary>‖S·X − B‖ / ‖B‖ with S symmetric: only S's lower triangle is read by the factor, and the Gram matrix is full.</summary>
    private static double Residual(IBackend be, Tensor s, Tensor x, Tensor b)
    {
        using var sx = be.Matmul(s, x);
        var p = be.ToFloatArray(sx);
        var q = be.ToFloatArray(b);
        double num = 0, den = 0;
        for (int i = 0; i < p.Length; i++) { double dlt = p[i] - q[i]; num += dlt * dlt; den += (double)q[i] * q[i]; }
        return Math.Sqrt(num / den);
    }
}
