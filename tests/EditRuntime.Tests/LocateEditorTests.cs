using EditRuntime.Editing;
using EditRuntime.Models;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// The locate-then-edit editors (ROME, MEMIT, AlphaEdit) beyond the contract test: the same edit on Vulkan as on
/// Torch, ROME's update of rank one, AlphaEdit's update inside the null space of the preserved keys (checked against a
/// float64 eigen-decomposition of the statistics) and its preserved keys growing with each batch.
/// </summary>
public sealed class LocateEditorTests : GpuTest
{
    private const string Family = "editrt-tiny";

    /// <summary>Edits <paramref name="requests"/> (one batch each) and returns the saved shifts per site, and the sites.</summary>
    private static (float[][] Shifts, string[] Sites) EditAndReadShifts(string editor, string backend, params List<EditRequest>[] batches) =>
        EditAndReadShifts(editor, backend, null, batches);

    private static (float[][] Shifts, string[] Sites) EditAndReadShifts(string editor, string backend, string? sites, params List<EditRequest>[] batches)
    {
        using var s = EditorFixtures.Open(backend);
        var path = Path.Combine(Path.GetTempPath(), $"locate-{editor}-{backend}-{Guid.NewGuid():N}.safetensors");
        try
        {
            var overrides = sites is null ? null : new Dictionary<string, string> { ["sites"] = sites };
            using var e = EditorRegistry.Create(editor, s.Ctx, Family, overrides: overrides);
            foreach (var b in batches) e.Edit(b);
            foreach (var b in batches)
                foreach (var score in s.Model.ScoreTargets(b.Select(r => s.Ctx.Encode(r.Prompt, r.TargetNew)).ToList()))
                    Assert.That(score.TokenLogProbs.All(double.IsFinite), Is.True, $"{editor} on {backend}: finite scores after the edit");
            e.Save(path);
            var touched = e.Describe().LayersTouched.ToArray();
            using var state = EditStateFile.Open(path, editor);
            var shifts = touched.Select(site => state.Tensor(site + ".weight.shift", -1, -1).Data).ToArray();
            return (shifts, touched);
        }
        finally { File.Delete(path); }
    }

    private static double Norm(IEnumerable<double> v) => Math.Sqrt(v.Sum(x => x * x));

    [TestCase("ROME", null)]
    [TestCase("MEMIT", null)]
    [TestCase("MEMIT", "h.0.mlp.c_proj,h.1.mlp.c_proj")]
    [TestCase("AlphaEdit", null)]
    public void Vulkan_gives_the_shift_torch_gives(string editor, string? sites)
    {
        var reqs = EditorFixtures.Requests(2);
        var (torch, touched) = EditAndReadShifts(editor, "torch", sites, reqs);
        var (vulkan, _) = EditAndReadShifts(editor, "vulkan", sites, reqs);
        if (sites is not null) Assert.That(touched, Is.EqualTo(sites.Split(',')), "the spread covers every site named");
        for (int i = 0; i < touched.Length; i++)
        {
            double n = Norm(torch[i].Select(x => (double)x));
            double diff = Norm(torch[i].Zip(vulkan[i], (a, b) => (double)a - b));
            Assert.That(n, Is.GreaterThan(1e-3), $"{editor}: the edit moves {touched[i]}");
            Assert.That(vulkan[i].All(float.IsFinite), Is.True);
            Assert.That(diff / n, Is.LessThan(1e-2), $"{editor}: Vulkan's shift of {touched[i]} against Torch's (relative)");
        }
    }

