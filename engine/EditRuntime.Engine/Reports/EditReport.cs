using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.IO;

namespace EditRuntime.Reports;

/// <summary>Where a run came from: everything a reader needs to reproduce it.</summary>
public sealed record RunProvenance(string ModelPath, string DataPath, string Family, string Backend, string Device, string ProtocolName);

/// <summary>
/// The files of one evaluation run: report.json (config, model, backend, device, commit of the working directory and of the build, metrics,
/// curve, timings), report.md (tables) and report.svg (ES/GS/LS against the number of edits).
/// Each is written atomically.
/// </summary>
public static class EditReport
{
    public static JsonObject Json(EditorDescription d, RunProvenance p, EditRunResult r, JsonObject? diagnostics = null)
    {
        var s = r.Scores;
        var json = new JsonObject
        {
            ["editor"] = d.Name, ["paper"] = d.Paper, ["hparams"] = d.HyperParameters.DeepClone(), ["family"] = p.Family,
            ["trainable_parameters"] = d.TrainableParameters, ["layers"] = new JsonArray(d.LayersTouched.Select(l => (JsonNode)l).ToArray()),
            ["model"] = Path.GetFullPath(p.ModelPath), ["data"] = File.Exists(p.DataPath) ? Path.GetFullPath(p.DataPath) : p.DataPath, ["backend"] = p.Backend, ["device"] = p.Device,
            ["protocol"] = p.ProtocolName, ["edits"] = r.Edits, ["batch_size"] = r.BatchSize,
            ["metrics"] = Metrics(s),
            ["curve"] = new JsonArray(r.Curve.Select(c => (JsonNode)new JsonObject { ["edits"] = c.Edits, ["metrics"] = Metrics(c.Scores) }).ToArray()),
            ["timings"] = new JsonObject
            {
                ["wall_seconds_per_edit"] = r.SecondsPerEdit,
                ["device_seconds_per_edit"] = r.DeviceSecondsPerEdit,
                ["peak_device_bytes"] = r.PeakDeviceBytes,
                ["peak_edit_device_bytes"] = r.PeakEditDeviceBytes,
                ["measure_seconds"] = r.MeasureSeconds,
                ["total_seconds"] = r.TotalSeconds,
            },
            ["commit"] = Commit(), ["build"] = BuildInfo.Commit, ["date"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        };
        if (diagnostics is not null) json["diagnostics"] = diagnostics.DeepClone(); // what the editor reports about itself (IEditorDiagnostics)
        return json;
    }

    public static string Markdown(EditorDescription d, RunProvenance p, EditRunResult r)
    {
        var s = r.Scores;
        var sb = new StringBuilder();
        sb.Append($"# {d.Name}: {p.ProtocolName}, {r.Edits} edits\n\n");
        sb.Append($"Model `{p.ModelPath}`, data `{p.DataPath}`, backend {p.Backend} ({p.Device}); trainable parameters {d.TrainableParameters:N0}; layers {string.Join(", ", d.LayersTouched)}; built from commit {BuildInfo.Commit}.\n\n");
        sb.Append("| editor | backend | protocol | edits | ES | GS | LS | CF success | ms/edit (wall) | ms/edit (device) | peak device MiB (editing / run) |\n");
        sb.Append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        sb.Append($"| {d.Name} | {p.Backend} | {p.ProtocolName} | {r.Edits} | {M(s.Efficacy)} | {M(s.Generality)} | {M(s.Locality)} | {M(s.CounterFactSuccess)} | " +
                  $"{r.SecondsPerEdit * 1000:0.0} | {(r.DeviceSecondsPerEdit is { } g ? (g * 1000).ToString("0.0", CultureInfo.InvariantCulture) : "–")} | " +
                  $"{Mib(r.PeakEditDeviceBytes)} / {Mib(r.PeakDeviceBytes)} |\n");
        if (!double.IsNaN(s.GeneralityUnderstood))
            sb.Append($"\nGS on the {s.UnderstoodRephrases} rephrase prompts that the unedited model answers with target_true: {M(s.GeneralityUnderstood)}.\n");
        if (r.Curve.Count > 1)
        {
            sb.Append("\nRetention (metrics on the requests edited so far):\n\n| edits | ES | GS | LS | CF success |\n|---:|---:|---:|---:|---:|\n");
            foreach (var c in r.Curve)
                sb.Append($"| {c.Edits} | {M(c.Scores.Efficacy)} | {M(c.Scores.Generality)} | {M(c.Scores.Locality)} | {M(c.Scores.CounterFactSuccess)} |\n");
        }
        sb.Append($"\nHyper-parameters: `{d.HyperParameters.ToJsonString()}`\n");
        return sb.ToString();
    }

    /// <summary>ES, GS and LS against the number of edits (one point per curve point).</summary>
    public static string Svg(EditorDescription d, RunProvenance p, EditRunResult r)
    {
        PlotSeries S(string name, string color, Func<EditScores, double> f) =>
            new(name, color, r.Curve.Select(c => ((double)c.Edits, f(c.Scores))).ToList());
        return SvgPlot.Lines($"{d.Name} ({p.Backend}, {p.ProtocolName})", "number of edits", "score",
            [S("ES", "#1f77b4", x => x.Efficacy), S("GS", "#2ca02c", x => x.Generality), S("LS", "#d62728", x => x.Locality)], 0, 1);
    }

    /// <summary>Writes report.json, report.md and report.svg into <paramref name="dir"/>; returns their paths.</summary>
    public static IReadOnlyList<string> Write(string dir, EditorDescription d, RunProvenance p, EditRunResult r, JsonObject? diagnostics = null)
    {
        Directory.CreateDirectory(dir);
        var files = new[] { Path.Combine(dir, "report.json"), Path.Combine(dir, "report.md"), Path.Combine(dir, "report.svg") };
        AtomicFile.WriteAllText(files[0], Json(d, p, r, diagnostics).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        AtomicFile.WriteAllText(files[1], Markdown(d, p, r));
        AtomicFile.WriteAllText(files[2], Svg(d, p, r));
        return files;
    }

    private static JsonObject Metrics(EditScores s) => new()
    {
        ["ES"] = Num(s.Efficacy), ["GS"] = Num(s.Generality), ["LS"] = Num(s.Locality), ["CF_success"] = Num(s.CounterFactSuccess), ["requests"] = s.Requests,
        ["GS_understood"] = Num(s.GeneralityUnderstood), ["understood_rephrases"] = s.UnderstoodRephrases,
    };

    /// <summary>Bytes as MiB with one decimal, "–" when not measured (the Torch backend counts no device memory).</summary>
    public static string Mib(long? b) => b is { } v ? (v / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) : "–";

    private static JsonNode? Num(double d) => double.IsNaN(d) ? null : JsonValue.Create(d);
    private static string M(double d) => double.IsNaN(d) ? "–" : d.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>The git commit of the working directory, or "unknown" outside a repository ("+dirty" when tracked files differ from it).</summary>
    public static string Commit()
    {
        var head = Git("rev-parse HEAD");
        if (head is null) return "unknown";
        var status = Git("status --porcelain --untracked-files=no");
        return string.IsNullOrEmpty(status) ? head : head + "+dirty";
    }

    private static string? Git(string args)
    {
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("git", args) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var proc = System.Diagnostics.Process.Start(psi)!;
            var o = proc.StandardOutput.ReadToEnd().Trim();
            proc.WaitForExit();
            return proc.ExitCode == 0 ? o : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }
}
