using EditRuntime.Editing;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Multi-step editing (EMSEdit's MSBP, the "iters" hyper-parameter of the hyper-network editors): each round caches keys
/// and value-gradients at the weights the rounds before it left and applies its shift at once, so one edit with iters = 2
/// is exactly two one-round edits of the same requests, and differs from one round.
/// </summary>
[TestFixture]
[NonParallelizable]
public class MultiStepEditTests
{
    private static float[][] Predict(Models.Gpt2Model model, IEnumerable<EditRequest> reqs, EditorContext ctx) =>
        reqs.Select(r => model.NextTokenLogits(ctx.Encode(r.Prompt, r.TargetNew).Prompt)).ToArray();

    [TestCase("torch")]
    [TestCase("vulkan")]
    public void Two_rounds_in_one_edit_equal_two_one_round_edits_of_the_same_requests(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var reqs = EditorFixtures.Requests(6);
        float[][] twoRounds, oneRound, oneThenOne;
        using (var editor = EditorRegistry.Create("MALMEN", s.Ctx, "editrt-tiny", null, new Dictionary<string, string> { ["iters"] = "2" }))
        {
            editor.Edit(reqs);
            twoRounds = Predict(s.Model, reqs, s.Ctx);
            var rounds = ((IEditorDiagnostics)editor).Diagnostics()["batches"]![0]!["rounds"]!.GetValue<int>();
            Assert.That(rounds, Is.EqualTo(2), "the report says how many rounds ran");
            editor.Reset();
        }
        using (var editor = EditorRegistry.Create("MALMEN", s.Ctx, "editrt-tiny"))
        {
            editor.Edit(reqs);
            oneRound = Predict(s.Model, reqs, s.Ctx);
            editor.Edit(reqs);
            oneThenOne = Predict(s.Model, reqs, s.Ctx);
            editor.Reset();
        }
        Assert.That(twoRounds, Is.EqualTo(oneThenOne), "round 2 re-caches at the weights round 1 left, with the normaliser it moved");
        double diff = twoRounds.Zip(oneRound).Sum(p => p.First.Zip(p.Second).Sum(q => Math.Abs(q.First - q.Second)));
        Assert.That(diff, Is.GreaterThan(1e-3), "the second round moves the model further");
    }
}
