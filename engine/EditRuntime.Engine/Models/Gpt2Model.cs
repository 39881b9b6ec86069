using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>A batch of token sequences, right-padded to one length T.</summary>
public sealed class TokenBatch
{
    /// <param name="sequences">Token ids per row (1 ≤ length ≤ T).</param>
    /// <param name="promptLengths">How many leading tokens of each row are its prompt (the rest is a teacher-forced
    /// answer); null = every row is all prompt. Adapters that key on the last prompt token read it.</param>
    public TokenBatch(IReadOnlyList<int[]> sequences, int padId = 0, IReadOnlyList<int>? promptLengths = null)
    {
        if (sequences.Count == 0) throw new ArgumentException("A batch needs at least one sequence.");
        if (sequences.Any(s => s.Length == 0)) throw new ArgumentException("Every sequence needs at least one token.");
        B = sequences.Count;
        T = sequences.Max(s => s.Length);
        Lengths = sequences.Select(s => s.Length).ToArray();
        if (promptLengths is not null && (promptLengths.Count != B || promptLengths.Where((p, b) => p < 1 || p > Lengths[b]).Any()))
            throw new ArgumentException($"Prompt lengths must be one per sequence, each between 1 and the sequence's length.");
        PromptLengths = promptLengths?.ToArray() ?? Lengths;
        Ids = new int[B * T];
        Mask = new float[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
            {
                bool real = t < sequences[b].Length;
                Ids[b * T + t] = real ? sequences[b][t] : padId;
                Mask[b * T + t] = real ? 1f : 0f;
            }
    }

    public int B { get; }
    public int T { get; }
    public int[] Lengths { get; }
    /// <summary>Prompt tokens per row (= <see cref="Lengths"/> unless the batch carries teacher-forced answers).</summary>
    public int[] PromptLengths { get; }
    /// <summary>(B, T) row-major ids, pads = padId.</summary>
    public int[] Ids { get; }
    /// <summary>(B, T): 1 for a token, 0 for padding.</summary>
    public float[] Mask { get; }
    public bool Padded => Lengths.Any(l => l != T);
}

/// <summary>
/// GPT-2 (pre-LayerNorm transformer, learned positions, GELU-tanh MLP, tied LM head) on any
/// <see cref="IBackend"/>. The forward is written once, on an autograd <see cref="Tape"/>, so the
/// same code gives logits, the loss and (with parameters that require gradients) every gradient.
/// </summary>
public sealed class Gpt2Model : HookedModel, ILanguageModel
{
    private readonly Dictionary<string, Tensor> _params = new();

    public Gpt2Model(IBackend backend, Gpt2Config config, IReadOnlyDictionary<string, HostTensor> weights)
        : base(backend, SiteLayout.Gpt2(config.NLayer))
    {
        config.Validate();
        if (config.Gelu != Gpt2Gelu.Tanh)
            throw new NotSupportedException($"activation_function \"{config.ActivationFunction}\": EditRuntime runs GPT-2's tanh GELU (gelu_new / gelu_pytorch_tanh) only.");
        Backend = backend;
        Config = config;
        try
        {
            foreach (var (name, shape) in config.ParameterShapes())
            {
                if (!weights.TryGetValue(name, out var w)) throw new ArgumentException($"GPT-2 weights: missing tensor '{name}' (expected shape {Tensor.Format(shape)}).");
                if (!w.Shape.SequenceEqual(shape)) throw new ArgumentException($"GPT-2 weights: '{name}' has shape {Tensor.Format(w.Shape)}, expected {Tensor.Format(shape)}.");
                _params[name] = backend.FromArray(w.Data, shape);
            }
        }
        catch { Dispose(); throw; }
    }

    public IBackend Backend { get; }
    public Gpt2Config Config { get; }

    public IReadOnlyDictionary<string, Tensor> Parameters => _params;

    public string EmbeddingName => "wte.weight";
    public string? PositionEmbeddingName => "wpe.weight";

    /// <summary>The sizes editors read: width n_embd, n_layer layers, n_positions positions, the vocabulary.</summary>
    public ModelShape Shape => ShapeOf(Config);

    /// <summary>The sizes of a GPT-2 config.</summary>
    public static ModelShape ShapeOf(Gpt2Config c) => new("gpt2", c.NEmbd, c.NLayer, c.NPositions, c.VocabSize);

