using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Editing.Plugins;
using EditRuntime.Models;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>MOMoE on the built-in model: edits hold and reach paraphrases, prompts without a known subject are untouched,
/// anchors are matched as whole words and causally, cached generation agrees, save → reset → load, utilisation.</summary>
public sealed class MoMoEEditorTests : GpuTest
{

    private static List<Editing.EditRequest> Requests(int n) => EditorFixtures.Requests(n);

    [TestCase("torch")]   // Vulkan: EditorContractTests
    public void Edit_save_reset_load(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = Requests(backend == "torch" ? 4 : 2);
        var baseline = EditProtocols.LocalityScores(ctx, reqs);
        var before = EditProtocols.Measure(ctx, reqs, baseline);
        var unrelated = ctx.Encode("The capital of Vamar is", "x").Prompt;
        var unrelatedBefore = model.NextTokenLogits(unrelated);
        using var editor = (MoMoEEditor)EditorRegistry.Create("momoe", ctx, "editrt-tiny", null,
            new Dictionary<string, string> { ["steps"] = backend == "torch" ? "80" : "30", ["lr"] = "0.1" });
        editor.Edit(reqs);
        var after = EditProtocols.Measure(ctx, reqs, baseline);
        var log = editor.BatchLog.Single();
        TestContext.Out.WriteLine($"{backend}: before {before}, after {after}; {log.ToJsonString()}");
        Assert.That(after.Efficacy, Is.EqualTo(1.0), "every edit holds");
        Assert.That(after.Locality, Is.EqualTo(1.0), "locality prompts name no edited subject: the null route leaves them exactly as they were");
        Assert.That(model.NextTokenLogits(unrelated), Is.EqualTo(unrelatedBefore), "an input without a known anchor gets no expert output at all");
        var perExpert = log["tokens_per_expert"]!.AsArray().Select(n => (long)n!).ToArray();
        Assert.That(perExpert, Has.Length.EqualTo(4));
        int topK = (int)(double)editor.Describe().HyperParameters["top_k"]!;
        Assert.That(perExpert.Sum(), Is.EqualTo(topK * (long)log["routed_tokens"]!), "utilisation counts every routed token once per chosen expert (top-k)");
        Assert.That(perExpert.Count(n => n > 0), Is.GreaterThanOrEqualTo(topK), "each token goes to k different experts");
        Assert.That(editor.Diagnostics()["batches"]!.AsArray(), Has.Count.EqualTo(1));
        Assert.Throws<NotSupportedException>(() => editor.Remove(0));

        var path = Path.Combine(Path.GetTempPath(), $"momoe-{Guid.NewGuid():N}.safetensors");
        try
        {
            var edited = model.NextTokenLogits(ctx.Encode(reqs[0].Prompt, reqs[0].TargetNew).Prompt);
            editor.Save(path);
            editor.Reset();
            Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(before.Efficacy).Within(1e-9), "reset undoes every edit");
            editor.Load(path);
            Assert.That(editor.Groups, Is.EqualTo(1));
            Assert.That(model.NextTokenLogits(ctx.Encode(reqs[0].Prompt, reqs[0].TargetNew).Prompt), Is.EqualTo(edited).Within(1e-5), "load restores the same outputs");
            Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(1.0));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Sequential_batches_keep_earlier_edits_and_a_re_edited_subject_moves_with_its_requests()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = Requests(6);
        using var editor = (MoMoEEditor)EditorRegistry.Create("momoe", ctx, "editrt-tiny", null,
            new Dictionary<string, string> { ["steps"] = "80", ["lr"] = "0.1" });
        editor.Edit(reqs.Take(3).ToList());
        // The same subject again, with another target: it must move to the new group, which also relearns its old edit.
        var again = reqs[0] with { TargetNew = reqs[4].TargetNew == reqs[0].TargetNew ? reqs[5].TargetNew : reqs[4].TargetNew, Prompt = reqs[0].RephrasePrompts[0] };
        editor.Edit([reqs[3], again]);
        Assert.That(editor.Groups, Is.EqualTo(2));
        Assert.That((int)editor.BatchLog[1]["replayed"]!, Is.EqualTo(1), "the subject's earlier request is replayed in the new group");
        var es = EditMetrics.Efficacy(model.ScoreTargets(reqs.Take(4).Append(again).Select(r => ctx.Encode(r.Prompt, r.TargetNew)).ToList()));
        Assert.That(es, Is.EqualTo(1.0), "both batches hold, the re-edited subject included");
    }

    [Test]
    public void Anchors_match_whole_words_longest_first_and_causally()
    {
        var tok = EditorFixtures.Builtin().Tokenizer;
        var index = new AnchorIndex(tok);
        int a = index.Add("Tustem", [1f], 0);
        int b = index.Add("Tustem Iband", [2f], 1);
        var ids = tok.Encode("Q: Is Tustem Iband a citizen of Tustem? Tustemo", allowSpecial: false);
        var m = index.Matches(ids);
        Assert.That(m.Select(x => x.Anchor), Is.EqualTo(new[] { b, a }), "longest match first; \"Tustemo\" is another word");
        Assert.That(tok.Decode(ids[m[0].Start..m[0].End]), Is.EqualTo(" Tustem Iband"));
        var active = index.ActivePerPosition(ids, afterSubject: true);
        Assert.That(active[m[0].End - 2], Is.EqualTo(-1), "a multi-token subject routes only once its last token is seen");
        Assert.That(active[m[0].End - 1], Is.EqualTo(b));
        Assert.That(active[m[1].End - 1], Is.EqualTo(a), "a later anchor takes over");
        var last = index.ActivePerPosition(ids, afterSubject: false);
        Assert.That(last.Count(x => x >= 0), Is.EqualTo(2), "\"last\" routes the subjects' last tokens only");
        var bare = tok.Encode("Tustem Iband is", allowSpecial: false);
        Assert.That(index.Matches(bare).Single().Anchor, Is.EqualTo(b), "at the start of a text the subject has no leading space");
    }

    [Test]
    public void Cached_generation_routes_like_the_full_forward()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = Requests(2);
        using var editor = EditorRegistry.Create("momoe", ctx, "editrt-tiny", null, new Dictionary<string, string> { ["steps"] = "60", ["lr"] = "0.1" });
        editor.Edit(reqs);
        var prompt = ctx.Encode(reqs[0].Prompt, reqs[0].TargetNew).Prompt;
        var generated = model.GenerateGreedy(prompt, 4);
        // The same tokens one full forward at a time (no cache).
        var seq = prompt.ToList();
        foreach (var _ in generated) seq.Add(Gpt2Model.ArgMax(model.NextTokenLogits(seq.ToArray())));
        Assert.That(generated, Is.EqualTo(seq.Skip(prompt.Length).ToArray()));
        Assert.That(generated[0], Is.EqualTo(ctx.Encode(reqs[0].Prompt, reqs[0].TargetNew).Target[0]), "the edited answer comes first");
    }

    [Test]
    public void Bad_hyper_parameters_are_named()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        Assert.That(() => EditorRegistry.Create("momoe", ctx, "editrt-tiny", null, new Dictionary<string, string> { ["layer"] = "h.2.attn.c_proj" }),
            Throws.InstanceOf<HyperParameterException>().With.Message.Contains("\"layer\"").And.Message.Contains("h.N.mlp.c_proj"));
        Assert.That(() => EditorRegistry.Create("momoe", ctx, "editrt-tiny", null, new Dictionary<string, string> { ["top_k"] = "5" }),
            Throws.InstanceOf<HyperParameterException>().With.Message.Contains("top_k").And.Message.Contains("[1, 4]"));
        Assert.That(() => EditorRegistry.Create("momoe", ctx, "editrt-tiny", null, new Dictionary<string, string> { ["positions"] = "all" }),
            Throws.InstanceOf<HyperParameterException>().With.Message.Contains("positions").And.Message.Contains("\"after\", \"last\""));
    }
}
