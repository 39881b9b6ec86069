using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using EditRuntime.Backends;
using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;
using EditRuntime.Reports;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>
/// `editrt bench edit`: how one batch edit scales with the number of requests in it. For each size N, per backend: the
/// wall time of the Edit call, the device time (GPU timestamps, Vulkan), the peak device memory of live tensors during it
/// (Vulkan) above what was held before it, and, for the hyper-network editors, the stages (key/gradient cache, shift) and
/// the cache's own bytes (rows × Σ (d_in + d_out) × 4), so the growth of the peak can be read against the cache.
/// The editor is Reset between sizes; nothing is measured but the edit.
/// </summary>
internal static class BenchEditCommand
{
    private sealed record Row(string Backend, int N, double Wall, double? Device, long? Before, long? Peak, int? Rows, long? CacheBytes,
        double? CacheSeconds, double? ShiftSeconds);

    public static int Run(DeviceOptions options, string editorName, string modelDir, IReadOnlyList<string> data, string sizesText,
        string backends, string? outDir, string? family, string? hparams, IReadOnlyList<string> overrides)
    {
        var sizes = sizesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : throw new ArgumentException($"--sizes: \"{t}\" is not a positive number of requests.")).ToList();
        if (sizes.Count == 0) throw new ArgumentException("--sizes: give at least one number of requests.");
        var names = Cli.BackendNames(backends);
        var ov = HyperParameterOverrides.Parse(overrides);
        using var output = outDir is null ? null : OutputDirectory.Claim(outDir, "--out");
        IReadOnlyList<string> given = data.Count == 0 ? ["builtin:counterfact_eval", "builtin:counterfact_train"] : data;
        var files = given.Select(f => BuiltinModels.ResolveData(f)).ToList();
        var requests = files.SelectMany(f => EditDataset.Load(f)).ToList();
        if (sizes.Max() > requests.Count)
            throw new ArgumentException($"--sizes: {sizes.Max()} requests asked for, {string.Join(" + ", files)} hold {requests.Count}.");
        var md = ModelFolders.Load(modelDir);
        family ??= md.Family;
        Console.WriteLine($"bench edit: {editorName} on {modelDir}, one batch of N requests from {string.Join(" + ", files)} ({requests.Count}), N = {string.Join(", ", sizes)}");
        var rows = new List<Row>();
        var devices = new Dictionary<string, string>();
        foreach (var name in names)
        {
            using var be = BackendFactory.Create(name, options);
            devices[name] = be.DeviceDescription;
            using var model = ModelFolders.Open(be, md);
            var ctx = new EditorContext(model, md);
            using var editor = EditorRegistry.Create(editorName, ctx, family, hparams, ov);
            var d = editor.Describe();
            long widthBytes = d.LayersTouched.Sum(s => model.Parameters.TryGetValue(s + ".weight", out var w) ? 4L * (w.Shape[0] + w.Shape[1]) : 0);
            var counters = be as IDeviceCounters;
            Console.WriteLine($"{name}: {be.DeviceDescription}; hyper-parameters ({family}): {d.HyperParameters.ToJsonString()}");
            // A first small edit warms the kernels (pipelines, libtorch's first calls) so the first size is not charged for them.
            editor.Edit(requests.Take(Math.Min(8, sizes.Min())).ToList());
            editor.Reset();
            foreach (int n in sizes)
            {
                var batch = requests.Take(n).ToList();
                be.Synchronize();
                counters?.ResetPeakDeviceBytes();
                long? before = counters?.PeakDeviceBytes;
                double busy0 = counters?.DeviceBusySeconds ?? 0;
                var sw = Stopwatch.StartNew();
                editor.Edit(batch);
                be.Synchronize();
                double wall = sw.Elapsed.TotalSeconds;
                double? device = counters is null ? null : counters.DeviceBusySeconds - busy0;
                long? peak = counters?.PeakDeviceBytes;
                var last = (editor as IEditorDiagnostics)?.Diagnostics()["batches"] is JsonArray b && b.Count > 0 ? b[^1] as JsonObject : null;
                int? cached = last?["cached_rows"]?.GetValue<int>();
                var row = new Row(name, n, wall, device, before, peak, cached, cached is int c ? c * widthBytes : null,
                    last?["cache_seconds"]?.GetValue<double>(), last?["shift_seconds"]?.GetValue<double>());
                rows.Add(row);
                Console.WriteLine(Format(row));
                editor.Reset();
            }
        }

