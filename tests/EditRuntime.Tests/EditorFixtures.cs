using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.TextTests;

namespace EditRuntime.Tests;

/// <summary>What the editor tests share: the built-in model and the first eval requests of the synthetic world (seed 1234).</summary>
internal static class EditorFixtures
{
    public static ModelDirectory Builtin() => ModelDirectory.Load(Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny"));

    public static Editing.EditRequest FromWorld(Data.EditRequest r) => new(r.Prompt, r.Subject, r.TargetNew.Name, r.Fact.Object.Name,
        r.RephrasePrompts, r.Neighborhood.Select(n => new LocalityPrompt(n.Prompt, n.Answer)).ToList(), r.CaseId, r.CaseId, "world");

    public static List<Editing.EditRequest> Requests(int n) =>
        SyntheticWorld.Generate(null, 1234).EvalRequests.Take(n).Select(FromWorld).ToList();
}
