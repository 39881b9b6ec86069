using System.Globalization;
using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MELO (Yu et al., AAAI 2024): neuron-indexed dynamic LoRA on a frozen model. LoRA banks of
/// <c>num_blocks</c> blocks of rank <c>rank_per_block</c> sit on the configured linear sites; a
/// <see cref="ClusterIndex"/> over keys (the output of <c>key_layer</c>, below every LoRA site, at the
/// last prompt token) picks each sample's block at inference, or none (the frozen model answers).
/// Each edit batch takes the next free block, trains only it (Adam, step decay), then inserts its keys.
/// The routing runs on the device: the key site's adapter gathers the keys and looks them up
/// (<see cref="ILoraOps.ClusterLookup"/>) and the LoRA sites read the block ids from there.
/// </summary>
[EditorPlugin("MELO", "Melo")]
public sealed class MeloEditor : IEditor, ILinearAdapter
{

    private readonly EditorContext _ctx;
    private readonly HyperParameters _hp;
    private readonly string _keySite;
    private readonly string[] _loraSites;
    private readonly int _blocks, _rank, _iters, _lrStep;
    /// <summary>Every site of ours is at or above this layer: training forwards start there from the stream
    /// the frozen layers below give once per edit (<see cref="ILanguageModel.ResidualAt"/>).</summary>
    private readonly int _fromLayer;
    private readonly float _lr, _gamma, _alpha, _scale;
    private readonly Dictionary<string, LoraBlockBank> _banks = new();
    private readonly List<IDisposable> _attached = new();
    private ClusterIndex _index;
    /// <summary>Every key inserted by a live edit, in order (for <see cref="Reindex"/>).</summary>
    private readonly List<(float[] Key, string Label, int Block, int EditId)> _inserted = new();
    // New blocks' initial A come from this stream; Reset restarts it, so an edit after Reset is the edit a fresh editor makes.
    private SeededRandom _rng;
    /// <summary>Live edits: id → block.</summary>
    private readonly SortedDictionary<int, int> _edits = new();
    private int _nextId;

    // Per forward: the block of each sample (I32 (B)), from the key site's lookup; kept for the
    // single-token steps of cached generation (Start > 0), which reuse the prefill's routing.
    private Tensor? _routing;
    private int _routingRows;
    // While training: every sample on the trained block, and its parameters per site.
    private (Tensor Ids, Dictionary<string, LoraTrainedBlock> Params)? _training;

    public MeloEditor(EditorContext context, HyperParameters hparams)
    {
        _ctx = context;
        _hp = hparams;
        var model = context.Model;
        _loraSites = [.. hparams.Sites("lora_layers", model)];
        _keySite = hparams.Site("key_layer", model);
        _blocks = hparams.Int("num_blocks", 1, 1 << 24);        // block ids are stored as float32 (exact below 2^24)
        _rank = hparams.Int("rank_per_block", 1, 4096);
        _alpha = hparams.Float("lora_alpha", 0, float.MaxValue);  // 0 = the total rank, the paper's choice
        float radius = hparams.Float("init_radius", 0, float.MaxValue, minExclusive: true);
        _lr = hparams.Float("edit_lr", 0, 10, minExclusive: true);
        _iters = hparams.Int("num_iter", 1, 100_000);
        _lrStep = hparams.Int("lr_step", 1, int.MaxValue);
        _gamma = hparams.Float("lr_gamma", 0, float.MaxValue, minExclusive: true);
        _rng = new SeededRandom(hparams.Int("seed", 0, int.MaxValue));
        foreach (var site in _loraSites)
            if (Order(site) <= Order(_keySite))
                throw hparams.Error("key_layer", $"must run before every LoRA layer, but {site} (lora_layers) does not come after {_keySite}");
        // The paper: alpha = r (total rank); block slices scaled by √(r/k) each → scale alpha/k on x·A_i·B_i.
        _scale = (_alpha == 0 ? _blocks * _rank : _alpha) / _rank;
        _fromLayer = _loraSites.Append(_keySite).Min(model.Sites.Layer);
        long bankBytes = _loraSites.Sum(site => 4L * _blocks * _rank * model.Parameters[site + ".weight"].Shape.Sum());
        EditorMemory.Require(context, hparams, bankBytes, "LoRA banks", "num_blocks", "rank_per_block", "lora_layers");

        var be = model.Backend;
        try
        {
            foreach (var site in _loraSites.Append(_keySite)) _attached.Add(model.Attach(site, this, Name));
            foreach (var site in _loraSites)
            {
                var w = model.Parameters[site + ".weight"];
                _banks[site] = new LoraBlockBank(be, site, w.Shape[0], w.Shape[1], _blocks, _rank, _scale);
            }
            _index = new ClusterIndex(model.Parameters[_keySite + ".weight"].Shape[1], radius);
        }
        catch
        {
            foreach (var b in _banks.Values) b.Dispose();
            foreach (var a in _attached) a.Dispose();
            throw;
        }
    }

