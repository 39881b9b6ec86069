using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>How the per-token shifts the hyper-network predicts become one weight shift.</summary>
public enum ShiftAggregation
{
    /// <summary>MALMEN: ΔW = (KᵀK + e^lamda·I)⁻¹·KᵀD, the ridge least-squares fit of the value differences D.</summary>
    LeastSquares,
    /// <summary>MEND: ΔW = −η·K̃ᵀG̃, the sum of the rank-1 updates (what a gradient step would accumulate).</summary>
    Sum,
}

/// <summary>What keeps the model in the meta-loss besides the rephrases' cross-entropy.</summary>
public enum ShiftRegulariser
{
    /// <summary>MALMEN / MEND: loc_coef·KL(p_W ‖ p_{W+ΔW}) at a locality prompt's answer (two LM passes per sub-batch more).</summary>
    LocalityKl,
    /// <summary>EMSEdit: reg_coef·Σ‖W − W₀‖² over the edited sites; no locality prompt is run.</summary>
    Norm,
}

/// <summary>
/// The hyper-network editors' common body (MALMEN, MEND and EMSEdit): cache the keys and value-gradients of the edit requests at
/// the edited linear sites (<see cref="KeyGradientCache"/>, sub-batched), run the hyper-network of each weight shape over
/// them in chunks without a graph, aggregate into one shift per site (<see cref="ShiftAggregation"/>), and add it to the
/// weight. Meta-training (<see cref="IMetaTrainable"/>) is MALMEN's decoupled two-stage backward: the LM passes give
/// ∂L/∂W at W + ΔW with no hyper-network graph, the hyper-network is then re-run in chunks with the vector-Jacobian
/// product, so memory never grows with the number of edits beyond the key/gradient cache.
/// The frozen weights W₀ are kept: Reset writes them back, bit for bit. EMSEdit's additions are hyper-parameters here:
/// several rounds per edit batch (<c>iters</c>), the norm regulariser (<c>regulariser</c>, <c>reg_coef</c>), how rounds
/// are meta-trained (<c>msbp_training</c>) and meta-training on sequences of batches (<c>num_seq</c>).
/// </summary>
public abstract class ShiftEditor : IEditor, IMetaTrainable, IEditorDiagnostics
{
    private readonly EditorContext _ctx;
    private readonly HyperParameters _hp;
    private readonly IBackend _be;
    private readonly ShiftAggregation _aggregation;
    private readonly string[] _sites;
    private readonly (int Net, int Module)[] _of;
    private readonly List<HyperNetwork> _nets = new();
    private readonly Tensor[] _w0, _delta;
    private readonly int _rank, _blocks, _subBatch, _chunk, _nEdits, _seed, _iters;
    private readonly float _lr, _metaLr, _locCoef, _regCoef, _maxGradNorm;
    private readonly ShiftRegulariser _regulariser;
    // Meta-training with several rounds: false = each round its own meta-step at the frozen weights (EMSEdit's batch
    // mode); true = the rounds chained as when editing, one meta-step, first-order across rounds (its sequential mode's rule).
    private readonly bool _chainedRounds;
    // Meta-training on sequences: num_seq consecutive batches edit one model, each step's shift kept for the next (the
    // norm term then weighs the whole drift), as EMSEdit's sequential training; 1 = every batch at the frozen weights.
    private readonly int _numSeq;
    // One hyper-network for every round (MALMEN², EMSEdit's batch mode) or one per round, round r's of rank rank / (r + 1)
    // (EMSEdit's sequential mode). _nets holds round 0's nets (one per weight shape), then round 1's, and so on.
    private readonly bool _perRound;
    private readonly int _shapes;
    private readonly CachedTokens _tokens;
    private readonly string _hypernetPath;
    private bool _trained;
    private readonly List<JsonObject> _batches = new();
    private int _nextId;
    // The normalisers as loaded (or as meta-training left them): editing moves them, as the authors' running statistics do
    // at inference too, so Reset puts them back with W₀ and an edit after Reset is the edit a fresh editor makes.
    private (double N, double[] Mean, double[] M2)[] _normalisersAtReset = [];

