using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Editing.Plugins;
using EditRuntime.Models;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The GRACE baseline on the built-in model: edits hold, unrelated prompts do not move, one edit can be removed, save → load
/// (on both backends with two requests: <see cref="EditorContractTests"/>).</summary>
public sealed class GraceEditorTests : GpuTest
{
    [TestCase("torch")]
    public void Edit_remove_save_load(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = EditorFixtures.Requests(3);
        var baseline = EditProtocols.LocalityScores(ctx, reqs);
        var before = EditProtocols.Measure(ctx, reqs, baseline);
        using var editor = (GraceEditor)EditorRegistry.Create("GRACE", ctx, "editrt-tiny");
        var ids = editor.Edit(reqs);
        var after = EditProtocols.Measure(ctx, reqs, baseline);
        TestContext.Out.WriteLine($"{backend}: before {before}, after {after}, {editor.Entries} codebook entries");
        Assert.That(after.Efficacy, Is.EqualTo(1.0), "every edit holds");
        Assert.That(after.Locality, Is.GreaterThanOrEqualTo(0.95), "unrelated prompts keep their answers");
        var path = Path.Combine(Path.GetTempPath(), $"grace-{Guid.NewGuid():N}.safetensors");
        try
        {
            editor.Save(path);
            editor.Remove(ids[0]);
            var r0 = ctx.Encode(reqs[0].Prompt, reqs[0].TargetNew);
            Assert.That(model.ScoreTargets([r0])[0].TokenLogProbs, Is.EqualTo(model.ScoreTargets([r0])[0].TokenLogProbs));
            var removed = EditProtocols.Measure(ctx, [reqs[0]], EditProtocols.LocalityScores(ctx, [reqs[0]]));
            var others = EditProtocols.Measure(ctx, reqs.Skip(1).ToList(), EditProtocols.LocalityScores(ctx, reqs.Skip(1).ToList()));
            Assert.That(removed.Efficacy, Is.LessThan(0.5), "the removed edit's prompt answers as before");
            Assert.That(others.Efficacy, Is.EqualTo(1.0), "the other edits still hold");
            editor.Reset();
            Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(before.Efficacy).Within(1e-9));
            editor.Load(path);
            Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(1.0), "load restores every edit");
        }
        finally { File.Delete(path); }
    }
}
