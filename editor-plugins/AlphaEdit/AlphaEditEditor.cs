using System.Text.Json.Nodes;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// AlphaEdit (Fang et al. 2025): MEMIT's targets, keys and layer spread, with the update confined to the null space of
/// the preserved knowledge. P = U₀·U₀ᵀ projects onto the eigenvectors of C = E[k·kᵀ] whose eigenvalues are below
/// nullspace_threshold (the decomposition once per site, float64 on the host); per site the shift solves
/// (P·(KᵀK + C_prev)·P + L2·I)·ΔW = P·Kᵀ·R, with C_prev = Σ KᵀK of the batches edited before (keys taken after each
/// batch's edit). The authors solve (P·(KᵀK + C_prev) + L2·I)·ΔW = P·Kᵀ·R; its solution lies in P's range (L2·ΔW =
/// P·(KᵀR − (KᵀK + C_prev)·ΔW)), so it is the solution of the symmetric positive-definite system above, which the
/// backend's Cholesky solves.
/// </summary>
[EditorPlugin("AlphaEdit", "AlphaEdit")]
public sealed class AlphaEditEditor : LocateEditor
{
    private double _threshold;
    private float _l2;
    private Tensor[]? _projectors;
    private int[]? _kept;
    private readonly Tensor?[] _previous;

    public AlphaEditEditor(EditorContext context, HyperParameters hparams) : base(context, hparams)
    {
        _previous = new Tensor?[Sites.Length];
    }

    public override string Name => "AlphaEdit";
    protected override string Paper => "Fang et al., AlphaEdit: Null-Space Constrained Knowledge Editing for Language Models (ICLR 2025)";
    protected override bool TargetInResidual => true;
    protected override bool GroupedKeyAverage => true;
    protected override int ExtraSquareMatricesPerSite => 2;

    protected override void ReadHyperParameters(HyperParameters hparams)
    {
        _threshold = hparams.Double("nullspace_threshold", 0, 1e30);
        _l2 = hparams.Float("L2", 0, 1e12f, minExclusive: true);
    }

    /// <summary>P per site from the eigen-decomposition of C (host, float64).</summary>
    protected override void OnStatistics(IReadOnlyList<KeyStatistics> stats)
    {
        _kept = new int[stats.Count];
        var made = new List<Tensor>();
        try
        {
            for (int i = 0; i < stats.Count; i++)
            {
                int n = stats[i].Width;
                var (values, vectors) = SymmetricEigen.Decompose(stats[i].Moment, n);
                var keep = Enumerable.Range(0, n).Where(j => values[j] < _threshold).ToArray();
                _kept[i] = keep.Length;
                // P = U₀ᵀ·U₀ with the kept eigenvectors as the rows of U₀ (on the backend; a zero matrix when none is kept).
                var u0 = new float[(long)Math.Max(keep.Length, 1) * n];
                for (int r = 0; r < keep.Length; r++)
                    for (int c = 0; c < n; c++) u0[(long)r * n + c] = (float)vectors[(long)keep[r] * n + c];
                using var u = Be.FromArray(u0, Math.Max(keep.Length, 1), n);
                made.Add(Be.Matmul(u, u, transA: true));
            }
        }
        catch { foreach (var t in made) t.Dispose(); throw; }
        _projectors = made.ToArray();
        if (_kept.Any(k => k == 0))
            Console.Error.WriteLine($"AlphaEdit: no eigenvalue of C is below nullspace_threshold {_threshold} at {string.Join(", ", Sites.Where((s, i) => _kept[i] == 0))}: the projector is 0 and those sites will not move.");
    }

    protected override JsonObject EditBatch(IReadOnlyList<EditRequest> batch)
    {
        var spd = Be.Ops<ISpdSolveOps>();   // LocateEditor.Edit has loaded the statistics (and built P) before this
        var info = Spread(batch, (i, k, r) =>
        {
            var p = _projectors![i];
            Tensor factor;
            using (var gram = Be.Matmul(k, k, transA: true))
            {
                if (_previous[i] is Tensor prev) Be.Axpy(1f, prev, gram);
                using var left = Be.Matmul(p, gram);
                using var a = Be.Matmul(left, p);
                spd.AddDiagonal(a, _l2);
                factor = spd.CholeskyFactor(a);
            }
            using (factor)
            {
                using var kr = Be.Matmul(k, r, transA: true);
                using var rhs = Be.Matmul(p, kr);
                return spd.CholeskySolve(factor, rhs);
            }
        });
        // The batch's keys join the preserved ones, taken on the model as this batch left it.
        for (int i = 0; i < Sites.Length; i++)
        {
            using var k = Keys(i, batch);
            var gram = Be.Matmul(k, k, transA: true);
            if (_previous[i] is Tensor prev)
            {
                Be.Axpy(1f, gram, prev);
                gram.Dispose();
            }
            else _previous[i] = gram;
        }
        info["null_space_dims"] = new JsonArray(_kept!.Select(k => (JsonNode)k).ToArray());
        return info;
    }

    protected override void MoreDiagnostics(JsonObject o)
    {
        o["nullspace_threshold"] = _threshold;
        o["null_space_dims"] = _kept is null ? null : new JsonArray(_kept.Select(k => (JsonNode)k).ToArray());
    }

    protected override IEnumerable<(string Name, HostTensor Tensor)> MoreState()
    {
        for (int i = 0; i < Sites.Length; i++)
        {
            int n = Ctx.Model.Parameters[Sites[i] + ".weight"].Shape[0];
            var data = _previous[i] is Tensor t ? Be.ToFloatArray(t) : new float[(long)n * n];
            yield return (Sites[i] + ".preserved_gram", new HostTensor([n, n], data));
        }
    }

    protected override void LoadMoreState(EditState state)
    {
        var read = new HostTensor[Sites.Length];
        for (int i = 0; i < Sites.Length; i++)
        {
            int n = Ctx.Model.Parameters[Sites[i] + ".weight"].Shape[0];
            read[i] = state.Tensor(Sites[i] + ".preserved_gram", n, n);
            foreach (var v in read[i].Data)
                if (!float.IsFinite(v)) throw state.Invalid($"tensor \"{Sites[i]}.preserved_gram\" holds {v}: finite values were expected.");
        }
        for (int i = 0; i < Sites.Length; i++)
        {
            _previous[i]?.Dispose();
            _previous[i] = read[i].Data.All(v => v == 0) ? null : Be.FromArray(read[i].Data, read[i].Shape[0], read[i].Shape[1]);
        }
    }

    public override void Reset()
    {
        base.Reset();
        for (int i = 0; i < _previous.Length; i++) { _previous[i]?.Dispose(); _previous[i] = null; }
    }

    public override void Dispose()
    {
        foreach (var t in _previous) t?.Dispose();
        foreach (var t in _projectors ?? []) t.Dispose();
        base.Dispose();
    }
}
