using EditRuntime.Backends;

namespace EditRuntime.Autograd;

/// <summary>
/// A value on a <see cref="Tape"/>: a tensor, and the gradient of the final output with respect to it
/// after <see cref="Tape.Backward"/> (only when <see cref="RequiresGrad"/>).
/// </summary>
public sealed class Var
{
    internal Var(Tensor value, bool requiresGrad, bool leaf, string? name)
    {
        Value = value; RequiresGrad = requiresGrad; IsLeaf = leaf; Name = name;
    }

    public Tensor Value { get; }
    public Tensor? Grad { get; internal set; }
    public bool RequiresGrad { get; }
    /// <summary>A parameter or constant supplied by the caller (its value and gradient outlive the tape).</summary>
    public bool IsLeaf { get; }
    public string? Name { get; }
    public int[] Shape => Value.Shape;

    /// <summary>Drops the gradient (disposing it).</summary>
    public void ClearGrad() { Grad?.Dispose(); Grad = null; }

    public override string ToString() => $"{Name ?? "var"} {Value.ShapeString}{(RequiresGrad ? " (grad)" : "")}";
}

/// <summary>
/// Backend-agnostic reverse-mode autograd. Each op runs forward on the tape's backend at once and,
/// if any input needs a gradient, records how to send the output's gradient back to its inputs
/// using the same backend's backward ops. <see cref="Backward"/> walks the records in reverse;
/// gradients of a value used twice accumulate. Parameters made with requiresGrad: false are
/// frozen: no gradient is computed for them.
///
/// Ownership: values the tape computes (and gradients of non-leaf values) are freed by
/// <see cref="Dispose"/>; leaf values belong to the caller, and so do leaf gradients.
/// </summary>
public sealed partial class Tape : IDisposable
{
    private readonly List<(Var Output, Var[] Inputs, Func<Tensor, Tensor?[]> Backward)> _records = new();
    private readonly List<Var> _owned = new();
    private readonly List<Tensor> _extra = new();

    public Tape(IBackend backend) => Backend = backend;

    public IBackend Backend { get; }
    public int RecordCount => _records.Count;

    // ---------------------------------------------------------------- leaves

    /// <summary>A caller-owned tensor that receives a gradient (unless frozen with requiresGrad: false).</summary>
    public Var Param(Tensor value, bool requiresGrad = true, string? name = null)
    {
        CheckBackend(value, name ?? "param");
        return new Var(value, requiresGrad, leaf: true, name);
    }

    /// <summary>A caller-owned tensor that never receives a gradient (inputs, ids, masks).</summary>
    public Var Constant(Tensor value, string? name = null) => Param(value, requiresGrad: false, name);

    private void CheckBackend(Tensor t, string what)
    {
        if (!ReferenceEquals(t.Backend, Backend))
            throw new ArgumentException($"{what} lives on the {t.Backend.Name} backend but this tape runs on {Backend.Name}.");
    }

    private Var Record(Tensor value, Var[] inputs, Func<Tensor, Tensor?[]> backward, string op)
    {
        bool grad = inputs.Any(i => i.RequiresGrad);
        var v = new Var(value, grad, leaf: false, op);
        _owned.Add(v);
        if (grad) _records.Add((v, inputs, backward));
        return v;
    }

    // ---------------------------------------------------------------- ops

    public Var Add(Var a, Var b) => Record(Backend.Add(a.Value, b.Value), [a, b],
        g => [a.RequiresGrad ? Backend.Scale(g, 1f) : null, b.RequiresGrad ? Backend.Scale(g, 1f) : null], "add");

    public Var Sub(Var a, Var b) => Record(Backend.Sub(a.Value, b.Value), [a, b],
        g => [a.RequiresGrad ? Backend.Scale(g, 1f) : null, b.RequiresGrad ? Backend.Scale(g, -1f) : null], "sub");

    public Var Mul(Var a, Var b) => Record(Backend.Mul(a.Value, b.Value), [a, b],
        g => [a.RequiresGrad ? Backend.Mul(g, b.Value) : null, b.RequiresGrad ? Backend.Mul(g, a.Value) : null], "mul");

    public Var Scale(Var x, float alpha) => Record(Backend.Scale(x.Value, alpha), [x], g => [Backend.Scale(g, alpha)], "scale");

    public Var Reshape(Var x, params int[] shape)
    {
        var original = x.Shape;
        return Record(Backend.Reshape(x.Value, shape), [x], g => [Backend.Reshape(g, original)], "reshape");
    }

    /// <summary>(A, B, C, D) → (A, C, B, D).</summary>
    public Var Transpose12(Var x) => Record(Backend.Transpose12(x.Value), [x], g => [Backend.Transpose12(g)], "transpose12");

