using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The FT-L baseline on the built-in model: the registry and the protocols around it (edit, reset, save, load: <see cref="EditorContractTests"/>).</summary>
public sealed class FtLEditorTests : GpuTest
{


    [Test]
    public void Registry_names_editors_and_rejects_unknown_hyper_parameters()
    {
        using var s = EditorFixtures.Open("vulkan");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        Assert.That(EditorRegistry.Names, Does.Contain("FT-L"));
        Assert.That(Assert.Throws<KeyNotFoundException>(() => EditorRegistry.Create("nope", ctx, "editrt-tiny"))!.Message, Does.Contain("FT-L"));
        Assert.That(Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("FT-L", ctx, "editrt-tiny", overrides: new Dictionary<string, string> { ["lr2"] = "1" }))!.Message,
            Does.Contain("lr2").And.Contain("norm_constraint"));
        Assert.That(Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("FT-L", ctx, "editrt-tiny", overrides: new Dictionary<string, string> { ["steps"] = "abc" }))!.Message,
            Is.EqualTo("--set steps=abc: hyper-parameter \"steps\" of FT-L must be an integer in [1, 100000], got the string \"abc\"."));
        using var e = EditorRegistry.Create("FT-L", ctx, "editrt-tiny", overrides: new Dictionary<string, string> { ["steps"] = "3" });
        Assert.That((double)e.Describe().HyperParameters["steps"]!, Is.EqualTo(3));
    }

    [Test]
    public void Protocols_measure_the_edits()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = EditorFixtures.Requests(4);
        using var editor = EditorRegistry.Create("FT-L", ctx, "editrt-tiny");
        var before = EditProtocols.Measure(ctx, reqs, EditProtocols.LocalityScores(ctx, reqs));
        Assert.That(before.Efficacy, Is.LessThan(0.5));
        Assert.That(before.Locality, Is.EqualTo(1.0), "the unedited model agrees with itself");
        var single = EditProtocols.Run(ctx, editor, reqs, EditProtocol.Single, 4, 1);
        TestContext.Out.WriteLine($"single: {single.Scores}");
        Assert.That(single.Scores.Efficacy, Is.EqualTo(1.0));
        Assert.That(single.Scores.Locality, Is.InRange(0.5, 1.0));
        Assert.That(EditProtocols.Measure(ctx, reqs, EditProtocols.LocalityScores(ctx, reqs)).Efficacy, Is.EqualTo(before.Efficacy).Within(1e-9), "single resets after each edit");
        var seq = EditProtocols.Run(ctx, editor, reqs, EditProtocol.SequentialBatch, 4, 2);
        TestContext.Out.WriteLine($"sequential-batch 2x2: {seq.Scores}");
        Assert.That(seq.Scores.Efficacy, Is.GreaterThan(before.Efficacy));
        Assert.That(seq.BatchSize, Is.EqualTo(2));
        Assert.Throws<ArgumentException>(() => EditProtocols.Run(ctx, editor, reqs, EditProtocol.Batch, 5, 1));
    }

    [Test]
    public void GS_on_understood_rephrases_counts_only_the_prompts_the_unedited_model_answers()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = EditorFixtures.Requests(24);
        var understood = EditProtocols.UnderstoodRephrases(ctx, reqs);
        int total = reqs.Sum(r => r.RephrasePrompts.Count);
        Assert.That(understood, Has.Length.EqualTo(total));
        TestContext.Out.WriteLine($"understood {understood.Count(u => u)} of {total} rephrase prompts");
        // The built-in model answers ~90 % of held-out paraphrases of its facts: most, not all.
        Assert.That(understood.Count(u => u), Is.InRange(total / 2, total - 1));
        var loc = EditProtocols.LocalityScores(ctx, reqs);
        // Asking for target_true instead of target_new: on the understood prompts GS is 1 by definition, on all of them below 1.
        var truth = reqs.Select(r => r with { TargetNew = r.TargetTrue! }).ToList();
        var t = EditProtocols.Measure(ctx, truth, loc, understood);
        Assert.That(t.GeneralityUnderstood, Is.EqualTo(1.0));
        Assert.That(t.UnderstoodRephrases, Is.EqualTo(understood.Count(u => u)));
        Assert.That(t.Generality, Is.LessThan(1.0));
        // All flags set: the same as GS; none: nothing to measure; a wrong count is refused.
        var all = EditProtocols.Measure(ctx, reqs, loc, Enumerable.Repeat(true, total).ToArray());
        Assert.That(all.GeneralityUnderstood, Is.EqualTo(all.Generality).Within(1e-12));
        Assert.That(double.IsNaN(EditProtocols.Measure(ctx, reqs, loc, new bool[total]).GeneralityUnderstood), Is.True);
        Assert.That(double.IsNaN(EditProtocols.Measure(ctx, reqs, loc).GeneralityUnderstood), Is.True, "not measured without the flags");
        Assert.Throws<ArgumentException>(() => EditProtocols.Measure(ctx, reqs, loc, new bool[total - 1]));
        // A protocol run measures it.
        using var editor = EditorRegistry.Create("FT-L", ctx, "editrt-tiny", overrides: new Dictionary<string, string> { ["steps"] = "2" });
        var run = EditProtocols.Run(ctx, editor, reqs, EditProtocol.Batch, 24, 1);
        Assert.That(run.Scores.UnderstoodRephrases, Is.EqualTo(understood.Count(u => u)));
        Assert.That(run.Scores.GeneralityUnderstood, Is.InRange(0.0, 1.0));
    }
}
