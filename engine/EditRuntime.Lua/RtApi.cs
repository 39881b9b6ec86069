using System.Globalization;
using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.Vulkan;
using EditRequest = EditRuntime.Editing.EditRequest;

namespace EditRuntime.Lua;

/// <summary>
/// The rt.* API: rt.backend, rt.model (+ Model methods), rt.data, rt.editor (+ Editor methods), rt.eval,
/// rt.tensor (+ Tensor methods) and rt.info. Every function is documented, with an example, in scripts/README.md.
/// </summary>
internal sealed partial class RtApi : IDisposable
{
    private readonly LuaHost _host;
    private readonly Dictionary<string, IBackend> _backends = new(StringComparer.OrdinalIgnoreCase);
    private string _current;
    private readonly List<IDisposable> _owned = new();

    public RtApi(LuaHost host)
    {
        _host = host;
        _current = host.Options.DefaultBackend.ToLowerInvariant();
        if (!BackendNames.Contains(_current))
            throw new ArgumentException($"LuaHostOptions.DefaultBackend: unknown backend \"{host.Options.DefaultBackend}\"; choose one of {string.Join(", ", BackendNames)}.");
    }

    public static IReadOnlyList<string> BackendNames => BackendFactory.Names;

    /// <summary>Directory of the running script (a default read root).</summary>
    public string? ScriptDirectory
    {
        get => _scriptDirectory;
        set { _scriptDirectory = value; _paths = null; }
    }
    private string? _scriptDirectory;

    private LuaHostOptions Options => _host.Options;

    private void Fn(string path, int min, int max, string usage, Func<LuaCall, int> body) => _host.Register(path, min, max, body, usage);

    private static HostFunction Method(string name, int min, int max, string usage, Func<LuaCall, int> body) => new(name, true, min, max, body, usage);

    public void Register()
    {
        Fn("rt.info", 0, 0, "rt.info()", c => c.Return(new Dictionary<string, object?>
        {
            ["lua"] = "Lua 5.4 (KeraLua)",
            ["backend"] = _current,
            ["max_instructions"] = Options.MaxInstructions,
            ["memory_limit"] = Options.MemoryLimitBytes,
            ["tensor_memory_limit"] = Options.TensorMemoryLimitBytes,
            ["heap_bytes"] = _host.HeapBytes,
            ["tensor_bytes"] = _tensorBytes,
            ["instructions"] = _host.InstructionsUsed,
        }));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Fn("rt.clock", 0, 0, "rt.clock()", c => c.Return(clock.Elapsed.TotalSeconds));
        RegisterBackend();
        RegisterModel();
        RegisterData();
        RegisterEditor();
        RegisterEval();
        RegisterTensor();
    }

    // ---------------------------------------------------------------- rt.backend

    private void RegisterBackend()
    {
        Fn("rt.backend.list", 0, 0, "rt.backend.list()", c =>
        {
            var list = new List<object?>();
            foreach (var name in BackendNames)
            {
                var row = new Dictionary<string, object?> { ["name"] = name, ["selected"] = name == _current };
                if (_backends.TryGetValue(name, out var be)) { row["available"] = true; row["device"] = be.DeviceDescription; }
                else
                {
                    var (ok, detail) = Probe(name);
                    row["available"] = ok;
                    row[ok ? "device" : "error"] = detail;
                }
                list.Add(row);
            }
            return c.Return(list);
        });
        Fn("rt.backend.select", 1, 1, "rt.backend.select(name)", c =>
        {
            var name = c.String(1).ToLowerInvariant();
            if (!BackendNames.Contains(name)) throw c.ArgError(1, $"unknown backend \"{name}\"; choose one of {string.Join(", ", BackendNames)}");
            var be = Backend(name); // opened now, so that an unavailable backend fails here
            _current = name;
            return c.Return(be.DeviceDescription);
        });
        Fn("rt.backend.current", 0, 0, "rt.backend.current()", c => c.Return(_current));
    }

