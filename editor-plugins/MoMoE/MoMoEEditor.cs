using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Compute;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MOMoE (MEMoE, arXiv 2405.19086): a bypass mixture of experts on one FFN linear site of a frozen model,
///   h = W0·x + λ·Σ_e G_e(x)·E_e(x),  G = top-k(softmax(W_g·R(x) + noise while training)),
/// with knowledge-anchor routing R(x) = concat(x, anchor embedding). The anchor is the edit's subject; at
/// inference it is found in the input by matching the known subjects' token spans (longest match).
///
/// Our choices (the paper released no code; each is a hyper-parameter, measured in the README):
/// - the site is an FFN output projection (h.L.mlp.c_proj): x is the FFN's hidden activation and W0·x the
///   FFN output the experts bypass; experts are low-rank FFNs GELU(x·A_e)·B_e;
/// - the anchor embedding is the mean of the frozen token embeddings of " subject", scaled to unit RMS:
///   it is the same in every prompt that names the subject, whatever the template around it;
/// - locality: positions with no known anchor take the null route (no expert output at all), and a
///   position is anchored from the subject's last token on (causal, so cached generation agrees with a
///   full forward); the ablation anchors=false routes every position on x alone;
/// - each edit batch trains a new expert group (E experts + gate); the anchors it edits belong to that
///   group and route among its experts only, so later batches cannot overwrite earlier ones. A subject
///   edited again moves to the new group, which is trained on its earlier requests too (replay).
///   Without anchors there is one group, trained batch after batch.
/// - training: Adam on the new group's gate and experts, cross-entropy of target_new plus
///   balance_weight·E·Σ_e f_e·P_e (Switch Transformer's load-balancing term), until the cross-entropy
///   falls below stop_loss or after steps.
/// </summary>
[EditorPlugin("MOMoE", "MoMoE")]
public sealed class MoMoEEditor : IEditor, ILinearAdapter, IEditorDiagnostics
{
    private readonly EditorContext _ctx;
    private readonly JsonObject _hp;
    private readonly string _site;
    /// <summary>The site's layer: the experts sit there, so training forwards start there from the stream the
    /// frozen layers below give once per batch (<see cref="Gpt2Model.ResidualAt"/>).</summary>
    private readonly int _layer;
    private readonly int _experts, _topK, _rank, _steps, _seed;
    private readonly float _lambda, _noise, _balance, _lr, _stopLoss;
    private readonly bool _useAnchors, _anchorInRouter, _afterSubject;
    private readonly int _inW, _outW, _embW;
    private readonly AnchorIndex _index;
    private readonly List<ExpertGroup> _groups = new();
    // Requests edited so far per subject (for replay when a subject is edited again).
    private readonly Dictionary<string, List<(string Prompt, string Target)>> _done = new(StringComparer.Ordinal);
    private readonly List<JsonObject> _batches = new();
    private int _nextId;
    // Token history of the sequence being generated with a key/value cache (batch 1).
    private List<int> _history = new();

    // While training one group: its index, its bound variables, the anchors of the batch, and what the
    // forward routed (for the load-balancing term).
    private (int Group, ExpertGroup.Bound Vars, HashSet<int> Anchors, Random Noise)? _training;
    private (Var Logits, MoeRouting Routing, int Rows)? _trainRouted;
    // Expert counts of one group gathered by a forward (utilisation).
    private (int Group, long[] Counts)? _counting;

