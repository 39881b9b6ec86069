using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;
using EditRuntime.Reports;

namespace EditRuntime.Lua;

/// <summary>An editor (a registered plugin, or one defined in Lua with rt.editor.define) bound to one model.</summary>
internal sealed class EditorObject(IEditor editor, ModelObject model) : LuaObject
{
    public IEditor Editor => Closed ? throw new LuaArgumentException($"this editor ({editor.Name}) was closed")
        : model.Closed ? throw new LuaArgumentException($"the model of this editor ({model.Path}) was closed") : editor;
    public ModelObject Model { get; } = model;
    public bool Closed { get; private set; }
    public override string TypeName => "Editor";
    public override string Describe() => $"Editor({editor.Name} on {Model.Path}{(Closed ? ", closed" : "")})";

    public void Close()
    {
        if (Closed) return;
        Closed = true;
        editor.Dispose();
    }
}

/// <summary>Locality scores of the unedited model, kept to measure LS after edits.</summary>
internal sealed class BaselineObject(ModelObject model, IReadOnlyList<EditRequest> requests, IReadOnlyList<TargetScore> scores) : LuaObject
{
    public ModelObject Model { get; } = model;
    public IReadOnlyList<EditRequest> Requests { get; } = requests;
    public IReadOnlyList<TargetScore> Scores { get; } = scores;
    public override string TypeName => "Baseline";
    public override string Describe() => $"Baseline({Requests.Count} requests, {Scores.Count} locality prompts, {Model.Path})";
}

/// <summary>An <see cref="IEditor"/> whose methods are Lua functions (rt.editor.define), so that an editor written in
/// Lua runs under the same protocols and metrics as the plugins.</summary>
internal sealed class LuaDefinedEditor(LuaHost host, string name, string paper, Dictionary<string, LuaFunctionRef> fns, Dictionary<string, object?> hparams) : IEditor
{
    private int _nextId;
    public string Name => name;
    public bool CanRemove => fns.ContainsKey("remove");

    public EditorDescription Describe()
    {
        var hp = new JsonObject();
        foreach (var (k, v) in hparams) hp[k] = v switch { long l => JsonValue.Create(l), double d => JsonValue.Create(d), bool b => JsonValue.Create(b), _ => JsonValue.Create(v?.ToString()) };
        long trainable = 0;
        var layers = new List<string>();
        if (fns.TryGetValue("info", out var info) && host.CallFunction(info, 1)[0] is Dictionary<string, object?> described)
        {
            if (described.GetValueOrDefault("trainable_parameters") is long t) trainable = t;
            if (described.GetValueOrDefault("layers") is List<object?> ls) layers.AddRange(ls.OfType<string>());
        }
        return new EditorDescription(Name, paper, trainable, layers, hp);
    }

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        var r = host.CallFunction(fns["edit"], 1, batch.Select(RtApi.RequestTable).ToList())[0];
        if (r is List<object?> ids && ids.Count == batch.Count && ids.All(i => i is long))
        {
            var list = ids.Select(i => (int)(long)i!).ToList();
            _nextId = Math.Max(_nextId, list.Max() + 1);
            return list;
        }
        if (r is not null) throw new LuaNestedException($"editor {Name}: edit must return nothing or one integer id per request ({batch.Count}), got {LuaValues.Describe(r)}");
        return batch.Select(_ => _nextId++).ToList();
    }

    public void Remove(int editId)
    {
        if (!fns.TryGetValue("remove", out var f)) throw new NotSupportedException($"editor {Name} defines no remove(id): it cannot undo one edit (rollback() undoes all)");
        host.CallFunction(f, 0, (long)editId);
    }

    public void Reset() => host.CallFunction(fns["reset"], 0);

    public void Save(string path)
    {
        if (!fns.TryGetValue("save", out var f)) throw new NotSupportedException($"editor {Name} defines no save(path)");
        host.CallFunction(f, 0, path);
    }

    public void Load(string path)
    {
        if (!fns.TryGetValue("load", out var f)) throw new NotSupportedException($"editor {Name} defines no load(path)");
        host.CallFunction(f, 0, path);
    }

    public void Dispose()
    {
        foreach (var f in fns.Values) f.Dispose();
    }
}

internal sealed partial class RtApi
{
    private static readonly string[] EditorFunctions = ["edit", "reset", "remove", "save", "load", "info"];

