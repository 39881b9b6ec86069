using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>
/// The LLaMA architecture (LLaMA 2/3, Qwen2, Mistral without a sliding window; see <see cref="LlamaConfig"/>) on any
/// <see cref="IBackend"/> that implements <see cref="ILlamaOps"/>, written once on an autograd <see cref="Tape"/>:
/// embed → per layer [RMSNorm → q/k/v projections → RoPE on q and k (positions 0..T−1) → grouped-query causal
/// attention → o_proj → residual; RMSNorm → down(silu(gate) ⊙ up) → residual] → final RMSNorm → lm_head (or the tied
/// embedding). The linear sites' weights are held (in, out) on the device, y = x·W (+ b), the runtime's convention for
/// every architecture (<see cref="ILanguageModel"/>): Hugging Face's (out, in) nn.Linear weights are transposed on
/// load and back in <see cref="ToHost"/>; the embedding and lm_head stay (V, C). Batches are right-padded
/// (<see cref="TokenBatch"/>); padding is masked out of attention, and a row's positions are its token indices, as
/// transformers computes them for a right-padded batch.
/// <para>
/// Grouped-query attention repeats each key/value head to the query heads it serves (query head h reads key/value
/// head h / (H / H_kv), transformers' repeat_kv) as a batched matmul with a constant 0/1 expansion matrix, (B, H, H_kv)
/// · (B, H_kv, T·D): exact (each output is one input times 1 plus zeros) and differentiated by the tape's matmul, whose
/// backward sums the gradients of a group's query heads back onto their key/value head.
/// </para>
/// </summary>
public sealed class LlamaModel : HookedModel, ILanguageModel
{
    private readonly Dictionary<string, Tensor> _params = new(StringComparer.Ordinal);
    private readonly Tensor? _invFreq;

