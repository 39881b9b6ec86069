using System.Text.Json.Nodes;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// ROME (Meng et al. 2022): one MLP, one request at a time, each on the model the previous ones left. The target
/// v* = o + δ is the MLP's output at the subject's last token (δ by <see cref="LocateEditor.TargetValues"/>); the key
/// k̄ is the MLP input there averaged uniformly over the context prefixes, k* the bare prompt's; the rank-one update
/// ΔW = u·(v* − o)ᵀ / (k*·u) with u = C⁻¹·k̄ makes W·k* = v* while moving the keys of C as little as it can.
/// C's Cholesky factor is computed once (on the backend) and kept.
/// </summary>
[EditorPlugin("ROME", "Memit/rome")]
public sealed class RomeEditor : LocateEditor
{
    private Tensor? _factor;

    public RomeEditor(EditorContext context, HyperParameters hparams) : base(context, hparams, siteCount: 1) { }

    public override string Name => "ROME";
    protected override string Paper => "Meng et al., Locating and Editing Factual Associations in GPT (NeurIPS 2022)";
    protected override bool TargetInResidual => false;
    protected override bool GroupedKeyAverage => false;
    protected override int ExtraSquareMatricesPerSite => 1;

    protected override void ReadHyperParameters(HyperParameters hparams) { }

    protected override JsonObject EditBatch(IReadOnlyList<EditRequest> batch)
    {
        var spd = Be.Ops<ISpdSolveOps>();
        _factor ??= spd.CholeskyFactor(Covariances[0]);
        int d = Ctx.Model.Shape.Width;
        double loss0 = 0, loss1 = 0, steps = 0, searchSeconds = 0, hostSeconds = 0, minDenominator = double.PositiveInfinity;
        foreach (var request in batch)
        {
            var one = new[] { request };
            var (target, h0, stats) = TargetValues(one);
            var (kBar, kStar) = KeysAndBare(0, one);          // (1, d_k) each: averaged over the prefixes, and the bare prompt's
            using var _kBar = kBar;
            using var _kStar = kStar;
            using var kBarT = Be.Reshape(kBar, kBar.Shape[1], 1);
            using var u = spd.CholeskySolve(_factor, kBarT);  // (d_k, 1)
            using var dot = Be.Matmul(kStar, u);              // (1, 1)
            double den = Be.ToFloatArray(dot)[0];
            if (!double.IsFinite(den) || Math.Abs(den) < 1e-12)
                throw new NonFiniteException($"ROME: request {request.Source}#{request.Index}: k*·C⁻¹k̄ = {den}; the key statistics of {Sites[0]} are not positive definite in float32.");
            minDenominator = Math.Min(minDenominator, Math.Abs(den));
            var right = new float[d];
            for (int c = 0; c < d; c++) right[c] = (float)((target[c] - h0[c]) / den);
            using var rightT = Be.FromArray(right, 1, d);
            using var shift = Be.Matmul(u, rightT);           // (d_k, d)
            CheckFinite(shift, 0);
            Apply(0, shift);
            loss0 += (double)stats["loss_initial"]!; loss1 += (double)stats["loss_final"]!; steps += (double)stats["mean_steps"]!;
            searchSeconds += (double)stats["target_seconds"]!; hostSeconds += (double)stats["target_host_seconds"]!;
        }
        return new JsonObject
        {
            ["loss_initial"] = Math.Round(loss0 / batch.Count, 4),
            ["loss_final"] = Math.Round(loss1 / batch.Count, 4),
            ["mean_steps"] = Math.Round(steps / batch.Count, 2),
            ["min_key_dot"] = minDenominator,
            ["target_seconds"] = Math.Round(searchSeconds, 3),
            ["target_host_seconds"] = Math.Round(hostSeconds, 3),
        };
    }

    public override void Dispose()
    {
        _factor?.Dispose();
        base.Dispose();
    }
}
