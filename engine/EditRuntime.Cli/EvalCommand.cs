using EditRuntime.IO;
using EditRuntime.Backends;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.Reports;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt eval`: one editor, one model, one dataset, one protocol → metrics, curve, timings, report files.</summary>
internal static class EvalCommand
{
    public static int Run(DeviceOptions options, string editorName, string modelDir, string data, string protocolName, int edits, int batch,
        string backendName, string? outDir, int? curveEvery, string? family, string? hparams, IReadOnlyList<string> overrides, bool profile = false)
    {
        // Everything the flags alone can refuse is refused before the data, the model and the run.
        var protocol = EditProtocols.Parse(protocolName);
        if (edits <= 0) throw new ArgumentException($"--edits: {edits}; give a positive number of requests.");
        if (batch <= 0) throw new ArgumentException($"--batch: {batch}; give a positive batch size.");
        if (curveEvery < 0) throw new ArgumentException($"--curve-every: {curveEvery}; give 0 (off) or a positive count.");
        var ov = HyperParameterOverrides.Parse(overrides);
        using var output = outDir is null ? null : OutputDirectory.Claim(outDir, "--out");
        data = BuiltinModels.ResolveData(data);
        var requests = EditDataset.Load(data);
        if (edits > requests.Count) throw new ArgumentException($"--edits: {edits} requested but {data} has {requests.Count} requests.");
        var md = ModelFolders.Load(modelDir);
        family ??= md.Family;
        using var be = BackendFactory.Create(backendName, options);
        var profiler = be as IKernelProfiler;
        if (profile && profiler is null) throw new ArgumentException($"--profile times Vulkan kernels with device timestamps; this run uses the {be.Name} backend, which has no kernel profiler.");
        using var model = ModelFolders.Open(be, md);
        var ctx = new EditorContext(model, md);
        using var editor = EditorRegistry.Create(editorName, ctx, family, hparams, ov);
        var d = editor.Describe();
        int every = curveEvery ?? (protocol is EditProtocol.Sequential or EditProtocol.SequentialBatch ? Math.Max(1, edits / 10) : 0);
        Console.WriteLine($"{d.Name} on {modelDir} ({be.Name}: {be.DeviceDescription}); {data}: {requests.Count} requests; protocol {protocolName}, {edits} edits" +
                          (protocol == EditProtocol.SequentialBatch ? $" in batches of {batch}" : "") + (every > 0 ? $"; curve every {every}" : ""));
        Console.WriteLine($"hyper-parameters ({family}): {d.HyperParameters.ToJsonString()}; trainable parameters {d.TrainableParameters}; layers {string.Join(", ", d.LayersTouched)}");
        if (profile) profiler!.BeginProfiling();
        var progress = new ProgressLine();
        var r = EditProtocols.Run(ctx, editor, requests, protocol, edits, batch, new EditRunOptions { CurveEvery = every, Progress = progress.Update });
        progress.Done();
        foreach (var c in r.Curve.Take(r.Curve.Count - 1))
            Console.WriteLine($"  after {c.Edits,5} edits: ES {c.Scores.Efficacy:0.000}  GS {c.Scores.Generality:0.000}  LS {c.Scores.Locality:0.000}");
        var s = r.Scores;
        Console.WriteLine($"ES {s.Efficacy:0.000}  GS {s.Generality:0.000}  LS {s.Locality:0.000}  CF success {s.CounterFactSuccess:0.000}  ({s.Requests} requests)");
        if (!double.IsNaN(s.GeneralityUnderstood))
            Console.WriteLine($"GS on the {s.UnderstoodRephrases} rephrase prompts the unedited model answers with target_true: {s.GeneralityUnderstood:0.000}");
        // Described again after the run: editors whose state grows (GRACE's codebook) count it now.
        var after = editor.Describe();
        Console.WriteLine($"trainable parameters after the run: {after.TrainableParameters}");
        Console.WriteLine($"time per edit {r.SecondsPerEdit * 1000:0.0} ms wall" +
                          (r.DeviceSecondsPerEdit is { } g ? $", {g * 1000:0.0} ms device" : "") +
                          (r.PeakDeviceBytes is { } pb ? $"; peak device memory {r.PeakEditDeviceBytes!.Value / 1048576.0:0.0} MiB editing, {pb / 1048576.0:0.0} MiB in the run" : "") +
                          $"; run {r.TotalSeconds:0.0} s ({r.MeasureSeconds:0.0} s measuring)");
        if (profile) PrintProfile(profiler!);
        var diagnostics = (editor as IEditorDiagnostics)?.Diagnostics();
        if (diagnostics is not null) Console.WriteLine($"diagnostics: {diagnostics.ToJsonString()}");
        if (outDir is not null)
        {
            var files = EditReport.Write(outDir, after, new RunProvenance(modelDir, data, family, be.Name, be.DeviceDescription, protocolName), r, diagnostics);
            Console.WriteLine($"report: {string.Join(", ", files)}");
        }
        return 0;
    }

    /// <summary>Device time per kernel label over the run (edits and measurements), largest first.</summary>
    private static void PrintProfile(IKernelProfiler profiler)
    {
        var timings = profiler.EndProfiling();
        var rows = timings.GroupBy(t => t.Label)
            .Select(g => (Label: g.Key, Count: g.Count(), Ms: g.Sum(t => t.Milliseconds)))
            .OrderByDescending(x => x.Ms).ToList();
        double total = rows.Sum(x => x.Ms);
        Console.WriteLine($"profile: {timings.Count} timed commands, {total / 1000:0.00} s of kernel time, {profiler.Submits} submits");
        Console.WriteLine($"  {"kernel",-36} {"count",8} {"total ms",10} {"share",6} {"µs each",9}");
        foreach (var x in rows.Take(25))
            Console.WriteLine($"  {x.Label,-36} {x.Count,8} {x.Ms,10:0.0} {x.Ms / total,6:P0} {x.Ms * 1000 / x.Count,9:0.0}");
        if (rows.Count > 25) Console.WriteLine($"  … {rows.Count - 25} more kernels, {rows.Skip(25).Sum(x => x.Ms):0.0} ms");
    }
}

/// <summary>Live progress on stderr: one rewritten line with rate and ETA on a terminal, a line every
/// 10 % when stderr is redirected (logs, CI).</summary>
internal sealed class ProgressLine
{
    private readonly bool _tty = !Console.IsErrorRedirected;
    private int _lastDecile = -1;
    private bool _open;

    public void Update(EditProgress p)
    {
        double frac = p.Total == 0 ? 1 : p.Done / (double)p.Total;
        string eta = p.Phase == "edit" && p.Done > 0 && p.Done < p.Total
            ? $", ETA {TimeSpan.FromSeconds(p.Elapsed.TotalSeconds / p.Done * (p.Total - p.Done)):hh\\:mm\\:ss}" : "";
        string line = $"  {p.Phase,-7} {p.Done}/{p.Total} ({frac:P0}) {p.Elapsed:hh\\:mm\\:ss}{eta}";
        if (_tty) { Console.Error.Write("\r" + line.PadRight(60)); _open = true; return; }
        int decile = (int)(frac * 10);
        if (p.Phase == "edit" && decile == _lastDecile) return;
        if (p.Phase == "edit") _lastDecile = decile;
        Console.Error.WriteLine(line);
    }

    public void Done()
    {
        if (_open) Console.Error.WriteLine();
        _open = false;
    }
}
