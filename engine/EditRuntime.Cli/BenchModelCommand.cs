using System.Diagnostics;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt bench model`: forward tokens/s and forward+backward step time per backend.</summary>
internal static class BenchModelCommand
{
    public static readonly Gpt2Config Gpt2Small = Gpt2Config.Gpt2;

    public static int Run(DeviceOptions options, string backends, IReadOnlyList<(string Name, Gpt2Config Dims)> models, int batch, int seq, int repeat)
    {
        var names = Cli.BackendNames(backends);
        Console.WriteLine($"batch {batch} x {seq} tokens; forward = logits of the batch (host waits); step = forward + loss + backward of every parameter (no optimizer); median of {repeat} after a warm-up");
        Console.WriteLine($"{"model",-22} {"params",9} {"backend",-8} {"fwd ms",10} {"fwd tok/s",11} {"step ms",10} {"step tok/s",11}");
        foreach (var (mname, dims) in models)
        {
            var weights = Gpt2Model.RandomWeights(dims, 1);
            foreach (var bn in names)
            {
                using var be = BackendFactory.Create(bn, options);
                using var model = new Gpt2Model(be, dims, weights);
                var rng = new Random(2);
                var seqs = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, seq).Select(_ => rng.Next(dims.VocabSize)).ToArray()).ToList();
                var tb = new TokenBatch(seqs);
                var targets = seqs.SelectMany(s => s.Skip(1).Append(-100)).ToArray();
                double Forward()
                {
                    var sw = Stopwatch.StartNew();
                    using var tape = new Tape(be);
                    var p = model.Parameters.ToDictionary(kv => kv.Key, kv => tape.Constant(kv.Value));
                    var logits = model.Logits(tape, p, tb);
                    be.Synchronize();
                    _ = be.ToFloatArray(logits.Value).Length;
                    return sw.Elapsed.TotalMilliseconds;
                }
                double Step()
                {
                    var sw = Stopwatch.StartNew();
                    using var tape = new Tape(be);
                    var p = model.Bind(tape);
                    var loss = model.Loss(tape, p, tb, targets);
                    tape.Backward(loss);
                    be.Synchronize();
                    foreach (var v in p.Values) v.ClearGrad();
                    return sw.Elapsed.TotalMilliseconds;
                }
                Forward(); Step();
                double f = Cli.Median(Enumerable.Range(0, repeat).Select(_ => Forward()));
                double s = Cli.Median(Enumerable.Range(0, repeat).Select(_ => Step()));
                int tokens = batch * seq;
                Console.WriteLine($"{mname,-22} {dims.ParameterCount / 1e6,8:0.0}M {bn,-8} {f,10:0.0} {tokens / (f / 1000),11:0} {s,10:0.0} {tokens / (s / 1000),11:0}");
            }
        }
        return 0;
    }

}