    /// <summary>Splits the last dimension into <paramref name="parts"/> equal pieces: (..., parts·P) → parts × (..., P).</summary>
    public Var[] SplitLast(Var x, int parts)
    {
        int last = x.Shape[^1];
        if (parts <= 0 || last % parts != 0) throw new ArgumentException($"split_last: the last dimension of {x.Value.ShapeString} does not split into {parts} parts.");
        int p = last / parts;
        int rows = (int)(x.Value.Count / Math.Max(last, 1));
        var shape = x.Shape.ToArray();
        shape[^1] = p;
        var full = x.Shape;
        var outs = new Var[parts];
        for (int i = 0; i < parts; i++)
        {
            int part = i;
            var y = Backend.Empty(x.Value.DType, shape);
            Backend.CopyStrided(x.Value, y, rows, p, part * p, last, 0, p);
            outs[i] = Record(y, [x], g =>
            {
                var gx = Backend.Empty(DType.F32, full);
                Backend.Fill(gx, 0f);
                Backend.CopyStrided(g, gx, rows, p, 0, p, part * p, last);
                return [gx];
            }, "split_last");
        }
        return outs;
    }

    /// <summary>Σ of all elements → [1].</summary>
    public Var Sum(Var x)
    {
        var shape = x.Shape;
        return Record(Backend.Sum(x.Value), [x], g => [Backend.SumBackward(g, shape, 1f)], "sum");
    }

    /// <summary>Mean of all elements → [1].</summary>
    public Var Mean(Var x)
    {
        var shape = x.Shape;
        float inv = x.Value.Count == 0 ? 0f : 1f / x.Value.Count;
        using var s = Backend.Sum(x.Value);
        return Record(Backend.Scale(s, inv), [x], g => [Backend.SumBackward(g, shape, inv)], "mean");
    }

    /// <summary>Σ over the last dimension.</summary>
    public Var RowSum(Var x)
    {
        var shape = x.Shape;
        return Record(Backend.RowSum(x.Value), [x], g => [Backend.RowSumBackward(g, shape, 1f)], "row_sum");
    }

    /// <summary>max over the last dimension; no gradient flows through it.</summary>
    public Var RowMax(Var x)
    {
        var v = new Var(Backend.RowMax(x.Value), false, leaf: false, "row_max");
        _owned.Add(v);
        return v;
    }

    public Var Matmul(Var a, Var b, bool transA = false, bool transB = false) =>
        Record(Backend.Matmul(a.Value, b.Value, transA, transB), [a, b], g =>
        {
            // A frozen B (a frozen weight above a trained adapter, the tied LM head): only dA = dC·op(B)ᵀ,
            // not the weight gradient nobody asked for.
            if (!b.RequiresGrad && !transA) return [Backend.Matmul(g, b.Value, false, !transB), null];
            var (ga, gb) = Backend.MatmulBackward(a.Value, b.Value, g, transA, transB);
            return [Keep(ga, a), Keep(gb, b)];
        }, "matmul");

    public Var BiasAdd(Var x, Var bias) => Record(Backend.BiasAdd(x.Value, bias.Value), [x, bias], g =>
    {
        var (gx, gb) = Backend.BiasAddBackward(x.Value, bias.Value, g);
        return [Keep(gx, x), Keep(gb, bias)];
    }, "bias_add");

    /// <summary>x·W + b for x (..., in), W (in, out) stored as GPT-2's Conv1D does, b (out).</summary>
    public Var Linear(Var x, Var weight, Var? bias)
    {
        var y = Matmul(x, weight);
        return bias is null ? y : BiasAdd(y, bias);
    }

    public Var Gelu(Var x) => Record(Backend.Gelu(x.Value), [x], g => [Backend.GeluBackward(x.Value, g)], "gelu");

    public Var LayerNorm(Var x, Var gamma, Var beta, float eps = 1e-5f) =>
        Record(Backend.LayerNorm(x.Value, gamma.Value, beta.Value, eps), [x, gamma, beta], g =>
        {
            var (gx, gg, gb) = Backend.LayerNormBackward(x.Value, gamma.Value, beta.Value, g, eps);
            return [Keep(gx, x), Keep(gg, gamma), Keep(gb, beta)];
        }, "layernorm");

    public Var Softmax(Var x) => Record(Backend.Softmax(x.Value), [x], g => [Backend.SoftmaxBackward(x.Value, g)], "softmax");

    public Var CausalAttention(Var q, Var k, Var v, Var? keyMask) =>
        Record(Backend.CausalAttention(q.Value, k.Value, v.Value, keyMask?.Value), [q, k, v], g =>
        {
            var (gq, gk, gv) = Backend.CausalAttentionBackward(q.Value, k.Value, v.Value, keyMask?.Value, g);
            return [Keep(gq, q), Keep(gk, k), Keep(gv, v)];
        }, "causal_attention");

    /// <summary>Rows of table picked by ids (a constant I32 tensor).</summary>
    public Var Embedding(Var ids, Var table)
    {
        int vocab = table.Shape[0];
        return Record(Backend.Embedding(ids.Value, table.Value), [table], g => [Backend.EmbeddingBackward(ids.Value, g, vocab)], "embedding");
    }