    public MoMoEEditor(EditorContext context, JsonObject hparams)
    {
        _ctx = context;
        _hp = hparams;
        _site = Str("layer");
        var model = context.Model;
        if (!model.Parameters.TryGetValue(_site + ".weight", out var w0) || !_site.Contains(".mlp.") || Gpt2Model.SiteLayer(_site) < 0)
            throw new ArgumentException($"MOMoE: layer \"{_site}\" is not an FFN linear site of this model (e.g. h.2.mlp.c_proj).");
        _layer = Gpt2Model.SiteLayer(_site);
        _experts = Int("experts"); _topK = Int("top_k"); _rank = Int("rank"); _steps = Int("steps"); _seed = Int("seed");
        _lambda = Num("lambda"); _noise = Num("gate_noise"); _balance = Num("balance_weight"); _lr = Num("lr"); _stopLoss = Num("stop_loss");
        _useAnchors = Bool("anchors");
        _anchorInRouter = _useAnchors && Bool("anchor_in_router");
        _afterSubject = Str("positions") switch
        {
            "after" => true,
            "last" => false,
            var s => throw new ArgumentException($"MOMoE: positions \"{s}\" is not \"after\" (the subject's last token and every later one) or \"last\" (the subject's last token)."),
        };
        if (_experts < 1 || _experts > IMoEOps.MaxExperts) throw new ArgumentException($"MOMoE: experts must be in [1, {IMoEOps.MaxExperts}], got {_experts}.");
        if (_topK < 1 || _topK > _experts) throw new ArgumentException($"MOMoE: top_k must be in [1, experts = {_experts}], got {_topK}.");
        if (_rank < 1 || _steps < 1) throw new ArgumentException("MOMoE: rank and steps must be positive.");
        if (!(_lr > 0) || _noise < 0 || _balance < 0 || _stopLoss < 0) throw new ArgumentException("MOMoE: lr must be positive; gate_noise, balance_weight and stop_loss non-negative.");
        _inW = w0.Shape[0]; _outW = w0.Shape[1]; _embW = model.Config.NEmbd;
        _index = new AnchorIndex(context.Directory.Tokenizer);
        model.Adapters[_site] = this;
    }

    private string Str(string k) => _hp[k] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Missing(k, "a string");
    private float Num(string k) => (float)(_hp[k] is JsonValue v && v.TryGetValue<double>(out var d) ? d : throw Missing(k, "a number"));
    private int Int(string k)
    {
        double d = Num(k);
        return d == Math.Floor(d) && Math.Abs(d) < int.MaxValue ? (int)d : throw Missing(k, "an integer");
    }
    private bool Bool(string k) => _hp[k] is JsonValue v && (v.TryGetValue<bool>(out var b) ? b
        : v.TryGetValue<string>(out var s) && bool.TryParse(s, out b) ? b : throw Missing(k, "true or false"));
    private static ArgumentException Missing(string k, string what) => new($"MOMoE: hyper-parameter \"{k}\" must be {what}.");

    public string Name => "MOMoE";
    public bool CanRemove => false;
    public int Groups => _groups.Count;
    public int AnchorCount => _index.Count;

    public EditorDescription Describe() => new(Name, "Wang & Li, MEMoE: Enhancing Model Editing with Mixture of Experts Adaptors (arXiv 2405.19086)",
        _groups.Sum(g => g.ParameterCount), [_site], (JsonObject)_hp.DeepClone());

    /// <summary>Per edit batch: edits, training tokens, steps, loss, time, and how many tokens each expert got.</summary>
    public IReadOnlyList<JsonObject> BatchLog => _batches;

    public JsonObject Diagnostics() => new()
    {
        ["groups"] = _groups.Count, ["anchors"] = _index.Count, ["experts_per_group"] = _experts, ["top_k"] = _topK,
        ["batches"] = new JsonArray(_batches.Select(b => (JsonNode)b.DeepClone()).ToArray()),
    };

    // ---------------------------------------------------------------- the adapter

