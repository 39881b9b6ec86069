using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The locate-then-edit toolkit: key statistics (E[k·kᵀ] of a site's input over a corpus, cached beside the
/// model) and the host symmetric eigen-decomposition behind AlphaEdit's null-space projector.</summary>
public sealed class KeyStatisticsTests : GpuTest
{
    private const string Site = "h.2.mlp.c_proj";

    private static string[] CorpusLines(int n) =>
        File.ReadLines(Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny", "data", "corpus.txt")).Take(n).ToArray();

    /// <summary>The batched, padded collection equals Σ k·kᵀ / n accumulated in float64 from one line at a time (no
    /// padding to leave out): the bound is float32 rounding of the per-batch Gram products.</summary>
    [TestCase("torch"), TestCase("vulkan")]
    public void The_moment_is_the_mean_outer_product_of_the_site_inputs_over_every_non_pad_token(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var lines = CorpusLines(45);   // two batches of 32 and 13, lines of different lengths
        var (moment, tokens) = KeyStatistics.Collect(s.Ctx, Site, lines, long.MaxValue);
        int w = s.Model.Parameters[Site + ".weight"].Shape[0];
        var expected = new double[(long)w * w];
        long n = 0;
        using (var cap = s.Model.Capture(Site, SiteCapture.Keep.Input))
            foreach (var line in lines)
            {
                var ids = s.Md.EncodePrompt(line.Trim());
                using (var _ = s.Model.ResidualAt(new TokenBatch([ids]), 3)) { }
                var x = s.Backend.ToFloatArray(cap.Input!);
                for (int t = 0; t < ids.Length; t++)
                    for (int i = 0; i < w; i++)
                    {
                        double xi = x[t * w + i];
                        for (int j = 0; j < w; j++) expected[(long)i * w + j] += xi * x[t * w + j];
                    }
                n += ids.Length;
            }
        Assert.That(tokens, Is.EqualTo(n), "every token of every line, no padding");
        double err = 0, norm = 0;
        for (long i = 0; i < expected.Length; i++)
        {
            Assert.That(double.IsFinite(moment[i]), $"element {i} is finite");
            double e = expected[i] / n;
            err = Math.Max(err, Math.Abs(moment[i] - e));
            norm = Math.Max(norm, Math.Abs(e));
        }
        TestContext.Out.WriteLine($"{backend}: {tokens} tokens, max |C| {norm:G4}, max error {err:G3}");
        Assert.That(norm, Is.GreaterThan(0));
        Assert.That(err / norm, Is.LessThan(1e-5));
    }

    [Test]
    public void The_cache_is_reused_and_a_file_of_another_model_site_corpus_or_budget_is_refused()
    {
        using var s = EditorFixtures.Open("torch");
        string dir = Path.Combine(Path.GetTempPath(), $"keystats-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string corpus = Path.Combine(dir, "corpus.txt"), other = Path.Combine(dir, "other.txt");
            File.WriteAllLines(corpus, CorpusLines(40));
            File.WriteAllLines(other, CorpusLines(41));
            var md = s.Md with { Path = dir };
            var ctx = new EditorContext(s.Model, md);
            var first = KeyStatistics.LoadOrCollect(ctx, Site, corpus, 300, "test");
            Assert.That(first.Loaded, Is.False);
            Assert.That(first.Tokens, Is.EqualTo(300), "the budget caps the tokens");
            Assert.That(File.Exists(KeyStatistics.FileFor(md, Site)));
            Assert.That(Directory.GetFiles(Path.Combine(dir, "stats")), Has.Length.EqualTo(1), "no temporary file is left");
            var again = KeyStatistics.LoadOrCollect(ctx, Site, corpus, 300, "test");
            Assert.That(again.Loaded, Is.True);
            Assert.That(again.Moment, Is.EqualTo(first.Moment), "what a later run reads is what the first returned");

            Assert.That(() => KeyStatistics.LoadOrCollect(ctx, Site, other, 300, "test"),
                Throws.InstanceOf<InvalidDataException>().With.Message.Contains("another corpus"));
            Assert.That(() => KeyStatistics.LoadOrCollect(ctx, Site, corpus, 200, "test"),
                Throws.InstanceOf<InvalidDataException>().With.Message.Contains("budget of 300 tokens"));
            // Another layer's file under this layer's name.
            File.Copy(KeyStatistics.FileFor(md, Site), KeyStatistics.FileFor(md, "h.3.mlp.c_proj"));
            Assert.That(() => KeyStatistics.LoadOrCollect(ctx, "h.3.mlp.c_proj", corpus, 300, "test"),
                Throws.InstanceOf<InvalidDataException>().With.Message.Contains("not of h.3.mlp.c_proj"));
            // The same folder with other weights: stale.
            var weights = md.Weights.ToDictionary(kv => kv.Key, kv => kv.Value);
            var wte = weights["wte.weight"];
            var changed = (float[])wte.Data.Clone();
            changed[0] += 1;
            weights["wte.weight"] = new HostTensor(wte.Shape, changed);
            var otherModel = new EditorContext(s.Model, md with { Weights = weights });
            Assert.That(() => KeyStatistics.LoadOrCollect(otherModel, Site, corpus, 300, "test"),
                Throws.InstanceOf<InvalidDataException>().With.Message.Contains("another model").And.Message.Contains("Delete the file"));
            Assert.That(() => KeyStatistics.LoadOrCollect(ctx, Site, Path.Combine(dir, "missing.txt"), 300, "test"),
                Throws.InstanceOf<FileNotFoundException>().With.Message.Contains("missing.txt"));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A = V·diag(λ)·Vᵀ with V orthonormal, λ ascending, for random symmetric matrices, PSD Gram matrices with a
    /// null space (AlphaEdit's case), repeated eigenvalues and the trivial sizes: exact algebra, bounds of float64 rounding.</summary>
    [Test]
    public void Eigen_decomposition_reconstructs_symmetric_matrices_with_orthonormal_vectors()
    {
        var rng = new Random(17);
        var cases = new List<(string Name, int N, double[] A)>();
        foreach (int n in new[] { 1, 2, 3, 10, 64, 150 })
        {
            var a = new double[n * n];
            for (int i = 0; i < n; i++) for (int j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.NextDouble() * 2 - 1;
            cases.Add(($"random {n}", n, a));
        }
        {   // Gram of 40 rows in 100 dimensions: rank 40, 60 zero eigenvalues.
            int n = 100, r = 40;
            var k = Enumerable.Range(0, r * n).Select(_ => rng.NextDouble() - 0.5).ToArray();
            var a = new double[n * n];
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) { double s = 0; for (int t = 0; t < r; t++) s += k[t * n + i] * k[t * n + j]; a[i * n + j] = s; }
            cases.Add(("rank-40 Gram", n, a));
        }
        {   // 2·I + a rank-2 bump: eigenvalue 2 repeated 48 times.
            int n = 50;
            var a = new double[n * n];
            for (int i = 0; i < n; i++) a[i * n + i] = 2;
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) a[i * n + j] += Math.Sin(i) * Math.Sin(j) + Math.Cos(2 * i) * Math.Cos(2 * j);
            cases.Add(("repeated", n, a));
        }
        foreach (var (name, n, a) in cases)
        {
            var (values, vectors) = SymmetricEigen.Decompose(a, n);
            double scale = a.Max(Math.Abs);
            for (int i = 1; i < n; i++) Assert.That(values[i], Is.GreaterThanOrEqualTo(values[i - 1]), $"{name}: ascending");
            double rec = 0, orth = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0, o = 0;
                    for (int t = 0; t < n; t++) { s += vectors[t * n + i] * values[t] * vectors[t * n + j]; o += vectors[i * n + t] * vectors[j * n + t]; }
                    rec = Math.Max(rec, Math.Abs(s - a[i * n + j]));
                    orth = Math.Max(orth, Math.Abs(o - (i == j ? 1 : 0)));
                }
            TestContext.Out.WriteLine($"{name}: reconstruction {rec / scale:G3}, orthogonality {orth:G3}");
            Assert.That(rec / scale, Is.LessThan(1e-12), $"{name}: A = VΛVᵀ");
            Assert.That(orth, Is.LessThan(1e-12), $"{name}: VᵀV = I");
        }
        Assert.That(SymmetricEigen.Decompose(cases.Single(c => c.Name == "rank-40 Gram").A, 100).Values.Count(v => Math.Abs(v) < 1e-10), Is.EqualTo(60), "the null space's dimension");
    }
}