    private void RegisterEditor()
    {
        Fn("rt.editor.list", 0, 0, "rt.editor.list()", c => c.Return(EditorRegistry.Names.OrderBy(n => n).ToList()));
        Fn("rt.editor.new", 2, 2, "rt.editor.new(name, {model=, hparams={...}, hparams_file=, family=})", c =>
        {
            var name = c.String(1);
            var o = c.Options(2, "model", "hparams", "hparams_file", "family");
            var model = o.GetValueOrDefault("model") as ModelObject ?? throw c.ArgError(2, "cfg.model: a Model expected (from rt.model.load)");
            var hp = LuaValues.AsDictionary(o.GetValueOrDefault("hparams"), $"{c.Name}: cfg.hparams");
            var overrides = hp.ToDictionary(kv => kv.Key, kv =>
            {
                try { return Invariant(kv.Value); }
                catch (LuaArgumentException e) { throw new LuaArgumentException($"{c.Name}: cfg.hparams.{kv.Key}: {e.Message}"); }
            });
            var file = Str(o, "hparams_file", c) is string f ? Paths.CheckRead(f, c.Name) : null;
            var editor = EditorRegistry.Create(name, model.Context, Str(o, "family", c) ?? model.Family, file, overrides, "cfg.hparams");
            return c.Return(new EditorObject(editor, model));
        });
        Fn("rt.editor.define", 1, 1, "rt.editor.define{name=, model=, edit=function(requests) ... end, reset=function() ... end[, remove=, save=, load=, info=, paper=, hparams=]}", c =>
        {
            var spec = c.Options(1, [.. EditorFunctions, "name", "model", "paper", "hparams"]);
            var name = Str(spec, "name", c) ?? throw c.ArgError(1, "name: a string is required");
            var model = spec.GetValueOrDefault("model") as ModelObject ?? throw c.ArgError(1, "model: a Model is required (the model the editor changes)");
            var fns = new Dictionary<string, LuaFunctionRef>();
            foreach (var k in EditorFunctions)
                if (spec.GetValueOrDefault(k) is { } v)
                    fns[k] = v as LuaFunctionRef ?? throw c.ArgError(1, $"{k}: function expected, got {LuaValues.Describe(v)}");
            foreach (var required in new[] { "edit", "reset" })
                if (!fns.ContainsKey(required)) { foreach (var f in fns.Values) f.Dispose(); throw c.ArgError(1, $"{required}: a function is required"); }
            var hp = LuaValues.AsDictionary(spec.GetValueOrDefault("hparams"), $"{c.Name}: hparams");
            var editor = new LuaDefinedEditor(_host, name, Str(spec, "paper", c) ?? "defined in Lua", fns, hp);
            return c.Return(new EditorObject(editor, model));
        });

        _host.DefineType("Editor",
        [
            Method("Editor:edit", 1, 1, "editor:edit(request or {requests})", c =>
            {
                var e = c.Self<EditorObject>();
                return c.Return(e.Editor.Edit(ReadRequests(c, 1)).ToList());
            }),
            Method("Editor:rollback", 0, 1, "editor:rollback([id])", c =>
            {
                var e = c.Self<EditorObject>();
                if (c.IsNil(1)) e.Editor.Reset();
                else e.Editor.Remove(c.Int(1, 0));
                return c.Nothing();
            }),
            Method("Editor:can_remove", 0, 0, "editor:can_remove()", c => c.Return(c.Self<EditorObject>().Editor.CanRemove)),
            Method("Editor:save", 1, 1, "editor:save(path)", c =>
            {
                var e = c.Self<EditorObject>();
                var path = Paths.CheckWrite(c.String(1), c.Name);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                e.Editor.Save(path);
                return c.Return(path);
            }),
            Method("Editor:load", 1, 1, "editor:load(path)", c =>
            {
                var e = c.Self<EditorObject>();
                e.Editor.Load(Paths.CheckReadTree(c.String(1), c.Name));
                return c.Nothing();
            }),
            Method("Editor:info", 0, 0, "editor:info()", c =>
            {
                var e = c.Self<EditorObject>();
                var d = e.Editor.Describe();
                return c.Return(new Dictionary<string, object?>
                {
                    ["name"] = d.Name, ["paper"] = d.Paper, ["trainable_parameters"] = d.TrainableParameters,
                    ["layers"] = d.LayersTouched.ToList(), ["hparams"] = JsonToLua(d.HyperParameters), ["can_remove"] = e.Editor.CanRemove,
                    ["model"] = e.Model.Path,
                });
            }),
            Method("Editor:meta_train", 2, 2, "editor:meta_train(requests, {out=dir, epochs=1, steps=, checkpoint_every=10, resume=false, progress=function(msg) end})", c =>
            {
                var e = c.Self<EditorObject>();
                var reqs = ReadRequests(c, 1);
                var o = c.Options(2, "out", "epochs", "steps", "checkpoint_every", "resume", "progress");
                var outDir = Str(o, "out", c) is { } od ? Paths.CheckWrite(od, c.Name) : throw c.ArgError(2, "out: the run's folder is required (checkpoint, log, hypernet.safetensors)");
                int epochs = Int(o, "epochs", c, 1, 1);
                int? steps = o.ContainsKey("steps") ? Int(o, "steps", c, 1, 1) : null;
                int every = Int(o, "checkpoint_every", c, 10, 1);
                bool resume = o.GetValueOrDefault("resume") switch
                {
                    null => false,
                    bool b => b,
                    var x => throw c.ArgError(2, $"resume: boolean expected, got {LuaValues.Describe(x)}"),
                };
                var progress = OptionalFunction(o, "progress", c, 2);
                if (e.Editor is not IMetaTrainable trainable)
                    throw new LuaArgumentException($"{c.Name}: {e.Editor.Name} has nothing to meta-train (editors with a hyper-network: " +
                        string.Join(", ", EditorRegistry.MetaTrainableNames) + ")");
                var history = trainable.MetaTrain(reqs, new MetaTrainingOptions
                {
                    OutDirectory = outDir, Epochs = epochs, MaxSteps = steps, CheckpointEvery = every, Resume = resume,
                    Log = progress is null ? null : msg => _host.CallFunction(progress, 0, msg),
                    Provenance = new JsonObject { ["model"] = e.Model.Path, ["data"] = "requests from a Lua script" },
                });
                return c.Return(history.Select(h => (object?)new Dictionary<string, object?>
                {
                    ["step"] = (long)h.Step, ["epoch"] = (long)h.Epoch, ["loss"] = h.Loss, ["gen_ce"] = h.GeneralisationLoss,
                    ["reg"] = h.RegulariserLoss, ["regulariser"] = h.Regulariser, ["grad_norm"] = h.GradNorm, ["seconds"] = h.Seconds,
                }).ToList());
            }),
            Method("Editor:close", 0, 0, "editor:close()", c => { c.Self<EditorObject>().Close(); return c.Nothing(); }),
        ]);
    }