    public Var Apply(Tape tape, string site, Var input, Var output, ForwardContext context)
    {
        var batch = context.Batch;
        int B = batch.B, T = batch.T, N = B * T;
        // Rows (b·T + t) per expert group, and the anchor of each row (−1 without anchors).
        var perGroup = new SortedDictionary<int, List<(int Row, int Anchor)>>();
        if (!_useAnchors)
        {
            int g = _training?.Group ?? 0;
            if (_groups.Count == 0) return output;
            var rows = new List<(int, int)>();
            for (int b = 0; b < B; b++)
                for (int t = 0; t < batch.Lengths[b]; t++) rows.Add((b * T + t, -1));
            perGroup[g] = rows;
        }
        else
        {
            if (_index.Count == 0) return output;
            Func<int, bool>? allowed = _training is { } tr ? tr.Anchors.Contains : null;
            for (int b = 0; b < B; b++)
            {
                int[] active;
                int offset = 0;
                if (context.Start > 0 && B == 1)
                {
                    // Cached generation: match on the whole sequence so far, use the new positions.
                    _history.AddRange(batch.Ids.AsSpan(0, batch.Lengths[0]).ToArray());
                    active = _index.ActivePerPosition(_history.ToArray(), _afterSubject, allowed);
                    offset = _history.Count - batch.Lengths[0];
                }
                else
                {
                    var ids = batch.Ids.AsSpan(b * T, batch.Lengths[b]);
                    if (B == 1) _history = new List<int>(ids.ToArray());
                    active = _index.ActivePerPosition(ids, _afterSubject, allowed);
                }
                for (int t = 0; t < batch.Lengths[b]; t++)
                {
                    int a = active[offset + t];
                    if (a < 0) continue;
                    int g = _training?.Group ?? _index.Anchors[a].Group;
                    if (!perGroup.TryGetValue(g, out var list)) perGroup[g] = list = new List<(int, int)>();
                    list.Add((b * T + t, a));
                }
            }
        }
        if (perGroup.Count == 0) return output;

        var be = tape.Backend;
        var x2d = tape.Reshape(input, N, _inW);
        Var? sum = null;
        foreach (var (g, rows) in perGroup)
        {
            var rowIds = be.FromArray(rows.Select(r => r.Row).ToArray(), rows.Count);
            tape.OnDispose([rowIds]);
            var rowVar = tape.Constant(rowIds);
            var xa = tape.Embedding(rowVar, x2d);                                  // (M, in): the routed positions
            Var? anchor = null;
            if (_anchorInRouter)
            {
                var emb = new float[(long)rows.Count * _embW];
                for (int i = 0; i < rows.Count; i++) _index.Anchors[rows[i].Anchor].Embedding.CopyTo(emb, (long)i * _embW);
                var embT = be.FromArray(emb, rows.Count, _embW);
                tape.OnDispose([embT]);
                anchor = tape.Constant(embT);
            }
            var vars = _training is { } tr && tr.Group == g ? tr.Vars : _groups[g].Bind(tape, trainable: false);
            var y = GroupForward(tape, g, vars, xa, anchor, _training is not null);   // (M, out)
            var placed = tape.ScatterRows(tape.Scale(y, _lambda), rowVar, N);           // (N, out)
            sum = sum is null ? placed : tape.Add(sum, placed);
        }
        return tape.Add(output, tape.Reshape(sum!, output.Shape));
    }

    /// <summary>The experts of one group on M routed rows: gate (top-k), route, dispatch, expert FFNs, combine.</summary>
    private Var GroupForward(Tape tape, int g, ExpertGroup.Bound p, Var xa, Var? anchor, bool training)
    {
        var be = tape.Backend;
        int m = xa.Shape[0];
        var logits = tape.Matmul(xa, p.Wx);                                                // (M, E)
        if (anchor is not null) logits = tape.Add(logits, tape.Matmul(anchor, p.Wa));      // W_g·concat(x, anchor)
        if (training && _noise > 0 && _training is { } tr)
        {
            var noise = be.FromArray(HostReference.RandomNormal(tr.Noise, (long)m * _experts, _noise), m, _experts);
            tape.OnDispose([noise]);
            logits = tape.Add(logits, tape.Constant(noise));
        }
        var (weights, indices) = tape.MoeGateTopK(logits, _topK);
        var routing = tape.MoeRoute(indices, _experts);
        var xs = tape.MoeDispatch(xa, routing);                                            // (M·k, in), grouped per expert
        var h = tape.Gelu(tape.GroupedMatmul(xs, p.A, routing));                           // (M·k, rank)
        var ys = tape.GroupedMatmul(h, p.B, routing);                                      // (M·k, out)
        if (training) _trainRouted = (logits, routing, m);
        if (_counting is { } c && c.Group == g)
        {
            var off = be.ToIntArray(routing.Offsets.Value);
            for (int e = 0; e < _experts; e++) c.Counts[e] += off[e + 1] - off[e];
        }
        return tape.MoeCombine(ys, weights, routing);                                      // (M, out)
    }

