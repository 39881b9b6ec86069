using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The hyper-network editors' key / value-gradient cache (Editing/KeyGradientCache) on both backends.</summary>
public sealed class KeyGradientCacheTests : GpuTest
{
    private static readonly string[] Sites = ["h.2.mlp.c_proj", "h.3.mlp.c_proj", "h.1.attn.c_attn"];

    /// <summary>
    /// With every position cached, Kᵀ·G is the weight gradient: Σ over sub-batches of ∂CE_b/∂W from an ordinary backward
    /// (the cache's CE is a token mean per sub-batch). Holds for any requests: both sides are the same sums of products,
    /// so the bound (1e-4 relative) is float32 rounding, not a margin over draws. The answer-token cache keeps exactly the
    /// target positions, and its rows are those of the full cache at those positions.
    /// </summary>
    [TestCase("torch"), TestCase("vulkan")]
    public void All_token_keys_times_gradients_are_the_weight_gradient_and_answer_rows_are_the_target_positions(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var (ctx, model, be) = (s.Ctx, s.Model, s.Backend);
        var pairs = EditorFixtures.Requests(7).Select(r => ctx.Encode(r.Prompt, r.TargetNew)).ToList();
        const int subBatch = 3;
        var all = KeyGradientCache.Build(ctx, pairs, Sites, subBatch, CachedTokens.All, "test");
        var ans = KeyGradientCache.Build(ctx, pairs, Sites, subBatch, CachedTokens.Answer, "test");
        try
        {
            Assert.That(model.AttachedAdapters, Is.Empty, "the probes are detached after the cache");
            int tokens = pairs.Sum(p => p.Prompt.Length + p.Target.Length - 1), targets = pairs.Sum(p => p.Target.Length);
            for (int i = 0; i < Sites.Length; i++)
            {
                Assert.That(all[i].Rows, Is.EqualTo(tokens), "every non-padding position");
                Assert.That(ans[i].Rows, Is.EqualTo(targets), "one row per target token");
                Assert.That(all[i].SubBatchRows.Sum(), Is.EqualTo(tokens));
                Assert.That(all[i].SubBatchRows, Has.Count.EqualTo(3));
            }

            // Σ_b ∂CE_b/∂W, an ordinary backward per sub-batch.
            var expected = Sites.Select(site => new double[model.Parameters[site + ".weight"].Count]).ToArray();
            for (int start = 0; start < pairs.Count; start += subBatch)
            {
                var tf = TeacherForcing.FromTokens(pairs.Skip(start).Take(subBatch).ToList());
                using var tape = new Tape(be);
                var p = model.Bind(tape, n => Sites.Any(site => n == site + ".weight"));
                tape.Backward(model.Loss(tape, p, tf.Batch, tf.Targets));
                for (int i = 0; i < Sites.Length; i++)
                {
                    var g = be.ToFloatArray(p[Sites[i] + ".weight"].Grad!);
                    for (int j = 0; j < g.Length; j++) expected[i][j] += g[j];
                    p[Sites[i] + ".weight"].ClearGrad();
                }
            }
            for (int i = 0; i < Sites.Length; i++)
            {
                using var ktg = be.Matmul(all[i].Keys, all[i].Grads, transA: true);
                var got = be.ToFloatArray(ktg);
                Assert.That(got.All(float.IsFinite), Is.True);
                double num = 0, den = 0;
                for (int j = 0; j < got.Length; j++) { num += Math.Pow(got[j] - expected[i][j], 2); den += expected[i][j] * expected[i][j]; }
                Assert.That(den, Is.GreaterThan(0), "a non-zero gradient");
                Assert.That(Math.Sqrt(num / den), Is.LessThan(1e-4), $"{Sites[i]}: KᵀG against the weight gradient ({backend})");
            }

            // Answer rows = the full cache's rows at the target positions (the same forward, bitwise).
            var positionsAll = new List<int>();
            var positionsAns = new List<int>();
            int offset = 0;
            for (int start = 0; start < pairs.Count; start += subBatch)
            {
                var tf = TeacherForcing.FromTokens(pairs.Skip(start).Take(subBatch).ToList());
                var a = KeyGradientCache.Positions(tf, CachedTokens.All);
                var t = KeyGradientCache.Positions(tf, CachedTokens.Answer);
                Assert.That(t, Is.SubsetOf(a));
                positionsAns.AddRange(t.Select(x => offset + Array.IndexOf(a, x)));
                offset += a.Length;
            }
            var kAll = be.ToFloatArray(all[0].Keys);
            var kAns = be.ToFloatArray(ans[0].Keys);
            int w = all[0].Keys.Shape[1];
            for (int r = 0; r < positionsAns.Count; r++)
                Assert.That(kAns.AsSpan(r * w, w).ToArray(), Is.EqualTo(kAll.AsSpan(positionsAns[r] * w, w).ToArray()), $"key row {r}");
        }
        finally
        {
            foreach (var c in all.Concat(ans)) c.Dispose();
        }
    }