    /// <summary>An optional function in an options table (nil: none); anything else is an error naming the key.</summary>
    private static LuaFunctionRef? OptionalFunction(Dictionary<string, object?> o, string key, LuaCall c, int arg) => o.GetValueOrDefault(key) switch
    {
        null => null,
        LuaFunctionRef f => f,
        var x => throw c.ArgError(arg, $"{key}: function expected, got {LuaValues.Describe(x)}"),
    };

    private static object? JsonToLua(JsonNode? n) => n switch
    {
        null => null,
        JsonObject o => o.ToDictionary(p => p.Key, p => JsonToLua(p.Value)),
        JsonArray a => a.Select(JsonToLua).ToList(),
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        JsonValue v => v.ToString(),
    };

    // ---------------------------------------------------------------- rt.eval

    private static readonly string[] ProtocolNames = ["single", "batch", "sequential", "sequential-batch"];

    private void RegisterEval()
    {
        _host.DefineType("Baseline",
        [
            Method("Baseline:info", 0, 0, "baseline:info()", c =>
            {
                var b = c.Self<BaselineObject>();
                return c.Return(new Dictionary<string, object?> { ["requests"] = b.Requests.Count, ["locality_prompts"] = b.Scores.Count, ["model"] = b.Model.Path });
            }),
        ]);
        Fn("rt.eval.protocols", 0, 0, "rt.eval.protocols()", c => c.Return(ProtocolNames.ToList()));
        Fn("rt.eval.baseline", 2, 2, "rt.eval.baseline(model, requests)", c =>
        {
            var m = c.Object<ModelObject>(1, "Model");
            var reqs = ReadRequests(c, 2);
            return c.Return(new BaselineObject(m, reqs, EditProtocols.LocalityScores(m.Context, reqs)));
        });
        Fn("rt.eval.metrics", 2, 3, "rt.eval.metrics(model, requests[, baseline])", c =>
        {
            var m = c.Object<ModelObject>(1, "Model");
            var reqs = ReadRequests(c, 2);
            IReadOnlyList<TargetScore> baseline;
            bool withLocality = !c.IsNil(3);
            if (withLocality)
            {
                var b = c.Object<BaselineObject>(3, "Baseline");
                if (b.Model != m) throw c.ArgError(3, $"the baseline was measured on another model ({b.Model.Path})");
                if (!b.Requests.SequenceEqual(reqs)) throw c.ArgError(3, "the baseline was measured on other requests (rt.eval.baseline(model, requests) with the same requests, before editing)");
                baseline = b.Scores;
            }
            else baseline = EditProtocols.LocalityScores(m.Context, reqs); // LS is reported as nil below
            var s = EditProtocols.Measure(m.Context, reqs, baseline);
            var r = ScoresTable(s);
            if (!withLocality) r.Remove("ls");
            return c.Return(r);
        });
        Fn("rt.eval.run", 2, 3, "rt.eval.run(editor, requests[, {protocol=\"sequential\", edits=, batch=10, curve_every=0, progress=function(msg) end, out=dir, data=\"label\"}])", c =>
        {
            var e = c.Object<EditorObject>(1, "Editor");
            var reqs = ReadRequests(c, 2);
            var o = c.Options(3, "protocol", "edits", "batch", "curve_every", "progress", "out", "data");
            // out: the report files of `editrt eval --out` (report.json/md/svg, read by `editrt compare`); data: what the requests are, for the report
            var outDir = Str(o, "out", c) is { } od ? Paths.CheckWrite(od, c.Name) : null;
            var dataLabel = Str(o, "data", c) ?? "requests from a Lua script";
            var protocol = Str(o, "protocol", c) ?? "sequential";
            if (!ProtocolNames.Contains(protocol)) throw c.ArgError(3, $"protocol \"{protocol}\": choose {string.Join(", ", ProtocolNames)}");
            int edits = Int(o, "edits", c, reqs.Count, 1);
            int batch = Int(o, "batch", c, 10, 1);
            int curveEvery = Int(o, "curve_every", c, 0, 0);
            var progress = OptionalFunction(o, "progress", c, 3);
            try
            {
                var r = ProtocolRunner.Run(e.Model.Context, e.Editor, reqs, protocol, edits, batch, curveEvery,
                    progress is null ? null : msg => _host.CallFunction(progress, 0, msg));
                var t = ScoresTable(r.Scores);
                t["gs_understood"] = double.IsNaN(r.Scores.GeneralityUnderstood) ? null : r.Scores.GeneralityUnderstood;
                t["understood_rephrases"] = (long)r.Scores.UnderstoodRephrases;
                t["device_seconds_per_edit"] = r.DeviceSecondsPerEdit;
                t["peak_device_mib"] = r.PeakDeviceBytes / 1048576.0;
                t["peak_edit_device_mib"] = r.PeakEditDeviceBytes / 1048576.0;
                t["measure_seconds"] = r.MeasureSeconds;
                t["curve"] = r.Curve.Select(p => { var x = ScoresTable(p.Scores); x["edits"] = (long)p.Edits; return (object?)x; }).ToList();
                t["editor"] = e.Editor.Name;
                t["protocol"] = protocol;
                t["edits"] = r.Edits;
                t["batch"] = r.BatchSize;
                t["seconds_per_edit"] = r.SecondsPerEdit;
                t["total_seconds"] = r.TotalSeconds;
                t["backend"] = e.Model.Model.Backend.Name;
                t["model"] = e.Model.Path;
                var described = e.Editor.Describe(); // after the run: editors whose state grows count it now
                t["hparams"] = JsonToLua(described.HyperParameters); // the config beside the results
                if (outDir is not null)
                {
                    var be = e.Model.Model.Backend;
                    var files = EditReport.Write(outDir, described, new RunProvenance(e.Model.Path, dataLabel, e.Model.Family, be.Name, be.DeviceDescription, protocol),
                        r, (e.Editor as IEditorDiagnostics)?.Diagnostics());
                    t["report"] = files[0];
                }
                return c.Return(t);
            }
            finally { progress?.Dispose(); }
        });
        Fn("rt.eval.report", 2, 3, "rt.eval.report(dir, runs[, {title=}])", c =>
        {
            var dir = Paths.CheckWrite(c.String(1), c.Name);
            var v = c.Value(2, "runs");
            var runs = v is Dictionary<string, object?> one ? [one] : LuaValues.AsList(v, $"{c.Name}: runs").Select((r, i) => LuaValues.AsDictionary(r, $"{c.Name}: runs[{i + 1}]")).ToList();
            if (runs.Count == 0) throw c.ArgError(2, "no runs");
            var title = Str(c.Options(3, "title"), "title", c) ?? "EditRuntime report";
            Directory.CreateDirectory(dir);
            var json = new JsonObject
            {
                ["title"] = title,
                ["date"] = DateTime.UtcNow.ToString("u"),
                ["commit"] = EditReport.Commit(), ["build"] = BuildInfo.Commit,
                ["runs"] = new JsonArray(runs.Select(r => (JsonNode)ToJson(r)!).ToArray()),
            };
            AtomicFile.WriteAllText(Path.Combine(dir, "report.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            AtomicFile.WriteAllText(Path.Combine(dir, "report.md"), Markdown(title, runs));
            return c.Return(Path.Combine(dir, "report.json"));
        });
    }

    private static Dictionary<string, object?> ScoresTable(EditScores s)
    {
        static object? N(double d) => double.IsNaN(d) ? null : d;
        return new Dictionary<string, object?>
        {
            ["es"] = N(s.Efficacy), ["gs"] = N(s.Generality), ["ls"] = N(s.Locality), ["cf"] = N(s.CounterFactSuccess), ["requests"] = s.Requests,
        };
    }

    private static JsonNode? ToJson(object? v) => v switch
    {
        null => null,
        bool b => JsonValue.Create(b),
        long l => JsonValue.Create(l),
        double d => double.IsFinite(d) ? JsonValue.Create(d) : null,
        string s => JsonValue.Create(s),
        Dictionary<string, object?> d => new JsonObject(d.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, ToJson(p.Value)))),
        List<object?> l => new JsonArray(l.Select(ToJson).ToArray()),
        LuaObject o => JsonValue.Create(o.Describe()),
        _ => JsonValue.Create(v.ToString()),
    };

