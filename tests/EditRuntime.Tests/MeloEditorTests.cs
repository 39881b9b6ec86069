using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Editing.Plugins;
using EditRuntime.Models;
using EditRuntime.TextTests;
using EditRuntime.Validation;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>MELO on the built-in model: edits hold and route, one edit can be removed, save → load, capacity, the index rules, and Vulkan agreeing with Torch.</summary>
public sealed class MeloEditorTests : GpuTest
{

    private static List<Editing.EditRequest> Requests(int n) => EditorFixtures.Requests(n);

    private static Dictionary<string, string> Set(params string[] kv) => kv.Select(s => s.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

    private static double[] LogProbs(EditorContext ctx, Editing.EditRequest r) => ctx.Model.ScoreTargets([ctx.Encode(r.Prompt, r.TargetNew)])[0].TokenLogProbs;

    [Test]
    public void Edit_remove_save_load_on_torch()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = Requests(3);
        var baseline = EditProtocols.LocalityScores(ctx, reqs);
        var before = EditProtocols.Measure(ctx, reqs, baseline);
        var lp0 = LogProbs(ctx, reqs[0]);
        using var editor = (MeloEditor)EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("num_iter=12", "edit_lr=0.003"));
        Assert.That(editor.Describe().LayersTouched, Is.EqualTo(new[] { "h.2.mlp.c_proj", "h.3.mlp.c_fc" }));
        var ids = reqs.SelectMany(r => editor.Edit([r])).ToList();   // sequential: one block each
        Assert.That(editor.BlocksInUse, Is.EqualTo(3));
        var after = EditProtocols.Measure(ctx, reqs, baseline);
        TestContext.Out.WriteLine($"before {before}\nafter {after}\n{editor.Index.Count} clusters, {editor.ParametersPerEdit} parameters per edit");
        Assert.That(before.Efficacy, Is.LessThan(0.5));
        Assert.That(after.Efficacy, Is.EqualTo(1.0), "every edit holds");
        Assert.That(after.Locality, Is.GreaterThanOrEqualTo(0.95), "unrelated prompts keep their answers");
        var path = Path.Combine(Path.GetTempPath(), $"melo-{Guid.NewGuid():N}.safetensors");
        try
        {
            editor.Save(path);
            var edited = model.NextTokenLogits(ctx.Encode(reqs[1].Prompt, reqs[1].TargetNew).Prompt);
            editor.Remove(ids[0]);
            Assert.That(LogProbs(ctx, reqs[0]), Is.EqualTo(lp0).Within(1e-5), "the removed edit's prompt answers exactly as before the edit");
            Assert.That(EditProtocols.Measure(ctx, reqs.Skip(1).ToList(), EditProtocols.LocalityScores(ctx, reqs.Skip(1).ToList())).Efficacy, Is.EqualTo(1.0), "the other edits still hold");
            Assert.That(editor.BlocksInUse, Is.EqualTo(2), "its block is free again");
            Assert.Throws<KeyNotFoundException>(() => editor.Remove(ids[0]));
            // The freed block (0) is the next one taken, and works again.
            editor.Edit([reqs[0]]);
            Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(1.0));