    private (bool, string) Probe(string name)
    {
        try
        {
            if (name == "vulkan")
            {
                using var instance = new VulkanInstance(false);
                if (instance.Devices.Count == 0) return (false, "no Vulkan device (install mesa-vulkan-drivers for a CPU device)");
                var d = DeviceSelector.Pick(instance.Devices, Options.Device?.Selector ?? Environment.GetEnvironmentVariable(DeviceSelector.EnvironmentVariable));
                return (true, $"{d.Name} ({d.TypeName})");
            }
            var be = Backend(name); // libtorch: loading it is the only test
            return (true, be.DeviceDescription);
        }
        catch (Exception e) { return (false, e.Message); }
    }

    /// <summary>The backend of that name, opened on first use and kept until the host closes.</summary>
    public IBackend Backend(string? name = null)
    {
        name = (name ?? _current).ToLowerInvariant();
        if (_backends.TryGetValue(name, out var be)) return be;
        if (!BackendNames.Contains(name)) throw new ArgumentException($"unknown backend \"{name}\"; choose one of {string.Join(", ", BackendNames)}");
        be = Options.BackendFactory?.Invoke(name) ?? BackendFactory.Create(name, Options.Device);
        _backends[name] = be;
        return be;
    }

    // ---------------------------------------------------------------- rt.data

    private readonly Dictionary<int, SyntheticWorld> _worlds = new();

    private void RegisterData()
    {
        Fn("rt.data.load", 1, 2, "rt.data.load(path | \"builtin:NAME\"[, {format=, limit=}])", c =>
        {
            // builtin:NAME (the built-in world's splits, made on first use) as on the command line; the result is then path-checked like any file.
            var given = c.String(1);
            var path = Paths.CheckReadTree(given.StartsWith(BuiltinModels.DataPrefix, StringComparison.Ordinal) ? BuiltinModels.ResolveData(given, c.Name) : given, c.Name);
            var o = c.Options(2, "format", "limit");
            var format = Str(o, "format", c) switch
            {
                null or "auto" => EditDatasetFormat.Auto,
                "zsre" => EditDatasetFormat.ZsreMend,
                "counterfact" => EditDatasetFormat.CounterFact,
                "flat" => EditDatasetFormat.Flat,
                var f => throw c.ArgError(2, $"format \"{f}\": choose auto, zsre, counterfact or flat"),
            };
            int limit = Int(o, "limit", c, int.MaxValue, 1);
            var reqs = EditDataset.Load(path, format);
            return c.Return(reqs.Take(limit).Select(RequestTable).ToList());
        });
        Fn("rt.data.synthetic", 0, 1, "rt.data.synthetic([{seed=1234, split=\"eval\", limit=}])", c =>
        {
            var o = c.Options(1, "seed", "split", "limit");
            int seed = Int(o, "seed", c, SyntheticWorld.DefaultSeed, int.MinValue);
            var split = Str(o, "split", c) switch
            {
                null or "eval" => BenchmarkSplit.Eval,
                "train" => BenchmarkSplit.Train,
                var s => throw c.ArgError(1, $"split \"{s}\": choose eval or train"),
            };
            int limit = Int(o, "limit", c, int.MaxValue, 1);
            if (!_worlds.TryGetValue(seed, out var world)) _worlds[seed] = world = SyntheticWorld.Generate(null, seed);
            return c.Return(world.Requests(split).Take(limit).Select(r => RequestTable(FromWorld(r, split))).ToList());
        });
        Fn("rt.data.request", 1, 1, "rt.data.request{prompt=, subject=, target_new=[, target_true=, rephrase={...}, locality={{prompt=, answer=}, ...}]}", c =>
            c.Return(RequestTable(ReadRequest(c.Value(1, "request"), "request", c.Name))));
    }