    private static readonly SiteLayout s_names = SiteLayout.Gpt2(int.MaxValue);

    /// <summary>The linear sites of a block, in the order the forward runs them ("h.{i}." + kind).</summary>
    public static readonly string[] BlockSites = [.. s_names.Kinds];

    /// <summary>Position of a linear site "h.N.kind" in the forward (layer, then <see cref="BlockSites"/> order); −1 if the name is not one.</summary>
    public static int SiteOrder(string site) => s_names.Order(site);

    /// <summary>The layer of a linear site "h.N.kind"; −1 if the name is not one.</summary>
    public static int SiteLayer(string site) => s_names.Layer(site);

    /// <summary>GPT-2's initialisation: N(0, 0.02) weights, residual projections N(0, 0.02/√(2·layers)), zero biases, unit LayerNorm gains.</summary>
    public static Dictionary<string, HostTensor> RandomWeights(Gpt2Config config, int seed)
    {
        var rng = new Random(seed);
        var w = new Dictionary<string, HostTensor>();
        foreach (var (name, shape) in config.ParameterShapes())
        {
            long n = shape.Aggregate(1L, (a, d) => a * d);
            var data = new float[n];
            if (name.EndsWith(".bias")) { }
            else if (name.Contains("ln_")) Array.Fill(data, 1f);
            else
            {
                double std = name.EndsWith("c_proj.weight") ? 0.02 / Math.Sqrt(2.0 * config.NLayer) : 0.02;
                var r = Compute.HostReference.RandomNormal(rng, n, (float)std);
                Array.Copy(r, data, n);
            }
            w[name] = new HostTensor(shape, data);
        }
        return w;
    }

