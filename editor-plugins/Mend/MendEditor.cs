namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MEND (Mitchell et al., ICLR 2022) as MALMEN's authors run it beside MALMEN: the same hyper-network, whose pseudo keys
/// and pseudo value-gradients are summed into the shift, ΔW = −η·K̃ᵀG̃, as a gradient step would accumulate them
/// (see <see cref="ShiftEditor"/>). The baseline that holds for a few edits and collapses for many.
/// </summary>
[EditorPlugin("MEND", "Mend")]
public sealed class MendEditor(EditorContext context, HyperParameters hparams) : ShiftEditor(context, hparams, ShiftAggregation.Sum)
{
    public override string Name => "MEND";
    /// <summary>Summed shifts from one learned step: on the built-in model 0.81 of single edits hold (zsre_eval, 20 requests).</summary>
    public override bool PromisesHits => false;
    protected override string Paper => "Mitchell et al., Fast Model Editing at Scale (ICLR 2022); the sum-aggregation variant of Tan et al.'s MALMEN code";
}
