using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using EditRuntime.IO;
using EditRuntime.Reports;

namespace EditRuntime.Cli;

/// <summary>`editrt compare`: several eval reports side by side — one Markdown table and, per metric, one
/// plot of the metric against the number of edits (each report's curve; reports of one editor, protocol and backend at several sizes joined into one line).</summary>
internal static class CompareCommand
{
    private static readonly string[] Colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    private static readonly string[] Known = ["ES", "GS", "LS", "CF_success", "GS_understood"];

    public static int Run(IReadOnlyList<string> reports, string? outDir, string metrics)
    {
        if (reports.Count == 0) throw new ArgumentException("compare: give one or more report folders (or report.json files) written by 'editrt eval --out'.");
        var ms = metrics.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var m in ms)
            if (!Known.Contains(m)) throw new ArgumentException($"--metrics: \"{m}\" is not one of {string.Join(", ", Known)}.");
        using var output = outDir is null ? null : OutputDirectory.Claim(outDir, "--out");
        var runs = reports.Select(Load).ToList();
        var table = Table(runs);
        Console.Write(table);
        if (outDir is null) return 0;
        // Every file is made in memory first: a report that fails to plot leaves no half-written set behind.
        var files = new List<(string Path, string Text)> { (Path.Combine(outDir, "compare.md"), table) };
        // A log axis when the edit counts span two decades (e.g. a batch of 20 beside 1,680 sequential edits).
        var xs = runs.SelectMany(r => Curve(r, ms[0])).Select(p => p.X).DefaultIfEmpty(1).ToList();
        bool logX = xs.Max() >= 100 * xs.Min();
        foreach (var m in ms)
        {
            // Reports with one label (one editor, protocol and backend at several N, e.g. batch 100 / 1,000 / 1,680) make one line.
            var series = runs.GroupBy(r => r.Label).Select((g, i) => new PlotSeries(g.Key, Colors[i % Colors.Length],
                g.SelectMany(r => Curve(r, m)).OrderBy(p => p.X).ToList(), Dashed: i >= Colors.Length)).ToList();
            files.Add((Path.Combine(outDir, $"compare-{m}.svg"), SvgPlot.Lines($"{m} against the number of edits", "number of edits" + (logX ? " (log)" : ""), m, series, 0, 1, logX)));
        }
        foreach (var (path, text) in files) AtomicFile.WriteAllText(path, text);
        Console.WriteLine($"written: {string.Join(", ", files.Select(f => f.Path))}");
        return 0;
    }

    private sealed record Report(string Path, JsonObject Json, string Label);

    private static Report Load(string path)
    {
        var file = Directory.Exists(path) ? System.IO.Path.Combine(path, "report.json") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"compare: {file} does not exist (a folder written by 'editrt eval --out', or its report.json).");
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(file))?.AsObject() ?? throw new InvalidDataException("empty"); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or InvalidDataException)
        { throw new InvalidDataException($"compare: {file} is not a report.json ({e.Message})."); }
        foreach (var k in new[] { "editor", "protocol", "backend", "edits", "metrics" })
            if (json[k] is null) throw new InvalidDataException($"compare: {file} has no \"{k}\" (not written by 'editrt eval --out'?).");
        string protocol = (string)json["protocol"]!;
        if (protocol == "sequential-batch" && json["batch_size"] is JsonNode b) protocol = $"seq-batch {(int)json["edits"]! / Math.Max(1, (int)b)}×{(int)b}";
        return new Report(file, json, $"{EditorName(json)} {protocol} {json["backend"]}");
    }

    /// <summary>The editor, with its rounds per batch when it ran several (multi-step editing: MALMEN with iters 2 is
    /// the EMSEdit paper's "MALMEN²", a different method from MALMEN's one round).</summary>
    private static string EditorName(JsonObject report) =>
        report["hparams"]?["iters"] is JsonValue v && v.TryGetValue<int>(out int k) && k > 1 ? $"{report["editor"]} ({k} rounds)" : $"{report["editor"]}";

    private static IReadOnlyList<(double X, double Y)> Curve(Report report, string metric)
    {
        var r = report.Json;
        var pts = new List<(double, double)>();
        try
        {
            if (r["curve"] is JsonArray c)
                foreach (var p in c)
                    if (p?["metrics"]?[metric] is JsonValue v && v.TryGetValue<double>(out var y)) pts.Add(((int)p["edits"]!, y));
            if (pts.Count == 0 && r["metrics"]?[metric] is JsonValue f && f.TryGetValue<double>(out var last)) pts.Add(((int)r["edits"]!, last));
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new InvalidDataException($"compare: {report.Path}: its curve of {metric} is malformed ({e.Message}).");
        }
        return pts;
    }

    private static string Table(IReadOnlyList<Report> runs)
    {
        static string M(JsonNode? n, string fmt = "0.000", double scale = 1) =>
            n is JsonValue v && v.TryGetValue<double>(out var d) ? (d * scale).ToString(fmt, CultureInfo.InvariantCulture) : "–";
        static string Bytes(JsonNode? n) => EditReport.Mib(n is JsonValue v && v.TryGetValue<long>(out var b) ? b : null);
        var sb = new StringBuilder();
        sb.Append("| editor | protocol | backend | edits | ES | GS | GS understood | LS | CF success | ms/edit wall | ms/edit device | peak device MiB (editing / run) | trainable params | report |\n");
        sb.Append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        foreach (var r in runs)
        {
            var j = r.Json; var m = j["metrics"]!; var t = j["timings"];
            sb.Append($"| {EditorName(j)} | {j["protocol"]}{(j["protocol"]!.ToString() == "sequential-batch" ? $" ({j["batch_size"]})" : "")} | {j["backend"]} | {j["edits"]} | " +
                      $"{M(m["ES"])} | {M(m["GS"])} | {M(m["GS_understood"])} | {M(m["LS"])} | {M(m["CF_success"])} | " +
                      $"{M(t?["wall_seconds_per_edit"], "0", 1000)} | {M(t?["device_seconds_per_edit"], "0", 1000)} | {Bytes(t?["peak_edit_device_bytes"])} / {Bytes(t?["peak_device_bytes"])} | {j["trainable_parameters"]?.ToString() ?? "–"} | {System.IO.Path.GetDirectoryName(r.Path)} |\n");
        }
        return sb.ToString();
    }
}