    public LlamaModel(IBackend backend, LlamaConfig config, IReadOnlyDictionary<string, HostTensor> weights)
        : base(backend, SiteLayout.Llama((config ?? throw new ArgumentNullException(nameof(config))).NumHiddenLayers))
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _ = backend.Ops<ILlamaOps>();
        Backend = backend;
        Config = config;
        try
        {
            LlamaCheckpoint.CheckTensors(config, weights, "<weights>");
            foreach (var (name, shape) in config.ParameterShapes())
                _params[name] = IsSiteWeight(name)
                    ? backend.FromArray(Transpose(weights[name].Data, shape[0], shape[1]), shape[1], shape[0])
                    : backend.FromArray(weights[name].Data, shape);
            _invFreq = backend.FromArray(RopeFrequencies.Compute(config.HeadDim, config.RopeTheta, config.RopeScaling), config.HeadDim / 2);
        }
        catch { Dispose(); throw; }
    }

    public IBackend Backend { get; }
    public LlamaConfig Config { get; }
    /// <summary>The parameters under their Hugging Face names; a linear site's weight is (in, out) here (see the class).</summary>
    public IReadOnlyDictionary<string, Tensor> Parameters => _params;

    public string EmbeddingName => LlamaCheckpoint.EmbedName;
    public string? PositionEmbeddingName => null;

    /// <summary>The sizes editors read: hidden_size, layers, max_position_embeddings, vocab_size.</summary>
    public ModelShape Shape => ShapeOf(Config);

    /// <summary>The sizes of a LLaMA-family config.</summary>
    public static ModelShape ShapeOf(LlamaConfig c) => new("llama", c.HiddenSize, c.NumHiddenLayers, c.MaxPositionEmbeddings, c.VocabSize);

    /// <summary>Whether a parameter is a linear site's weight (held transposed, (in, out)).</summary>
    private bool IsSiteWeight(string name) => name.EndsWith(".weight", StringComparison.Ordinal) && Hooks.Layout.Order(name[..^".weight".Length]) >= 0;

    private static float[] Transpose(float[] data, int rows, int cols)
    {
        var t = new float[data.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) t[(long)c * rows + r] = data[(long)r * cols + c];
        return t;
    }

    /// <summary>Every parameter as a host tensor in the checkpoint's layout (Hugging Face's (out, in) for linear weights).</summary>
    public Dictionary<string, HostTensor> ToHost() =>
        _params.ToDictionary(p => p.Key, p =>
        {
            var data = Backend.ToFloatArray(p.Value);
            return IsSiteWeight(p.Key)
                ? new HostTensor([p.Value.Shape[1], p.Value.Shape[0]], Transpose(data, p.Value.Shape[0], p.Value.Shape[1]))
                : new HostTensor(p.Value.Shape.ToArray(), data);
        }, StringComparer.Ordinal);

    /// <summary>The parameters as tape leaves; <paramref name="trainable"/> picks those that get gradients (null: all).</summary>
    public Dictionary<string, Var> Bind(Tape tape, Func<string, bool>? trainable = null) =>
        _params.ToDictionary(p => p.Key, p => tape.Param(p.Value, trainable?.Invoke(p.Key) ?? true, p.Key), StringComparer.Ordinal);

    /// <summary>Logits (B, T, V) of a right-padded batch.</summary>
    public Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch) => Head(tape, p, Hidden(tape, p, batch, null, 0, null, Config.NumHiddenLayers), null);

    /// <summary>
    /// Mean cross-entropy against per-position targets (B·T, −100 = ignored); only the positions with a target go
    /// through the final norm and the LM head. At least one position needs a target. With <paramref name="residual"/>
    /// (from <see cref="ResidualAt"/>) the forward starts at <paramref name="fromLayer"/>.
    /// </summary>
    public Var Loss(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0)
    {
        var (logits, kept) = TargetRows(tape, p, batch, targets, residual, fromLayer);
        var t = Backend.FromArray(kept, kept.Length);
        tape.OnDispose([t]);
        return tape.CrossEntropy(logits, tape.Constant(t));
    }

    /// <summary>The logits (rows, V) of the positions that have a target, in position order, from the forward
    /// <see cref="Loss"/> runs. At least one position needs a target.</summary>
    public Var TargetLogits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0) =>
        TargetRows(tape, p, batch, targets, residual, fromLayer).Logits;

    private (Var Logits, int[] Kept) TargetRows(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual, int fromLayer)
    {
        if (targets.Length != batch.B * batch.T) throw new ArgumentException($"{targets.Length} targets for a batch of {batch.B}×{batch.T} positions.");
        var rows = Enumerable.Range(0, targets.Length).Where(i => targets[i] != -100).ToArray();
        if (rows.Length == 0) throw new ArgumentException("loss: no position of the batch has a target.");
        var x = Hidden(tape, p, batch, null, fromLayer, residual, Config.NumHiddenLayers);
        bool all = rows.Length == targets.Length;
        var logits = Head(tape, p, x, all ? null : rows);
        return (all ? tape.Reshape(logits, targets.Length, Config.VocabSize) : logits, rows.Select(i => targets[i]).ToArray());
    }

    /// <summary>
    /// The residual stream entering layer <paramref name="layer"/> (B, T, C), from a forward on the frozen parameters
    /// with the adapters of the sites below that layer (nothing is recorded). The caller owns the tensor.
    /// </summary>
    public Tensor ResidualAt(TokenBatch batch, int layer)
    {
        if (layer < 0 || layer > Config.NumHiddenLayers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer}: the model has layers 0–{Config.NumHiddenLayers - 1} (and {Config.NumHiddenLayers} = after the last).");
        using var tape = new Tape(Backend);
        var x = Hidden(tape, Frozen(tape), batch, null, 0, null, layer);
        return Backend.Scale(x.Value, 1f);
    }


    public TargetScore[] ScoreTargets(IReadOnlyList<(int[] Prompt, int[] Target)> requests) => TargetScoring.Score(this, requests);

    /// <summary>Embeddings, then layers [fromLayer, toLayer): (B, T, C); from <paramref name="residual"/> (the stream
    /// entering <paramref name="fromLayer"/>, a constant) when fromLayer &gt; 0. With a cache (batch 1, unpadded, all
    /// layers) the tokens sit at positions cache.Length.. and their keys and values are appended to it; the caller
    /// advances it after the forward.</summary>
    private Var Hidden(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, LlamaKvCache? cache, int fromLayer, Tensor? residual, int toLayer)
    {
        if ((fromLayer > 0) != (residual is not null)) throw new ArgumentException("A forward from a layer above 0 needs the residual stream entering it (ResidualAt), and only then.");
        if (residual is not null && !residual.Shape.SequenceEqual(new[] { batch.B, batch.T, Config.HiddenSize }))
            throw new ArgumentException($"The residual stream is {residual.ShapeString}, the batch needs ({batch.B}, {batch.T}, {Config.HiddenSize}).");
        if (cache is not null && (fromLayer != 0 || toLayer != Config.NumHiddenLayers)) throw new ArgumentException("A cached forward runs every layer.");
        var (B, T) = (batch.B, batch.T);
        int start = cache?.Length ?? 0;
        if (start + T > Config.MaxPositionEmbeddings)
            throw new ArgumentException(start == 0
                ? $"A sequence of {T} tokens exceeds the model's {Config.MaxPositionEmbeddings} positions (max_position_embeddings)."
                : $"{T} tokens after {start} cached ones exceed the model's {Config.MaxPositionEmbeddings} positions (max_position_embeddings).");
        if (cache is not null && (B != 1 || batch.Padded)) throw new ArgumentException("The key/value cache holds one sequence (batch 1).");
        var be = Backend;
        var owned = new List<Tensor>();
        try
        {
            Var? mask = null;
            if (batch.Padded) { var m = be.FromArray(batch.Mask, B, T); owned.Add(m); mask = tape.Constant(m); }
            var ctx = new ForwardContext(batch, start);
            Var? expand = null;
            int H = Config.NumAttentionHeads, Hkv = Config.NumKeyValueHeads;
            if (Config.KvGroups > 1 && start == 0)   // a cached step (start > 0) attends per key/value head, without the repeat
            {
                var e = new float[B * H * Hkv];
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++) e[(b * H + h) * Hkv + h / Config.KvGroups] = 1f;
                var et = be.FromArray(e, B, H, Hkv); owned.Add(et);
                expand = tape.Constant(et);
            }
            var invFreq = tape.Constant(_invFreq!);
            Var x;
            if (residual is not null) x = tape.Constant(residual);
            else
            {
                var ids = be.FromArray(batch.Ids, B, T); owned.Add(ids);
                x = tape.Embedding(tape.Constant(ids), p[LlamaCheckpoint.EmbedName]);
            }
            for (int l = fromLayer; l < toLayer; l++) x = Layer(tape, p, $"model.layers.{l}.", x, mask, expand, invFreq, B, T, cache?.Layers[l], start, ctx);
            return x;
        }
        finally
        {
            tape.OnDispose(owned);   // backward ops re-read ids, the mask and the expansion matrix
        }
    }

    /// <summary>A linear site: x·W (+ b) with W (in, out), then the site's adapter and captures.</summary>
    private Var Linear(Tape tape, IReadOnlyDictionary<string, Var> p, string name, Var x, bool bias, ForwardContext ctx)
    {
        var y = tape.Matmul(x, p[name + ".weight"]);
        return Hooks.Run(tape, name, x, bias ? tape.BiasAdd(y, p[name + ".bias"]) : y, ctx);
    }

    private Var Layer(Tape tape, IReadOnlyDictionary<string, Var> p, string h, Var x, Var? mask, Var? expand, Var invFreq, int B, int T, LlamaLayerCache? cache, int start, ForwardContext ctx)
    {
        int H = Config.NumAttentionHeads, Hkv = Config.NumKeyValueHeads, D = Config.HeadDim;
        float eps = (float)Config.RmsNormEps;
        var a = tape.RmsNorm(x, p[h + "input_layernorm.weight"], eps);
        var q = Linear(tape, p, h + "self_attn.q_proj", a, Config.QkvBias, ctx);            // (B, T, H·D)
        var k = Linear(tape, p, h + "self_attn.k_proj", a, Config.QkvBias, ctx);            // (B, T, Hkv·D)
        var v = Linear(tape, p, h + "self_attn.v_proj", a, Config.QkvBias, ctx);
        Var Heads(Var t, int heads) => tape.Transpose12(tape.Reshape(t, B, T, heads, D));   // (B, heads, T, D)
        var qh = tape.Rope(Heads(q, H), invFreq, start);
        var kh = tape.Rope(Heads(k, Hkv), invFreq, start);
        var vh = Heads(v, Hkv);
        cache?.Append(kh, vh);                                                          // post-RoPE keys, per key/value head
        Var y;
        if (start > 0) y = cache!.Attend(tape, qh);                                     // (1, H, 1, D)
        else
        {
            if (expand is not null)
            {
                Var Repeat(Var t) => tape.Reshape(tape.Matmul(expand, tape.Reshape(t, B, Hkv, T * D)), B, H, T, D);
                kh = Repeat(kh);
                vh = Repeat(vh);
            }
            y = tape.CausalAttention(qh, kh, vh, mask);                                 // (B, H, T, D)
        }
        var merged = tape.Reshape(tape.Transpose12(y), B, T, H * D);
        x = tape.Add(x, Linear(tape, p, h + "self_attn.o_proj", merged, Config.OBias, ctx));
        var m = tape.RmsNorm(x, p[h + "post_attention_layernorm.weight"], eps);
        var f = tape.SiluMul(Linear(tape, p, h + "mlp.gate_proj", m, Config.MlpBiases, ctx), Linear(tape, p, h + "mlp.up_proj", m, Config.MlpBiases, ctx));
        return tape.Add(x, Linear(tape, p, h + "mlp.down_proj", f, Config.MlpBiases, ctx));
    }

    /// <summary>Final RMSNorm and the LM head: (B, T, V), or (rows, V) for the listed rows of the flattened positions.</summary>
    private Var Head(Tape tape, IReadOnlyDictionary<string, Var> p, Var x, int[]? rows)
    {
        if (rows is not null) x = tape.GatherRows(x, rows);
        x = tape.RmsNorm(x, p["model.norm.weight"], (float)Config.RmsNormEps);
        return tape.Matmul(x, p[Config.TieWordEmbeddings ? LlamaCheckpoint.EmbedName : LlamaCheckpoint.LmHeadName], transB: true);
    }

    // ---------------------------------------------------------------- inference

    /// <summary>The parameters as constants: a forward on them records nothing.</summary>
    private Dictionary<string, Var> Frozen(Tape tape) => _params.ToDictionary(p => p.Key, p => tape.Constant(p.Value, p.Key), StringComparer.Ordinal);

    private float[] LastRow(Var logits, int T)
    {
        var all = Backend.ToFloatArray(logits.Value);
        return all.AsSpan((T - 1) * Config.VocabSize, Config.VocabSize).ToArray();
    }

    /// <summary>Logits (V) of the last position of one sequence, from a full forward (no cache), on the host.</summary>
    public float[] NextTokenLogits(int[] ids)
    {
        if (ids.Length == 0) throw new ArgumentException("NextTokenLogits: no tokens.");
        using var tape = new Tape(Backend);
        return LastRow(Logits(tape, Frozen(tape), new TokenBatch([ids])), ids.Length);
    }

    /// <summary>An empty key/value cache for one sequence of up to <paramref name="capacity"/> positions (see <see cref="LlamaKvCache"/>).</summary>
    public LlamaKvCache NewCache(int capacity) => new(this, capacity);

    /// <summary>
    /// A cached forward: the tokens at positions cache.Length.. (the whole prompt into an empty cache, then one token at
    /// a time), their post-RoPE keys and values appended to the cache, which then advances. Returns the logits (V) of
    /// the last of them, on the host: equal to <see cref="NextTokenLogits"/> of the whole sequence so far.
    /// </summary>
    public float[] CachedLogits(LlamaKvCache cache, int[] ids)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (!ReferenceEquals(cache.Model, this)) throw new ArgumentException("CachedLogits: the cache belongs to another model.");
        if (ids.Length == 0) throw new ArgumentException("CachedLogits: no tokens.");
        if (cache.Length > 0 && ids.Length != 1) throw new ArgumentException($"CachedLogits: after the prefill the cache takes one token at a time, got {ids.Length}.");
        if (cache.Length + ids.Length > cache.Capacity) throw new InvalidOperationException($"CachedLogits: the cache holds {cache.Capacity} positions; {cache.Length + ids.Length} needed.");
        float[] last;
        using (var tape = new Tape(Backend))
        {
            var p = Frozen(tape);
            last = LastRow(Head(tape, p, Hidden(tape, p, new TokenBatch([ids]), cache, 0, null, Config.NumHiddenLayers), null), ids.Length);
        }
        cache.Advance(ids.Length);
        return last;
    }

    /// <summary>How many tokens <see cref="GenerateGreedy"/> can add after a prompt of <paramref name="promptLength"/> tokens.</summary>
    public static int MaxNewTokens(LlamaConfig config, int promptLength) => Math.Max(0, config.MaxPositionEmbeddings - promptLength + 1);

    /// <summary>
    /// Greedy decoding with the key/value cache: the prompt runs once (prefill), then each new token runs one position,
    /// attending to the cached keys and values. Stops after <paramref name="maxNewTokens"/>, at a token of
    /// <paramref name="stopIds"/> (included in the result), or at the model's last position.
    /// </summary>
    public int[] GenerateGreedy(int[] prompt, int maxNewTokens, IReadOnlyCollection<int>? stopIds = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Length == 0) throw new ArgumentException("generate: the prompt has no tokens.");
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        int maxPos = Config.MaxPositionEmbeddings;
        if (prompt.Length > maxPos) throw new ArgumentException($"generate: a prompt of {prompt.Length} tokens exceeds the model's {maxPos} positions (max_position_embeddings).");
        var result = new List<int>();
        if (maxNewTokens == 0) return [];
        using var cache = NewCache(Math.Min(maxPos, prompt.Length + maxNewTokens - 1));
        int[] step = prompt;
        while (true)
        {
            var last = CachedLogits(cache, step);
            if (Gpt2Checkpoint.FirstNonFinite(last) is int bad)
                throw new NonFiniteException($"generate: the logits of new token {result.Count + 1} (position {cache.Length - 1}) are not finite (logit {bad} is {last[bad]})");
            int next = Gpt2Model.ArgMax(last);
            result.Add(next);
            if (result.Count >= maxNewTokens || (stopIds?.Contains(next) ?? false) || cache.Length >= maxPos) break;
            step = [next];
        }
        return result.ToArray();
    }

    public void Dispose()
    {
        foreach (var t in _params.Values) t.Dispose();
        _params.Clear();
        _invFreq?.Dispose();
    }
}