    protected ShiftEditor(EditorContext context, HyperParameters hparams, ShiftAggregation aggregation)
    {
        _ctx = context;
        _hp = hparams;
        _be = context.Model.Backend;
        _aggregation = aggregation;
        var model = context.Model;
        _sites = hparams.Sites("sites", model).ToArray();
        _rank = hparams.Int("rank", 1, 65_536);
        _blocks = hparams.Int("blocks", 1, 64);
        _lr = hparams.Float("lr", 0, 1, minExclusive: true);
        _subBatch = hparams.Int("sub_batch", 1, 4096);
        _chunk = hparams.Int("chunk", 1, 1 << 20);
        _tokens = hparams.String("tokens", "answer", "all") == "all" ? CachedTokens.All : CachedTokens.Answer;
        _nEdits = hparams.Int("n_edits", 1, 1 << 20);
        _metaLr = hparams.Float("meta_lr", 0, 1, minExclusive: true);
        _locCoef = hparams.Float("loc_coef", 0, 1e6f);
        _regCoef = hparams.Float("reg_coef", 0, 1e6f);
        _regulariser = hparams.String("regulariser", "kl", "norm") == "norm" ? ShiftRegulariser.Norm : ShiftRegulariser.LocalityKl;
        _iters = hparams.Int("iters", 1, 16);
        _chainedRounds = hparams.String("msbp_training", "reverted", "chained") == "chained";
        _numSeq = hparams.Int("num_seq", 1, 1 << 20);
        if (_numSeq > 1 && _iters > 1 && !_chainedRounds)
            throw hparams.Error("num_seq", $"is {_numSeq}: sequences keep each batch's edit, which needs the rounds chained (msbp_training \"chained\") or one round (iters 1)");
        _perRound = hparams.String("round_networks", "shared", "per_round") == "per_round";
        if (_perRound && _iters > 1 && !_chainedRounds)
            throw hparams.Error("round_networks", "is \"per_round\": a network per round is trained on the weights its round sees, which needs the rounds chained (msbp_training \"chained\")");
        _maxGradNorm = hparams.Float("max_grad_norm", 0, float.MaxValue, minExclusive: true);
        _seed = hparams.Int("seed", 0, int.MaxValue);
        var file = hparams.String("hypernet");
        if (!file.EndsWith(".safetensors", StringComparison.Ordinal))
            throw hparams.Error("hypernet", $"must name the hyper-network's .safetensors file (relative to the model's folder, or absolute), got \"{file}\"");
        _hypernetPath = Path.IsPathRooted(file) ? file : Path.Combine(context.Directory.Path, file);

        // One net per weight shape, its modules the sites of that shape in the order given.
        var shapes = new List<(int Dk, int Dv)>();
        var modules = new List<int>();
        _of = new (int, int)[_sites.Length];
        for (int i = 0; i < _sites.Length; i++)
        {
            var shape = model.Parameters[_sites[i] + ".weight"].Shape;
            int net = shapes.IndexOf((shape[0], shape[1]));
            if (net < 0) { shapes.Add((shape[0], shape[1])); modules.Add(0); net = shapes.Count - 1; }
            _of[i] = (net, modules[net]++);
        }
        _shapes = shapes.Count;
        int netRounds = _perRound ? _iters : 1;
        long netBytes = Enumerable.Range(0, netRounds).Sum(r => shapes.Select((s, n) => 4L * NetParameters(s.Dk + s.Dv, RoundRank(r), _blocks, modules[n])).Sum());
        long weightBytes = _sites.Sum(s => 4L * model.Parameters[s + ".weight"].Count) * 2;   // W₀ and the applied shift
        // Training also keeps Adam's two moments and a gradient per parameter.
        EditorMemory.Require(context, hparams, netBytes + weightBytes, "hyper-network(s) and kept weights", "rank", "blocks", "sites");

        var rng = new SeededRandom(_seed);
        var made = new List<IDisposable>();
        try
        {
            for (int r = 0; r < netRounds; r++)
                for (int n = 0; n < shapes.Count; n++) { var net = new HyperNetwork(_be, shapes[n].Dk, shapes[n].Dv, RoundRank(r), _blocks, modules[n], _lr, rng); made.Add(net); _nets.Add(net); }
            _w0 = _sites.Select(s => { var t = _be.Scale(model.Parameters[s + ".weight"], 1f); made.Add(t); return t; }).ToArray();
            _delta = _sites.Select(s => { var t = _be.Empty(DType.F32, model.Parameters[s + ".weight"].Shape); made.Add(t); _be.Fill(t, 0); return t; }).ToArray();
            if (File.Exists(_hypernetPath)) { LoadHyperNetwork(_hypernetPath); _trained = true; }
            KeepNormalisersForReset();
        }
        catch
        {
            foreach (var d in made) d.Dispose();
            throw;
        }
    }

    /// <summary>The rank of round r's nets: rank itself when the rounds share one, else rank / (r + 1) (the authors' sequential nets).</summary>
    private int RoundRank(int round) => _perRound ? Math.Max(1, _rank / (round + 1)) : _rank;

    /// <summary>Index in _nets of the net that edits site i in round r.</summary>
    private int NetIndex(int round, int site) => (_perRound ? round : 0) * _shapes + _of[site].Net;

    /// <summary>Parameters of one net: per block A (D×r), B (r×D), bias (D), scale and shift (D) per module; η and lamda per module.</summary>
    private static long NetParameters(int d, int rank, int blocks, int modules) => blocks * (2L * d * rank + d + 2L * modules * d) + 2L * modules;

    public abstract string Name { get; }
    protected abstract string Paper { get; }
    public bool CanRemove => false;
    public virtual bool PromisesHits => true;

    public EditorDescription Describe() => new(Name, Paper, _nets.Sum(n => n.ParameterCount), _sites, _hp.ToJson());

    /// <summary>The trained hyper-network this editor loaded (absent: it edits with an untrained one, whose shifts are
    /// those of its initial identity blocks).</summary>
    public bool Trained => _trained;

