using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// GRACE (Hartvigsen et al., NeurIPS 2023): a key → value codebook at one linear site of a frozen
/// model. A key is the site's input at a position; when an input lies within a deferral radius ε of
/// a stored key, the site's output at that position is replaced by the key's value, else the model
/// answers as before. Values are trained (Adam) so that the model produces target_new.
/// Our choices, stated: one entry per position that predicts a target token (the last prompt token
/// and every target token but the last), so teacher-forced multi-token targets work; a new key within
/// ε of an entry with the same label reuses it (radius grown to the distance), with a different label
/// both radii shrink to half their distance (GRACE's split); matching is done on the host.
/// </summary>
[EditorPlugin("GRACE", "Grace")]
public sealed class GraceEditor : IEditor, ILinearAdapter
{
    private sealed class Entry
    {
        public required float[] Key;
        public required float[] Value;
        public required float Radius;
        public required string Label;
        public required int EditId;
    }

    private readonly EditorContext _ctx;
    private readonly HyperParameters _hp;
    private readonly string _site;
    private readonly float _eps, _lr;
    private readonly int _steps;
    private readonly List<Entry> _book = new();
    private readonly IDisposable _attached;
    private int _nextId;
    // While training values: positions (b·T + t) → trainable value row.
    private (Dictionary<int, int> Rows, Var Table)? _training;

    public GraceEditor(EditorContext context, HyperParameters hparams)
    {
        _ctx = context;
        _hp = hparams;
        _site = hparams.Site("layer", context.Model);
        _eps = hparams.Float("eps", 0, float.MaxValue, minExclusive: true);
        _lr = hparams.Float("lr", 0, 100, minExclusive: true);
        _steps = hparams.Int("steps", 1, 100_000);
        _attached = context.Model.Attach(_site, this, Name);
    }

    public string Name => "GRACE";
    public bool CanRemove => true;
    public int Entries => _book.Count;

    public EditorDescription Describe() => new(Name, "Hartvigsen et al., Aging with GRACE: Lifelong Model Editing with Discrete Key-Value Adaptors (NeurIPS 2023)",
        _book.Sum(e => (long)e.Value.Length), [_site], _hp.ToJson());

    // ---------------------------------------------------------------- the adapter

    public Var Apply(Tape tape, string site, Var input, Var output, ForwardContext context)
    {
        var be = tape.Backend;
        int rows = (int)(output.Value.Count / output.Shape[^1]), outW = output.Shape[^1];
        var idx = new int[rows];
        var use = new float[(long)rows * outW];
        bool any = false;
        if (_training is { } tr)
        {
            foreach (var (pos, row) in tr.Rows) { idx[pos] = row; Array.Fill(use, 1f, pos * outW, outW); any = true; }
            if (!any) return output;
            return Replace(tape, output, idx, use, tr.Table, rows, outW);
        }
        if (_book.Count == 0) return output;
        var x = be.ToFloatArray(input.Value);
        int inW = input.Shape[^1];
        var values = new List<float[]>();
        for (int r = 0; r < rows; r++)
        {
            var (best, dist) = Nearest(x.AsSpan(r * inW, inW));
            if (best is null || dist > best.Radius) continue;
            idx[r] = values.Count;
            values.Add(best.Value);
            Array.Fill(use, 1f, r * outW, outW);
            any = true;
        }
        if (!any) return output;
        var table = be.FromArray(values.SelectMany(v => v).ToArray(), values.Count, outW);
        tape.OnDispose([table]);
        return Replace(tape, output, idx, use, tape.Constant(table), rows, outW);
    }

    /// <summary>output·(1 − use) + table[idx]·use, rows of (rows, out).</summary>
    private static Var Replace(Tape tape, Var output, int[] idx, float[] use, Var table, int rows, int outW)
    {
        var be = tape.Backend;
        var idxT = be.FromArray(idx, rows);
        var useT = be.FromArray(use, output.Shape);
        var keep = be.FromArray(use.Select(u => 1f - u).ToArray(), output.Shape);
        tape.OnDispose([idxT, useT, keep]);
        var picked = tape.Reshape(tape.Embedding(tape.Constant(idxT), table), output.Shape);
        return tape.Add(tape.Mul(output, tape.Constant(keep)), tape.Mul(picked, tape.Constant(useT)));
    }

    private (Entry? Entry, float Distance) Nearest(ReadOnlySpan<float> key)
    {
        Entry? best = null;
        float bestD = float.PositiveInfinity;
        foreach (var e in _book)
        {
            double s = 0;
            for (int i = 0; i < key.Length; i++) { double d = key[i] - e.Key[i]; s += d * d; }
            float dist = (float)Math.Sqrt(s);
            if (dist < bestD) { bestD = dist; best = e; }
        }
        return (best, bestD);
    }