    /// <summary>The listed rows (rows, C) of x's flattened positions (x (B, T, C) → (B·T, C)): what a loss on a few positions
    /// sends through a model's head. The backward scatters into x. The row ids live as long as the tape.</summary>
    public Var GatherRows(Var x, int[] rows)
    {
        int n = x.Shape[0] * x.Shape[1];
        var rowsT = Backend.FromArray(rows, rows.Length);
        OnDispose([rowsT]);
        return Embedding(Constant(rowsT), Reshape(x, n, x.Shape[2]));
    }

    public Var CrossEntropy(Var logits, Var targets, int ignoreIndex = -100) =>
        Record(Backend.CrossEntropy(logits.Value, targets.Value, ignoreIndex), [logits],
            g => [Backend.CrossEntropyBackward(logits.Value, targets.Value, g, ignoreIndex)], "cross_entropy");

    /// <summary>
    /// MELO's LoRA through one block per sample (see <see cref="ILoraOps.LoraForward"/>): x (S, T, in) → (S, T, out).
    /// The banks and the block ids are constants owned by the caller (alive until the tape is disposed). With
    /// <paramref name="train"/>, gradients reach that block's parameters from the samples routed to it; the bank's
    /// block must hold their current values.
    /// </summary>
    public Var LoraBlocks(Var x, Tensor bankA, Tensor bankB, Tensor blockIds, float scale, LoraTrainedBlock? train = null)
    {
        if (train is not null)
        {
            int[] shapeA = [bankA.Shape[1], bankA.Shape[2]], shapeB = [bankB.Shape[1], bankB.Shape[2]];
            if (!train.A.Shape.SequenceEqual(shapeA) || !train.B.Shape.SequenceEqual(shapeB))
                throw new ArgumentException($"lora_blocks: the trained block's parameters are {train.A.Value.ShapeString} and {train.B.Value.ShapeString}, expected {Tensor.Format(shapeA)} and {Tensor.Format(shapeB)}.");
        }
        Var[] inputs = train is null ? [x] : [x, train.A, train.B];
        return Record(Backend.Ops<ILoraOps>().LoraForward(x.Value, bankA, bankB, blockIds, scale), inputs, g =>
        {
            var (gx, ga, gb) = Backend.Ops<ILoraOps>().LoraBackward(x.Value, bankA, bankB, blockIds, g, scale, train?.Block ?? -1);
            if (train is null) { ga.Dispose(); gb.Dispose(); return [Keep(gx, x)]; }
            return [Keep(gx, x), Keep(ga, train.A), Keep(gb, train.B)];
        }, "lora_blocks");
    }

    /// <summary>Disposes a gradient nobody asked for.</summary>
    private static Tensor? Keep(Tensor g, Var input)
    {
        if (input.RequiresGrad) return g;
        g.Dispose();
        return null;
    }

    // ---------------------------------------------------------------- backward

    /// <summary>
    /// Back-propagates from <paramref name="output"/>. <paramref name="seed"/> is dL/d(output)
    /// (caller-owned; default: 1 for a one-element output). Leaf gradients accumulate across calls
    /// until cleared.
    /// </summary>
    public void Backward(Var output, Tensor? seed = null)
    {
        if (!output.RequiresGrad) throw new InvalidOperationException($"{output} does not depend on any parameter that requires a gradient.");
        Tensor start;
        if (seed is null)
        {
            if (output.Value.Count != 1) throw new ArgumentException($"Backward from {output} needs a seed gradient (the output has {output.Value.Count} elements).");
            start = Backend.FromArray(new[] { 1f }, output.Shape);
        }
        else
        {
            if (!seed.Shape.SequenceEqual(output.Shape)) throw new ArgumentException($"Seed {seed.ShapeString} does not match the output {output.Value.ShapeString}.");
            start = Backend.Scale(seed, 1f);
        }
        Accumulate(output, start);
        for (int i = _records.Count - 1; i >= 0; i--)
        {
            var (o, inputs, backward) = _records[i];
            if (o.Grad is null) continue;
            var grads = backward(o.Grad);
            for (int j = 0; j < inputs.Length; j++)
            {
                var g = grads[j];
                if (g is null) continue;
                if (inputs[j].RequiresGrad) Accumulate(inputs[j], g);
                else g.Dispose();
            }
            if (!o.IsLeaf) o.ClearGrad(); // intermediate gradients are not needed any more
        }
    }

    private void Accumulate(Var v, Tensor g)
    {
        if (v.Grad is null) { v.Grad = g; return; }
        Backend.Axpy(1f, g, v.Grad);
        g.Dispose();
    }

    /// <summary>Tensors made for this tape's ops (ids, masks) that must live as long as it: freed by <see cref="Dispose"/>.</summary>
    public void OnDispose(IEnumerable<Tensor> tensors) => _extra.AddRange(tensors);

    public void Dispose()
    {
        foreach (var v in _owned) { v.ClearGrad(); v.Value.Dispose(); }
        _owned.Clear();
        foreach (var t in _extra) t.Dispose();
        _extra.Clear();
        _records.Clear();
    }
}

/// <summary>The LoRA block being trained: its index in the banks and its parameters A (in, k) and B (k, out).</summary>
public sealed record LoraTrainedBlock(int Block, Var A, Var B);