    // ---------------------------------------------------------------- editing

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        if (batch.Count == 0) return [];
        if (!_trained)
            throw new InvalidOperationException($"{Name} has no trained hyper-network at {_hypernetPath}: train one with " +
                $"`editrt meta-train --editor {Name} --model {_ctx.Directory.Path} --data TRAIN.json --out DIR` and point the hyper-parameter " +
                "\"hypernet\" at DIR/hypernet.safetensors.");
        var pairs = batch.Select(r => _ctx.Encode(r.Prompt, r.TargetNew)).ToList();
        // Multi-step editing (EMSEdit's MSBP; iters = 1 is MALMEN's one shot): each round caches keys and gradients at the
        // weights the rounds before it left, solves, and applies its shift at once, so round 2 fits the residual.
        double cacheS = 0, shiftS = 0;
        int rows = 0;
        for (int round = 0; round < _iters; round++)
        {
            var sw = Stopwatch.StartNew();
            var caches = Cache(pairs, round);
            _be.Synchronize();
            cacheS += sw.Elapsed.TotalSeconds;
            sw.Restart();
            rows = caches[0].Rows;
            try
            {
                for (int i = 0; i < _sites.Length; i++)
                {
                    using var shift = Predict(i, caches[i], keepFactor: false, round);
                    _be.Axpy(1f, shift.Delta, _delta[i]);
                    SetWeight(i, null);
                }
            }
            finally { foreach (var c in caches) c.Dispose(); }
            _be.Synchronize();
            shiftS += sw.Elapsed.TotalSeconds;
        }
        _batches.Add(new JsonObject
        {
            ["requests"] = batch.Count,
            ["rounds"] = _iters,
            ["cached_rows"] = rows,
            ["cache_seconds"] = Math.Round(cacheS, 4),
            ["shift_seconds"] = Math.Round(shiftS, 4),
        });
        return batch.Select(_ => _nextId++).ToList();
    }

    public JsonObject Diagnostics() => new()
    {
        ["aggregation"] = _aggregation == ShiftAggregation.LeastSquares ? "least-squares" : "sum",
        ["rounds_per_batch"] = _iters,
        ["round_networks"] = _perRound ? "per_round" : "shared",
        ["hypernet"] = _hypernetPath,
        ["coefficients"] = new JsonArray(Enumerable.Range(0, _perRound ? _iters : 1).SelectMany(r => _sites.Select((s, i) =>
        {
            var (eta, lambda) = _nets[NetIndex(r, i)].Coefficients(_of[i].Module);
            var o = new JsonObject { ["site"] = s, ["eta"] = eta, ["lambda"] = lambda };
            if (_perRound) o["round"] = r;
            return (JsonNode)o;
        })).ToArray()),
        ["batches"] = new JsonArray(_batches.Select(b => (JsonNode)b.DeepClone()).ToArray()),
    };

    /// <summary>The key/gradient cache of the pairs at every site, the normaliser of each of the round's nets updated with
    /// every sub-batch of every module in turn (as the authors do, at inference too).</summary>
    private IReadOnlyList<SiteKeysGradients> Cache(IReadOnlyList<(int[] Prompt, int[] Target)> pairs, int round)
    {
        var caches = KeyGradientCache.Build(_ctx, pairs, _sites, _subBatch, _tokens, Name);
        try
        {
            int start = 0;
            for (int b = 0; b < caches[0].SubBatchRows.Count; b++)
            {
                int rows = caches[0].SubBatchRows[b];
                if (rows > 0)
                    for (int i = 0; i < _sites.Length; i++)
                    {
                        using var k = Rows(caches[i].Keys, start, rows);
                        using var g = Rows(caches[i].Grads, start, rows);
                        _nets[NetIndex(round, i)].UpdateNormaliser(k, g);
                    }
                start += rows;
            }
            return caches;
        }
        catch
        {
            foreach (var c in caches) c.Dispose();
            throw;
        }
    }

    /// <summary>Rows [start, start + count) of x (N, W), as a new tensor.</summary>
    private Tensor Rows(Tensor x, int start, int count)
    {
        int w = x.Shape[1];
        var y = _be.Empty(DType.F32, count, w);
        _be.CopyStrided(x, y, count, w, (long)start * w, w, 0, w);
        return y;
    }

    /// <summary>A site's shift, and for least squares the Cholesky factor of KᵀK + λI (kept for the meta-gradient).</summary>
    private sealed class Shift(Tensor delta, Tensor? factor) : IDisposable
    {
        public Tensor Delta { get; } = delta;
        public Tensor? Factor { get; } = factor;
        public void Dispose() { Delta.Dispose(); Factor?.Dispose(); }
    }

    /// <summary>The shift of site <paramref name="i"/> in round <paramref name="round"/> from its cache, without a graph.</summary>
    private Shift Predict(int i, SiteKeysGradients cache, bool keepFactor, int round)
    {
        var net = _nets[NetIndex(round, i)];
        int m = _of[i].Module, n = cache.Rows;
        var (eta, lambda) = net.Coefficients(m);
        Tensor delta;
        Tensor? factor = null;
        if (_aggregation == ShiftAggregation.LeastSquares)
        {
            using var d = _be.Empty(DType.F32, n, net.Dv);
            for (int s = 0; s < n; s += _chunk)
            {
                int c = Math.Min(_chunk, n - s);
                using var tape = new Tape(_be);
                var bound = net.Bind(tape, grad: false);
                using var k = Rows(cache.Keys, s, c);
                using var g = Rows(cache.Grads, s, c);
                var kv = tape.Constant(k);
                var (kt, gt) = net.Forward(tape, bound, kv, tape.Constant(g), m);
                var dc = tape.ValueDiff(kv, kt, gt, net.Eta(bound, m));
                _be.CopyStrided(dc.Value, d, c, net.Dv, 0, net.Dv, (long)s * net.Dv, net.Dv);
            }
            var spd = _be.Ops<ISpdSolveOps>();
            using (var gram = _be.Matmul(cache.Keys, cache.Keys, transA: true))
            {
                spd.AddDiagonal(gram, lambda);
                factor = spd.CholeskyFactor(gram);
            }
            try
            {
                using var rhs = _be.Matmul(cache.Keys, d, transA: true);
                delta = spd.CholeskySolve(factor, rhs);
            }
            catch { factor.Dispose(); throw; }
        }
        else
        {
            delta = _be.Empty(DType.F32, net.Dk, net.Dv);
            _be.Fill(delta, 0);
            for (int s = 0; s < n; s += _chunk)
            {
                int c = Math.Min(_chunk, n - s);
                using var tape = new Tape(_be);
                var bound = net.Bind(tape, grad: false);
                using var k = Rows(cache.Keys, s, c);
                using var g = Rows(cache.Grads, s, c);
                var (kt, gt) = net.Forward(tape, bound, tape.Constant(k), tape.Constant(g), m);
                using var p = _be.Matmul(kt.Value, gt.Value, transA: true);
                _be.Axpy(-eta, p, delta);
            }
        }
        var shift = new Shift(delta, keepFactor ? factor : null);
        if (!keepFactor) factor?.Dispose();
        using (var sq = _be.Mul(delta, delta))
        using (var sum = _be.Sum(sq))
        {
            float norm2 = _be.ToFloatArray(sum)[0];
            if (!float.IsFinite(norm2))
            {
                shift.Dispose();
                throw new NonFiniteException($"{Name}: the shift of {_sites[i]} is not finite (|ΔW|² = {norm2}; λ = {lambda}, η = {eta}, {n} cached rows)" +
                    (_aggregation == ShiftAggregation.LeastSquares ? ": KᵀK + λI was not positive definite in float32, or the hyper-network's output overflowed." : "."));
            }
        }
        return shift;
    }

    /// <summary>Site i's weight ← W₀ + (applied shifts) + <paramref name="extra"/>; W₀ itself when there is nothing to add.</summary>
    private void SetWeight(int i, Tensor? extra)
    {
        var w = _ctx.Model.Parameters[_sites[i] + ".weight"];
        using var sum = _be.Add(_w0[i], _delta[i]);
        if (extra is null) { _be.CopyInto(sum, w); return; }
        using var more = _be.Add(sum, extra);
        _be.CopyInto(more, w);
    }

    public void Remove(int editId) =>
        throw new NotSupportedException($"{Name} cannot remove one edit: a batch's edits are solved into one weight shift (use Reset to undo all).");

    public void Reset()
    {
        for (int i = 0; i < _sites.Length; i++)
        {
            _be.Fill(_delta[i], 0);
            _be.CopyInto(_w0[i], _ctx.Model.Parameters[_sites[i] + ".weight"]);   // W₀ itself, to the bit
        }
        for (int n = 0; n < _nets.Count; n++) _nets[n].RestoreNormaliser(_normalisersAtReset[n]);
        _batches.Clear();
    }

    private void KeepNormalisersForReset() => _normalisersAtReset = _nets.Select(n => n.SnapshotNormaliser()).ToArray();

    // ---------------------------------------------------------------- edit state: the applied shifts

    public void Save(string path)
    {
        // The shifts, and the normalisers as the edits left them (float32), so that editing on after Load continues from them.
        var tensors = _sites.Select((s, i) => (s + ".weight.shift", new HostTensor(_delta[i].Shape.ToArray(), _be.ToFloatArray(_delta[i]))))
            .Concat(_nets.SelectMany((net, n) => net.NormaliserState().Select(t => (NetPrefix(n) + t.Name, t.Tensor)))).ToList();
        EditStateFile.Save(path, Name, _hp, tensors, new Dictionary<string, JsonNode?> { ["next_id"] = _nextId });
    }

    public void Load(string path)
    {
        using var state = EditStateFile.Open(path, Name);
        state.RequireSame("sites", _sites, (h, k) => h.StringList(k).ToArray(), (a, b) => a.SequenceEqual(b));
        var shifts = _sites.Select((s, i) => state.Tensor(s + ".weight.shift", _delta[i].Shape.ToArray())).ToArray();
        int nextId = state.Int("next_id", 0);
        // Files written before the normalisers were saved lack them: the editor's own are kept then.
        var norms = _nets.Select((net, n) => state.Has(NetPrefix(n) + "normaliser.n")
            ? ((float N, float[] Mean, float[] M2)?)(state.Tensor(NetPrefix(n) + "normaliser.n", 1).Data[0],
                state.Tensor(NetPrefix(n) + "normaliser.mean", net.D).Data, state.Tensor(NetPrefix(n) + "normaliser.m2", net.D).Data)
            : null).ToArray();
        for (int n = 0; n < _nets.Count; n++)
            if (norms[n] is { } v) _nets[n].CheckNormaliser(v.N, v.Mean, v.M2, p => state.Invalid($"{NetPrefix(n)}{p}"));
        // A shift larger than the weights themselves by orders of magnitude is damage, not an edit.
        for (int i = 0; i < shifts.Length; i++)
            for (int j = 0; j < shifts[i].Data.Length; j++)
                if (!float.IsFinite(shifts[i].Data[j]) || Math.Abs(shifts[i].Data[j]) > 1e4f)
                    throw state.Invalid($"tensor \"{_sites[i]}.weight.shift\" element {j} is {shifts[i].Data[j]}: a finite shift within ±1e4 was expected.");
        for (int n = 0; n < _nets.Count; n++)
            if (norms[n] is { } v) _nets[n].LoadNormaliser(v.N, v.Mean, v.M2, state.Invalid);
        for (int i = 0; i < _sites.Length; i++)
        {
            _be.Overwrite(_delta[i], shifts[i].Data);
            SetWeight(i, null);
        }
        _nextId = nextId;
        _batches.Clear();
    }

    // ---------------------------------------------------------------- the trained hyper-network's file

    private string NetPrefix(int n) => n < _shapes ? $"net.{_nets[n].Dk}x{_nets[n].Dv}." : $"net.round{n / _shapes}.{_nets[n].Dk}x{_nets[n].Dv}.";

    private IEnumerable<(string Name, HostTensor Tensor)> NetTensors() =>
        _nets.SelectMany((net, n) => net.Parameters.Select(p => (NetPrefix(n) + p.Name, new HostTensor(p.Value.Shape.ToArray(), _be.ToFloatArray(p.Value))))
            .Concat(net.NormaliserState().Select(t => (NetPrefix(n) + t.Name, t.Tensor))));

    private Dictionary<string, string> NetMetadata(int steps) => new()
    {
        ["editor"] = Name,
        ["sites"] = new JsonArray(_sites.Select(s => (JsonNode)s).ToArray()).ToJsonString(),
        ["rank"] = _rank.ToString(CultureInfo.InvariantCulture),
        ["blocks"] = _blocks.ToString(CultureInfo.InvariantCulture),
        ["tokens"] = _tokens == CachedTokens.All ? "all" : "answer",
        ["round_networks"] = _perRound ? $"per_round:{_iters}" : "shared",
        ["meta_steps"] = steps.ToString(CultureInfo.InvariantCulture),
    };

    private void SaveHyperNetwork(string path, int steps, IEnumerable<(string, HostTensor)>? extra = null, Dictionary<string, string>? meta = null)
    {
        var m = NetMetadata(steps);
        foreach (var (k, v) in meta ?? new()) m[k] = v;
        SafeTensorsWriter.Write(path, NetTensors().Concat(extra ?? []), m);
    }

    /// <summary>Reads a hyper-network file made for these sites, rank and blocks; everything is checked before anything changes.
    /// Returns the file's metadata.</summary>
    private IReadOnlyDictionary<string, string> LoadHyperNetwork(string path, Action<SafeTensorsFile>? more = null)
    {
        using var file = SafeTensorsFile.Open(path);
        Exception Invalid(string problem) => new InvalidDataException($"{path}: {problem}");
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v : throw Invalid($"metadata \"{key}\" is missing (is it a {Name} hyper-network?).");
        if (Meta("editor") != Name) throw Invalid($"it is a hyper-network of {Meta("editor")}, not of {Name}.");
        var sites = JsonNode.Parse(Meta("sites")) is JsonArray a ? a.Select(x => x?.GetValue<string>() ?? "").ToArray() : [];
        if (!sites.SequenceEqual(_sites)) throw Invalid($"it was trained for the sites [{string.Join(", ", sites)}], the hyper-parameters ask for [{string.Join(", ", _sites)}].");
        if (Meta("rank") != _rank.ToString(CultureInfo.InvariantCulture) || Meta("blocks") != _blocks.ToString(CultureInfo.InvariantCulture))
            throw Invalid($"it has rank {Meta("rank")} and {Meta("blocks")} blocks, the hyper-parameters ask for rank {_rank} and {_blocks} blocks.");
        // Files written before per-round networks existed hold one shared set.
        string rounds = file.Metadata.TryGetValue("round_networks", out var rn) ? rn : "shared", ours = NetMetadata(0)["round_networks"];
        if (rounds != ours)
            throw Invalid($"it holds {Kind(rounds)}, the hyper-parameters ask for {Kind(ours)} (round_networks, iters).");
        static string Kind(string v) => v.StartsWith("per_round:", StringComparison.Ordinal) ? $"one network per round for {v[10..]} rounds" : "one network shared by all rounds";
        var values = new List<(int Net, int Param, float[] Data)>();
        var norms = new List<(float N, float[] Mean, float[] M2)>();
        for (int n = 0; n < _nets.Count; n++)
        {
            var net = _nets[n];
            for (int p = 0; p < net.Parameters.Count; p++)
            {
                var (name, t) = net.Parameters[p];
                var data = ReadTensor(file, NetPrefix(n) + name, t.Shape, Invalid);
                if (name.StartsWith("lr.", StringComparison.Ordinal) && !(data[0] > 0))
                    throw Invalid($"{NetPrefix(n)}{name} is {data[0]}: a step size > 0 was expected.");
                values.Add((n, p, data));
            }
            norms.Add((ReadTensor(file, NetPrefix(n) + "normaliser.n", [1], Invalid)[0],
                ReadTensor(file, NetPrefix(n) + "normaliser.mean", [net.D], Invalid), ReadTensor(file, NetPrefix(n) + "normaliser.m2", [net.D], Invalid)));
        }
        more?.Invoke(file);
        for (int n = 0; n < _nets.Count; n++) _nets[n].LoadNormaliser(norms[n].N, norms[n].Mean, norms[n].M2, Invalid);
        foreach (var (n, p, data) in values) _nets[n].Overwrite(p, data);
        return file.Metadata;
    }

    private static float[] ReadTensor(SafeTensorsFile file, string name, int[] shape, Func<string, Exception> invalid)
    {
        if (!file.Contains(name)) throw invalid($"tensor \"{name}\" is missing.");
        var t = file.Read(name);
        if (!t.Shape.SequenceEqual(shape)) throw invalid($"tensor \"{name}\" is [{string.Join(", ", t.Shape)}], [{string.Join(", ", shape)}] was expected.");
        for (int i = 0; i < t.Data.Length; i++)
            if (!float.IsFinite(t.Data[i])) throw invalid($"tensor \"{name}\" element {i} is {t.Data[i]}.");
        return t.Data;
    }

    // ---------------------------------------------------------------- meta-training

    public IReadOnlyList<MetaTrainingStep> MetaTrain(IReadOnlyList<EditRequest> requests, MetaTrainingOptions options)
    {
        var steps = new ShiftMetaTrainer(this).Run(requests, options);
        KeepNormalisersForReset();
        _trained = true;   // what it learned is in this editor now: it edits without reloading
        return steps;
    }

    public virtual void Dispose()
    {
        foreach (var n in _nets) n.Dispose();
        foreach (var t in _w0.Concat(_delta)) t?.Dispose();
    }

    /// <summary>
    /// One meta-training run over a training split (MALMEN's <c>train</c> with <c>update_hypernet</c>): batches of
    /// n_edits requests; per batch the edit cache, the shifts without a graph, the meta-loss at W + ΔW (cross-entropy of
    /// target_new after a rephrase, plus loc_coef·KL(p_W ‖ p_{W+ΔW}) at a locality prompt's answer), the stage-2 backward
    /// into the hyper-network, a global gradient-norm clip and one Adam step.
    /// </summary>
    private sealed class ShiftMetaTrainer(ShiftEditor e)
    {
        private readonly IBackend _be = e._be;

        public IReadOnlyList<MetaTrainingStep> Run(IReadOnlyList<EditRequest> requests, MetaTrainingOptions o)
        {
            bool kl = e._regulariser == ShiftRegulariser.LocalityKl;
            foreach (var r in requests)
                if (r.RephrasePrompts.Count == 0 || (kl && r.Locality.Count == 0))
                    throw new ArgumentException($"{r.Source} record {r.Index}: meta-training needs a rephrase prompt" + (kl ? " and a locality prompt" : "") + " in every request.");
            int batches = requests.Count / e._nEdits;
            if (batches == 0) throw new ArgumentException($"{e.Name}: {requests.Count} training requests make no batch of n_edits = {e._nEdits}.");
            // Reverted rounds: a batch takes iters meta-steps, each a single-round update at the frozen weights (EMSEdit's
            // batch training: its edit is reverted before the next round's cache). Chained rounds: one meta-step per batch.
            int stepsPerBatch = e._chainedRounds ? 1 : e._iters;
            int perEpoch = batches * stepsPerBatch;
            int total = perEpoch * o.Epochs;
            if (o.MaxSteps is int cap) total = Math.Min(total, cap);
            Directory.CreateDirectory(o.OutDirectory);
            string checkpoint = Path.Combine(o.OutDirectory, "checkpoint.safetensors");
            string logPath = Path.Combine(o.OutDirectory, "log.jsonl");
            var parameters = e._nets.SelectMany(n => n.Parameters.Select(p => p.Value)).ToList();
            using var adam = new AdamMoments(_be, parameters);
            var steps = new List<MetaTrainingStep>();
            int done = 0;
            void ClearSequence()
            {
                for (int i = 0; i < e._sites.Length; i++) { _be.Fill(e._delta[i], 0); e.SetWeight(i, null); }
            }
            if (File.Exists(checkpoint))
            {
                if (!o.Resume) throw new IOException($"{o.OutDirectory} holds a meta-training checkpoint: pass --resume to continue it, or choose another --out.");
                var meta = e.LoadHyperNetwork(checkpoint, file =>
                {
                    for (int i = 0; i < parameters.Count; i++)
                    {
                        int[] shape = parameters[i].Shape;
                        adam.Restore(i, ReadTensor(file, $"adam.m.{i}", shape, s => new InvalidDataException($"{checkpoint}: {s}")),
                            ReadTensor(file, $"adam.v.{i}", shape, s => new InvalidDataException($"{checkpoint}: {s}")));
                    }
                    // Mid-sequence: the edits the sequence has made so far.
                    for (int i = 0; i < e._sites.Length && e._numSeq > 1; i++)
                    {
                        _be.Overwrite(e._delta[i], ReadTensor(file, $"sequence.shift.{i}", e._delta[i].Shape.ToArray(), s => new InvalidDataException($"{checkpoint}: {s}")));
                        e.SetWeight(i, null);
                    }
                });
                done = int.Parse(meta["meta_steps"], CultureInfo.InvariantCulture);
                if (meta.TryGetValue("requests", out var n) && n != requests.Count.ToString(CultureInfo.InvariantCulture))
                    throw new InvalidDataException($"{checkpoint}: it was trained on {n} requests, this run has {requests.Count}: resume with the same data.");
                if (File.Exists(logPath))
                    steps.AddRange(File.ReadAllLines(logPath).Select(ParseStep).Where(s => s.Step <= done));
                o.Log?.Invoke($"resumed at step {done} of {total} from {checkpoint}");
            }
            var config = new JsonObject
            {
                ["editor"] = e.Name,
                ["hparams"] = e._hp.ToJson(),
                ["requests"] = requests.Count,
                ["epochs"] = o.Epochs,
                ["steps"] = total,
                ["provenance"] = o.Provenance?.DeepClone(),
            };
            EditRuntime.IO.AtomicFile.WriteAllText(Path.Combine(o.OutDirectory, "train_config.json"), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");

            try
            {
            for (int step = done + 1; step <= total; step++)
            {
                int epoch = (step - 1) / perEpoch, within = (step - 1) % perEpoch / stepsPerBatch;
                var order = Order(requests, epoch);
                var batch = order.Skip(within * e._nEdits).Take(e._nEdits).Select(i => requests[i]).ToList();
                if (e._numSeq > 1 && (step - 1) % e._numSeq == 0) ClearSequence();   // a new sequence starts from W₀
                var sw = Stopwatch.StartNew();
                var (gen, reg, norm, stages) = Step(batch, adam, step, keep: e._numSeq > 1);
                double coef = kl ? e._locCoef : e._regCoef;
                var record = new MetaTrainingStep(step, epoch + 1, gen + coef * reg, gen, reg, norm, sw.Elapsed.TotalSeconds, RegulariserName, stages);
                steps.Add(record);
                o.Log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{total} (epoch {epoch + 1}): meta-loss {record.Loss:F4} (rephrase CE {gen:F4}, {RegulariserName} {reg:G5}), grad norm {norm:G4}, {record.Seconds:F2} s ") +
                    "(" + string.Join(", ", stages.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F2}"))) + ")");
                bool last = step == total;
                if (step % o.CheckpointEvery == 0 || last)
                {
                    var extra = parameters.SelectMany((p, i) => new[]
                    {
                        ($"adam.m.{i}", new HostTensor(p.Shape.ToArray(), _be.ToFloatArray(adam.First[i]))),
                        ($"adam.v.{i}", new HostTensor(p.Shape.ToArray(), _be.ToFloatArray(adam.Second[i]))),
                    }).Concat(e._numSeq > 1
                        ? e._delta.Select((d, i) => ($"sequence.shift.{i}", new HostTensor(d.Shape.ToArray(), _be.ToFloatArray(d))))
                        : []).ToList();
                    // The log first, then the checkpoint that says how far the log is valid, then the net itself.
                    EditRuntime.IO.AtomicFile.WriteAllText(logPath, string.Concat(steps.Select(s => FormatStep(s) + "\n")));
                    e.SaveHyperNetwork(checkpoint, step, extra, new() { ["requests"] = requests.Count.ToString(CultureInfo.InvariantCulture) });
                    e.SaveHyperNetwork(Path.Combine(o.OutDirectory, "hypernet.safetensors"), step);
                }
            }
            }
            finally
            {
                if (e._numSeq > 1) ClearSequence();   // the editor leaves meta-training at W₀
            }
            return steps;
        }

        /// <summary>The request order of an epoch: a seeded shuffle, then batches formed so that no fact (subject and true
        /// answer) is edited twice in one batch (two target_new values for one fact would contradict each other).</summary>
        private List<int> Order(IReadOnlyList<EditRequest> requests, int epoch)
        {
            var rng = new SeededRandom(e._seed * 1_000_003 + epoch);
            var idx = Enumerable.Range(0, requests.Count).ToArray();
            rng.Shuffle(idx.AsSpan());
            var pending = new LinkedList<int>(idx);
            var order = new List<int>(idx.Length);
            while (pending.Count > 0)
            {
                var seen = new HashSet<(string, string?)>();
                int taken = 0;
                for (var node = pending.First; node is not null && taken < e._nEdits;)
                {
                    var next = node.Next;
                    var r = requests[node.Value];
                    if (seen.Add((r.Subject, r.TargetTrue))) { order.Add(node.Value); pending.Remove(node); taken++; }
                    node = next;
                }
                if (taken == 0) break;
            }
            return order;
        }

        private string RegulariserName => e._regulariser == ShiftRegulariser.LocalityKl ? MetaTrainingStep.LocalityKl : MetaTrainingStep.NormDrift;

        /// <param name="keep">Keep this step's shift on the model (a sequence goes on from it) instead of reverting it.</param>
        private (double Gen, double Reg, double Norm, Dictionary<string, double> Stages) Step(IReadOnlyList<EditRequest> batch, AdamMoments adam, int step, bool keep)
        {
            var model = e._ctx.Model;
            bool kl = e._regulariser == ShiftRegulariser.LocalityKl;
            var editPairs = batch.Select(r => e._ctx.Encode(r.Prompt, r.TargetNew)).ToList();
            var genPairs = batch.Select(r => e._ctx.Encode(r.RephrasePrompts[0], r.TargetNew)).ToList();
            var weights = e._sites.Select(s => s + ".weight").ToArray();
            var owned = new List<IDisposable>();
            // Seconds per stage (the device waited for at each boundary), as EMSEdit's paper splits a KL meta-step.
            var stages = new Dictionary<string, double>();
            var lap = Stopwatch.StartNew();
            void Lap(string stage) { _be.Synchronize(); stages[stage] = stages.GetValueOrDefault(stage) + lap.Elapsed.TotalSeconds; lap.Restart(); }
            try
            {
                // The locality prompts' reference logits at the frozen weights (KL only).
                var locBatches = kl ? Chunks(batch.Select(r => e._ctx.Encode(r.Locality[0].Prompt, r.Locality[0].Answer)).ToList()).Select(TeacherForcing.FromTokens).ToList() : [];
                var refs = new List<Tensor>();
                foreach (var tf in locBatches)
                {
                    using var tape = new Tape(_be);
                    var logits = model.TargetLogits(tape, model.Bind(tape, _ => false), tf.Batch, tf.Targets);
                    var r = _be.Scale(logits.Value, 1f);
                    owned.Add(r); refs.Add(r);
                }
                if (kl) Lap("locality loss");

                // Stage 1: the cache, the shifts (no hyper-network graph), the meta-loss's gradient at W + ΔW. Chained rounds:
                // round r caches at the weights rounds 0..r−1 left; the loss is taken where the last round left them.
                int rounds = e._chainedRounds ? e._iters : 1;
                var caches = new List<IReadOnlyList<SiteKeysGradients>>();
                var shifts = new List<Shift[]>();
                Tensor[] SiteZeros() => e._sites.Select(s => { var t = _be.Empty(DType.F32, model.Parameters[s + ".weight"].Shape); _be.Fill(t, 0); owned.Add(t); return t; }).ToArray();
                var total = SiteZeros();   // Σ of the rounds' shifts
                var gw = SiteZeros();      // ∂L/∂W at W + total
                double gen = 0, reg = 0;
                try
                {
                    for (int round = 0; round < rounds; round++)
                    {
                        if (round > 0) for (int i = 0; i < total.Length; i++) e.SetWeight(i, total[i]);
                        var c = e.Cache(editPairs, round);
                        owned.AddRange(c);
                        caches.Add(c);
                        Lap("cache");
                        var sh = new Shift[e._sites.Length];
                        for (int i = 0; i < sh.Length; i++)
                        {
                            sh[i] = e.Predict(i, c[i], keepFactor: e._aggregation == ShiftAggregation.LeastSquares, round);
                            owned.Add(sh[i]);
                            _be.Axpy(1f, sh[i].Delta, total[i]);
                        }
                        shifts.Add(sh);
                        Lap("shift");
                    }
                    for (int i = 0; i < total.Length; i++) e.SetWeight(i, total[i]);
                    foreach (var tf in Chunks(genPairs).Select(TeacherForcing.FromTokens))
                    {
                        using var tape = new Tape(_be);
                        var p = model.Bind(tape, name => weights.Contains(name));
                        var loss = model.Loss(tape, p, tf.Batch, tf.Targets);
                        tape.Backward(loss);
                        gen += _be.ToFloatArray(loss.Value)[0];
                        Gather(p, weights, gw);
                    }
                    Lap("edit loss");
                    if (kl && e._locCoef > 0)
                    {
                        for (int b = 0; b < locBatches.Count; b++)
                        {
                            using var tape = new Tape(_be);
                            var p = model.Bind(tape, name => weights.Contains(name));
                            var logits = model.TargetLogits(tape, p, locBatches[b].Batch, locBatches[b].Targets);
                            var klv = tape.KlDivergence(tape.Constant(refs[b]), logits);
                            tape.Backward(tape.Scale(klv, e._locCoef));
                            reg += _be.ToFloatArray(klv.Value)[0];
                            Gather(p, weights, gw);
                        }
                        Lap("locality loss");
                    }
                    else if (!kl)
                    {
                        // reg_coef·Σ‖W − W₀‖², W − W₀ = the shifts applied before + this step's; its gradient 2·reg_coef·(W − W₀).
                        for (int i = 0; i < total.Length; i++)
                        {
                            using var dev = _be.Add(e._delta[i], total[i]);
                            using var sq = _be.Mul(dev, dev);
                            using var sum = _be.Sum(sq);
                            reg += _be.ToFloatArray(sum)[0];
                            if (e._regCoef > 0) _be.Axpy(2f * e._regCoef, dev, gw[i]);
                        }
                        Lap("norm loss");
                    }
                }
                finally
                {
                    if (keep) for (int i = 0; i < total.Length; i++) _be.Axpy(1f, total[i], e._delta[i]);
                    for (int i = 0; i < total.Length; i++) e.SetWeight(i, null);   // W₀ + what the sequence kept
                }

                // Stage 2: the hyper-network's gradient, chunk by chunk.
                var grads = e._nets.Select(n => n.Parameters.Select(p => { var t = _be.Empty(DType.F32, p.Value.Shape); _be.Fill(t, 0); owned.Add(t); return t; }).ToArray()).ToArray();
                // Every round's shift gets the same ∂L/∂W (first order across rounds: no gradient through the dependence of a
                // round's cache on the rounds before it, as the authors' sequential training).
                for (int r = 0; r < caches.Count; r++)
                    for (int i = 0; i < e._sites.Length; i++) Backward(i, r, caches[r][i], shifts[r][i], gw[i], grads[e.NetIndex(r, i)]);

                // Global norm clip (coefficient max / (norm + 1e-6), as torch's clip_grad_norm_), then Adam.
                double norm2 = 0;
                foreach (var g in grads.SelectMany(x => x))
                {
                    using var sq = _be.Mul(g, g);
                    using var s = _be.Sum(sq);
                    norm2 += _be.ToFloatArray(s)[0];
                }
                double norm = Math.Sqrt(norm2);
                if (!double.IsFinite(norm)) throw new NonFiniteException($"{e.Name} meta-step {step}: the hyper-network's gradient is not finite.");
                var flat = grads.SelectMany(x => x).ToList();
                double coef = e._maxGradNorm / (norm + 1e-6);
                if (coef < 1)
                    for (int j = 0; j < flat.Count; j++) { var c = _be.Scale(flat[j], (float)coef); owned.Add(c); flat[j] = c; }
                adam.Step(flat.Cast<Tensor?>().ToList(), new AdamConfig(e._metaLr), step);
                Lap("hyper-network update");
                return (gen, reg, norm, stages);
            }
            finally
            {
                foreach (var d in owned) d.Dispose();
            }
        }

        private IEnumerable<List<(int[] Prompt, int[] Target)>> Chunks(List<(int[] Prompt, int[] Target)> pairs)
        {
            for (int s = 0; s < pairs.Count; s += e._subBatch) yield return pairs.Skip(s).Take(e._subBatch).ToList();
        }

        /// <summary>acc[i] += ∂/∂weights[i] from a tape's bound parameters (then cleared).</summary>
        private void Gather(Dictionary<string, Var> p, string[] weights, Tensor[] acc)
        {
            for (int i = 0; i < weights.Length; i++)
            {
                var v = p[weights[i]];
                if (v.Grad is { } g) _be.Axpy(1f, g, acc[i]);
                v.ClearGrad();
            }
        }

        /// <summary>
        /// Site i's share of the hyper-network's gradient given G_W = ∂L/∂W at W + ΔW. Least squares: Z = S⁻¹·G_W (the
        /// forward's factor of S), ∂L/∂D = K·Z, ∂L/∂lamda = −e^lamda·⟨Z, ΔW⟩, then per chunk the VJP of the value differences.
        /// Sum: per chunk the VJP of ΔW_c = −η·K̃_cᵀ·G̃_c with seed G_W.
        /// </summary>
        private void Backward(int i, int round, SiteKeysGradients cache, Shift shift, Tensor gw, Tensor[] acc)
        {
            var net = e._nets[e.NetIndex(round, i)];
            int m = e._of[i].Module, n = cache.Rows;
            var (eta, lambda) = net.Coefficients(m);
            Tensor? u = null;
            try
            {
                if (e._aggregation == ShiftAggregation.LeastSquares)
                {
                    var spd = _be.Ops<ISpdSolveOps>();
                    using var z = spd.CholeskySolve(shift.Factor!, gw);
                    u = _be.Matmul(cache.Keys, z);
                    using var zd = _be.Mul(z, shift.Delta);
                    using var sum = _be.Sum(zd);
                    float lamdaGrad = -lambda * _be.ToFloatArray(sum)[0];
                    using var lg = _be.FromArray([lamdaGrad], 1);
                    _be.Axpy(1f, lg, acc[net.LamdaIndex(m)]);
                }
                using var seed = u is null ? _be.Scale(gw, -eta) : null;
                float etaGrad = 0;
                for (int s = 0; s < n; s += e._chunk)
                {
                    int c = Math.Min(e._chunk, n - s);
                    using var tape = new Tape(_be);
                    var bound = net.Bind(tape, grad: true);
                    using var k = e.Rows(cache.Keys, s, c);
                    using var g = e.Rows(cache.Grads, s, c);
                    var kv = tape.Constant(k);
                    var (kt, gt) = net.Forward(tape, bound, kv, tape.Constant(g), m);
                    if (u is not null)
                    {
                        using var uc = e.Rows(u, s, c);
                        tape.Backward(tape.ValueDiff(kv, kt, gt, net.Eta(bound, m)), uc);
                    }
                    else
                    {
                        var p = tape.Matmul(kt, gt, transA: true);
                        tape.Backward(p, seed);
                        using var pg = _be.Mul(p.Value, gw);
                        using var ps = _be.Sum(pg);
                        etaGrad -= _be.ToFloatArray(ps)[0];   // ∂⟨G_W, −η·P⟩/∂η
                    }
                    for (int j = 0; j < bound.Length; j++)
                    {
                        if (bound[j].Grad is { } gr) _be.Axpy(1f, gr, acc[j]);
                        bound[j].ClearGrad();
                    }
                }
                if (u is null)
                {
                    using var eg = _be.FromArray([etaGrad], 1);
                    _be.Axpy(1f, eg, acc[net.EtaIndex(m)]);
                }
            }
            finally { u?.Dispose(); }
        }

        private static string FormatStep(MetaTrainingStep s) => new JsonObject
        {
            ["step"] = s.Step, ["epoch"] = s.Epoch, ["loss"] = s.Loss, ["gen_ce"] = s.GeneralisationLoss,
            [s.Regulariser == MetaTrainingStep.LocalityKl ? "loc_kl" : "reg_norm"] = s.RegulariserLoss,
            ["grad_norm"] = s.GradNorm, ["seconds"] = Math.Round(s.Seconds, 4),
            ["stages"] = s.Stages is null ? null : new JsonObject(s.Stages.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 4)))),
        }.ToJsonString();

        private static MetaTrainingStep ParseStep(string line)
        {
            var o = JsonNode.Parse(line)!.AsObject();
            bool kl = o.ContainsKey("loc_kl");
            return new MetaTrainingStep((int)o["step"]!, (int)o["epoch"]!, (double)o["loss"]!, (double)o["gen_ce"]!, (double)o[kl ? "loc_kl" : "reg_norm"]!,
                (double)o["grad_norm"]!, (double)o["seconds"]!, kl ? MetaTrainingStep.LocalityKl : MetaTrainingStep.NormDrift,
                o["stages"] is JsonObject st ? st.ToDictionary(kv => kv.Key, kv => (double)kv.Value!) : null);
        }
    }
}