    [Test]
    public void Bad_arguments_are_refused_naming_the_owner()
    {
        using var s = EditorFixtures.Open("torch");
        var pairs = new List<(int[], int[])> { s.Ctx.Encode("The capital of Vamar is", "Lurefem") };
        Assert.That(Assert.Throws<ArgumentException>(() => KeyGradientCache.Build(s.Ctx, [], Sites, 4, CachedTokens.Answer, "OWNER"))!.Message, Does.Contain("OWNER"));
        Assert.That(Assert.Throws<ArgumentException>(() => KeyGradientCache.Build(s.Ctx, pairs, [], 4, CachedTokens.Answer, "OWNER"))!.Message, Does.Contain("OWNER"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => KeyGradientCache.Build(s.Ctx, pairs, Sites, 0, CachedTokens.Answer, "OWNER"))!.Message, Does.Contain("OWNER"));
        using var taken = s.Model.Attach(Sites[0], new NoAdapter(), "SOMEONE");
        var e = Assert.Throws<InvalidOperationException>(() => KeyGradientCache.Build(s.Ctx, pairs, Sites, 4, CachedTokens.Answer, "OWNER"))!;
        Assert.That(e.Message, Does.Contain("SOMEONE").And.Contain(Sites[0]), "a taken site is named with its owner");
        Assert.That(s.Model.AttachedAdapters.Keys, Is.EquivalentTo(new[] { Sites[0] }), "a failed cache leaves no probe behind");
    }

    private sealed class NoAdapter : Models.ILinearAdapter
    {
        public Var Apply(Tape tape, string site, Var input, Var output, Models.ForwardContext context) => output;
    }

    [Test]
    public void The_world_s_meta_training_split_edits_only_train_facts_each_round_once()
    {
        var world = SyntheticWorld.Generate(null, SyntheticWorld.DefaultSeed);
        var meta = world.MetaTrainRequests;
        int facts = world.TrainRequests.Count, rounds = world.Config.MetaTrainVariants;
        Assert.That(meta, Has.Count.EqualTo(facts * rounds));
        var evalSubjects = world.EvalRequests.Select(r => r.Subject).ToHashSet();
        Assert.That(meta.Any(r => evalSubjects.Contains(r.Subject)), Is.False, "no eval subject is edited");
        for (int k = 0; k < rounds; k++)
        {
            var round = meta.Skip(k * facts).Take(facts).ToList();
            Assert.That(round.Select(r => r.Fact.Id).Distinct().Count(), Is.EqualTo(facts), $"round {k}: every train fact once");
        }
        Assert.That(meta.All(r => r.TargetNew.Index != r.TargetTrue.Index), Is.True, "target_new is never the true answer");
        Assert.That(meta.Select(r => (r.Fact.Id, r.TargetNew.Index)).Distinct().Count(), Is.GreaterThan(facts * 2), "rounds give other target_new values");
    }
}