            editor.Reset();
            Assert.That(LogProbs(ctx, reqs[0]), Is.EqualTo(lp0).Within(1e-5), "reset restores the model");
            // A fresh editor loads the saved state and predicts exactly as the editor that saved it.
            editor.Dispose();
            using (var fresh = (MeloEditor)EditorRegistry.Create("MELO", ctx, "editrt-tiny"))
            {
                fresh.Load(path);
                Assert.That(model.NextTokenLogits(ctx.Encode(reqs[1].Prompt, reqs[1].TargetNew).Prompt), Is.EqualTo(edited).Within(1e-6), "save → load gives identical predictions");
                Assert.That(EditProtocols.Measure(ctx, reqs, baseline).Efficacy, Is.EqualTo(1.0));
            }
            using var other = (MeloEditor)EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("num_blocks=10"));
            Assert.That(Assert.Throws<InvalidDataException>(() => other.Load(path))!.Message, Does.Contain("num_blocks"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Blocks_run_out_with_a_clear_error_and_sites_are_checked()
    {
        using var s = EditorFixtures.Open("torch");
        var (md, model, ctx) = (s.Md, s.Model, s.Ctx);
        var reqs = Requests(3);
        using (var editor = EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("num_blocks=2", "num_iter=2")))
        {
            editor.Edit([reqs[0]]);
            editor.Edit([reqs[1], reqs[2]]);   // a batch shares one block
            var e = Assert.Throws<InvalidOperationException>(() => editor.Edit([reqs[2]]))!;
            Assert.That(e.Message, Does.Contain("all 2 LoRA blocks").And.Contain("num_blocks"));
        }
        Assert.That(model.AttachedAdapters, Is.Empty, "dispose unhooks the editor");
        Assert.That(Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("key_layer=h.3.mlp.c_fc")))!.Message,
            Does.Contain("must run before every LoRA layer"));
        Assert.That(Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("lora_layers=h.9.mlp.c_fc")))!.Message,
            Does.Contain("lora_layers").And.Contain("linear site").And.Contain("h.9.mlp.c_fc"));
        // 1,700 blocks of rank 2 on h.2.mlp.c_proj (768 → 192) and h.3.mlp.c_fc (192 → 768): 26.1 MB of banks, stated before allocating.
        var limited = ctx with { DeviceMemoryLimit = 16 << 20 };
        Assert.That(Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("MELO", limited, "editrt-tiny"))!.Message,
            Does.Contain("LoRA banks").And.Contain("24.9 MiB").And.Contain("num_blocks = 1700").And.Contain("over the limit of 16.0 MiB"));
        EditorRegistry.Create("MELO", limited, "editrt-tiny", overrides: Set("num_blocks=1000")).Dispose();
        Assert.That(model.AttachedAdapters, Is.Empty, "a rejected configuration leaves no adapter behind");
        Assert.That((string)EditorRegistry.Defaults("MELO", "gpt2-xl")["key_layer"]!, Is.EqualTo("h.35.mlp.c_fc"));
        // The GPT-2 and GPT2-XL defaults fit models of those depths (narrow random stand-ins): one edit each.
        foreach (var (family, layers) in new[] { ("gpt2", 12), ("gpt2-xl", 48) })
        {
            var cfg = new Gpt2Config { VocabSize = md.Config.VocabSize, NPositions = 64, NEmbd = 16, NLayer = layers, NHead = 2, BosTokenId = md.Config.BosTokenId, EosTokenId = md.Config.EosTokenId };
            using var small = new Gpt2Model(s.Backend, cfg, Gpt2Model.RandomWeights(cfg, 7));
            var sctx = new EditorContext(small, md);
            using var e = (MeloEditor)EditorRegistry.Create("MELO", sctx, family, overrides: Set("num_iter=2", "num_blocks=4"));
            Assert.That(EditorRegistry.Defaults("MELO", family)["rank_per_block"]!.GetValue<double>(), Is.EqualTo(2), family);
            Assert.That(e.Edit([reqs[0]]), Has.Count.EqualTo(1), family);
            Assert.That(e.ParametersPerEdit, Is.EqualTo(2 * 2 * (16 + 64)), $"{family}: rank 2 on two c_fc sites (16 → 64)");
        }
    }

    [Test]
    public void Index_follows_the_insert_rules_and_the_device_lookup_agrees_with_the_host()
    {
        var idx = new ClusterIndex(2, 1f);
        idx.Insert([0, 0], "a", 0, 0);
        idx.Insert([5, 0], "b", 1, 1);                        // farther than r + r0 = 2: a new cluster
        Assert.That(idx.Count, Is.EqualTo(2));
        idx.Insert([1.5f, 0], "a", 2, 2);                     // within 2 of "a", same label: joins
        Assert.That(idx.Count, Is.EqualTo(2));
        Assert.That(idx.Clusters[0].Centre, Is.EqualTo(new[] { 0.75f, 0 }));
        Assert.That(idx.Clusters[0].Radius, Is.EqualTo(1f), "max(farthest point 0.75, init radius 1)");
        Assert.That(idx.Route([1.4f, 0]), Is.EqualTo(2), "inside: the nearest point's block");
        Assert.That(idx.Route([0.1f, 0]), Is.EqualTo(0));
        Assert.That(idx.Route([3, 0]), Is.EqualTo(-1), "outside every radius: no LoRA");
        idx.Insert([5, 1.5f], "c", 3, 3);                     // within 2 of "b", another label: split
        Assert.That(idx.Conflicts, Is.EqualTo(1));
        Assert.That(idx.Clusters[1].Radius, Is.EqualTo(0.75f));
        Assert.That(idx.Clusters[2].Radius, Is.EqualTo(0.75f));
        Assert.That(idx.Route([5, 0.7f]), Is.EqualTo(1), "the old cluster keeps its side of the split");
        Assert.That(idx.Route([5, 0.8f]), Is.EqualTo(3), "the new cluster has the other side");
        Assert.That(idx.Route([6, 0.75f]), Is.EqualTo(-1), "beyond both halved radii: nobody's");
        Assert.That(idx.RemoveEdit(1), Is.True);
        Assert.That(idx.Count, Is.EqualTo(2), "a cluster without points is dropped");
        Assert.That(idx.RemoveEdit(1), Is.False);

        using var torch = new EditRuntime.Torch.TorchBackend();
        using var vulkan = new VulkanBackend(Device);
        var big = new ClusterIndex(9, 2.5f);
        for (int i = 0; i < 60; i++) big.Insert(Enumerable.Range(0, 9).Select(_ => (float)Rng.NextDouble() * 4).ToArray(), $"l{i % 7}", i % 11, i);
        // Odd queries sit next to stored keys (routed unless a split forgot that key), even ones far away (never routed).
        var keys = big.Clusters.SelectMany(c => c.Points).Select(p => p.Key).ToList();
        // The lookup is discontinuous (nearest centre, radius, nearest point): a query is redrawn until every one of
        // those choices wins by 1e-3 (float32 distances on the backends are ~1e-6 apart), so host and backends agree
        // for every draw instead of flipping on a near-tie.
        bool Clear(float[] q)
        {
            var d = big.Clusters.Select(c => ClusterIndex.Distance(q, c.Centre)).ToArray();
            int n = Array.IndexOf(d, d.Min());
            if (d.Where((_, i) => i != n).Any(x => x - d[n] < 1e-3) || Math.Abs(d[n] - big.Clusters[n].Radius) < 1e-3) return false;
            var p = big.Clusters[n].Points.Select(pt => ClusterIndex.Distance(q, pt.Key)).OrderBy(x => x).ToArray();
            return p.Length < 2 || p[1] - p[0] >= 1e-3;
        }
        float[] Draw(int i)
        {
            while (true)
            {
                var q = i % 2 == 1
                    ? keys[Rng.Next(keys.Count)].Select(v => v + (float)(Rng.NextDouble() - 0.5) * 0.02f).ToArray()
                    : Enumerable.Range(0, 9).Select(_ => 20f + (float)Rng.NextDouble() * 4).ToArray();
                if (Clear(q)) return q;
            }
        }
        var queries = Enumerable.Range(0, 37).Select(Draw).ToList();
        var host = queries.Select(q => big.Route(q)).ToArray();
        Assert.That(host.Where((_, i) => i % 2 == 0), Is.All.EqualTo(-1), "far queries route nowhere");
        Assert.That(host.Count(b => b >= 0), Is.GreaterThanOrEqualTo(9), "queries at stored keys route");
        foreach (IBackend be in new IBackend[] { torch, vulkan })
        {
            using var q = be.FromArray(queries.SelectMany(x => x).ToArray(), 37, 9);
            using var blocks = big.Lookup(be, q)!;
            Assert.That(be.ToIntArray(blocks), Is.EqualTo(host), be.Name);
        }
        big.Dispose();
    }

    [Test]
    public void Vulkan_routes_and_predicts_like_torch_and_edits_on_its_own()
    {
        var md = EditorFixtures.Builtin();
        var reqs = Requests(2);
        var path = Path.Combine(Path.GetTempPath(), $"melo-{Guid.NewGuid():N}.safetensors");
        using var torch = new EditRuntime.Torch.TorchBackend();
        using var vulkan = new VulkanBackend(Device);
        try
        {
            // Trained on Torch, loaded on both: one scoring batch mixes both edits (blocks 0 and 1) and unrelated prompts (no block).
            var seen = new Dictionary<string, (float[] Logits, EditScores Scores)>();
            foreach (IBackend be in new IBackend[] { torch, vulkan })
            {
                using var model = new Gpt2Model(be, md.Config, md.Weights);
                var ctx = new EditorContext(model, md);
                var baseline = EditProtocols.LocalityScores(ctx, reqs);
                using var editor = EditorRegistry.Create("MELO", ctx, "editrt-tiny", overrides: Set("num_iter=12", "edit_lr=0.003"));
                if (be == torch) { foreach (var r in reqs) editor.Edit([r]); editor.Save(path); }
                else editor.Load(path);
                seen[be.Name] = (model.NextTokenLogits(ctx.Encode(reqs[1].Prompt, reqs[1].TargetNew).Prompt), EditProtocols.Measure(ctx, reqs, baseline));
                TestContext.Out.WriteLine($"{be.Name}: {seen[be.Name].Scores}");
            }
            Assert.That(seen["torch"].Scores.Efficacy, Is.EqualTo(1.0));
            Assert.That(seen["vulkan"].Scores, Is.EqualTo(seen["torch"].Scores), "same routing, same metrics");
            Assert.That(OpValidation.Compare(seen["vulkan"].Logits, seen["torch"].Logits), Is.LessThan(1e-4), "the edited logits agree");

            // Editing on Vulkan itself; cached generation keeps the prompt's block for every new token.
            using var vmodel = new Gpt2Model(vulkan, md.Config, md.Weights);
            var vctx = new EditorContext(vmodel, md);
            using var veditor = EditorRegistry.Create("MELO", vctx, "editrt-tiny", overrides: Set("num_iter=12", "edit_lr=0.003"));
            veditor.Edit([reqs[0]]);
            var (prompt, target) = vctx.Encode(reqs[0].Prompt, reqs[0].TargetNew);
            Assert.That(vmodel.GenerateGreedy(prompt, target.Length), Is.EqualTo(target));
        }
        finally { File.Delete(path); }
    }
}
