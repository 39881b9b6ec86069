using System.Text.Json.Nodes;

namespace EditRuntime.Editing;

/// <summary>How a meta-training run goes: where it writes, how long it runs, how often it checkpoints.</summary>
public sealed record MetaTrainingOptions
{
    /// <summary>The folder of the run: the trained part (what the editor loads to edit), the checkpoint it resumes
    /// from, the loss log and the run's configuration. Every file is written atomically.</summary>
    public required string OutDirectory { get; init; }
    /// <summary>Passes over the training requests (the authors make one).</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Stop after this many meta-steps in all (null: the epochs decide).</summary>
    public int? MaxSteps { get; init; }
    /// <summary>Write the checkpoint every this many steps (and after the last).</summary>
    public int CheckpointEvery { get; init; } = 10;
    /// <summary>Continue from the folder's checkpoint when there is one (else it is an error to reuse a folder with one).</summary>
    public bool Resume { get; init; }
    /// <summary>Progress lines (one per step).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>What the run is recorded as having been given (command line, data file), for its configuration file.</summary>
    public JsonObject? Provenance { get; init; }
}

/// <summary>One meta-step: the meta-loss and its parts, the gradient norm before clipping, and its time.</summary>
/// <param name="RegulariserLoss">The term that keeps the model (unweighted): MALMEN's and MEND's locality KL, EMSEdit's
/// Σ‖W − W₀‖² over the edited sites; <paramref name="Regulariser"/> says which.</param>
/// <param name="Stages">Seconds per stage of the step (e.g. cache, shift, edit loss, locality loss, hyper-network update), when the editor measures them.</param>
public sealed record MetaTrainingStep(int Step, int Epoch, double Loss, double GeneralisationLoss, double RegulariserLoss,
    double GradNorm, double Seconds, string Regulariser = MetaTrainingStep.LocalityKl, IReadOnlyDictionary<string, double>? Stages = null)
{
    /// <summary>The <see cref="Regulariser"/> names the hyper-network editors report.</summary>
    public const string LocalityKl = "locality KL", NormDrift = "norm ||W-W0||^2";
}

/// <summary>
/// An editor with a learned part (the hyper-network of MEND, MALMEN, EMSEdit) that is trained on edit requests before it
/// edits: <c>editrt meta-train</c> finds it through this interface.
/// </summary>
public interface IMetaTrainable
{
    /// <summary>Meta-trains on <paramref name="requests"/> (a training split: never the requests it will be measured on).
    /// Returns every step's record, including those a resumed run had done before.</summary>
    IReadOnlyList<MetaTrainingStep> MetaTrain(IReadOnlyList<EditRequest> requests, MetaTrainingOptions options);
}
