using EditRuntime.Backends;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.Editing.Plugins;
using EditRuntime.IO;
using EditRuntime.Models;
using EditRuntime.Reports;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>
/// `editrt melo-sweep`: MELO's GS/LS trade-off over init_radius. The requests are edited once
/// (sequentially); the index is then rebuilt for each radius from the same keys (MeloEditor.Reindex —
/// training never reads the index, so this equals a separate run per radius) and ES/GS/LS measured.
/// </summary>
internal static class MeloSweepCommand
{
    public static int Run(DeviceOptions options, string modelDir, string data, int edits, string radiiText, string backendName,
        string? outDir, string? family, IReadOnlyList<string> overrides)
    {
        var radii = radiiText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(t => float.TryParse(t, CultureInfo.InvariantCulture, out var r) && r > 0 ? r : throw new ArgumentException($"--radii: \"{t}\" is not a positive number.")).ToArray();
        if (radii.Length == 0) throw new ArgumentException("--radii: give at least one radius.");
        using var output = outDir is null ? null : OutputDirectory.Claim(outDir, "--out");
        var md = ModelFolders.Load(modelDir);
        family ??= md.Family;
        data = BuiltinModels.ResolveData(data);
        var requests = EditDataset.Load(data);
        if (edits <= 0 || edits > requests.Count) throw new ArgumentException($"--edits: {edits} requested but the data has {requests.Count}.");
        var reqs = requests.Take(edits).ToList();
        var ov = HyperParameterOverrides.Parse(overrides);
        using var be = BackendFactory.Create(backendName, options);
        using var model = ModelFolders.Open(be, md);
        var ctx = new EditorContext(model, md);
        var baseline = EditProtocols.LocalityScores(ctx, reqs);
        using var editor = (MeloEditor)EditorRegistry.Create("MELO", ctx, family, null, ov);
        Console.WriteLine($"MELO radius sweep on {modelDir} ({be.Name}: {be.DeviceDescription}); {edits} sequential edits of {data}");
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < reqs.Count; i++)
        {
            editor.Edit([reqs[i]]);
            if ((i + 1) % Math.Max(1, reqs.Count / 10) == 0) Console.Error.WriteLine($"  edit {i + 1}/{reqs.Count} ({sw.Elapsed:hh\\:mm\\:ss})");
        }
        be.Synchronize();
        double perEdit = sw.Elapsed.TotalSeconds / reqs.Count;
        var rows = new List<(float Radius, EditScores S, int Clusters, int Conflicts, int Forgotten)>();
        foreach (var r in radii)
        {
            editor.Reindex(r);
            var s = EditProtocols.Measure(ctx, reqs, baseline);
            rows.Add((r, s, editor.Index.Count, editor.Index.Conflicts, editor.Index.Forgotten));
            Console.WriteLine($"init_radius {r,8:0.###}: ES {s.Efficacy:0.000}  GS {s.Generality:0.000}  LS {s.Locality:0.000}  clusters {editor.Index.Count}  splits {editor.Index.Conflicts}  forgotten keys {editor.Index.Forgotten}");
        }
        Console.WriteLine($"time per edit {perEdit * 1000:0} ms (training, wall)");
        if (outDir is null) return 0;
        Directory.CreateDirectory(outDir);
        var md2 = new StringBuilder("| init_radius | ES | GS | LS | clusters | splits | forgotten keys |\n|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var x in rows)
            md2.Append(CultureInfo.InvariantCulture, $"| {x.Radius:0.###} | {x.S.Efficacy:0.000} | {x.S.Generality:0.000} | {x.S.Locality:0.000} | {x.Clusters} | {x.Conflicts} | {x.Forgotten} |\n");
        AtomicFile.WriteAllText(Path.Combine(outDir, "sweep.md"), md2.ToString());
        var json = new JsonObject
        {
            ["editor"] = "MELO", ["model"] = Path.GetFullPath(modelDir), ["data"] = Path.GetFullPath(data), ["edits"] = edits, ["backend"] = be.Name,
            ["device"] = be.DeviceDescription, ["hparams"] = editor.Describe().HyperParameters.DeepClone(), ["seconds_per_edit"] = perEdit,
            ["rows"] = new JsonArray(rows.Select(x => (JsonNode)new JsonObject
            {
                ["init_radius"] = x.Radius, ["ES"] = x.S.Efficacy, ["GS"] = x.S.Generality, ["LS"] = x.S.Locality,
                ["clusters"] = x.Clusters, ["splits"] = x.Conflicts, ["forgotten"] = x.Forgotten,
            }).ToArray()),
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, "sweep.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        PlotSeries Series(string name, string color, Func<EditScores, double> f) => new(name, color, rows.Select(x => ((double)x.Radius, f(x.S))).ToList());
        AtomicFile.WriteAllText(Path.Combine(outDir, "sweep.svg"), SvgPlot.Lines($"MELO on {Path.GetFileName(Path.GetFullPath(modelDir))}: {edits} sequential edits", "init_radius", "score",
            [Series("ES", "#1f77b4", s => s.Efficacy), Series("GS", "#2ca02c", s => s.Generality), Series("LS", "#d62728", s => s.Locality)], 0, 1));
        Console.WriteLine($"sweep: {Path.Combine(outDir, "sweep.md")}, sweep.json, sweep.svg");
        return 0;
    }
}