        var table = Table(rows, editorName, devices);
        Console.WriteLine();
        Console.Write(table);
        if (outDir is not null)
        {
            AtomicFile.WriteAllText(Path.Combine(outDir, "bench.md"), table);
            var json = new JsonObject
            {
                ["editor"] = editorName, ["model"] = modelDir, ["data"] = new JsonArray(files.Select(f => (JsonNode)f).ToArray()),
                ["devices"] = new JsonObject(devices.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["build"] = BuildInfo.Commit,
                ["rows"] = new JsonArray(rows.Select(r => (JsonNode)new JsonObject
                {
                    ["backend"] = r.Backend, ["n"] = r.N, ["wall_seconds"] = r.Wall, ["device_seconds"] = r.Device,
                    ["device_bytes_before"] = r.Before, ["peak_device_bytes"] = r.Peak, ["cached_rows"] = r.Rows, ["cache_bytes"] = r.CacheBytes,
                    ["cache_seconds"] = r.CacheSeconds, ["shift_seconds"] = r.ShiftSeconds,
                }).ToArray()),
            };
            AtomicFile.WriteAllText(Path.Combine(outDir, "bench.json"), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
            string[] colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
            var time = names.Select((b, i) => new PlotSeries($"{b} wall", colours[i], rows.Where(r => r.Backend == b).Select(r => ((double)r.N, r.Wall)).ToList())).ToList();
            AtomicFile.WriteAllText(Path.Combine(outDir, "time.svg"), SvgPlot.Lines($"{editorName}: one batch edit, wall time", "requests in the batch", "seconds", time, 0));
            var mem = rows.Where(r => r.Peak is not null).ToList();
            if (mem.Count > 0)
            {
                var series = new List<PlotSeries>
                {
                    new("peak above the weights held before (MiB)", colours[0], mem.Select(r => ((double)r.N, (r.Peak!.Value - r.Before!.Value) / 1048576.0)).ToList()),
                };
                if (mem.All(r => r.CacheBytes is not null))
                    series.Add(new("key/gradient cache (MiB)", colours[2], mem.Select(r => ((double)r.N, r.CacheBytes!.Value / 1048576.0)).ToList(), Dashed: true));
                AtomicFile.WriteAllText(Path.Combine(outDir, "memory.svg"), SvgPlot.Lines($"{editorName}: device memory of one batch edit (vulkan)", "requests in the batch", "MiB", series, 0));
            }
            Console.WriteLine($"wrote {Path.Combine(outDir, "bench.md")}, bench.json, time.svg" + (mem.Count > 0 ? ", memory.svg" : ""));
        }
        return 0;
    }

    private static string Mib(long? b) => b is long v ? (v / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) : "—";

    private static string Format(Row r) =>
        FormattableString.Invariant($"  {r.Backend,-6} N {r.N,5}: {r.Wall,8:0.000} s wall") +
        (r.Device is double d ? FormattableString.Invariant($", {d:0.000} s device") : "") +
        (r.CacheSeconds is double c ? FormattableString.Invariant($" (cache {c:0.000} s, shift {r.ShiftSeconds:0.000} s)") : "") +
        (r.Peak is long p ? $"; peak {Mib(p)} MiB, {Mib(p - r.Before)} MiB above the {Mib(r.Before)} held before" : "") +
        (r.Rows is int rows ? $"; {rows} cached rows = {Mib(r.CacheBytes)} MiB" : "");

    private static string Table(List<Row> rows, string editor, Dictionary<string, string> devices)
    {
        var sb = new StringBuilder();
        sb.Append($"{editor}, one batch edit of N requests ({string.Join("; ", devices.Select(kv => $"{kv.Key}: {kv.Value}"))})\n\n");
        sb.Append("| backend | N | wall s | ms per edit | device s | cache s | shift s | cached rows | cache MiB | peak MiB above before | peak MiB |\n");
        sb.Append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var r in rows)
            sb.Append(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Backend} | {r.N} | {r.Wall:0.000} | {1000 * r.Wall / r.N:0.00} | {(r.Device is double d ? d.ToString("0.000", CultureInfo.InvariantCulture) : "—")} | " +
                $"{(r.CacheSeconds is double c ? c.ToString("0.000", CultureInfo.InvariantCulture) : "—")} | {(r.ShiftSeconds is double s ? s.ToString("0.000", CultureInfo.InvariantCulture) : "—")} | " +
                $"{(r.Rows is int n ? n.ToString(CultureInfo.InvariantCulture) : "—")} | {Mib(r.CacheBytes)} | {(r.Peak is long p ? Mib(p - r.Before) : "—")} | {Mib(r.Peak)} |\n"));
        return sb.ToString();
    }
}