    private static EditRequest FromWorld(Data.EditRequest r, BenchmarkSplit split) => new(r.Prompt, r.Subject, r.TargetNew.Name, r.Fact.Object.Name,
        r.RephrasePrompts, r.Neighborhood.Select(n => new LocalityPrompt(n.Prompt, n.Answer)).ToList(), r.CaseId, r.CaseId,
        $"synthetic/{SyntheticWorld.SplitName(split)}");

    /// <summary>An edit request as the table scripts see.</summary>
    internal static Dictionary<string, object?> RequestTable(EditRequest r) => new()
    {
        ["prompt"] = r.Prompt,
        ["subject"] = r.Subject,
        ["target_new"] = r.TargetNew,
        ["target_true"] = r.TargetTrue,
        ["rephrase"] = r.RephrasePrompts.ToList(),
        ["locality"] = r.Locality.Select(l => new Dictionary<string, object?> { ["prompt"] = l.Prompt, ["answer"] = l.Answer }).ToList(),
        ["case_id"] = r.CaseId,
        ["index"] = r.Index,
        ["source"] = r.Source,
    };

    private static readonly string[] RequestFields = ["prompt", "subject", "target_new", "target_true", "rephrase", "locality", "case_id", "index", "source"];

    /// <summary>A request table → EditRequest, normalised as the dataset loaders do; errors name the field.</summary>
    internal static EditRequest ReadRequest(object? v, string path, string fn)
    {
        var d = LuaValues.AsDictionary(v, $"{fn}: {path}");
        foreach (var k in d.Keys)
            if (!RequestFields.Contains(k)) throw new LuaArgumentException($"{fn}: {path}.{k}: not a request field (fields: {string.Join(", ", RequestFields)})");
        string Req(string key, bool trimStart, bool trimEnd)
        {
            if (!d.TryGetValue(key, out var x) || x is null) throw new LuaArgumentException($"{fn}: {path}.{key}: missing (a string is required)");
            if (x is not string s) throw new LuaArgumentException($"{fn}: {path}.{key}: string expected, got {LuaValues.Describe(x)}");
            if (trimStart) s = s.TrimStart();
            if (trimEnd) s = s.TrimEnd();
            return s.Length > 0 ? s : throw new LuaArgumentException($"{fn}: {path}.{key}: is empty");
        }
        List<string> Strings(string key)
        {
            if (!d.TryGetValue(key, out var x) || x is null) return [];
            if (x is string one) return [one.TrimEnd()];
            var list = LuaValues.AsList(x, $"{fn}: {path}.{key}");
            return list.Select((p, i) => p is string s && s.TrimEnd().Length > 0 ? s.TrimEnd()
                : throw new LuaArgumentException($"{fn}: {path}.{key}[{i + 1}]: a non-empty string expected, got {LuaValues.Describe(p)}")).ToList();
        }
        var prompt = Req("prompt", false, true);
        var subject = Req("subject", true, true);
        var targetNew = Req("target_new", true, false);
        string? targetTrue = d.TryGetValue("target_true", out var tt) && tt is not null ? Req("target_true", true, false) : null;
        var locality = new List<LocalityPrompt>();
        if (d.TryGetValue("locality", out var loc) && loc is not null)
        {
            var list = LuaValues.AsList(loc, $"{fn}: {path}.locality");
            for (int i = 0; i < list.Count; i++)
            {
                string p = $"{path}.locality[{i + 1}]";
                var item = list[i];
                string? lp, la;
                if (item is List<object?> { Count: 2 } pair) { lp = pair[0] as string; la = pair[1] as string; }
                else
                {
                    var ld = LuaValues.AsDictionary(item, $"{fn}: {p}");
                    lp = ld.GetValueOrDefault("prompt") as string; la = ld.GetValueOrDefault("answer") as string;
                }
                if (string.IsNullOrWhiteSpace(lp) || string.IsNullOrWhiteSpace(la))
                    throw new LuaArgumentException($"{fn}: {p}: {{prompt = \"...\", answer = \"...\"}} expected (two non-empty strings)");
                locality.Add(new LocalityPrompt(lp.TrimEnd(), la.TrimStart()));
            }
        }
        int Num(string key, int def) => d.TryGetValue(key, out var x) && x is not null
            ? x is long l && l is >= int.MinValue and <= int.MaxValue ? (int)l : throw new LuaArgumentException($"{fn}: {path}.{key}: integer expected, got {LuaValues.Describe(x)}")
            : def;
        int index = Num("index", 0);
        return new EditRequest(prompt, subject, targetNew, targetTrue, Strings("rephrase").AsReadOnly(), locality.AsReadOnly(),
            Num("case_id", index), index, d.GetValueOrDefault("source") as string ?? "lua");
    }