    public string Name => "MELO";
    public bool CanRemove => true;
    public ClusterIndex Index => _index;
    public int BlocksInUse => _edits.Values.Distinct().Count();
    public float Scale => _scale;

    public EditorDescription Describe() => new(Name,
        "Yu et al., MELO: Enhancing Model Editing with Neuron-Indexed Dynamic LoRA (AAAI 2024)",
        _banks.Values.Sum(b => b.ParametersPerBlock * b.Blocks), [.. _loraSites], _hp.ToJson());

    /// <summary>Trainable parameters of one edit batch (its block on every LoRA site).</summary>
    public long ParametersPerEdit => _banks.Values.Sum(b => b.ParametersPerBlock);

    private int Order(string site) => _ctx.Model.Sites.Order(site);

    // ---------------------------------------------------------------- the adapters

    public Var Apply(Tape tape, string site, Var input, Var output, ForwardContext context)
    {
        if (site == _keySite) { OnKeySite(output, context); return output; }
        if (!_banks.TryGetValue(site, out var bank)) return output;
        if (_training is { } tr) return bank.Apply(tape, input, output, tr.Ids, tr.Params[site]);
        if (_routing is null) return output;
        if (_routingRows != context.Batch.B) throw new InvalidOperationException($"MELO: routing for {_routingRows} samples but the batch has {context.Batch.B}.");
        return bank.Apply(tape, input, output, _routing, null);
    }

    /// <summary>At the key site: gather each sample's key (last prompt token) and route it (not while training: the trained block is given).</summary>
    private void OnKeySite(Var output, ForwardContext context)
    {
        if (context.Start > 0 && _training is null)
        {
            // A cached generation step: the prompt (prefill) chose the block; keep it.
            if (_routing is not null && _routingRows != context.Batch.B) ClearRouting();
            return;
        }
        ClearRouting();
        if (_training is not null || _index.Count == 0) return;
        var be = _ctx.Model.Backend;
        using var keys = GatherKeys(be, output.Value, context.Batch);
        _routing = _index.Lookup(be, keys);
        _routingRows = context.Batch.B;
    }

    /// <summary>Rows (b, prompt length − 1) of the site output (B, T, D) → (B, D), on the device.</summary>
    private static Tensor GatherKeys(IBackend be, Tensor output, TokenBatch batch)
    {
        int B = batch.B, T = batch.T, D = output.Shape[^1];
        var rows = new int[B];
        for (int b = 0; b < B; b++) rows[b] = b * T + batch.PromptLengths[b] - 1;
        using var flat = be.Reshape(output, B * T, D);
        using var idx = be.FromArray(rows, B);
        return be.Embedding(idx, flat);
    }

    private void ClearRouting()
    {
        _routing?.Dispose();
        _routing = null;
        _routingRows = 0;
    }

    // ---------------------------------------------------------------- editing

