using System.Text.Json.Nodes;
using System.Xml.Linq;
using EditRuntime.Backends;
using EditRuntime.Data;
using EditRequest = EditRuntime.Editing.EditRequest;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.Reports;
using EditRuntime.TextTests;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>Retention curves, device counters and the report files of a protocol run.</summary>
public sealed class EditReportTests : GpuTest
{
    /// <summary>An editor that edits nothing and records the batches it was given.</summary>
    private sealed class RecordingEditor : IEditor
    {
        public List<int> Batches { get; } = new();
        public string Name => "recorder";
        public EditorDescription Describe() => new("recorder", "none", 0, [], new JsonObject { ["x"] = 1 });
        public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch) { Batches.Add(batch.Count); return batch.Select((_, i) => i).ToList(); }
        public bool CanRemove => false;
        public void Remove(int editId) => throw new NotSupportedException();
        public void Reset() { }
        public void Save(string path) { }
        public void Load(string path) { }
        public void Dispose() { }
    }

    private static (Gpt2Model Model, EditorContext Ctx, List<EditRequest> Reqs) Setup(IBackend be, int n)
    {
        var md = EditorFixtures.Builtin();
        var model = new Gpt2Model(be, md.Config, md.Weights);
        var reqs = EditorFixtures.Requests(n);
        return (model, new EditorContext(model, md), reqs);
    }

    [TestCase(EditProtocol.Sequential, 1, 2, 5, new[] { 2, 4, 5 })]
    [TestCase(EditProtocol.SequentialBatch, 3, 2, 7, new[] { 3, 6, 7 })]
    [TestCase(EditProtocol.SequentialBatch, 2, 0, 6, new[] { 6 })]
    [TestCase(EditProtocol.Batch, 1, 2, 4, new[] { 4 })]
    public void Curve_points_fall_after_every_K_edits_and_at_the_end(EditProtocol protocol, int batch, int every, int edits, int[] expected)
    {
        using var torch = new EditRuntime.Torch.TorchBackend();
        var (model, ctx, reqs) = Setup(torch, 8);
        using var _ = model;
        var editor = new RecordingEditor();
        var seen = new List<EditProgress>();
        var r = EditProtocols.Run(ctx, editor, reqs, protocol, edits, batch, new EditRunOptions { CurveEvery = every, Progress = seen.Add });
        Assert.That(r.Curve.Select(c => c.Edits), Is.EqualTo(expected));
        Assert.That(r.Curve[^1].Scores, Is.EqualTo(r.Scores), "the last point is the final measurement");
        Assert.That(editor.Batches.Sum(), Is.EqualTo(edits));
        Assert.That(seen.Where(p => p.Phase == "edit").Select(p => p.Done).Last(), Is.EqualTo(edits));
        Assert.That(seen.Count(p => p.Phase == "measure"), Is.EqualTo(protocol == EditProtocol.Batch ? 0 : expected.Length - 1));
        foreach (var c in r.Curve)
        {
            Assert.That(c.Scores.Requests, Is.EqualTo(c.Edits), "each point measures the requests edited so far");
            Assert.That(c.Scores.Locality, Is.EqualTo(1.0), "an editor that changes nothing keeps every locality answer");
        }
        Assert.That(r.DeviceSecondsPerEdit, Is.Null, "the Torch backend has no device timestamps");
        Assert.That(r.PeakDeviceBytes, Is.Null);
        Assert.That(r.PeakEditDeviceBytes, Is.Null);
    }

    [Test]
    public void Build_commit_is_read_from_the_informational_version()
    {
        var sha = new string('a', 40);
        Assert.That(BuildInfo.FromInformationalVersion("1.0.0+" + sha), Is.EqualTo(sha));
        Assert.That(BuildInfo.FromInformationalVersion("1.0.0+" + sha + ".dirty"), Is.EqualTo(sha + "+dirty"));
        Assert.That(BuildInfo.FromInformationalVersion("1.0.0"), Is.EqualTo("unknown"));
        Assert.That(BuildInfo.FromInformationalVersion("1.0.0+"), Is.EqualTo("unknown"));
        Assert.That(BuildInfo.FromInformationalVersion(null), Is.EqualTo("unknown"));
    }

    [Test]
    public void Curve_interval_must_not_be_negative()
    {
        using var torch = new EditRuntime.Torch.TorchBackend();
        var (model, ctx, reqs) = Setup(torch, 2);
        using var _ = model;
        Assert.That(Assert.Throws<ArgumentException>(() => EditProtocols.Run(ctx, new RecordingEditor(), reqs, EditProtocol.Sequential, 2, 1,
            new EditRunOptions { CurveEvery = -1 }))!.Message, Does.Contain("--curve-every"));
    }

    [Test]
    public void Vulkan_counts_device_time_and_peak_memory()
    {
        using var be = new VulkanBackend(Device);
        var counters = (IDeviceCounters)be;
        be.Synchronize();
        double t0 = counters.DeviceBusySeconds;
        counters.ResetPeakDeviceBytes();
        long p0 = counters.PeakDeviceBytes;
        using (var a = be.FromArray(new float[256 * 256], 256, 256))
        using (var c = be.Matmul(a, a))
        {
            be.Synchronize();
            Assert.That(counters.PeakDeviceBytes, Is.GreaterThanOrEqualTo(p0 + 2L * 256 * 256 * 4), "two 256 KiB tensors were live");
        }
        Assert.That(counters.DeviceBusySeconds, Is.GreaterThan(t0), "a 256³ matmul takes device time");
        counters.ResetPeakDeviceBytes();
        Assert.That(counters.PeakDeviceBytes, Is.LessThan(p0 + 2L * 256 * 256 * 4), "reset starts from what is live now");
    }

    [Test]
    public void Vulkan_run_reports_device_time_and_memory()
    {
        using var be = new VulkanBackend(Device);
        var (model, ctx, reqs) = Setup(be, 2);
        using var _ = model;
        using var editor = EditorRegistry.Create("ft-l", ctx, "editrt-tiny", overrides: new Dictionary<string, string> { ["steps"] = "2" });
        var r = EditProtocols.Run(ctx, editor, reqs, EditProtocol.Sequential, 2, 1, new EditRunOptions { CurveEvery = 1 });
        Assert.That(r.DeviceSecondsPerEdit, Is.GreaterThan(0));
        Assert.That(r.DeviceSecondsPerEdit, Is.LessThanOrEqualTo(r.SecondsPerEdit * 1.05), "device time fits inside the wall time of the edits");
        Assert.That(r.PeakEditDeviceBytes, Is.GreaterThan(model.Config.ParameterCount * 4L), "the model's weights are live while editing");
        Assert.That(r.PeakDeviceBytes, Is.GreaterThanOrEqualTo(r.PeakEditDeviceBytes));
    }

    [TestCase("torch")]
    [TestCase("vulkan")]
    public void Scoring_in_chunks_gives_the_scores_of_one_batch(string backend)
    {
        using var s = EditorFixtures.Open(backend);
        var (model, ctx, reqs) = (s.Model, s.Ctx, EditorFixtures.Requests(12));
        var items = reqs.SelectMany(r => r.RephrasePrompts.Append(r.Prompt).Select(p => ctx.Encode(p, r.TargetNew))).ToList();
        var whole = model.ScoreTargets(items);
        model.ScoreLogitBudget = 3L * 20 * model.Config.VocabSize; // about three sequences per chunk
        var chunked = model.ScoreTargets(items);
        Assert.That(chunked, Has.Length.EqualTo(whole.Length));
        for (int i = 0; i < whole.Length; i++)
        {
            Assert.That(chunked[i].ArgmaxIds, Is.EqualTo(whole[i].ArgmaxIds), $"item {i}");
            Assert.That(chunked[i].TokenLogProbs, Is.EqualTo(whole[i].TokenLogProbs).Within(1e-4), $"item {i}");
        }
    }

    [Test]
    public void Report_files_hold_config_metrics_curve_and_timings()
    {
        var d = new EditorDescription("FT-L", "paper", 147456, ["h.2.mlp.c_proj"], new JsonObject { ["lr"] = 0.02 });
        var p = new RunProvenance("models/editrt-tiny", "data.json", "editrt-tiny", "vulkan", "llvmpipe", "sequential");
        var r = new EditRunResult(EditProtocol.Sequential, 20, 1, new EditScores(0.5, 0.25, 1.0, double.NaN, 20), 0.8, 30)
        {
            Curve = [new CurvePoint(10, new EditScores(0.75, 0.5, 1.0, double.NaN, 10)), new CurvePoint(20, new EditScores(0.5, 0.25, 1.0, double.NaN, 20))],
            DeviceSecondsPerEdit = 0.6, PeakDeviceBytes = 3 << 20, PeakEditDeviceBytes = 1 << 20, MeasureSeconds = 4,
        };
        var dir = Path.Combine(Path.GetTempPath(), $"report-{Guid.NewGuid():N}");
        try
        {
            var files = EditReport.Write(dir, d, p, r);
            var json = JsonNode.Parse(File.ReadAllText(files[0]))!.AsObject();
            Assert.That((double)json["metrics"]!["ES"]!, Is.EqualTo(0.5));
            Assert.That(json["metrics"]!["CF_success"], Is.Null, "NaN is written as null");
            Assert.That(json["curve"]!.AsArray().Select(c => (int)c!["edits"]!), Is.EqualTo(new[] { 10, 20 }));
            Assert.That((double)json["timings"]!["device_seconds_per_edit"]!, Is.EqualTo(0.6));
            Assert.That((long)json["timings"]!["peak_device_bytes"]!, Is.EqualTo(3 << 20));
            Assert.That((string)json["commit"]!, Does.Match("^([0-9a-f]{40}(\\+dirty)?|unknown)$"));
            Assert.That((string)json["build"]!, Does.Match("^[0-9a-f]{40}(\\+dirty)?$"), "the test binaries are built in a git checkout, so the build commit is known");
            Assert.That((string)json["build"]!, Is.EqualTo(BuildInfo.Commit));
            Assert.That((double)json["hparams"]!["lr"]!, Is.EqualTo(0.02));
            var md = File.ReadAllText(files[1]);
            Assert.That(md, Does.Contain("| FT-L | vulkan | sequential | 20 | 0.500 | 0.250 | 1.000 | – | 800.0 | 600.0 | 1.0 / 3.0 |"));
            Assert.That(md, Does.Contain("| 10 | 0.750 | 0.500 | 1.000 | – |"));
            var svg = XDocument.Parse(File.ReadAllText(files[2]));
            XNamespace ns = "http://www.w3.org/2000/svg";
            var lines = svg.Descendants(ns + "polyline").ToList();
            Assert.That(lines, Has.Count.EqualTo(3), "ES, GS, LS");
            Assert.That(lines.All(l => l.Attribute("points")!.Value.Split(' ').Length == 2));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(3), "no temporary files left");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