    /// <summary>One request table or an array of them.</summary>
    internal static List<EditRequest> ReadRequests(LuaCall c, int i)
    {
        var v = c.Value(i, "requests");
        if (v is Dictionary<string, object?>) return [ReadRequest(v, "request", c.Name)];
        if (v is List<object?> { Count: > 0 } list) return list.Select((r, k) => ReadRequest(r, $"requests[{k + 1}]", c.Name)).ToList();
        throw c.ArgError(i, v is List<object?> ? "no requests (empty table)" : $"a request or an array of requests expected, got {LuaValues.Describe(v)}");
    }

    // ---------------------------------------------------------------- option helpers

    internal static string? Str(Dictionary<string, object?> o, string key, LuaCall c) => o.GetValueOrDefault(key) switch
    {
        null => null,
        string s => s,
        var x => throw new LuaArgumentException($"{c.Name}: option '{key}': string expected, got {LuaValues.Describe(x)}"),
    };

    internal static int Int(Dictionary<string, object?> o, string key, LuaCall c, int def, int min)
    {
        var x = o.GetValueOrDefault(key);
        if (x is null) return def;
        if (x is not long l || l < min || l > int.MaxValue)
            throw new LuaArgumentException($"{c.Name}: option '{key}': {(x is long ? $"must be at least {min}, got {x}" : $"integer expected, got {LuaValues.Describe(x)}")}");
        return (int)l;
    }

    internal static double Num(Dictionary<string, object?> o, string key, LuaCall c, double def)
    {
        var x = o.GetValueOrDefault(key);
        return x switch { null => def, long l => l, double d => d, _ => throw new LuaArgumentException($"{c.Name}: option '{key}': number expected, got {LuaValues.Describe(x)}") };
    }

    internal static string Invariant(object? v) => v switch
    {
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        string s => s,
        _ => throw new LuaArgumentException($"a number, string or boolean expected, got {LuaValues.Describe(v)}"),
    };

    // ---------------------------------------------------------------- paths

    private PathPolicy? _paths;
    internal PathPolicy Paths => _paths ??= new PathPolicy(
        new[] { Directory.GetCurrentDirectory(), Path.GetTempPath(), BuiltinModels.ModelsDirectory }
            .Concat(ScriptDirectory is null ? [] : [ScriptDirectory]).Concat(Options.ReadRoots).Where(d => d is not null).Cast<string>(),
        new[] { Directory.GetCurrentDirectory(), Path.GetTempPath() }.Concat(Options.WriteRoots));

    public void Dispose()
    {
        // Editors first (they hold adapters and weights of models), then tensors, models, backends.
        foreach (var o in _host.LiveObjects.OfType<EditorObject>().ToList()) o.Close();
        foreach (var o in _host.LiveObjects.OfType<TensorObject>().ToList()) o.Free();
        foreach (var o in _host.LiveObjects.OfType<ModelObject>().ToList()) o.Close();
        foreach (var d in _owned) d.Dispose();
        foreach (var be in _backends.Values) be.Dispose();
        _backends.Clear();
    }
}
