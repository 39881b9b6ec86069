namespace EditRuntime.Editing.Plugins;

/// <summary>
/// EMSEdit (xpq-tech/emsedit, arXiv 2508.04012): MALMEN's hyper-network and least-squares shift, applied in several
/// rounds per batch (multi-step backpropagation, MSBP: each round re-caches keys and value-gradients at the weights the
/// rounds before it left and applies its own shift at once), meta-trained with a norm regulariser
/// reg_coef·Σ‖W − W₀‖² in place of MALMEN's locality KL, so no locality prompt is run while training
/// (see <see cref="ShiftEditor"/>; hyper-parameters "iters", "regulariser", "reg_coef").
/// </summary>
[EditorPlugin("EMSEdit", "EmsEdit")]
public sealed class EmsEditEditor(EditorContext context, HyperParameters hparams) : ShiftEditor(context, hparams, ShiftAggregation.LeastSquares)
{
    public override string Name => "EMSEdit";
    protected override string Paper => "Efficient multi-step editing (EMSEdit): MSBP and norm regularisation over MALMEN's hyper-network (arXiv 2508.04012)";
}
