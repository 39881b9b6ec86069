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
    public Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch) => Head(tape, p, Hidden(tape, p, batch), null);

    /// <summary>
    /// Mean cross-entropy against per-position targets (B·T, −100 = ignored); only the positions with a target go
    /// through the final norm and the LM head. At least one position needs a target.
    /// </summary>
    public Var Loss(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets)
    {
        if (targets.Length != batch.B * batch.T) throw new ArgumentException($"{targets.Length} targets for a batch of {batch.B}×{batch.T} positions.");
        var rows = Enumerable.Range(0, targets.Length).Where(i => targets[i] != -100).ToArray();
        if (rows.Length == 0) throw new ArgumentException("loss: no position of the batch has a target.");
        var logits = Head(tape, p, Hidden(tape, p, batch), rows);
        var t = Backend.FromArray(rows.Select(i => targets[i]).ToArray(), rows.Length);
        tape.OnDispose([t]);
        return tape.CrossEntropy(logits, tape.Constant(t));
    }

    private Var Hidden(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch)
    {
        var (B, T) = (batch.B, batch.T);
        if (T > Config.MaxPositionEmbeddings) throw new ArgumentException($"A sequence of {T} tokens exceeds the model's {Config.MaxPositionEmbeddings} positions (max_position_embeddings).");
        var be = Backend;
        var owned = new List<Tensor>();
        try
        {
            Var? mask = null;
            if (batch.Padded) { var m = be.FromArray(batch.Mask, B, T); owned.Add(m); mask = tape.Constant(m); }
            var ids = be.FromArray(batch.Ids, B, T); owned.Add(ids);
            Var? expand = null;
            int H = Config.NumAttentionHeads, Hkv = Config.NumKeyValueHeads;
            if (Config.KvGroups > 1)
            {
                var e = new float[B * H * Hkv];
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++) e[(b * H + h) * Hkv + h / Config.KvGroups] = 1f;
                var et = be.FromArray(e, B, H, Hkv); owned.Add(et);
                expand = tape.Constant(et);
            }
            var invFreq = tape.Constant(_invFreq!);
            var x = tape.Embedding(tape.Constant(ids), p[LlamaCheckpoint.EmbedName]);
            for (int l = 0; l < Config.NumHiddenLayers; l++) x = Layer(tape, p, $"model.layers.{l}.", x, mask, expand, invFreq, B, T);
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

    private Var Layer(Tape tape, IReadOnlyDictionary<string, Var> p, string h, Var x, Var? mask, Var? expand, Var invFreq, int B, int T)
    {
        int H = Config.NumAttentionHeads, Hkv = Config.NumKeyValueHeads, D = Config.HeadDim;
        float eps = (float)Config.RmsNormEps;
        var a = tape.RmsNorm(x, p[h + "input_layernorm.weight"], eps);
        var q = Linear(tape, p, h + "self_attn.q_proj", a, Config.QkvBias);            // (B, T, H·D)
        var k = Linear(tape, p, h + "self_attn.k_proj", a, Config.QkvBias);            // (B, T, Hkv·D)
        var v = Linear(tape, p, h + "self_attn.v_proj", a, Config.QkvBias);
        Var Heads(Var t, int heads) => tape.Transpose12(tape.Reshape(t, B, T, heads, D));   // (B, heads, T, D)
        var qh = tape.Rope(Heads(q, H), invFreq, 0);
        var kh = tape.Rope(Heads(k, Hkv), invFreq, 0);
        var vh = Heads(v, Hkv);
        if (expand is not null)
        {
            Var Repeat(Var t) => tape.Reshape(tape.Matmul(expand, tape.Reshape(t, B, Hkv, T * D)), B, H, T, D);
            kh = Repeat(kh);
            vh = Repeat(vh);
        }
        var y = tape.CausalAttention(qh, kh, vh, mask);                                 // (B, H, T, D)
        var merged = tape.Reshape(tape.Transpose12(y), B, T, H * D);
        x = tape.Add(x, Linear(tape, p, h + "self_attn.o_proj", merged, Config.OBias));
        var m = tape.RmsNorm(x, p[h + "post_attention_layernorm.weight"], eps);
        var f = tape.SiluMul(Linear(tape, p, h + "mlp.gate_proj", m, Config.MlpBiases), Linear(tape, p, h + "mlp.up_proj", m, Config.MlpBiases));
        return tape.Add(x, Linear(tape, p, h + "mlp.down_proj", f, Config.MlpBiases));
    }

    /// <summary>Final RMSNorm and the LM head: (B, T, V), or (rows, V) for the listed rows of the flattened positions.</summary>
    private Var Head(Tape tape, IReadOnlyDictionary<string, Var> p, Var x, int[]? rows)
    {
        if (rows is not null)
        {
            int n = x.Shape[0] * x.Shape[1];
            var rowsT = Backend.FromArray(rows, rows.Length);
            tape.OnDispose([rowsT]);
            x = tape.Embedding(tape.Constant(rowsT), tape.Reshape(x, n, x.Shape[2]));   // gather (rows, C); backward scatters
        }
        x = tape.RmsNorm(x, p["model.norm.weight"], (float)Config.RmsNormEps);
        return tape.Matmul(x, p[Config.TieWordEmbeddings ? LlamaCheckpoint.EmbedName : LlamaCheckpoint.LmHeadName], transB: true);
    }

    public void Dispose()
    {
        foreach (var t in _params.Values) t.Dispose();
        _params.Clear();
        _invFreq?.Dispose();
    }
}
