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
    private readonly JsonObject _hp;
    private readonly string _keySite;
    private readonly string[] _loraSites;
    private readonly int _blocks, _rank, _iters, _lrStep;
    /// <summary>Every site of ours is at or above this layer: training forwards start there from the stream
    /// the frozen layers below give once per edit (<see cref="Gpt2Model.ResidualAt"/>).</summary>
    private readonly int _fromLayer;
    private readonly float _lr, _gamma, _scale;
    private readonly Dictionary<string, LoraBlockBank> _banks = new();
    private ClusterIndex _index;
    /// <summary>Every key inserted by a live edit, in order (for <see cref="Reindex"/>).</summary>
    private readonly List<(float[] Key, string Label, int Block, int EditId)> _inserted = new();
    private readonly Random _rng;
    /// <summary>Live edits: id → block.</summary>
    private readonly SortedDictionary<int, int> _edits = new();
    private int _nextId;

    // Per forward: the block of each sample (I32 (B)), from the key site's lookup; kept for the
    // single-token steps of cached generation (Start > 0), which reuse the prefill's routing.
    private Tensor? _routing;
    private int _routingRows;
    // While training: every sample on the trained block, and its parameters per site.
    private (Tensor Ids, Dictionary<string, LoraTrainedBlock> Params)? _training;
    // While capturing keys: the gathered keys (B, D) of the last forward.
    private bool _capture;
    private Tensor? _captured;

    public MeloEditor(EditorContext context, JsonObject hparams)
    {
        _ctx = context;
        _hp = hparams;
        var model = context.Model;
        _keySite = Str(hparams, "key_layer");
        _loraSites = Sites(hparams["lora_layers"]);
        _blocks = Int(hparams, "num_blocks");
        _rank = Int(hparams, "rank_per_block");
        _iters = Int(hparams, "num_iter");
        _lrStep = Int(hparams, "lr_step");
        _lr = Float(hparams, "edit_lr");
        _gamma = Float(hparams, "lr_gamma");
        float radius = Float(hparams, "init_radius");
        float alpha = Float(hparams, "lora_alpha");
        if (_blocks <= 0 || _rank <= 0 || _iters <= 0 || _lrStep <= 0) throw new ArgumentException("MELO: num_blocks, rank_per_block, num_iter and lr_step must be positive.");
        if (!(_lr > 0) || !(_gamma > 0) || !(radius > 0)) throw new ArgumentException("MELO: edit_lr, lr_gamma and init_radius must be positive.");
        if (alpha < 0) throw new ArgumentException("MELO: lora_alpha must be ≥ 0 (0 = the total rank, the paper's choice).");
        // The paper: alpha = r (total rank); block slices scaled by √(r/k) each → scale alpha/k on x·A_i·B_i.
        _scale = (alpha == 0 ? _blocks * _rank : alpha) / _rank;
        _rng = new Random(hparams["seed"] is JsonNode s ? (int)(double)s : 0);

        foreach (var site in _loraSites.Append(_keySite))
        {
            if (!model.Parameters.ContainsKey(site + ".weight") || Order(site) < 0)
                throw new ArgumentException($"MELO: \"{site}\" is not a linear site of this model (h.N.attn.c_attn, h.N.attn.c_proj, h.N.mlp.c_fc, h.N.mlp.c_proj; {model.Config.NLayer} layers).");
            if (model.Adapters.ContainsKey(site)) throw new ArgumentException($"MELO: another editor already has an adapter on {site}.");
        }
        if (_loraSites.Length == 0) throw new ArgumentException("MELO: lora_layers names no site.");
        if (_loraSites.Distinct().Count() != _loraSites.Length) throw new ArgumentException("MELO: lora_layers names a site twice.");
        foreach (var site in _loraSites)
            if (Order(site) <= Order(_keySite))
                throw new ArgumentException($"MELO: the key layer {_keySite} must run before every LoRA layer, but {site} does not come after it.");

        _fromLayer = _loraSites.Append(_keySite).Min(Gpt2Model.SiteLayer);
        var be = model.Backend;
        try
        {
            foreach (var site in _loraSites)
            {
                var w = model.Parameters[site + ".weight"];
                _banks[site] = new LoraBlockBank(be, site, w.Shape[0], w.Shape[1], _blocks, _rank, _scale);
            }
            _index = new ClusterIndex(model.Parameters[_keySite + ".weight"].Shape[1], radius);
        }
        catch { foreach (var b in _banks.Values) b.Dispose(); throw; }
        foreach (var site in _loraSites.Append(_keySite)) model.Adapters[site] = this;
    }

    public string Name => "MELO";
    public bool CanRemove => true;
    public ClusterIndex Index => _index;
    public int BlocksInUse => _edits.Values.Distinct().Count();
    public float Scale => _scale;

    public EditorDescription Describe() => new(Name,
        "Yu et al., MELO: Enhancing Model Editing with Neuron-Indexed Dynamic LoRA (AAAI 2024)",
        _banks.Values.Sum(b => b.ParametersPerBlock * b.Blocks), [.. _loraSites], (JsonObject)_hp.DeepClone());

    /// <summary>Trainable parameters of one edit batch (its block on every LoRA site).</summary>
    public long ParametersPerEdit => _banks.Values.Sum(b => b.ParametersPerBlock);

    // ---------------------------------------------------------------- hyper-parameters

    private static string Str(JsonObject hp, string key) => hp[key] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0
        ? s : throw new ArgumentException($"MELO: hyper-parameter {key} must be a site name such as h.2.mlp.c_fc.");

    private static double Num(JsonObject hp, string key)
    {
        if (hp[key] is not JsonValue v) throw new ArgumentException($"MELO: hyper-parameter {key} is missing.");
        if (v.TryGetValue<double>(out var d)) return d;
        if (v.TryGetValue<string>(out var s) && double.TryParse(s, CultureInfo.InvariantCulture, out d)) return d;
        throw new ArgumentException($"MELO: hyper-parameter {key} must be a number, got {v.ToJsonString()}.");
    }

    private static float Float(JsonObject hp, string key) => (float)Num(hp, key);

    private static int Int(JsonObject hp, string key)
    {
        double d = Num(hp, key);
        if (d != Math.Floor(d) || d > int.MaxValue || d < int.MinValue) throw new ArgumentException($"MELO: hyper-parameter {key} must be an integer, got {d}.");
        return (int)d;
    }

    /// <summary>lora_layers: a JSON array of sites, or (from --set) one comma-separated string.</summary>
    private static string[] Sites(JsonNode? node) => node switch
    {
        JsonArray a => a.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s.Trim() : throw new ArgumentException("MELO: lora_layers must list site names.")).ToArray(),
        JsonValue v when v.TryGetValue<string>(out var s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        _ => throw new ArgumentException("MELO: lora_layers must be a list of site names (or a comma-separated string)."),
    };

    private static int Order(string site) => Gpt2Model.SiteOrder(site);

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

    /// <summary>At the key site: gather each sample's key (last prompt token) and route it, or capture it while editing.</summary>
    private void OnKeySite(Var output, ForwardContext context)
    {
        if (context.Start > 0 && !_capture && _training is null)
        {
            // A cached generation step: the prompt (prefill) chose the block; keep it.
            if (_routing is not null && _routingRows != context.Batch.B) ClearRouting();
            return;
        }
        ClearRouting();
        var be = _ctx.Model.Backend;
        if (_training is not null && !_capture) return;
        if (_index.Count == 0 && !_capture) return;
        using var keys = GatherKeys(be, output.Value, context.Batch);
        if (_capture) { _captured?.Dispose(); _captured = be.Scale(keys, 1f); return; }
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
        var enc = batch.Select(r => _ctx.Encode(r.Prompt, r.TargetNew)).ToList();
        var seqs = enc.Select(e => e.Prompt.Concat(e.Target[..^1]).ToArray()).ToList();
        var tb = new TokenBatch(seqs, promptLengths: enc.Select(e => e.Prompt.Length).ToArray());
        var targets = new int[tb.B * tb.T];
        Array.Fill(targets, -100);
        for (int b = 0; b < tb.B; b++)
            for (int j = 0; j < enc[b].Target.Length; j++) targets[b * tb.T + enc[b].Prompt.Length - 1 + j] = enc[b].Target[j];

        var owned = new List<Tensor>();
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
                _capture = it == 0;
                try
                {
                    var p = model.Bind(tape, _ => false);
                    var loss = model.Loss(tape, p, tb, targets, residual, _fromLayer);
                    tape.Backward(loss);
                }
                finally { _training = null; _capture = false; }
                adam.Step(vars.SelectMany(v => new[] { v.A, v.B }).ToList(), new AdamConfig(lr), it + 1);
                foreach (var s in state) s.Bank.Write(block, s.A, s.B);
            }
            keys = be.ToFloatArray(_captured ?? throw new InvalidOperationException("MELO: the key site was not reached in the forward."));
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
            _captured?.Dispose();
            _captured = null;
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
        _hp["init_radius"] = initRadius;
        ClearRouting();
    }

    // ---------------------------------------------------------------- state

    private static readonly string[] Structural = ["key_layer", "lora_layers", "num_blocks", "rank_per_block", "lora_alpha"];

    /// <summary>
    /// The whole edit state in one safetensors file (written atomically): every LoRA bank, the index
    /// (centres, radii, points with their block and edit id) and, in the metadata, the hyper-parameters,
    /// the cluster labels and the live edits.
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
        var meta = new Dictionary<string, string>
        {
            ["editor"] = Name,
            ["hparams"] = _hp.ToJsonString(),
            ["labels"] = new JsonArray(cl.Select(c => (JsonNode)JsonValue.Create(c.Label)!).ToArray()).ToJsonString(),
            ["edits"] = new JsonObject(_edits.Select(e => KeyValuePair.Create(e.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)JsonValue.Create(e.Value)))).ToJsonString(),
            ["next_id"] = _nextId.ToString(CultureInfo.InvariantCulture),
            ["conflicts"] = _index.Conflicts.ToString(CultureInfo.InvariantCulture),
            ["forgotten"] = _index.Forgotten.ToString(CultureInfo.InvariantCulture),
        };
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    public void Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        if (!f.Metadata.TryGetValue("editor", out var e) || e != Name) throw new InvalidDataException($"{path}: not a {Name} edit state.");
        var saved = JsonNode.Parse(f.Metadata["hparams"])!.AsObject();
        foreach (var k in Structural)
        {
            // Compared by meaning: a list or its comma-separated --set form, 2 or 2.0.
            bool same = k switch
            {
                "lora_layers" => Sites(saved[k]).SequenceEqual(_loraSites),
                "key_layer" => Str(saved, k) == _keySite,
                _ => Num(saved, k) == Num(_hp, k),
            };
            if (!same)
                throw new InvalidDataException($"{path}: saved with {k} = {saved[k]?.ToJsonString()}, this editor has {_hp[k]?.ToJsonString()} (create the editor with the saved hyper-parameters).");
        }
        if (Math.Abs(Num(saved, "init_radius") - _index.InitRadius) > 1e-6 * _index.InitRadius)
            throw new InvalidDataException($"{path}: saved with init_radius = {saved["init_radius"]}, this editor has {_index.InitRadius}.");
        // Read everything before changing anything: a bad file leaves the editor as it was.
        var banks = _loraSites.ToDictionary(s => s, s => (A: f.Read($"lora.{s}.A"), B: f.Read($"lora.{s}.B")));
        var centres = f.Read("index.centres"); var radii = f.Read("index.radii");
        var points = f.Read("index.points"); var info = f.Read("index.point_info");
        var labels = JsonNode.Parse(f.Metadata["labels"])!.AsArray().Select(n => (string)n!).ToList();
        var edits = JsonNode.Parse(f.Metadata["edits"])!.AsObject().ToDictionary(kv => int.Parse(kv.Key, CultureInfo.InvariantCulture), kv => (int)kv.Value!);
        int D = _index.KeyDim, n = radii.Data.Length, np = info.Data.Length / 3;
        if (labels.Count != n || (n > 0 && centres.Shape[1] != D) || (np > 0 && points.Shape[1] != D))
            throw new InvalidDataException($"{path}: the index does not match (keys of {D} values, {n} clusters, {labels.Count} labels).");
        var clusters = new List<ClusterIndex.Cluster>();
        for (int c = 0; c < n; c++)
            clusters.Add(new ClusterIndex.Cluster { Centre = centres.Data.AsSpan(c * D, D).ToArray(), Radius = radii.Data[c], Label = labels[c] });
        for (int p = 0; p < np; p++)
        {
            int c = (int)info.Data[3 * p], block = (int)info.Data[3 * p + 1], id = (int)info.Data[3 * p + 2];
            if (c < 0 || c >= n || block < 0 || block >= _blocks) throw new InvalidDataException($"{path}: point {p} names cluster {c} and block {block}.");
            clusters[c].Points.Add(new ClusterIndex.Point { Key = points.Data.AsSpan(p * D, D).ToArray(), Block = block, EditId = id });
        }
        foreach (var (site, t) in banks) _banks[site].FromHost(t.A, t.B);
        _index.Restore(clusters, int.Parse(f.Metadata["conflicts"], CultureInfo.InvariantCulture), int.Parse(f.Metadata["forgotten"], CultureInfo.InvariantCulture));
        _edits.Clear();
        foreach (var (id, block) in edits) _edits[id] = block;
        _inserted.Clear();
        _nextId = int.Parse(f.Metadata["next_id"], CultureInfo.InvariantCulture);
        ClearRouting();
    }

    public void Dispose()
    {
        foreach (var site in _loraSites.Append(_keySite))
            if (_ctx.Model.Adapters.TryGetValue(site, out var a) && ReferenceEquals(a, this)) _ctx.Model.Adapters.Remove(site);
        ClearRouting();
        _captured?.Dispose();
        foreach (var b in _banks.Values) b.Dispose();
        _index.Dispose();
    }
}
