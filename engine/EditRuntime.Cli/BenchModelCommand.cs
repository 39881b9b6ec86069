using System.CommandLine;
using System.Diagnostics;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt bench model`: forward tokens/s and forward+backward step time per backend, for GPT-2 and LLaMA-layout random models.</summary>
internal static class BenchModelCommand
{
    public static readonly Gpt2Config Gpt2Small = Gpt2Config.Gpt2;

    /// <summary>The LLaMA shape benchmarked when --arch llama is given without --llama-dims: LLaMA-3's layout (GQA 3:1,
    /// SwiGLU, untied head) at about gpt2-124M's size.</summary>
    public const string DefaultLlamaDims = "32000,1024,768,12,4,12,2048";

    /// <summary>One benchmarked model on one backend: its parameters and the two forwards the bench times.</summary>
    private sealed record Subject(
        IDisposable Model,
        IReadOnlyDictionary<string, Tensor> Parameters,
        Func<Tape, Dictionary<string, Var>> Bind,
        Func<Tape, IReadOnlyDictionary<string, Var>, TokenBatch, Var> Logits,
        Func<Tape, IReadOnlyDictionary<string, Var>, TokenBatch, int[], Var> Loss);

    /// <summary>A model to benchmark: its name in the table, size, vocabulary, positions, and how to load it on a backend.</summary>
    private sealed record Entry(string Name, long ParameterCount, int VocabSize, int Positions, Func<IBackend, Subject> Open);

    private static Entry Gpt2(string name, Gpt2Config dims)
    {
        var weights = new Lazy<Dictionary<string, HostTensor>>(() => Gpt2Model.RandomWeights(dims, 1));
        return new Entry(name, dims.ParameterCount, dims.VocabSize, dims.NPositions, be =>
        {
            var m = new Gpt2Model(be, dims, weights.Value);
            return new Subject(m, m.Parameters, t => m.Bind(t), m.Logits, (t, p, b, y) => m.Loss(t, p, b, y));
        });
    }

    private static Entry Llama(string name, LlamaConfig dims)
    {
        var weights = new Lazy<Dictionary<string, HostTensor>>(() => LlamaCheckpoint.RandomWeights(dims, 1));
        return new Entry(name, dims.ParameterCount, dims.VocabSize, dims.MaxPositionEmbeddings, be =>
        {
            var m = new LlamaModel(be, dims, weights.Value);
            return new Subject(m, m.Parameters, t => m.Bind(t), m.Logits, (t, p, b, y) => m.Loss(t, p, b, y));
        });
    }

    /// <summary>A LLaMA-layout config from "vocab,positions,hidden,heads,kv_heads,layers,intermediate": LLaMA 3's
    /// function (rope_theta 500000, no rope scaling, RMSNorm eps 1e-5, untied head, no biases).</summary>
    public static LlamaConfig ParseLlamaDims(string text)
    {
        var parts = text.Split(',');
        var v = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out v[i]))
                throw new ArgumentException($"--llama-dims: \"{parts[i]}\" is not a whole number (vocab,positions,hidden,heads,kv_heads,layers,intermediate).");
        if (v.Length != 7) throw new ArgumentException($"--llama-dims: {v.Length} numbers, expected 7: vocab,positions,hidden,heads,kv_heads,layers,intermediate.");
        var c = new LlamaConfig
        {
            ModelType = "llama", VocabSize = v[0], MaxPositionEmbeddings = v[1], HiddenSize = v[2], NumAttentionHeads = v[3],
            NumKeyValueHeads = v[4], NumHiddenLayers = v[5], IntermediateSize = v[6], RmsNormEps = 1e-5, RopeTheta = 500000,
            TieWordEmbeddings = false, BosTokenId = 0, EosTokenIds = [0], TorchDtype = "float32",
        };
        c.Validate("--llama-dims");
        return c;
    }

    /// <summary>The `bench model` command with its options.</summary>
    public static Command Create(Func<ParseResult, DeviceOptions> options)
    {
        var backend = new Option<string>("--backend") { Description = "vulkan, torch, or both.", DefaultValueFactory = _ => "both" };
        var batch = new Option<int>("--batch") { Description = "Sequences per batch.", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence.", DefaultValueFactory = _ => 32 };
        var repeat = new Option<int>("--repeat") { Description = "Timed runs (median).", DefaultValueFactory = _ => 3 };
        var dims = new Option<string?>("--dims") { Description = "Extra GPT-2 shape vocab,positions,embd,layers,heads (e.g. the planned built-in model)." };
        var noGpt2 = new Option<bool>("--no-gpt2") { Description = "Skip the gpt2-124M-shaped model." };
        var arch = new Option<string>("--arch")
        {
            Description = "gpt2: the GPT-2 models only (gpt2-124M unless --no-gpt2, and --dims). llama: also a random LLaMA-layout model "
                + $"(--llama-dims, default {DefaultLlamaDims}), in rows after the GPT-2 ones, same columns.",
            DefaultValueFactory = _ => "gpt2",
        };
        arch.AcceptOnlyFromAmong("gpt2", "llama");
        var llamaDims = new Option<string?>("--llama-dims")
        {
            Description = "With --arch llama: the LLaMA shape vocab,positions,hidden,heads,kv_heads,layers,intermediate "
                + "(LLaMA 3's function: SwiGLU, RMSNorm, RoPE theta 500000, grouped-query attention when kv_heads < heads, untied head, no biases).",
        };
        var cmd = new Command("model", "Forward tokens/s and forward+backward step time per backend, on a gpt2-124M-shaped random model (and --dims; with --arch llama also a LLaMA-layout one).");
        foreach (var o in new Option[] { backend, batch, seq, repeat, dims, noGpt2, arch, llamaDims }) cmd.Options.Add(o);
        cmd.SetAction(r => Cli.Run(() =>
        {
            var models = new List<Entry>();
            if (r.GetValue(dims) is string d)
            {
                var v = d.Split(',').Select(int.Parse).ToArray();
                if (v.Length != 5) throw new ArgumentException("--dims: vocab,positions,embd,layers,heads");
                models.Add(Gpt2($"custom {d}", new Gpt2Config { VocabSize = v[0], NPositions = v[1], NEmbd = v[2], NLayer = v[3], NHead = v[4], BosTokenId = v[0] - 1, EosTokenId = v[0] - 1 }));
            }
            if (!r.GetValue(noGpt2)) models.Add(Gpt2("gpt2-124M (random)", Gpt2Small));
            bool llama = r.GetValue(arch) == "llama";
            if (r.GetValue(llamaDims) is not null && !llama) throw new ArgumentException("--llama-dims: only with --arch llama.");
            if (llama)
            {
                string ld = r.GetValue(llamaDims) ?? DefaultLlamaDims;
                models.Add(Llama($"llama {ld}", ParseLlamaDims(ld)));
            }
            if (models.Count == 0) throw new ArgumentException("Nothing to benchmark: --no-gpt2 without --dims or --arch llama.");
            return Run(options(r), r.GetValue(backend)!, models, r.GetValue(batch), r.GetValue(seq), r.GetValue(repeat));
        }));
        return cmd;
    }

    private static int Run(DeviceOptions options, string backends, IReadOnlyList<Entry> models, int batch, int seq, int repeat)
    {
        var names = Cli.BackendNames(backends);
        if (batch < 1 || seq < 2 || repeat < 1) throw new ArgumentException($"--batch {batch}, --seq {seq}, --repeat {repeat}: need batch ≥ 1, seq ≥ 2 (the loss predicts the next token), repeat ≥ 1.");
        foreach (var m in models)
            if (seq > m.Positions) throw new ArgumentException($"--seq {seq} exceeds the {m.Positions} positions of {m.Name}.");
        int w = Math.Max(22, models.Max(m => m.Name.Length));
        Console.WriteLine($"batch {batch} x {seq} tokens; forward = logits of the batch (host waits); step = forward + loss + backward of every parameter (no optimizer); median of {repeat} after a warm-up");
        Console.WriteLine($"{"model".PadRight(w)} {"params",9} {"backend",-8} {"fwd ms",10} {"fwd tok/s",11} {"step ms",10} {"step tok/s",11}");
        foreach (var entry in models)
        {
            foreach (var bn in names)
            {
                using var be = BackendFactory.Create(bn, options);
                var model = entry.Open(be);
                using var owned = model.Model;
                var rng = new Random(2);
                var seqs = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, seq).Select(_ => rng.Next(entry.VocabSize)).ToArray()).ToList();
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
                Console.WriteLine($"{entry.Name.PadRight(w)} {entry.ParameterCount / 1e6,8:0.0}M {bn,-8} {f,10:0.0} {tokens / (f / 1000),11:0} {s,10:0.0} {tokens / (s / 1000),11:0}");
            }
        }
        return 0;
    }
}
