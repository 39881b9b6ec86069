using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
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
    private readonly HyperParameters _hp;
    private readonly string _site;
    /// <summary>The site's layer: the experts sit there, so training forwards start there from the stream the
    /// frozen layers below give once per batch (<see cref="ILanguageModel.ResidualAt"/>).</summary>
    private readonly int _layer;
    private readonly int _experts, _topK, _rank, _steps, _seed;
    private readonly float _lambda, _noise, _balance, _lr, _stopLoss;
    private readonly bool _useAnchors, _anchorInRouter, _afterSubject;
    private readonly int _inW, _outW, _embW;
    private readonly IDisposable _attached;
    private AnchorIndex _index;
    private readonly List<ExpertGroup> _groups = new();
    // Requests edited so far per subject (for replay when a subject is edited again).
    private readonly Dictionary<string, List<(string Prompt, string Target)>> _done = new(StringComparer.Ordinal);
    private readonly List<JsonObject> _batches = new();
    private int _nextId;
    // Token history of the sequence being generated with a key/value cache (batch 1).
    private List<int> _history = new();

    // While training one group: its index, its bound variables, the anchors of the batch, and what the
    // forward routed (for the load-balancing term).
    private (int Group, ExpertGroup.Bound Vars, HashSet<int> Anchors, SeededRandom Noise)? _training;
    private (Var Logits, MoeRouting Routing, int Rows)? _trainRouted;
    // Expert counts of one group gathered by a forward (utilisation).
    private (int Group, long[] Counts)? _counting;

    public MoMoEEditor(EditorContext context, HyperParameters hparams)
    {
        _ctx = context;
        _hp = hparams;
        var model = context.Model;
        _site = hparams.Site("layer", model, SiteRole.MlpIn | SiteRole.MlpOut);
        _layer = model.Sites.Layer(_site);
        _experts = hparams.Int("experts", 1, IMoEOps.MaxExperts);
        _topK = hparams.Int("top_k", 1, _experts);
        _rank = hparams.Int("rank", 1, 4096);
        _lambda = hparams.Float("lambda", 0, 1000);
        _useAnchors = hparams.Bool("anchors");
        bool anchorInRouter = hparams.Bool("anchor_in_router");
        _anchorInRouter = _useAnchors && anchorInRouter;
        // "after": the subject's last token and every later one; "last": the subject's last token only.
        _afterSubject = hparams.String("positions", "after", "last") == "after";
        _noise = hparams.Float("gate_noise", 0, 100);
        _balance = hparams.Float("balance_weight", 0, 1000);
        _lr = hparams.Float("lr", 0, 10, minExclusive: true);
        _steps = hparams.Int("steps", 1, 100_000);
        _stopLoss = hparams.Float("stop_loss", 0, 1000);
        _seed = hparams.Int("seed", 0, int.MaxValue);
        var w0 = model.Parameters[_site + ".weight"];
        _inW = w0.Shape[0]; _outW = w0.Shape[1]; _embW = model.Shape.Width;
        _index = new AnchorIndex(context.Directory.Tokenizer);
        _attached = model.Attach(_site, this, Name);
    }

    public string Name => "MOMoE";
    public bool CanRemove => false;
    public int Groups => _groups.Count;
    public int AnchorCount => _index.Count;

    public EditorDescription Describe() => new(Name, "Wang & Li, MEMoE: Enhancing Model Editing with Mixture of Experts Adaptors (arXiv 2405.19086)",
        _groups.Sum(g => g.ParameterCount), [_site], _hp.ToJson());

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
            var noise = be.FromArray(tr.Noise.Normal((long)m * _experts, _noise), m, _experts);
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
        var ids = _ctx.Directory.Tokenizer.EncodePlain(" " + subject);
        var wte = _ctx.Model.Parameters[_ctx.Model.EmbeddingName];
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

        var tf = TeacherForcing.Build(_ctx, train);
        var (tb, targets, pairs) = (tf.Batch, tf.Targets, tf.Pairs);

        using var residual = _layer > 0 ? _ctx.Model.ResidualAt(tb, _layer) : null;
        var group = _groups[g];
        group.BeginTraining();
        var cfg = new AdamConfig(_lr);
        int step = 0;
        float ce = float.NaN;
        long routedRows = 0;
        var noiseRng = new SeededRandom(_seed + 104729 * (_batches.Count + 1));
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
    /// The edit state as one edit-state file: every group's gate and experts (g{i}.wx, g{i}.wa, g{i}.a,
    /// g{i}.b), the anchor embeddings; in the metadata the anchors (subject, group), the requests per subject
    /// (for replay) and the batch log.
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
        EditStateFile.Save(path, Name, _hp, tensors, new Dictionary<string, JsonNode?>
        {
            ["groups"] = _groups.Count,
            ["next_id"] = _nextId,
            ["anchors"] = new JsonArray(_index.Anchors.Select(a => (JsonNode)new JsonObject { ["subject"] = a.Subject, ["group"] = a.Group }).ToArray()),
            ["requests"] = new JsonObject(_done.Select(kv => KeyValuePair.Create(kv.Key,
                (JsonNode?)new JsonArray(kv.Value.Select(r => (JsonNode)new JsonArray(r.Prompt, r.Target)).ToArray())))),
            ["batches"] = new JsonArray(_batches.Select(b => (JsonNode)b.DeepClone()).ToArray()),
        });
    }

    public void Load(string path)
    {
        // Read and check everything, and build the new index, before changing anything: a bad file leaves the editor as it was.
        var shapes = new[] { new[] { _inW, _experts }, [_embW, _experts], [_experts, _inW, _rank], [_experts, _rank, _outW] };
        var weights = new List<HostTensor[]>();
        var index = new AnchorIndex(_ctx.Directory.Tokenizer);
        Dictionary<string, List<(string Prompt, string Target)>> done;
        List<JsonObject> batches;
        int nextId;
        using (var state = EditStateFile.Open(path, Name))
        {
            state.RequireSame("layer", _site, (h, k) => h.String(k));
            state.RequireSame("experts", _experts, (h, k) => h.Int(k));
            state.RequireSame("rank", _rank, (h, k) => h.Int(k));
            state.RequireSame("anchors", _useAnchors, (h, k) => h.Bool(k));
            state.RequireSame("anchor_in_router", _hp.Bool("anchor_in_router"), (h, k) => h.Bool(k));
            int groups = state.Int("groups", 0, 1 << 20);
            for (int g = 0; g < groups; g++)
                weights.Add(ExpertGroup.ParamNames.Select((n, i) => state.Tensor($"g{g}.{n}", shapes[i])).ToArray());
            var anchors = state.Read("anchors", j => j.AsArray().Select(a => (Subject: a!["subject"]!.GetValue<string>(), Group: a["group"]!.GetValue<int>())).ToList());
            var emb = state.Tensor("anchors", anchors.Count, _embW);
            for (int i = 0; i < anchors.Count; i++)
            {
                var (subject, group) = anchors[i];
                if (group < 0 || group >= groups) throw state.Invalid($"anchor {i} (\"{subject}\") names group {group} of {groups}.");
                try { index.Add(subject, emb.Data.AsSpan(i * _embW, _embW).ToArray(), group); }
                catch (ArgumentException e) { throw state.Invalid($"anchor {i}: {e.Message}"); }
                if (index.Count != i + 1) throw state.Invalid($"anchor {i} (\"{subject}\") is listed twice.");
            }
            done = state.Read("requests", j => j.AsObject().ToDictionary(kv => kv.Key,
                kv => kv.Value!.AsArray().Select(r => (r![0]!.GetValue<string>(), r[1]!.GetValue<string>())).ToList(), StringComparer.Ordinal));
            batches = state.Read("batches", j => j.AsArray().Select(b => b!.AsObject().DeepClone().AsObject()).ToList());
            nextId = state.Int("next_id", 0);
        }
        var be = _ctx.Model.Backend;
        var loaded = new List<ExpertGroup>();
        try
        {
            foreach (var ws in weights)
            {
                var tensors = new List<Tensor>();
                try { foreach (var h in ws) tensors.Add(be.FromArray(h.Data, h.Shape)); }
                catch { foreach (var t in tensors) t.Dispose(); throw; }
                loaded.Add(new ExpertGroup(be, [.. tensors]));
            }
        }
        catch { foreach (var g in loaded) g.Dispose(); throw; }
        Reset();
        _groups.AddRange(loaded);
        _index = index;
        foreach (var (subject, reqs) in done) _done[subject] = reqs;
        _batches.AddRange(batches);
        _nextId = nextId;
    }

    public void Dispose()
    {
        Reset();
        _attached.Dispose();
    }
}
