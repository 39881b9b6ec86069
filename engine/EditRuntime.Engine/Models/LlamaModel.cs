using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>
/// The LLaMA architecture (LLaMA 2/3, Qwen2, Mistral without a sliding window; see <see cref="LlamaConfig"/>) on any
/// <see cref="IBackend"/> that implements <see cref="ILlamaOps"/>, written once on an autograd <see cref="Tape"/>:
/// embed → per layer [RMSNorm → q/k/v projections → RoPE on q and k (positions 0..T−1) → grouped-query causal
/// attention → o_proj → residual; RMSNorm → down(silu(gate) ⊙ up) → residual] → final RMSNorm → lm_head (or the tied
/// embedding). Linear weights are in Hugging Face's (out, in) layout: y = x·Wᵀ (+ b). Batches are right-padded
/// (<see cref="TokenBatch"/>); padding is masked out of attention, and a row's positions are its token indices, as
/// transformers computes them for a right-padded batch.
/// <para>
/// Grouped-query attention repeats each key/value head to the query heads it serves (query head h reads key/value
/// head h / (H / H_kv), transformers' repeat_kv) as a batched matmul with a constant 0/1 expansion matrix, (B, H, H_kv)
/// · (B, H_kv, T·D): exact (each output is one input times 1 plus zeros) and differentiated by the tape's matmul, whose
/// backward sums the gradients of a group's query heads back onto their key/value head.
/// </para>
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly Dictionary<string, Tensor> _params = new(StringComparer.Ordinal);
    private readonly Tensor? _invFreq;

    public LlamaModel(IBackend backend, LlamaConfig config, IReadOnlyDictionary<string, HostTensor> weights)
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
            foreach (var (name, shape) in config.ParameterShapes()) _params[name] = backend.FromArray(weights[name].Data, shape);
            _invFreq = backend.FromArray(RopeFrequencies.Compute(config.HeadDim, config.RopeTheta, config.RopeScaling), config.HeadDim / 2);
        }
        catch { Dispose(); throw; }
    }

    public IBackend Backend { get; }
    public LlamaConfig Config { get; }
    public IReadOnlyDictionary<string, Tensor> Parameters => _params;

    /// <summary>Every parameter as a host tensor.</summary>
    public Dictionary<string, HostTensor> ToHost() =>
        _params.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape.ToArray(), Backend.ToFloatArray(p.Value)), StringComparer.Ordinal);

    /// <summary>The parameters as tape leaves; <paramref name="trainable"/> picks those that get gradients (null: all).</summary>
    public Dictionary<string, Var> Bind(Tape tape, Func<string, bool>? trainable = null) =>
        _params.ToDictionary(p => p.Key, p => tape.Param(p.Value, trainable?.Invoke(p.Key) ?? true, p.Key), StringComparer.Ordinal);

    /// <summary>Logits (B, T, V) of a right-padded batch.</summary>
    public Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch) => Head(tape, p, Hidden(tape, p, batch, null), null);

    /// <summary>
    /// Mean cross-entropy against per-position targets (B·T, −100 = ignored); only the positions with a target go
    /// through the final norm and the LM head. At least one position needs a target.
    /// </summary>
    public Var Loss(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets)
    {
        if (targets.Length != batch.B * batch.T) throw new ArgumentException($"{targets.Length} targets for a batch of {batch.B}×{batch.T} positions.");
        var rows = Enumerable.Range(0, targets.Length).Where(i => targets[i] != -100).ToArray();
        if (rows.Length == 0) throw new ArgumentException("loss: no position of the batch has a target.");
        var logits = Head(tape, p, Hidden(tape, p, batch, null), rows);
        var t = Backend.FromArray(rows.Select(i => targets[i]).ToArray(), rows.Length);
        tape.OnDispose([t]);
        return tape.CrossEntropy(logits, tape.Constant(t));
    }

    /// <summary>Embeddings and every layer: (B, T, C). With a cache (batch 1, unpadded) the tokens sit at positions
    /// cache.Length.. and their keys and values are appended to it; the caller advances it after the forward.</summary>
    private Var Hidden(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, LlamaKvCache? cache)
    {
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
            var ids = be.FromArray(batch.Ids, B, T); owned.Add(ids);
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
            var x = tape.Embedding(tape.Constant(ids), p[LlamaCheckpoint.EmbedName]);
            for (int l = 0; l < Config.NumHiddenLayers; l++) x = Layer(tape, p, $"model.layers.{l}.", x, mask, expand, invFreq, B, T, cache?.Layers[l], start);
            return x;
        }
        finally
        {
            tape.OnDispose(owned);   // backward ops re-read ids, the mask and the expansion matrix
        }
    }

    private Var Linear(Tape tape, IReadOnlyDictionary<string, Var> p, string name, Var x, bool bias)
    {
        var y = tape.Matmul(x, p[name + ".weight"], transB: true);
        return bias ? tape.BiasAdd(y, p[name + ".bias"]) : y;
    }

    private Var Layer(Tape tape, IReadOnlyDictionary<string, Var> p, string h, Var x, Var? mask, Var? expand, Var invFreq, int B, int T, LlamaLayerCache? cache, int start)
    {
        int H = Config.NumAttentionHeads, Hkv = Config.NumKeyValueHeads, D = Config.HeadDim;
        float eps = (float)Config.RmsNormEps;
        var a = tape.RmsNorm(x, p[h + "input_layernorm.weight"], eps);
        var q = Linear(tape, p, h + "self_attn.q_proj", a, Config.QkvBias);            // (B, T, H·D)
        var k = Linear(tape, p, h + "self_attn.k_proj", a, Config.QkvBias);            // (B, T, Hkv·D)
        var v = Linear(tape, p, h + "self_attn.v_proj", a, Config.QkvBias);
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
        x = tape.Add(x, Linear(tape, p, h + "self_attn.o_proj", merged, Config.OBias));
        var m = tape.RmsNorm(x, p[h + "post_attention_layernorm.weight"], eps);
        var f = tape.SiluMul(Linear(tape, p, h + "mlp.gate_proj", m, Config.MlpBiases), Linear(tape, p, h + "mlp.up_proj", m, Config.MlpBiases));
        return tape.Add(x, Linear(tape, p, h + "mlp.down_proj", f, Config.MlpBiases));
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
            last = LastRow(Head(tape, p, Hidden(tape, p, new TokenBatch([ids]), cache), null), ids.Length);
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