    // ---------------------------------------------------------------- editing

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        var be = _ctx.Model.Backend;
        var ids = new List<int>();
        foreach (var req in batch)
        {
            int id = _nextId++;
            ids.Add(id);
            var tf = TeacherForcing.Build(_ctx, [req]);
            var (tb, targets) = (tf.Batch, tf.Targets);
            var positions = tf.TargetPositions(0);
            // Keys and the current outputs at those positions (the model with the codebook so far).
            var (keys, outs) = Capture(tb, positions);
            // Train one value per position, starting from the current outputs.
            int outW = outs[0].Length;
            using var table = be.FromArray(outs.SelectMany(o => o).ToArray(), positions.Length, outW);
            using var adam = new AdamMoments(be, [table]);
            for (int step = 1; step <= _steps; step++)
            {
                using var tape = new Tape(be);
                var tv = tape.Param(table);
                _training = (positions.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i), tv);
                try
                {
                    var p = _ctx.Model.Bind(tape, _ => false);
                    var loss = _ctx.Model.Loss(tape, p, tb, targets);
                    tape.Backward(loss);
                    adam.Step([tv], new AdamConfig(_lr), step);
                }
                finally { _training = null; }
            }
            var trained = be.ToFloatArray(table);
            for (int i = 0; i < positions.Length; i++) Insert(keys[i], trained.AsSpan(i * outW, outW).ToArray(), req.TargetNew, id);
        }
        return ids;
    }

    /// <summary>GRACE's codebook update for one key.</summary>
    private void Insert(float[] key, float[] value, string label, int editId)
    {
        var (near, dist) = Nearest(key);
        if (near is not null && dist <= near.Radius + _eps)
        {
            if (near.Label == label && near.EditId == editId) { near.Radius = Math.Max(near.Radius, dist); return; }
            if (near.Label != label) { near.Radius = dist / 2; _book.Add(new Entry { Key = key, Value = value, Radius = dist / 2, Label = label, EditId = editId }); return; }
        }
        _book.Add(new Entry { Key = key, Value = value, Radius = _eps, Label = label, EditId = editId });
    }

    /// <summary>The site's input and output rows at the given positions of a single sequence.</summary>
    private (float[][] Keys, float[][] Outs) Capture(TokenBatch tb, int[] positions)
    {
        var model = _ctx.Model;
        var be = model.Backend;
        using var capture = model.Capture(_site);
        using (var tape = new Tape(be)) model.Logits(tape, model.Bind(tape, _ => false), tb);
        var x = be.ToFloatArray(capture.Input!);
        var y = be.ToFloatArray(capture.Output!);
        int inW = capture.Input!.Shape[^1], outW = capture.Output!.Shape[^1];
        return (positions.Select(q => x.AsSpan(q * inW, inW).ToArray()).ToArray(), positions.Select(q => y.AsSpan(q * outW, outW).ToArray()).ToArray());
    }

    public void Remove(int editId)
    {
        int n = _book.RemoveAll(e => e.EditId == editId);
        if (n == 0) throw new KeyNotFoundException($"GRACE: no edit {editId} in the codebook.");
    }

    public void Reset() => _book.Clear();

    /// <summary>The codebook: keys, values, radii and edit ids as tensors, the labels in the metadata.</summary>
    public void Save(string path)
    {
        int k = _book.Count;
        int inW = k == 0 ? 0 : _book[0].Key.Length, outW = k == 0 ? 0 : _book[0].Value.Length;
        EditStateFile.Save(path, Name, _hp, [
            ("keys", new HostTensor([k, inW], _book.SelectMany(e => e.Key).ToArray())),
            ("values", new HostTensor([k, outW], _book.SelectMany(e => e.Value).ToArray())),
            ("radii", new HostTensor([k], _book.Select(e => e.Radius).ToArray())),
            ("edit_ids", new HostTensor([k], _book.Select(e => (float)e.EditId).ToArray())),
        ], new Dictionary<string, JsonNode?> { ["labels"] = new JsonArray(_book.Select(e => (JsonNode)JsonValue.Create(e.Label)!).ToArray()) });
    }

    public void Load(string path)
    {
        var w = _ctx.Model.Parameters[_site + ".weight"];
        int inW = w.Shape[0], outW = w.Shape[1];
        var book = new List<Entry>();
        using (var state = EditStateFile.Open(path, Name))
        {
            state.RequireSame("layer", _site, (h, key) => h.String(key));
            var radii = state.Tensor("radii", -1);
            int k = radii.Shape[0];
            // An empty codebook was saved with widths 0 (it had no entry to take them from).
            var keys = state.Tensor("keys", k, k == 0 ? -1 : inW);
            var values = state.Tensor("values", k, k == 0 ? -1 : outW);
            var ids = state.Tensor("edit_ids", k);
            var labels = state.Read("labels", n => n.AsArray().Select(l => l!.GetValue<string>()).ToList());
            if (labels.Count != k) throw state.Invalid($"{labels.Count} labels for {k} codebook entries.");
            for (int i = 0; i < k; i++)
            {
                float id = ids.Data[i];
                if (id < 0 || id != MathF.Floor(id) || id > 1 << 24) throw state.Invalid($"entry {i} has edit id {id}.");
                if (!(radii.Data[i] >= 0)) throw state.Invalid($"entry {i} has radius {radii.Data[i]}.");
                book.Add(new Entry
                {
                    Key = keys.Data.AsSpan(i * inW, inW).ToArray(), Value = values.Data.AsSpan(i * outW, outW).ToArray(),
                    Radius = radii.Data[i], Label = labels[i], EditId = (int)id,
                });
            }
        }
        _book.Clear();
        _book.AddRange(book);
        _nextId = _book.Count == 0 ? 0 : _book.Max(x => x.EditId) + 1;
    }

    public void Dispose() => _attached.Dispose();
}
