using System.Text.Json.Nodes;
using EditRuntime.Backends;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MEMIT (Meng et al. 2023): a batch's target vectors z at the last edited block's output, then per edited MLP in
/// ascending order ΔW = (λ·C + KᵀK)⁻¹·Kᵀ·R with K the batch's keys at that MLP and R the remaining error at the top
/// spread over the sites left (<see cref="LocateEditor.Spread"/>). C = E[k·kᵀ] over a corpus (the key statistics),
/// λ = mom2_update_weight. The d_k × d_k system is solved by Cholesky on the model's backend.
/// </summary>
[EditorPlugin("MEMIT", "Memit")]
public sealed class MemitEditor : LocateEditor
{
    private float _lambda;

    public MemitEditor(EditorContext context, HyperParameters hparams) : base(context, hparams) { }

    public override string Name => "MEMIT";
    protected override string Paper => "Meng et al., Mass-Editing Memory in a Transformer (ICLR 2023)";
    protected override bool TargetInResidual => true;
    protected override bool GroupedKeyAverage => true;

    protected override void ReadHyperParameters(HyperParameters hparams) =>
        _lambda = hparams.Float("mom2_update_weight", 0, 1e12f);

    protected override JsonObject EditBatch(IReadOnlyList<EditRequest> batch) => Spread(batch, (i, k, r) =>
    {
        var spd = Be.Ops<ISpdSolveOps>();
        Tensor factor;
        using (var a = Be.Matmul(k, k, transA: true))
        {
            Be.Axpy(_lambda, Covariances[i], a);
            factor = spd.CholeskyFactor(a);
        }
        using (factor)
        {
            using var rhs = Be.Matmul(k, r, transA: true);
            return spd.CholeskySolve(factor, rhs);
        }
    });
}
