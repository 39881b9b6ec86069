namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MALMEN (Tan, Zhang, Fu, ICLR 2024): a meta-learned hyper-network turns each edit token's key and value-gradient into
/// a value difference d = −η·⟨k, k̃⟩·g̃, and the edits of a whole batch become one weight shift per edited site by least
/// squares, ΔW = (KᵀK + e^lamda·I)⁻¹·KᵀD, so thousands of edits combine instead of cancelling (see <see cref="ShiftEditor"/>).
/// </summary>
[EditorPlugin("MALMEN", "Malmen")]
public sealed class MalmenEditor(EditorContext context, HyperParameters hparams) : ShiftEditor(context, hparams, ShiftAggregation.LeastSquares)
{
    public override string Name => "MALMEN";
    protected override string Paper => "Tan, Zhang, Fu, Massive Editing for Large Language Models via Meta Learning (ICLR 2024)";
}