    [Test]
    public void Rome_moves_its_layer_by_a_rank_one_update_per_request()
    {
        var (shifts, sites) = EditAndReadShifts("ROME", "torch", EditorFixtures.Requests(1));
        Assert.That(sites, Has.Length.EqualTo(1));
        var w = shifts[0];
        int cols = w.Length / EditorFixtures.Builtin().Config.InnerSize;
        int rows = w.Length / cols;
        // Every row a multiple of the largest one: ΔW = u·rᵀ.
        int best = Enumerable.Range(0, rows).MaxBy(i => Norm(Enumerable.Range(0, cols).Select(c => (double)w[i * cols + c])));
        var r = Enumerable.Range(0, cols).Select(c => (double)w[best * cols + c]).ToArray();
        double rr = r.Sum(x => x * x), total = Norm(w.Select(x => (double)x)), worst = 0;
        for (int i = 0; i < rows; i++)
        {
            double dot = 0;
            for (int c = 0; c < cols; c++) dot += w[i * cols + c] * r[c];
            double res = Norm(Enumerable.Range(0, cols).Select(c => w[i * cols + c] - dot / rr * r[c]));
            worst = Math.Max(worst, res);
        }
        Assert.That(total, Is.GreaterThan(1e-3));
        Assert.That(worst / total, Is.LessThan(1e-4), "every row of ROME's shift is a multiple of one vector");
    }

    [Test]
    public void AlphaEdit_moves_only_inside_the_null_space_of_the_preserved_keys()
    {
        var (shifts, sites) = EditAndReadShifts("AlphaEdit", "torch", EditorFixtures.Requests(2));
        var defaults = EditorRegistry.Defaults("AlphaEdit", Family);
        double threshold = (double)defaults["nullspace_threshold"]!;
        using var s = EditorFixtures.Open("torch");
        for (int i = 0; i < sites.Length; i++)
        {
            // The statistics the editor used (the cached file beside the model), decomposed here in float64.
            var stats = KeyStatistics.LoadOrCollect(s.Ctx, sites[i], BuiltinModels.CorpusPath("test"), (long)defaults["mom2_tokens"]!, "test");
            int n = stats.Width;
            var (values, vectors) = SymmetricEigen.Decompose(stats.Moment, n);
            var w = shifts[i];
            int cols = w.Length / n;
            double inside = 0, outside = 0;
            for (int j = 0; j < n; j++)
            {
                // The shift's component along eigenvector j: vⱼᵀ·ΔW (a row of d values).
                double sq = 0;
                for (int c = 0; c < cols; c++)
                {
                    double dot = 0;
                    for (int a = 0; a < n; a++) dot += vectors[(long)j * n + a] * w[a * cols + c];
                    sq += dot * dot;
                }
                if (values[j] < threshold) inside += sq; else outside += sq;
            }
            Assert.That(values.Count(v => v < threshold), Is.InRange(1, n - 1), "the threshold keeps some directions and drops others");
            Assert.That(inside, Is.GreaterThan(1e-6), $"AlphaEdit moves {sites[i]}");
            Assert.That(Math.Sqrt(outside / inside), Is.LessThan(1e-3), $"{sites[i]}: the shift along C's large-eigenvalue directions against the kept ones");
        }
    }

    [Test]
    public void AlphaEdit_keeps_the_keys_of_earlier_batches_and_reset_forgets_them()
    {
        using var s = EditorFixtures.Open("torch");
        var reqs = EditorFixtures.Requests(4);
        var path = Path.Combine(Path.GetTempPath(), $"alpha-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var e = EditorRegistry.Create("AlphaEdit", s.Ctx, Family);
            var site = e.Describe().LayersTouched[^1];
            double Gram()
            {
                e.Save(path);
                using var st = EditStateFile.Open(path, "AlphaEdit");
                return st.Tensor(site + ".preserved_gram", -1, -1).Data.Sum(x => (double)x * x);
            }
            Assert.That(Gram(), Is.EqualTo(0), "nothing preserved before an edit");
            e.Edit(reqs.Take(2).ToList());
            double one = Gram();
            Assert.That(one, Is.GreaterThan(0), "the first batch's keys are preserved");
            e.Edit(reqs.Skip(2).ToList());
            Assert.That(Gram(), Is.GreaterThan(one), "the second batch's keys join them");
            e.Reset();
            Assert.That(Gram(), Is.EqualTo(0), "reset forgets them");
        }
        finally { File.Delete(path); }
    }
}