    /// <summary>The lowest free block, or a clear error naming the capacity.</summary>
    private int NextBlock()
    {
        var used = _edits.Values.ToHashSet();
        for (int b = 0; b < _blocks; b++) if (!used.Contains(b)) return b;
        throw new InvalidOperationException($"MELO: all {_blocks} LoRA blocks are in use (num_blocks = {_blocks}, rank_per_block = {_rank}; one block per edit batch). " +
                                            "Raise num_blocks, or remove edits to free their blocks.");
    }

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        if (batch.Count == 0) return [];
        var model = _ctx.Model;
        var be = model.Backend;
        int block = NextBlock();
        var tf = TeacherForcing.Build(_ctx, batch);
        var (tb, targets) = (tf.Batch, tf.Targets);

        var owned = new List<Tensor>();
        Tensor? keySiteOutput = null;   // the key site's output in the first training forward: the keys come from it
        float[] keys;
        try
        {
            var ids = be.FromArray(Enumerable.Repeat(block, tb.B).ToArray(), tb.B); owned.Add(ids);
            var state = new List<(LoraBlockBank Bank, Tensor A, Tensor B)>();
            foreach (var site in _loraSites)
            {
                var bank = _banks[site];
                var (a, b) = bank.StartBlock(block, _rng);
                owned.Add(a); owned.Add(b);
                state.Add((bank, a, b));
            }
            using var adam = new AdamMoments(be, state.SelectMany(s => new[] { s.A, s.B }).ToList());
            var residual = _fromLayer > 0 ? model.ResidualAt(tb, _fromLayer) : null;
            if (residual is not null) owned.Add(residual);
            for (int it = 0; it < _iters; it++)
            {
                float lr = _lr * MathF.Pow(_gamma, it / _lrStep);   // StepLR(step_size = lr_step, gamma)
                using var tape = new Tape(be);
                var trained = new Dictionary<string, LoraTrainedBlock>();
                var vars = state.Select(s => (A: tape.Param(s.A, name: s.Bank.Site + ".lora_A"), B: tape.Param(s.B, name: s.Bank.Site + ".lora_B"))).ToList();
                for (int i = 0; i < state.Count; i++) trained[state[i].Bank.Site] = new LoraTrainedBlock(block, vars[i].A, vars[i].B);
                _training = (ids, trained);
                var capture = it == 0 ? model.Capture(_keySite, SiteCapture.Keep.Output) : null;
                try
                {
                    var p = model.Bind(tape, _ => false);
                    var loss = model.Loss(tape, p, tb, targets, residual, _fromLayer);
                    tape.Backward(loss);
                }
                finally
                {
                    _training = null;
                    if (capture is not null) { keySiteOutput = capture.Output is null ? null : capture.TakeOutput(); capture.Dispose(); }
                }
                adam.Step(vars.SelectMany(v => new[] { v.A, v.B }).ToList(), new AdamConfig(lr), it + 1);
                foreach (var s in state) s.Bank.Write(block, s.A, s.B);
            }
            using var gathered = GatherKeys(be, keySiteOutput ?? throw new InvalidOperationException("MELO: the key site was not reached in the forward."), tb);
            keys = be.ToFloatArray(gathered);
        }
        catch
        {
            // A failed edit leaves no trace in the index; its block stays free (it is re-initialised when taken).
            foreach (var bank in _banks.Values) { using var z1 = be.Empty(DType.F32, bank.In, bank.Rank); using var z2 = be.Empty(DType.F32, bank.Rank, bank.Out); be.Fill(z1, 0); be.Fill(z2, 0); bank.Write(block, z1, z2); }
            throw;
        }
        finally
        {
            foreach (var t in owned) t.Dispose();
            keySiteOutput?.Dispose();
        }
        ClearRouting();
        var result = new List<int>();
        int D = _index.KeyDim;
        for (int b = 0; b < batch.Count; b++)
        {
            int id = _nextId++;
            _edits[id] = block;
            var key = keys.AsSpan(b * D, D).ToArray();
            _index.Insert(key, batch[b].TargetNew, block, id);
            _inserted.Add((key, batch[b].TargetNew, block, id));
            result.Add(id);
        }
        return result;
    }

    public void Remove(int editId)
    {
        if (!_edits.Remove(editId, out int block)) throw new KeyNotFoundException($"MELO: no edit {editId} (live edits: {_edits.Count}).");
        _index.RemoveEdit(editId);
        _inserted.RemoveAll(k => k.EditId == editId);
        ClearRouting();
        if (!_edits.ContainsValue(block)) ZeroBlock(block);
    }

    /// <summary>A freed block adds nothing again (B = 0) until an edit takes it.</summary>
    private void ZeroBlock(int block)
    {
        var be = _ctx.Model.Backend;
        foreach (var bank in _banks.Values)
        {
            using var b = be.Empty(DType.F32, bank.Rank, bank.Out);
            be.Fill(b, 0);
            long nb = (long)bank.Rank * bank.Out;
            be.CopyStrided(b, bank.B, 1, (int)nb, 0, nb, block * nb, nb);
        }
    }

    public void Reset()
    {
        _edits.Clear();
        _index.Clear();
        _inserted.Clear();
        ClearRouting();
        var be = _ctx.Model.Backend;
        foreach (var bank in _banks.Values) { be.Fill(bank.A, 0); be.Fill(bank.B, 0); }
        _rng = new SeededRandom(_rng.Seed);
    }

    /// <summary>
    /// Rebuilds the index with another init_radius by inserting the live edits' keys again, in their
    /// order. The LoRA blocks do not depend on the radius (training routes its batch to its block
    /// whatever the index holds), so this gives the state that editing with that radius gives — what a
    /// radius sweep needs without training every edit again. Not after <see cref="Load"/> (the load keeps
    /// the index, not the insertion order).
    /// </summary>
    public void Reindex(float initRadius)
    {
        if (_inserted.Count != _edits.Count) throw new InvalidOperationException("MELO: Reindex needs the keys of every live edit in insertion order; a loaded state does not keep them.");
        var index = new ClusterIndex(_index.KeyDim, initRadius);
        foreach (var (key, label, block, id) in _inserted) index.Insert(key, label, block, id);
        _index.Dispose();
        _index = index;
        _hp.Set("init_radius", JsonValue.Create(initRadius), "MeloEditor.Reindex");
        ClearRouting();
    }

    // ---------------------------------------------------------------- state

    /// <summary>
    /// The whole edit state in one edit-state file: every LoRA bank, the index (centres, radii, points with
    /// their block and edit id) and, in the metadata, the cluster labels and the live edits.
    /// </summary>
    public void Save(string path)
    {
        var tensors = new List<(string, HostTensor)>();
        foreach (var site in _loraSites)
        {
            var (a, b) = _banks[site].ToHost();
            tensors.Add(($"lora.{site}.A", a));
            tensors.Add(($"lora.{site}.B", b));
        }
        var cl = _index.Clusters;
        int D = _index.KeyDim;
        var pts = cl.SelectMany((c, i) => c.Points.Select(p => (c: i, p))).ToList();
        tensors.Add(("index.centres", new HostTensor([cl.Count, D], cl.SelectMany(c => c.Centre).ToArray())));
        tensors.Add(("index.radii", new HostTensor([cl.Count], cl.Select(c => c.Radius).ToArray())));
        tensors.Add(("index.points", new HostTensor([pts.Count, D], pts.SelectMany(x => x.p.Key).ToArray())));
        // cluster, block, edit id: exact as float32 below 2^24
        tensors.Add(("index.point_info", new HostTensor([pts.Count, 3], pts.SelectMany(x => new float[] { x.c, x.p.Block, x.p.EditId }).ToArray())));
        EditStateFile.Save(path, Name, _hp, tensors, new Dictionary<string, JsonNode?>
        {
            ["labels"] = new JsonArray(cl.Select(c => (JsonNode)JsonValue.Create(c.Label)!).ToArray()),
            ["edits"] = new JsonObject(_edits.Select(e => KeyValuePair.Create(e.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)JsonValue.Create(e.Value)))),
            ["next_id"] = _nextId,
            ["conflicts"] = _index.Conflicts,
            ["forgotten"] = _index.Forgotten,
        });
    }

    public void Load(string path)
    {
        var model = _ctx.Model;
        int D = _index.KeyDim;
        // Read and check everything before changing anything: a bad file leaves the editor as it was.
        var banks = new Dictionary<string, (HostTensor A, HostTensor B)>();
        List<ClusterIndex.Cluster> clusters;
        Dictionary<int, int> edits;
        int nextId, conflicts, forgotten;
        using (var state = EditStateFile.Open(path, Name))
        {
            // Compared by meaning: a list or its comma-separated --set form, 2 or 2.0.
            state.RequireSame("lora_layers", string.Join(",", _loraSites), (h, k) => string.Join(",", h.StringList(k)));
            state.RequireSame("key_layer", _keySite, (h, k) => h.String(k));
            state.RequireSame("num_blocks", _blocks, (h, k) => h.Int(k));
            state.RequireSame("rank_per_block", _rank, (h, k) => h.Int(k));
            state.RequireSame("lora_alpha", _alpha, (h, k) => h.Float(k));
            state.RequireSame("init_radius", _index.InitRadius, (h, k) => h.Float(k), (a, b) => Math.Abs(a - b) <= 1e-6 * b);
            foreach (var site in _loraSites)
            {
                var bank = _banks[site];
                banks[site] = (state.Tensor($"lora.{site}.A", _blocks, bank.In, _rank), state.Tensor($"lora.{site}.B", _blocks, _rank, bank.Out));
            }
            var radii = state.Tensor("index.radii", -1);
            int n = radii.Shape[0];
            var centres = state.Tensor("index.centres", n, D);
            var info = state.Tensor("index.point_info", -1, 3);
            int np = info.Shape[0];
            var points = state.Tensor("index.points", np, D);
            var labels = state.Read("labels", j => j.AsArray().Select(l => l!.GetValue<string>()).ToList());
            if (labels.Count != n) throw state.Invalid($"{labels.Count} cluster labels for {n} clusters.");
            edits = state.Read("edits", j => j.AsObject().ToDictionary(kv => int.Parse(kv.Key, NumberStyles.None, CultureInfo.InvariantCulture), kv => kv.Value!.GetValue<int>()));
            nextId = state.Int("next_id", 0);
            conflicts = state.Int("conflicts", 0);
            forgotten = state.Int("forgotten", 0);
            foreach (var (id, block) in edits)
                if (block < 0 || block >= _blocks || id >= nextId) throw state.Invalid($"live edit {id} names block {block} (next id {nextId}, {_blocks} blocks).");
            clusters = new List<ClusterIndex.Cluster>();
            for (int c = 0; c < n; c++)
                clusters.Add(new ClusterIndex.Cluster { Centre = centres.Data.AsSpan(c * D, D).ToArray(), Radius = radii.Data[c], Label = labels[c] });
            for (int p = 0; p < np; p++)
            {
                int c = (int)info.Data[3 * p], block = (int)info.Data[3 * p + 1], id = (int)info.Data[3 * p + 2];
                if (c < 0 || c >= n || block < 0 || block >= _blocks || !edits.TryGetValue(id, out var live) || live != block)
                    throw state.Invalid($"point {p} names cluster {c}, block {block} and edit {id} ({n} clusters, {_blocks} blocks, {edits.Count} live edits).");
                clusters[c].Points.Add(new ClusterIndex.Point { Key = points.Data.AsSpan(p * D, D).ToArray(), Block = block, EditId = id });
            }
        }
        // Device copies of every bank first, then the swap: a failed upload changes nothing either.
        var uploaded = new Dictionary<string, (Tensor A, Tensor B)>();
        try { foreach (var (site, t) in banks) uploaded[site] = _banks[site].Upload(t.A, t.B); }
        catch { foreach (var (a, b) in uploaded.Values) { a.Dispose(); b.Dispose(); } throw; }
        foreach (var (site, t) in uploaded) _banks[site].Replace(t.A, t.B);
        _index.Restore(clusters, conflicts, forgotten);
        _edits.Clear();
        foreach (var (id, block) in edits) _edits[id] = block;
        _inserted.Clear();
        _nextId = nextId;
        ClearRouting();
    }

    public void Dispose()
    {
        foreach (var a in _attached) a.Dispose();
        ClearRouting();
        foreach (var b in _banks.Values) b.Dispose();
        _index.Dispose();
    }
}
