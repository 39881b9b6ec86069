using System.Diagnostics;
using EditRuntime.Compute;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

internal static class BenchMatmulCommand
{
    public const double CheckLimit = 1e-5;

    public static (int M, int N, int K) ParseSize(string s)
    {
        var parts = s.Trim().ToLowerInvariant().Split('x');
        int P(string p) => int.TryParse(p, out var v) && v > 0 ? v : throw new ArgumentException($"--sizes: \"{s}\" is not N or MxNxK with positive integers.");
        return parts.Length switch
        {
            1 => (P(parts[0]), P(parts[0]), P(parts[0])),
            3 => (P(parts[0]), P(parts[1]), P(parts[2])),
            _ => throw new ArgumentException($"--sizes: \"{s}\" is not N or MxNxK."),
        };
    }

    public static int Run(DeviceOptions options, string sizes, int repeat, bool transA, bool transB, int batch, bool check, bool withTorch)
    {
        var shapes = sizes.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(ParseSize).ToList();
        if (shapes.Count == 0) throw new ArgumentException("--sizes: no size given.");
        if (batch < 1) throw new ArgumentException("--batch must be at least 1.");
        if (repeat < 0 || repeat > 1000) throw new ArgumentException("--repeat must be 0 (auto) to 1000.");
        using var dev = VulkanDevice.Open(options);
        var ops = new VulkanOps(dev);
        using var torch = withTorch ? new EditRuntime.Torch.TorchBackend() : null;
        if (torch is not null) Console.WriteLine($"torch: {torch.DeviceDescription}; OpenBLAS family: {EditRuntime.Torch.TorchBackend.BlasCoreSource}; {EditRuntime.Torch.TorchBackend.OmpWaitPolicySource}; threads: torch from {torch.ThreadSource}, OpenBLAS from {torch.BlasThreadSource}");
        Console.WriteLine($"device: {dev.Info.Name} ({dev.Info.TypeName}, {dev.Info.DriverName} {dev.Info.DriverInfo})");
        Console.WriteLine($"matmul fp32, C = op(A)·op(B), transA={transA}, transB={transB}, batch={batch}; GPU = timestamps around each dispatch (median), wall = record+submit+wait per run (median)");
        Console.WriteLine($"{"M x N x K",-18} {"path",-6} {"runs",4} {"GPU ms",10} {"wall ms",10} {"GFLOP/s GPU",12} {"GFLOP/s wall",13}{(check ? $" {"rel err",10}" : "")}");
        var rng = new Random();
        bool ok = true;
        foreach (var (M, N, K) in shapes)
        {
            var aShape = transA ? new[] { batch, K, M } : new[] { batch, M, K };
            var bShape = transB ? new[] { batch, N, K } : new[] { batch, K, N };
            var aHost = HostReference.RandomNormal(rng, (long)batch * M * K);
            var bHost = HostReference.RandomNormal(rng, (long)batch * K * N);
            using var a = GpuTensor.FromArray(dev, aHost, aShape);
            using var b = GpuTensor.FromArray(dev, bHost, bShape);
            using var c = new GpuTensor(dev, batch, M, N);
            double flop = 2.0 * batch * M * N * K;
            bool vec4 = M % 4 == 0 && N % 4 == 0 && K % 4 == 0;

            // Warm-up: the first run creates the pipeline and touches the memory; the second estimates the run time.
            ops.Matmul(a, b, c, transA, transB);
            dev.Stream.Flush();
            var sw = Stopwatch.StartNew();
            ops.Matmul(a, b, c, transA, transB);
            dev.Stream.Flush();
            double firstMs = sw.Elapsed.TotalMilliseconds;
            int runs = repeat > 0 ? repeat : Math.Clamp((int)(2000 / Math.Max(firstMs, 1e-3)), 1, 20);

            var gpu = new List<double>();
            var wall = new List<double>();
            dev.Stream.Profiling = true;
            for (int i = 0; i < runs; i++)
            {
                dev.Stream.Timings.Clear();
                sw.Restart();
                ops.Matmul(a, b, c, transA, transB);
                dev.Stream.Flush();
                wall.Add(sw.Elapsed.TotalMilliseconds);
                gpu.Add(dev.Stream.Timings.Sum(t => t.Milliseconds));
            }
            dev.Stream.Profiling = false;
            double g = Cli.Median(gpu), w = Cli.Median(wall);
            string err = "";
            if (check)
            {
                var reference = HostReference.Matmul(aHost, bHost, null, batch, M, N, K, transA, transB);
                double e = HostReference.RelativeError(c.ToArray(), reference);
                ok &= e <= CheckLimit;
                err = $" {e,10:0.0e+00}{(e <= CheckLimit ? "" : " FAIL")}";
            }
            Console.WriteLine($"{$"{M}x{N}x{K}",-18} {(vec4 ? "vec4" : "scalar"),-6} {runs,4} {g,10:0.000} {w,10:0.000} {flop / (g * 1e6),12:0.00} {flop / (w * 1e6),13:0.00}{err}");
            if (torch is not null)
            {
                // The same product on libtorch (CPU), wall time only; the ratio is Vulkan wall / torch wall.
                using var ta = torch.FromArray(aHost, batch == 1 ? aShape[1..] : aShape);
                using var tb = torch.FromArray(bHost, batch == 1 ? bShape[1..] : bShape);
                torch.Matmul(ta, tb, transA, transB).Dispose();
                var tw = new List<double>();
                var total = Stopwatch.StartNew();
                while (tw.Count < 3 || (total.Elapsed.TotalMilliseconds < 1000 && tw.Count < 50))
                {
                    sw.Restart();
                    torch.Matmul(ta, tb, transA, transB).Dispose();
                    tw.Add(sw.Elapsed.TotalMilliseconds);
                }
                double t = Cli.Median(tw);
                Console.WriteLine($"{"",-18} {"torch",-6} {tw.Count,4} {"—",10} {t,10:0.000} {"—",12} {flop / (t * 1e6),13:0.00}   (vulkan/torch time {w / t:0.0}x)");
            }
        }
        if (check) Console.WriteLine(ok ? $"check: every result within {CheckLimit:0e+00} of float64" : $"check: FAILED (limit {CheckLimit:0e+00})");
        return ok ? 0 : 1;
    }

}