    /// <summary>The anchor embedding: mean of the frozen token embeddings of " subject", scaled to unit RMS.</summary>
    private float[] AnchorEmbedding(string subject)
    {
        var ids = _ctx.Directory.Tokenizer.Encode(" " + subject, allowSpecial: false);
        var wte = _ctx.Model.Parameters["wte.weight"];
        using var idsT = _ctx.Model.Backend.FromArray(ids, ids.Length);
        using var rows = _ctx.Model.Backend.Embedding(idsT, wte);
        var r = _ctx.Model.Backend.ToFloatArray(rows);
        var mean = new double[_embW];
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < _embW; c++) mean[c] += r[i * _embW + c] / ids.Length;
        double rms = Math.Sqrt(mean.Sum(v => v * v) / _embW);
        return mean.Select(v => (float)(rms > 0 ? v / rms : 0)).ToArray();
    }

    // ---------------------------------------------------------------- editing

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        if (batch.Count == 0) return [];
        var sw = Stopwatch.StartNew();
        var be = _ctx.Model.Backend;
        var ids = batch.Select(_ => _nextId++).ToList();
        int g;
        if (_useAnchors || _groups.Count == 0)
        {
            _groups.Add(ExpertGroup.Create(be, _inW, _embW, _outW, _experts, _rank, _seed + 7919 * _groups.Count));
            g = _groups.Count - 1;
        }
        else g = 0;

        // The training set: this batch, plus the earlier requests of subjects edited again (they move to this group).
        var train = batch.Select(r => (r.Prompt, r.TargetNew)).ToList();
        var anchors = new HashSet<int>();
        if (_useAnchors)
        {
            var moved = new HashSet<string>(StringComparer.Ordinal);
            foreach (var r in batch)
            {
                if (_index.Find(r.Subject) is int old && _index.Anchors[old].Group != g && moved.Add(r.Subject))
                    train.AddRange(_done[r.Subject].Where(d => !batch.Any(q => q.Prompt == d.Prompt && q.Subject == r.Subject)));
                int a = _index.Add(r.Subject, _index.Find(r.Subject) is null ? AnchorEmbedding(r.Subject) : [], g);
                _index.Anchors[a].Group = g;
                anchors.Add(a);
            }
        }
        foreach (var r in batch)
        {
            if (!_done.TryGetValue(r.Subject, out var list)) _done[r.Subject] = list = new();
            list.Add((r.Prompt, r.TargetNew));
        }

        var pairs = train.Select(t => _ctx.Encode(t.Prompt, t.TargetNew)).ToList();
        var tb = new TokenBatch(pairs.Select(p => p.Prompt.Concat(p.Target[..^1]).ToArray()).ToList());
        var targets = new int[tb.B * tb.T];
        Array.Fill(targets, -100);
        for (int b = 0; b < pairs.Count; b++)
            for (int j = 0; j < pairs[b].Target.Length; j++) targets[b * tb.T + pairs[b].Prompt.Length - 1 + j] = pairs[b].Target[j];

        using var residual = _layer > 0 ? _ctx.Model.ResidualAt(tb, _layer) : null;
        var group = _groups[g];
        group.BeginTraining();
        var cfg = new AdamConfig(_lr);
        int step = 0;
        float ce = float.NaN;
        long routedRows = 0;
        var noiseRng = new Random(_seed + 104729 * (_batches.Count + 1));
        try
        {
            for (step = 1; step <= _steps; step++)
            {
                using var tape = new Tape(be);
                var bound = group.Bind(tape, trainable: true);
                _training = (g, bound, anchors, noiseRng);
                _trainRouted = null;
                var p = _ctx.Model.Bind(tape, _ => false);
                var loss = _ctx.Model.Loss(tape, p, tb, targets, residual, _layer);
                if (_trainRouted is not { } routed)
                    throw new InvalidOperationException("MOMoE: no training prompt contains its subject, so no position is routed to the experts.");
                routedRows = routed.Rows;
                var total = _balance > 0 ? tape.Add(loss, BalanceLoss(tape, routed)) : loss;
                tape.Backward(total);
                group.Step(bound, cfg, step);
                if (step % 5 == 0 || step == _steps)
                {
                    ce = be.ToFloatArray(loss.Value)[0];
                    if (ce < _stopLoss) break;
                }
            }
        }
        finally
        {
            _training = null;
            _trainRouted = null;
            group.EndTraining();
        }

        // Utilisation: one forward of the batch without noise, counting the tokens each expert of this group gets.
        var counts = new long[_experts];
        _counting = (g, counts);
        try
        {
            using var tape = new Tape(be);
            _ctx.Model.Logits(tape, _ctx.Model.Bind(tape, _ => false), tb);
        }
        finally { _counting = null; }
        be.Synchronize();
        int unanchored = _useAnchors ? pairs.Count(p => _index.Matches(p.Prompt, anchors.Contains).Count == 0) : 0;
        _batches.Add(new JsonObject
        {
            ["batch"] = _batches.Count, ["group"] = g, ["edits"] = batch.Count, ["replayed"] = train.Count - batch.Count,
            ["prompts_without_anchor"] = unanchored, ["routed_tokens"] = routedRows,
            ["tokens_per_expert"] = new JsonArray(counts.Select(c => (JsonNode)c).ToArray()),
            ["steps"] = Math.Min(step, _steps), ["final_ce"] = float.IsNaN(ce) ? null : ce, ["seconds"] = Math.Round(sw.Elapsed.TotalSeconds, 3),
        });
        return ids;
    }

    /// <summary>Switch Transformer's load-balancing term: E·Σ_e f_e·P_e, f_e = share of routed slots that went to
    /// expert e (no gradient), P_e = mean gate probability of e over the routed rows.</summary>
    private Var BalanceLoss(Tape tape, (Var Logits, MoeRouting Routing, int Rows) r)
    {
        var be = tape.Backend;
        var off = be.ToIntArray(r.Routing.Offsets.Value);
        double slots = Math.Max(1, off[_experts]);
        var f = new float[(long)r.Rows * _experts];
        for (int m = 0; m < r.Rows; m++)
            for (int e = 0; e < _experts; e++) f[(long)m * _experts + e] = (float)((off[e + 1] - off[e]) / slots);
        var fT = be.FromArray(f, r.Rows, _experts);
        tape.OnDispose([fT]);
        var probs = tape.Softmax(r.Logits);
        return tape.Scale(tape.Sum(tape.Mul(probs, tape.Constant(fT))), _balance * _experts / (float)r.Rows);
    }

    public void Remove(int editId) =>
        throw new NotSupportedException("MOMoE cannot remove one edit: an expert group holds a whole batch of edits in shared weights (Reset undoes every edit).");

    public void Reset()
    {
        foreach (var g in _groups) g.Dispose();
        _groups.Clear();
        _index.Clear();
        _done.Clear();
        _batches.Clear();
        _history.Clear();
    }

    // ---------------------------------------------------------------- edit state

    /// <summary>
    /// The edit state as one safetensors file (written atomically): every group's gate and experts
    /// (g{i}.wx, g{i}.wa, g{i}.a, g{i}.b), the anchor embeddings; in the metadata the hyper-parameters, the
    /// anchors (subject, group), the requests per subject (for replay) and the batch log.
    /// </summary>
    public void Save(string path)
    {
        var be = _ctx.Model.Backend;
        var tensors = new List<(string, HostTensor)>();
        for (int g = 0; g < _groups.Count; g++)
            for (int i = 0; i < ExpertGroup.ParamCount; i++)
            {
                var w = _groups[g].Weights[i];
                tensors.Add(($"g{g}.{ExpertGroup.ParamNames[i]}", new HostTensor(w.Shape.ToArray(), be.ToFloatArray(w))));
            }
        tensors.Add(("anchors", new HostTensor([_index.Count, _embW], _index.Anchors.SelectMany(a => a.Embedding).ToArray())));
        var meta = new Dictionary<string, string>
        {
            ["editor"] = Name, ["hparams"] = _hp.ToJsonString(), ["groups"] = _groups.Count.ToString(CultureInfo.InvariantCulture),
            ["next_id"] = _nextId.ToString(CultureInfo.InvariantCulture),
            ["anchors"] = new JsonArray(_index.Anchors.Select(a => (JsonNode)new JsonObject { ["subject"] = a.Subject, ["group"] = a.Group }).ToArray()).ToJsonString(),
            ["requests"] = new JsonObject(_done.Select(kv => KeyValuePair.Create(kv.Key,
                (JsonNode?)new JsonArray(kv.Value.Select(r => (JsonNode)new JsonArray(r.Prompt, r.Target)).ToArray())))).ToJsonString(),
            ["batches"] = new JsonArray(_batches.Select(b => (JsonNode)b.DeepClone()).ToArray()).ToJsonString(),
        };
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    public void Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        if (!f.Metadata.TryGetValue("editor", out var e) || e != Name) throw new InvalidDataException($"{path}: not a {Name} edit state.");
        var saved = JsonNode.Parse(f.Metadata["hparams"])!.AsObject();
        foreach (var k in new[] { "layer", "experts", "rank", "anchors", "anchor_in_router" })
            if (saved[k]?.ToJsonString() != _hp[k]?.ToJsonString())
                throw new InvalidDataException($"{path}: saved with {k} = {saved[k]?.ToJsonString()}, this editor has {_hp[k]?.ToJsonString()}.");
        int groups = int.Parse(f.Metadata["groups"], CultureInfo.InvariantCulture);
        var be = _ctx.Model.Backend;
        var loaded = new List<ExpertGroup>();
        try
        {
            for (int g = 0; g < groups; g++)
            {
                var ws = ExpertGroup.ParamNames.Select(n =>
                {
                    var h = f.Read($"g{g}.{n}");
                    return be.FromArray(h.Data, h.Shape);
                }).ToArray();
                loaded.Add(new ExpertGroup(be, ws));
                if (ws[0].Shape[0] != _inW || ws[3].Shape[2] != _outW)
                    throw new InvalidDataException($"{path}: group {g} has widths {ws[0].Shape[0]} → {ws[3].Shape[2]}, the layer {_site} has {_inW} → {_outW}.");
            }
        }
        catch { foreach (var g in loaded) g.Dispose(); throw; }
        Reset();
        _groups.AddRange(loaded);
        var emb = f.Read("anchors");
        var anchors = JsonNode.Parse(f.Metadata["anchors"])!.AsArray();
        for (int i = 0; i < anchors.Count; i++)
        {
            var a = anchors[i]!.AsObject();
            _index.Add((string)a["subject"]!, emb.Data.AsSpan(i * _embW, _embW).ToArray(), (int)a["group"]!);
        }
        foreach (var (subject, reqs) in JsonNode.Parse(f.Metadata["requests"])!.AsObject())
            _done[subject] = reqs!.AsArray().Select(r => ((string)r![0]!, (string)r[1]!)).ToList();
        _batches.AddRange(JsonNode.Parse(f.Metadata["batches"])!.AsArray().Select(b => b!.AsObject().DeepClone().AsObject()));
        _nextId = int.Parse(f.Metadata["next_id"], CultureInfo.InvariantCulture);
    }

    public void Dispose()
    {
        Reset();
        _ctx.Model.Adapters.Remove(_site);
    }
}
