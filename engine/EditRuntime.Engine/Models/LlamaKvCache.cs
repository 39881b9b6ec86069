using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>
/// The key/value cache of one <see cref="LlamaModel"/> sequence (batch 1): per layer the keys after RoPE and the values,
/// per key/value head — (H_kv, capacity, D) each, not repeated to the query heads. A cached step reads them back and the
/// G = H / H_kv query heads of a group attend to their one key/value head as G rows of one matmul (query head h reads
/// key/value head h / G, as transformers' repeat_kv), so nothing is repeated in memory. Made by
/// <see cref="LlamaModel.NewCache"/>, filled by <see cref="LlamaModel.CachedLogits"/>.
/// </summary>
public sealed class LlamaKvCache : IDisposable
{
    internal LlamaKvCache(LlamaModel model, int capacity)
    {
        var c = model.Config;
        if (capacity < 1 || capacity > c.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"A key/value cache of {capacity} positions: the model has 1 to {c.MaxPositionEmbeddings} (max_position_embeddings).");
        Model = model;
        Capacity = capacity;
        var layers = new List<LlamaLayerCache>();
        try
        {
            for (int l = 0; l < c.NumHiddenLayers; l++)
                layers.Add(new LlamaLayerCache(model.Backend, c.NumAttentionHeads, c.NumKeyValueHeads, capacity, c.HeadDim));
        }
        catch { foreach (var l in layers) l.Dispose(); throw; }
        Layers = layers.ToArray();
    }

    internal LlamaModel Model { get; }
    internal LlamaLayerCache[] Layers { get; }

    /// <summary>Positions cached so far (the next token's position).</summary>
    public int Length { get; private set; }

    /// <summary>Positions the cache can hold.</summary>
    public int Capacity { get; }

    internal void Advance(int n)
    {
        Length += n;
        foreach (var l in Layers) l.Length = Length;
    }

    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}

/// <summary>One layer's cached post-RoPE keys and values, (H_kv, capacity, D) each.</summary>
internal sealed class LlamaLayerCache : IDisposable
{
    private readonly IBackend _be;
    private readonly Tensor _k, _v;
    private readonly int _h, _hkv, _cap, _d;

    public LlamaLayerCache(IBackend be, int heads, int kvHeads, int capacity, int headDim)
    {
        _be = be; _h = heads; _hkv = kvHeads; _cap = capacity; _d = headDim;
        _k = be.Empty(DType.F32, kvHeads, capacity, headDim);
        try { _v = be.Empty(DType.F32, kvHeads, capacity, headDim); }
        catch { _k.Dispose(); throw; }
    }

    /// <summary>Positions already cached (before the step being run).</summary>
    public int Length { get; set; }

    /// <summary>Appends the step's keys (after RoPE) and values, (1, H_kv, T, D) each, at the cached length.</summary>
    public void Append(Var k, Var v)
    {
        int T = k.Shape[2];
        if (k.Shape[0] != 1) throw new ArgumentException("The key/value cache holds one sequence (batch 1).");
        if (k.Shape[1] != _hkv || k.Shape[3] != _d) throw new ArgumentException($"The cache holds keys of {_hkv} heads × {_d}, got {k.Value.ShapeString}.");
        if (Length + T > _cap) throw new InvalidOperationException($"The key/value cache holds {_cap} positions; {Length + T} needed.");
        _be.CopyStrided(k.Value, _k, _hkv, T * _d, 0, (long)T * _d, (long)Length * _d, (long)_cap * _d);
        _be.CopyStrided(v.Value, _v, _hkv, T * _d, 0, (long)T * _d, (long)Length * _d, (long)_cap * _d);
    }

    /// <summary>
    /// Attention of one new position's queries q (1, H, 1, D) to every cached position 0..Length (the step's own key
    /// and value appended first): per key/value head, its G query heads are G rows of one (G, D)·(D, L) product.
    /// Returns (1, H, 1, D). Nothing to mask: the new position is the last one.
    /// </summary>
    public Var Attend(Tape tape, Var q)
    {
        if (q.Shape[0] != 1 || q.Shape[2] != 1) throw new ArgumentException("After the prefill, the cache takes one position at a time.");
        int L = Length + 1, G = _h / _hkv;
        var ks = _be.Empty(DType.F32, _hkv, L, _d);
        var vs = _be.Empty(DType.F32, _hkv, L, _d);
        tape.OnDispose([ks, vs]);
        _be.CopyStrided(_k, ks, _hkv, L * _d, 0, (long)_cap * _d, 0, (long)L * _d);
        _be.CopyStrided(_v, vs, _hkv, L * _d, 0, (long)_cap * _d, 0, (long)L * _d);
        var q3 = tape.Reshape(q, _hkv, G, _d);                                                         // query head h = group h / G, row h % G
        var scores = tape.Scale(tape.Matmul(q3, tape.Constant(ks), transB: true), 1f / MathF.Sqrt(_d)); // (H_kv, G, L)
        var y = tape.Matmul(tape.Softmax(scores), tape.Constant(vs));                                  // (H_kv, G, D)
        return tape.Reshape(y, 1, _h, 1, _d);
    }

    public void Dispose() { _k.Dispose(); _v.Dispose(); }
}
