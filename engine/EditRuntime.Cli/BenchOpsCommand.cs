using System.Diagnostics;
using EditRuntime.Backends;
using EditRuntime.Compute;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt bench ops`: time per op on each backend in one run, side by side, with the ratio.</summary>
internal static class BenchOpsCommand
{
    /// <summary>One benchmarked op: inputs, the timed call, and its work (flops, or bytes for memory-bound ops).</summary>
    private sealed record Case(string Op, string Shape, Func<IBackend, Random, Tensor[]> Make, Action<IBackend, Tensor[]> Run, double Flops, double Bytes);

    private static Tensor R(IBackend be, Random rng, params int[] shape) =>
        be.FromArray(HostReference.RandomNormal(rng, shape.Aggregate(1L, (a, d) => a * d)), shape);

    private static Tensor Ids(IBackend be, Random rng, int n, int vocab) =>
        be.FromArray(Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray(), n);

    private static void Drop(params Tensor[] ts) { foreach (var t in ts) t.Dispose(); }
    private static void Drop((Tensor, Tensor) t) { t.Item1.Dispose(); t.Item2.Dispose(); }
    private static void Drop((Tensor, Tensor, Tensor) t) { t.Item1.Dispose(); t.Item2.Dispose(); t.Item3.Dispose(); }

    // Sizes of one GPT-2-small layer on 128 tokens (C = 768, 4C = 3072, 12 heads of 64, vocabulary 50257).
    private const int T = 128, C = 768, F = 3072, H = 12, D = 64, V = 50257;

    private static List<Case> Cases() => new()
    {
        new("add", $"{T}x{F}", (b, r) => [R(b, r, T, F), R(b, r, T, F)], (b, x) => Drop(b.Add(x[0], x[1])), 0, 3.0 * T * F * 4),
        new("sum", $"{T}x{F}", (b, r) => [R(b, r, T, F)], (b, x) => Drop(b.Sum(x[0])), 0, 1.0 * T * F * 4),
        new("matmul fwd", $"{T}x{C} · {C}x{F}", (b, r) => [R(b, r, T, C), R(b, r, C, F)], (b, x) => Drop(b.Matmul(x[0], x[1])), 2.0 * T * C * F, 0),
        new("matmul bwd", $"{T}x{C} · {C}x{F}", (b, r) => [R(b, r, T, C), R(b, r, C, F), R(b, r, T, F)], (b, x) => Drop(b.MatmulBackward(x[0], x[1], x[2])), 4.0 * T * C * F, 0),
        new("bias_add fwd", $"{T}x{F}", (b, r) => [R(b, r, T, F), R(b, r, F)], (b, x) => Drop(b.BiasAdd(x[0], x[1])), 0, 2.0 * T * F * 4),
        new("bias_add bwd", $"{T}x{F}", (b, r) => [R(b, r, T, F), R(b, r, F), R(b, r, T, F)], (b, x) => Drop(b.BiasAddBackward(x[0], x[1], x[2])), 0, 2.0 * T * F * 4),
        new("gelu fwd", $"{T}x{F}", (b, r) => [R(b, r, T, F)], (b, x) => Drop(b.Gelu(x[0])), 0, 2.0 * T * F * 4),
        new("gelu bwd", $"{T}x{F}", (b, r) => [R(b, r, T, F), R(b, r, T, F)], (b, x) => Drop(b.GeluBackward(x[0], x[1])), 0, 3.0 * T * F * 4),
        new("layernorm fwd", $"{T}x{C}", (b, r) => [R(b, r, T, C), R(b, r, C), R(b, r, C)], (b, x) => Drop(b.LayerNorm(x[0], x[1], x[2])), 0, 2.0 * T * C * 4),
        new("layernorm bwd", $"{T}x{C}", (b, r) => [R(b, r, T, C), R(b, r, C), R(b, r, C), R(b, r, T, C)], (b, x) => Drop(b.LayerNormBackward(x[0], x[1], x[2], x[3])), 0, 3.0 * T * C * 4),
        new("softmax fwd", $"{H * T}x{T}", (b, r) => [R(b, r, H * T, T)], (b, x) => Drop(b.Softmax(x[0])), 0, 2.0 * H * T * T * 4),
        new("softmax bwd", $"{H * T}x{T}", (b, r) => [R(b, r, H * T, T), R(b, r, H * T, T)], (b, x) => Drop(b.SoftmaxBackward(x[0], x[1])), 0, 3.0 * H * T * T * 4),
        new("attention fwd", $"B1 H{H} T{T} D{D}", (b, r) => [R(b, r, 1, H, T, D), R(b, r, 1, H, T, D), R(b, r, 1, H, T, D)],
            (b, x) => Drop(b.CausalAttention(x[0], x[1], x[2], null)), 4.0 * H * T * T * D, 0),
        new("attention bwd", $"B1 H{H} T{T} D{D}", (b, r) => [R(b, r, 1, H, T, D), R(b, r, 1, H, T, D), R(b, r, 1, H, T, D), R(b, r, 1, H, T, D)],
            (b, x) => Drop(b.CausalAttentionBackward(x[0], x[1], x[2], null, x[3])), 12.0 * H * T * T * D, 0),
        new("embedding fwd", $"{T} ids, {V}x{C}", (b, r) => [Ids(b, r, T, V), R(b, r, V, C)], (b, x) => Drop(b.Embedding(x[0], x[1])), 0, 2.0 * T * C * 4),
        new("embedding bwd", $"{T} ids, {V}x{C}", (b, r) => [Ids(b, r, T, V), R(b, r, T, C)], (b, x) => Drop(b.EmbeddingBackward(x[0], x[1], V)), 0, (1.0 * V * C + T * C) * 4),
        new("cross_entropy fwd", $"{T}x{V}", (b, r) => [R(b, r, T, V), Ids(b, r, T, V)], (b, x) => Drop(b.CrossEntropy(x[0], x[1])), 0, 1.0 * T * V * 4),
        new("cross_entropy bwd", $"{T}x{V}", (b, r) => [R(b, r, T, V), Ids(b, r, T, V), R(b, r, 1)], (b, x) => Drop(b.CrossEntropyBackward(x[0], x[1], x[2])), 0, 2.0 * T * V * 4),
        new("adam_step", $"{C}x{F}", (b, r) => [R(b, r, C, F), R(b, r, C, F), R(b, r, C, F), R(b, r, C, F)],
            (b, x) => b.AdamStep(x[0], x[1], x[2], x[3], AdamConfig.AdamW(1e-4f), 1), 0, 7.0 * C * F * 4),
    };

    private sealed record Timing(double WallMs, double GpuMs, string? Error);

    public static int Run(DeviceOptions options, string backends, string? only, int repeat)
    {
        var names = Cli.BackendNames(backends);
        var cases = Cases().Where(c => only is null || only.Split(',').Any(o => c.Op.StartsWith(o.Trim()))).ToList();
        if (cases.Count == 0) throw new ArgumentException($"--ops: nothing matches \"{only}\". Ops: {string.Join(", ", Cases().Select(c => c.Op))}");
        var bes = new List<IBackend>();
        try
        {
            foreach (var n in names) bes.Add(BackendFactory.Create(n, options));
            foreach (var be in bes) Console.WriteLine($"{be.Name}: {be.DeviceDescription}");
            Console.WriteLine("ms = median wall time per call (Vulkan: record + submit + wait; its GPU time from timestamps in brackets); rate = GFLOP/s for matmul/attention, else GB/s of inputs+outputs");
            Console.WriteLine();
            var header = $"{"op",-18} {"shape",-22}" + string.Concat(bes.Select(b => $" {b.Name + " ms",16} {b.Name + " rate",12}"));
            if (bes.Count == 2) header += $" {bes[1].Name + "/" + bes[0].Name,14}";
            Console.WriteLine(header);
            var rng = new Random(1);
            foreach (var c in cases)
            {
                var row = $"{c.Op,-18} {c.Shape,-22}";
                var times = new List<Timing>();
                foreach (var be in bes)
                {
                    var t = Time(be, c, rng, repeat);
                    times.Add(t);
                    string ms = t.Error is not null ? "unsupported" : t.GpuMs > 0 ? $"{t.WallMs:0.000} [{t.GpuMs:0.000}]" : $"{t.WallMs:0.000}";
                    double work = c.Flops > 0 ? c.Flops : c.Bytes;
                    string rate = t.Error is not null ? "—" : $"{work / (t.WallMs * 1e6):0.00}";
                    row += $" {ms,16} {rate,12}";
                }
                if (bes.Count == 2) row += times.Any(t => t.Error is not null) ? $" {"—",14}" : $" {times[1].WallMs / times[0].WallMs,14:0.00}";
                Console.WriteLine(row);
            }
        }
        finally
        {
            foreach (var be in bes) be.Dispose();
        }
        return 0;
    }

    private static Timing Time(IBackend be, Case c, Random rng, int repeat)
    {
        var inputs = c.Make(be, rng);
        try
        {
            c.Run(be, inputs); // warm-up: pipelines, first touch
            be.Synchronize();
            var sw = Stopwatch.StartNew();
            c.Run(be, inputs);
            be.Synchronize();
            double est = sw.Elapsed.TotalMilliseconds;
            int runs = repeat > 0 ? repeat : Math.Clamp((int)(500 / Math.Max(est, 1e-3)), 3, 50);
            var profiler = be as IKernelProfiler;   // device time per run where the backend can measure it
            var wall = new List<double>();
            var gpu = new List<double>();
            for (int i = 0; i < runs; i++)
            {
                profiler?.BeginProfiling();
                sw.Restart();
                c.Run(be, inputs);
                be.Synchronize();
                wall.Add(sw.Elapsed.TotalMilliseconds);
                if (profiler is not null) gpu.Add(profiler.EndProfiling().Sum(t => t.Milliseconds));
            }
            return new Timing(Cli.Median(wall), gpu.Count > 0 ? Cli.Median(gpu) : 0, null);
        }
        catch (UnsupportedOpException e)
        {
            return new Timing(double.NaN, double.NaN, e.Message);
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
        }
    }

}