    /// <summary>Every parameter as a host tensor (for saving).</summary>
    public Dictionary<string, HostTensor> ToHost() =>
        _params.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape.ToArray(), Backend.ToFloatArray(p.Value)));

    /// <summary>The parameters as tape leaves; <paramref name="trainable"/> picks those that get gradients (null: all).</summary>
    public Dictionary<string, Var> Bind(Tape tape, Func<string, bool>? trainable = null) =>
        _params.ToDictionary(p => p.Key, p => tape.Param(p.Value, trainable?.Invoke(p.Key) ?? true, p.Key));

    /// <summary>Logits (B, T, V) of a batch. Padding (right) is masked out of attention.</summary>
    public Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch) => Logits(tape, p, batch, null, 0);

    private Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, KvCache? cache, int start) =>
        Head(tape, p, Hidden(tape, p, batch, cache, start, 0, null, Config.NLayer), null);

    /// <summary>
    /// The residual stream entering layer <paramref name="layer"/> (B, T, C), from a forward on the frozen
    /// parameters with the adapters of the sites below that layer (nothing is recorded). Editors that train
    /// only at or above a layer compute this once per edit and pass it to <see cref="Loss"/>: the layers
    /// below give the same result at every iteration. The caller owns the tensor.
    /// </summary>
    public Tensor ResidualAt(TokenBatch batch, int layer)
    {
        if (layer < 0 || layer > Config.NLayer) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer}: the model has layers 0–{Config.NLayer - 1} (and {Config.NLayer} = after the last).");
        using var tape = new Tape(Backend);
        var x = Hidden(tape, Frozen(tape), batch, null, 0, 0, null, layer);
        return Backend.Scale(x.Value, 1f);
    }

    /// <summary>Embeddings, then layers [fromLayer, toLayer); from <paramref name="residual"/> (the stream entering
    /// <paramref name="fromLayer"/>, a constant) when fromLayer &gt; 0.</summary>
    private Var Hidden(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, KvCache? cache, int start, int fromLayer, Tensor? residual, int toLayer)
    {
        var (B, T) = (batch.B, batch.T);
        if (T > Config.NPositions) throw new ArgumentException($"A sequence of {T} tokens exceeds the model's {Config.NPositions} positions.");
        if ((fromLayer > 0) != (residual is not null)) throw new ArgumentException("A forward from a layer above 0 needs the residual stream entering it (ResidualAt), and only then.");
        if (residual is not null && !residual.Shape.SequenceEqual(new[] { B, T, Config.NEmbd }))
            throw new ArgumentException($"The residual stream is {residual.ShapeString}, the batch needs ({B}, {T}, {Config.NEmbd}).");
        var be = Backend;
        var owned = new List<Tensor>();
        try
        {
            if (start + T > Config.NPositions) throw new ArgumentException($"Position {start + T - 1} exceeds the model's {Config.NPositions} positions.");
            Tensor? maskT = null;
            if (batch.Padded) { maskT = be.FromArray(batch.Mask, B, T); owned.Add(maskT); }
            var mask = maskT is null ? null : tape.Constant(maskT);
            var ctx = new ForwardContext(batch, start);
            Var x;
            if (residual is not null) x = tape.Constant(residual);
            else
            {
                var idsT = be.FromArray(batch.Ids, B, T); owned.Add(idsT);
                var pos = new int[B * T];
                for (int i = 0; i < pos.Length; i++) pos[i] = start + i % T;
                var posT = be.FromArray(pos, B, T); owned.Add(posT);
                x = tape.Add(tape.Embedding(tape.Constant(idsT), p["wte.weight"]), tape.Embedding(tape.Constant(posT), p["wpe.weight"]));
            }
            for (int l = fromLayer; l < toLayer; l++) x = Block(tape, p, $"h.{l}.", x, mask, B, T, cache?.Layers[l], ctx);
            return x;
        }
        finally
        {
            // Backward ops re-read ids and the mask: they live as long as the tape.
            tape.OnDispose(owned);
        }
    }

    /// <summary>Final layer norm and the tied LM head: (B, T, V) logits, or (rows, V) for the listed rows of
    /// the flattened (B·T) positions only — what a loss or a score needs, without the rest of the vocabulary matmul.</summary>
    private Var Head(Tape tape, IReadOnlyDictionary<string, Var> p, Var x, int[]? rows)
    {
        if (rows is not null) x = tape.GatherRows(x, rows);
        x = tape.LayerNorm(x, p["ln_f.weight"], p["ln_f.bias"], (float)Config.LayerNormEpsilon);
        return tape.Matmul(x, p["wte.weight"], transB: true);
    }

    private Var Site(Tape tape, IReadOnlyDictionary<string, Var> p, string site, Var x, ForwardContext ctx)
    {
        return Hooks.Run(tape, site, x, tape.Linear(x, p[site + ".weight"], p[site + ".bias"]), ctx);
    }

    private Var Block(Tape tape, IReadOnlyDictionary<string, Var> p, string h, Var x, Var? mask, int B, int T, LayerCache? cache, ForwardContext ctx)
    {
        int C = Config.NEmbd, H = Config.NHead, D = Config.HeadDim;
        var a = tape.LayerNorm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], (float)Config.LayerNormEpsilon);
        var qkv = Site(tape, p, h + "attn.c_attn", a, ctx);                                        // (B, T, 3C)
        var parts = tape.SplitLast(qkv, 3);                                                           // 3 × (B, T, C)
        Var Heads(Var v) => tape.Transpose12(tape.Reshape(v, B, T, H, D));                            // (B, H, T, D)
        var (q, k, v) = (Heads(parts[0]), Heads(parts[1]), Heads(parts[2]));
        var y = cache is null ? tape.CausalAttention(q, k, v, mask) : cache.Attend(tape, q, k, v);  // (B, H, T, D)
        var merged = tape.Reshape(tape.Transpose12(y), B, T, C);                                     // (B, T, C)
        x = tape.Add(x, Site(tape, p, h + "attn.c_proj", merged, ctx));
        var m = tape.LayerNorm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], (float)Config.LayerNormEpsilon);
        var f = tape.Gelu(Site(tape, p, h + "mlp.c_fc", m, ctx));                                   // (B, T, inner)
        return tape.Add(x, Site(tape, p, h + "mlp.c_proj", f, ctx));
    }

    /// <summary>
    /// Mean cross-entropy of the batch's logits against per-position targets (B·T, −100 = ignored). Only
    /// the positions with a target go through the final layer norm and the LM head. With
    /// <paramref name="residual"/> (from <see cref="ResidualAt"/>) the forward starts at <paramref name="fromLayer"/>.
    /// </summary>
    public Var Loss(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0)
    {
        var (logits, kept) = TargetRows(tape, p, batch, targets, residual, fromLayer);
        var t = Backend.FromArray(kept, kept.Length);
        tape.OnDispose([t]);
        return tape.CrossEntropy(logits, tape.Constant(t));
    }

    /// <summary>
    /// The logits (rows, V) of the positions that have a target (targets (B·T), −100 = none), in position order, from
    /// the same forward as <see cref="Loss"/> (only those rows reach the final layer norm and the LM head): what a
    /// loss other than the cross-entropy (a KL against reference logits) needs. At least one position needs a target.
    /// </summary>
    public Var TargetLogits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0)
    {
        if (!targets.Any(t => t != -100)) throw new ArgumentException("TargetLogits: no position of the batch has a target.");
        return TargetRows(tape, p, batch, targets, residual, fromLayer).Logits;
    }

    private (Var Logits, int[] Kept) TargetRows(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual, int fromLayer)
    {
        if (targets.Length != batch.B * batch.T) throw new ArgumentException($"{targets.Length} targets for a batch of {batch.B}×{batch.T} positions.");
        var x = Hidden(tape, p, batch, null, 0, fromLayer, residual, Config.NLayer);
        var rows = Enumerable.Range(0, targets.Length).Where(i => targets[i] != -100).ToArray();
        if (rows.Length == targets.Length || rows.Length == 0) return (tape.Reshape(Head(tape, p, x, null), targets.Length, Config.VocabSize), targets);
        return (Head(tape, p, x, rows), rows.Select(i => targets[i]).ToArray());
    }

    // ---------------------------------------------------------------- inference

    /// <summary>The parameters as constants: a forward on them records nothing.</summary>
    private Dictionary<string, Var> Frozen(Tape tape) => _params.ToDictionary(p => p.Key, p => tape.Constant(p.Value, p.Key));

    /// <summary>How many tokens <see cref="GenerateGreedy"/> can add after a prompt of <paramref name="promptLength"/> tokens:
    /// every position up to the last predicts one.</summary>
    public static int MaxNewTokens(Gpt2Config config, int promptLength) => Math.Max(0, config.NPositions - promptLength + 1);

    /// <summary>Logits of the last position of a single sequence, on the host.</summary>
    public float[] NextTokenLogits(int[] ids)
    {
        using var tape = new Tape(Backend);
        var logits = Logits(tape, Frozen(tape), new TokenBatch([ids]));
        var all = Backend.ToFloatArray(logits.Value);
        return all.AsSpan((ids.Length - 1) * Config.VocabSize, Config.VocabSize).ToArray();
    }

    /// <summary>
    /// Greedy decoding with a key/value cache: the prompt is run once (prefill), then each new token
    /// runs one position through the model, attending to the cached keys and values.
    /// Stops after <paramref name="maxNewTokens"/>, at <paramref name="stopId"/>, or at the last position.
    /// </summary>
    public int[] GenerateGreedy(int[] prompt, int maxNewTokens, int? stopId = null)
    {
        if (prompt.Length == 0) throw new ArgumentException("generate: the prompt has no tokens.");
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        if (prompt.Length > Config.NPositions) throw new ArgumentException($"generate: a prompt of {prompt.Length} tokens exceeds the model's {Config.NPositions} positions.");
        var result = new List<int>();
        using var cache = new KvCache(this, Math.Min(Config.NPositions, prompt.Length + maxNewTokens));
        int[] step = prompt;
        int start = 0;
        while (result.Count < maxNewTokens && start + step.Length <= Config.NPositions)
        {
            float[] last;
            using (var tape = new Tape(Backend))
            {
                var logits = Logits(tape, Frozen(tape), new TokenBatch([step]), cache, start);
                var all = Backend.ToFloatArray(logits.Value);
                last = all.AsSpan((step.Length - 1) * Config.VocabSize, Config.VocabSize).ToArray();
            }
            if (Gpt2Checkpoint.FirstNonFinite(last) is int bad)
                throw new NonFiniteException($"generate: the logits of new token {result.Count + 1} (position {start + step.Length - 1}) are not finite (logit {bad} is {last[bad]})");
            cache.Advance(step.Length);
            start += step.Length;
            int next = ArgMax(last);
            result.Add(next);
            if (next == stopId || start >= Config.NPositions) break;
            step = [next];
        }
        return result.ToArray();
    }

    /// <summary>Greedy decoding (see the overload) stopping after any of <paramref name="stopIds"/>.</summary>
    public int[] GenerateGreedy(int[] prompt, int maxNewTokens, IReadOnlyCollection<int>? stopIds)
    {
        if (stopIds is null || stopIds.Count == 0) return GenerateGreedy(prompt, maxNewTokens, stopId: null);
        if (stopIds.Count == 1) return GenerateGreedy(prompt, maxNewTokens, stopIds.First());
        throw new ArgumentException("GPT-2 generation stops at one id (its <|endoftext|>).");
    }

    public static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }


    public TargetScore[] ScoreTargets(IReadOnlyList<(int[] Prompt, int[] Target)> requests) => TargetScoring.Score(this, requests);

    public void Dispose()
    {
        foreach (var t in _params.Values) t.Dispose();
        _params.Clear();
    }
}

