using System.Diagnostics;
using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>Optimisation settings of a training run (AdamW, linear warm-up then cosine decay to 10%).</summary>
public sealed record TrainOptions
{
    public int Steps { get; init; } = 3000;
    public int BatchSize { get; init; } = 64;
    public float LearningRate { get; init; } = 3e-3f;
    public int WarmupSteps { get; init; } = 100;
    public float WeightDecay { get; init; } = 0.01f;
    public float Beta2 { get; init; } = 0.99f;
    public float GradClip { get; init; } = 1f;
    public int Seed { get; init; } = 1;
    public int LogEvery { get; init; } = 50;

    public float LearningRateAt(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = (step - WarmupSteps) / (double)Math.Max(1, Steps - WarmupSteps);
        return (float)(LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)))));
    }
}

/// <summary>
/// Next-token training of a model (<see cref="ILanguageModel"/>: GPT-2 or the LLaMA layout) on token sequences, on the model's backend:
/// random batches (seeded), right padding, loss on every real next token, global-norm gradient
/// clipping, AdamW with decay on matrices only (not the position embedding, <see cref="ILanguageModel.PositionEmbeddingName"/>).
/// </summary>
public sealed class ModelTrainer : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly TrainOptions _o;
    private readonly Dictionary<string, (Tensor M, Tensor V)> _moments = new();
    private readonly Random _rng;

    public ModelTrainer(ILanguageModel model, TrainOptions options)
    {
        _model = model;
        _o = options;
        _rng = new Random(options.Seed);
        var be = model.Backend;
        foreach (var (name, t) in model.Parameters)
        {
            var m = be.Empty(DType.F32, t.Shape); be.Fill(m, 0);
            var v = be.Empty(DType.F32, t.Shape); be.Fill(v, 0);
            _moments[name] = (m, v);
        }
    }

    public int Step { get; private set; }

    /// <summary>One optimisation step on a random batch; returns the mean loss of that batch.</summary>
    public float TrainStep(IReadOnlyList<int[]> sequences)
    {
        var be = _model.Backend;
        var picked = new List<int[]>(_o.BatchSize);
        for (int i = 0; i < _o.BatchSize; i++)
        {
            var s = sequences[_rng.Next(sequences.Count)];
            picked.Add(s.Length > _model.Shape.Positions + 1 ? s[..(_model.Shape.Positions + 1)] : s);
        }
        var inputs = picked.Select(s => s[..^1]).ToList();
        var batch = new TokenBatch(inputs);
        var targets = new int[batch.B * batch.T];
        for (int b = 0; b < batch.B; b++)
            for (int t = 0; t < batch.T; t++)
                targets[b * batch.T + t] = t < inputs[b].Length ? picked[b][t + 1] : -100;

        float loss;
        using (var tape = new Tape(be))
        {
            var p = _model.Bind(tape);
            var l = _model.Loss(tape, p, batch, targets);
            tape.Backward(l);
            loss = be.ToFloatArray(l.Value)[0];
            // Global-norm clipping: Σ‖g‖² accumulated on the device, one read for the host.
            using var sq2 = be.Empty(DType.F32, 1);
            be.Fill(sq2, 0);
            foreach (var v in p.Values)
            {
                using var g2 = be.Mul(v.Grad!, v.Grad!);
                using var s = be.Sum(g2);
                be.Axpy(1f, s, sq2);
            }
            double sq = be.ToFloatArray(sq2)[0];
            double norm = Math.Sqrt(sq);
            float scale = norm > _o.GradClip ? (float)(_o.GradClip / norm) : 1f;
            float lr = _o.LearningRateAt(Step);
            foreach (var (name, v) in p)
            {
                if (scale != 1f) be.Axpy(scale - 1f, v.Grad!, v.Grad!);
                var (m, vv) = _moments[name];
                bool decay = v.Value.Rank == 2 && name != _model.PositionEmbeddingName;
                be.AdamStep(v.Value, v.Grad!, m, vv, new AdamConfig(lr, 0.9f, _o.Beta2, 1e-8f, decay ? _o.WeightDecay : 0f, Decoupled: true), Step + 1);
                v.ClearGrad();
            }
        }
        Step++;
        return loss;
    }

    /// <summary>Runs the remaining steps, calling <paramref name="log"/> every LogEvery steps and
    /// <paramref name="evaluate"/> every <paramref name="evalEvery"/> steps (and at the end).</summary>
    public void Run(IReadOnlyList<int[]> sequences, Action<string> log, Func<int, string>? evaluate = null, int evalEvery = 0)
    {
        var sw = Stopwatch.StartNew();
        double lossSum = 0; int lossN = 0; long tokens = 0;
        while (Step < _o.Steps)
        {
            float loss = TrainStep(sequences);
            lossSum += loss; lossN++;
            tokens += _o.BatchSize;
            if (Step % _o.LogEvery == 0 || Step == _o.Steps)
            {
                log($"step {Step,6}/{_o.Steps}  loss {lossSum / lossN:0.0000}  lr {_o.LearningRateAt(Step - 1):0.00e+00}  {sw.Elapsed.TotalSeconds,7:0.0} s  {Step / sw.Elapsed.TotalSeconds:0.00} steps/s");
                lossSum = 0; lossN = 0;
            }
            if (evaluate is not null && evalEvery > 0 && (Step % evalEvery == 0 || Step == _o.Steps)) log(evaluate(Step));
        }
    }

    public void Dispose()
    {
        foreach (var (m, v) in _moments.Values) { m.Dispose(); v.Dispose(); }
        _moments.Clear();
    }
}