    private static string Markdown(string title, List<Dictionary<string, object?>> runs)
    {
        string Cell(Dictionary<string, object?> r, string k, string fmt = "0.000") => r.GetValueOrDefault(k) switch
        {
            null => "—",
            double d => d.ToString(fmt, System.Globalization.CultureInfo.InvariantCulture),
            long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
            var x => x.ToString()!.Replace("|", "\\|"),
        };
        var sb = new StringBuilder($"# {title}\n\n| editor | backend | protocol | edits | ES | GS | LS | CF success | ms/edit |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n");
        foreach (var r in runs)
        {
            string ms = r.GetValueOrDefault("seconds_per_edit") is double s ? (s * 1000).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) : "—";
            sb.Append($"| {Cell(r, "editor")} | {Cell(r, "backend")} | {Cell(r, "protocol")} | {Cell(r, "edits")} | {Cell(r, "es")} | {Cell(r, "gs")} | {Cell(r, "ls")} | {Cell(r, "cf")} | {ms} |\n");
        }
        return sb.ToString();
    }
}

/// <summary>The one place the Lua host calls <see cref="EditProtocols.Run"/> (its signature is still moving).</summary>
internal static class ProtocolRunner
{
    public static EditRunResult Run(EditorContext ctx, IEditor editor, IReadOnlyList<EditRequest> requests, string protocol, int edits, int batch, int curveEvery, Action<string>? progress)
    {
        if (edits > requests.Count) throw new ArgumentException($"edits = {edits} but only {requests.Count} requests were given");
        return EditProtocols.Run(ctx, editor, requests, EditProtocols.Parse(protocol), edits, batch,
            new EditRunOptions { CurveEvery = curveEvery, Progress = progress is null ? null : p => progress(p.ToString()) });
    }
}