/// <summary>Per-token log-probabilities of a target, whether each token is the argmax, and the argmax ids (teacher forced).</summary>
public sealed record TargetScore(double[] TokenLogProbs, bool[] ArgmaxHits, int[] ArgmaxIds)
{
    public double LogProb => TokenLogProbs.Sum();
    public double MeanNll => -TokenLogProbs.Average();
    public double Accuracy => ArgmaxHits.Count(h => h) / (double)ArgmaxHits.Length;
}

/// <summary>Keys and values of every layer for one sequence (batch 1), up to a capacity.</summary>
internal sealed class KvCache : IDisposable
{
    public KvCache(Gpt2Model model, int capacity)
    {
        Layers = Enumerable.Range(0, model.Config.NLayer).Select(_ => new LayerCache(model.Backend, model.Config.NHead, capacity, model.Config.HeadDim)).ToArray();
    }

    public LayerCache[] Layers { get; }

    public void Advance(int n) { foreach (var l in Layers) l.Length += n; }

    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}

/// <summary>One layer's cached keys and values, (H, capacity, D) each.</summary>
internal sealed class LayerCache : IDisposable
{
    private readonly IBackend _be;
    private readonly Tensor _k, _v;
    private readonly int _h, _cap, _d;

    public LayerCache(IBackend be, int heads, int capacity, int headDim)
    {
        _be = be; _h = heads; _cap = capacity; _d = headDim;
        _k = be.Empty(DType.F32, heads, capacity, headDim);
        _v = be.Empty(DType.F32, heads, capacity, headDim);
    }

