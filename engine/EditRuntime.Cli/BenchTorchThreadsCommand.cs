using System.Diagnostics;
using EditRuntime.Autograd;
using EditRuntime.Models;
using EditRuntime.Torch;

namespace EditRuntime.Cli;

/// <summary>
/// `editrt bench torch-threads`: libtorch's intra-op threads against OpenBLAS's own pool, each split timed in the same
/// process, round-robin over several rounds (so a noisy machine slows every split alike), on editing-sized work (a
/// forward + backward step of the built-in model's shape, as an editor runs it) and on big products (square fp32
/// matmuls). Prints medians and each split's time relative to the first.
/// </summary>
internal static class BenchTorchThreadsCommand
{
    public static int Run(string splitsText, int rounds, string sizesText)
    {
        var splits = splitsText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t =>
        {
            var p = t.Split('x');
            return p.Length == 2 && int.TryParse(p[0], out int a) && int.TryParse(p[1], out int b) && a >= 1 && b >= 1
                ? (Torch: a, Blas: b) : throw new ArgumentException($"--splits: \"{t}\" is not TORCHxBLAS (e.g. 2x1).");
        }).ToList();
        var sizes = sizesText.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(t => int.TryParse(t, out int n) && n > 0 ? n : throw new ArgumentException($"--sizes: \"{t}\" is not a positive size.")).ToList();
        if (splits.Count == 0) throw new ArgumentException("--splits: give at least one TORCHxBLAS split.");
        if (rounds < 1 || rounds > 100) throw new ArgumentException("--rounds: 1 to 100.");

        // Editing-sized: the built-in model's shape, batch 8 x 32 tokens, step = forward + loss + backward of every parameter.
        var dims = new Gpt2Config { VocabSize = 2048, NPositions = 64, NEmbd = 192, NLayer = 4, NHead = 6, BosTokenId = 2047, EosTokenId = 2047 };
        var weights = Gpt2Model.RandomWeights(dims, 1);
        var rng = new Random(2);
        var seqs = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, 32).Select(_ => rng.Next(dims.VocabSize)).ToArray()).ToList();
        var tb = new TokenBatch(seqs);
        var targets = seqs.SelectMany(q => q.Skip(1).Append(-100)).ToArray();
        var mats = sizes.ToDictionary(n => n, n => (A: EditRuntime.Compute.HostReference.RandomNormal(rng, (long)n * n), B: EditRuntime.Compute.HostReference.RandomNormal(rng, (long)n * n)));

        var rows = new List<string> { "model step (built-in shape, 8x32)" };
        rows.AddRange(sizes.Select(n => $"matmul {n}^3"));
        var samples = splits.ToDictionary(s => s, _ => rows.ToDictionary(r => r, _ => new List<double>()));
        string? family = null;
        for (int round = 0; round < rounds; round++)
        {
            foreach (var split in splits)
            {
                using var be = new TorchBackend(split.Torch, split.Blas);
                family ??= be.DeviceDescription;
                using (var model = new Gpt2Model(be, dims, weights))
                {
                    double Step()
                    {
                        var sw = Stopwatch.StartNew();
                        using var tape = new Tape(be);
                        var p = model.Bind(tape);
                        tape.Backward(model.Loss(tape, p, tb, targets));
                        foreach (var v in p.Values) v.ClearGrad();
                        return sw.Elapsed.TotalMilliseconds;
                    }
                    Step();
                    samples[split][rows[0]].Add(Cli.Median(Enumerable.Range(0, 5).Select(_ => Step())));
                }
                foreach (var n in sizes)
                {
                    using var a = be.FromArray(mats[n].A, n, n);
                    using var b = be.FromArray(mats[n].B, n, n);
                    be.Matmul(a, b).Dispose();
                    samples[split][$"matmul {n}^3"].Add(Cli.Median(Enumerable.Range(0, 3).Select(_ =>
                    {
                        var sw = Stopwatch.StartNew();
                        be.Matmul(a, b).Dispose();
                        return sw.Elapsed.TotalMilliseconds;
                    })));
                }
            }
            Console.Error.WriteLine($"  round {round + 1}/{rounds}");
        }
        Console.WriteLine($"torch: {family}; OpenBLAS family: {TorchBackend.BlasCoreSource}; {TorchBackend.OmpWaitPolicySource}; {Environment.ProcessorCount} processors; {rounds} rounds, round-robin over the splits, median of the rounds' medians");
        Console.WriteLine($"{"work",-36} " + string.Join(" ", splits.Select(s => $"{$"torch {s.Torch} / BLAS {s.Blas}",30}")));
        foreach (var r in rows)
        {
            double first = Cli.Median(samples[splits[0]][r]);
            Console.WriteLine($"{r,-36} " + string.Join(" ", splits.Select(s =>
            {
                double m = Cli.Median(samples[s][r]);
                string extra = r.StartsWith("matmul", StringComparison.Ordinal) ? $" {2.0 * Math.Pow(int.Parse(r[7..^2]), 3) / (m * 1e6),5:0} GF/s" : "";
                return $"{$"{m:0.0} ms ({m / first:0.00}x){extra}",30}";
            })));
        }
        return 0;
    }
}