    /// <summary>Positions already cached.</summary>
    public int Length { get; set; }

    /// <summary>Appends k, v (1, H, T, D) at the cached length and attends q to every cached position
    /// (causally within the new block). Returns (1, H, T, D).</summary>
    public Var Attend(Tape tape, Var q, Var k, Var v)
    {
        int T = q.Shape[2];
        if (q.Shape[0] != 1) throw new ArgumentException("The key/value cache holds one sequence (batch 1).");
        if (Length + T > _cap) throw new InvalidOperationException($"The key/value cache holds {_cap} positions; {Length + T} needed.");
        _be.CopyStrided(k.Value, _k, _h, T * _d, 0, T * _d, (long)Length * _d, (long)_cap * _d);
        _be.CopyStrided(v.Value, _v, _h, T * _d, 0, T * _d, (long)Length * _d, (long)_cap * _d);
        if (Length == 0) return tape.CausalAttention(q, k, v, null);
        if (T != 1) throw new ArgumentException("After the prefill, the cache takes one position at a time.");
        int L = Length + 1;
        var ks = _be.Empty(DType.F32, _h, L, _d);
        var vs = _be.Empty(DType.F32, _h, L, _d);
        _be.CopyStrided(_k, ks, _h, L * _d, 0, (long)_cap * _d, 0, L * _d);
        _be.CopyStrided(_v, vs, _h, L * _d, 0, (long)_cap * _d, 0, L * _d);
        tape.OnDispose([ks, vs]);
        var q3 = tape.Reshape(q, _h, 1, _d);
        var scores = tape.Scale(tape.Matmul(q3, tape.Constant(ks), transB: true), 1f / MathF.Sqrt(_d)); // (H, 1, L)
        var y = tape.Matmul(tape.Softmax(scores), tape.Constant(vs));                                    // (H, 1, D)
        return tape.Reshape(y, 1, _h, 1, _d);
    }

    public void Dispose() { _k.Dispose(); _v.Dispose(); }
}

/// <summary>A forward produced NaN or ∞ where a finite value is required (logits, log-probabilities, a loss); the message names the step.</summary>
public sealed class NonFiniteException(string message) : ArithmeticException(message);
