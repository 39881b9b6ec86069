using System.Reflection;
using System.Text.Json.Nodes;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>The model an editor works on, and how its prompts are tokenised.</summary>
public sealed record EditorContext(ILanguageModel Model, IModelFolder Directory)
{
    /// <summary>The device memory an editor's state may take (null: no limit); editors check their estimate with <see cref="EditorMemory.Require"/>.
    /// Default: what the model's backend can still hold (its device heap, or the host's available memory for the CPU backend),
    /// so that MELO with num_blocks = 1,000,000 is refused at once instead of meeting the out-of-memory killer.</summary>
    public long? DeviceMemoryLimit { get; init; } = EditRuntime.Backends.HostMemory.For(Model.Backend);

    /// <summary>(prompt ids, target ids) of a request: prompt as the model expects it, target with its leading space.</summary>
    public (int[] Prompt, int[] Target) Encode(string prompt, string target) =>
        (Directory.EncodePrompt(prompt), Directory.Tokenizer.Encode(" " + target));
}

/// <summary>What an editor is and what it touches.</summary>
public sealed record EditorDescription(string Name, string Paper, long TrainableParameters, IReadOnlyList<string> LayersTouched, JsonObject HyperParameters);

/// <summary>
/// The editor plugin contract. An editor is created for one model from a hyper-parameter file
/// (plus overrides), applies batches of edit requests, can describe itself, save and load its edit
/// state (atomically), and — where its method allows — remove one edit.
/// </summary>
public interface IEditor : IDisposable
{
    string Name { get; }
    EditorDescription Describe();
    /// <summary>Applies one batch; returns an id per request (for <see cref="Remove"/>).</summary>
    IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch);
    bool CanRemove { get; }
    /// <summary>
    /// Whether a few edits at once are meant to make every target the model's prediction (the contract test holds the
    /// editor to it). False for an editor whose edit is one learned step that raises the target without promising a hit.
    /// </summary>
    bool PromisesHits => true;
    /// <summary>Undoes one edit. Editors that cannot (CanRemove false) throw NotSupportedException naming the method.</summary>
    void Remove(int editId);
    /// <summary>Undoes every edit: the model answers as before the first one.</summary>
    void Reset();
    void Save(string path);
    void Load(string path);
}

/// <summary>
/// Marks an editor class for the registry: its name and its folder under editor-plugins/ (where
/// hparams/FAMILY.json live). The class implements <see cref="IEditor"/> and has a constructor
/// <c>(EditorContext, HyperParameters)</c> that reads every hyper-parameter before it allocates anything.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class EditorPluginAttribute(string name, string folder) : Attribute
{
    public string Name { get; } = name;
    /// <summary>Its folder under editor-plugins/ (where hparams/FAMILY.json live).</summary>
    public string Folder { get; } = folder;
}

/// <summary>
/// Finds editors by name (case-insensitive) among the classes marked [EditorPlugin] in the editor
/// assemblies — every <c>EditRuntime.Editors*.dll</c> beside the application or the engine (the CLI, the
/// Lua host and the tests reference editor-plugins/EditRuntime.Editors.csproj, so it is there), plus any
/// assembly a host passes to <see cref="Register"/> — and builds them from hyper-parameters: the plugin's
/// defaults for the model family (editor-plugins/FOLDER/hparams/FAMILY.json, embedded in its assembly),
/// then a user file, then key=value overrides.
/// </summary>
public static class EditorRegistry
{
    /// <summary>File names of the assemblies searched for editors.</summary>
    public const string AssemblyPattern = "EditRuntime.Editors*.dll";

    private static readonly object s_lock = new();
    private static readonly HashSet<Assembly> s_assemblies = new();
    private static Dictionary<string, Type>? s_plugins;

    /// <summary>Adds the editors of an assembly that is not found by <see cref="AssemblyPattern"/>.</summary>
    public static void Register(Assembly assembly)
    {
        lock (s_lock)
        {
            s_assemblies.Add(assembly);
            s_plugins = null;   // indexed again, with it, on the next look-up
        }
    }

    public static IReadOnlyCollection<string> Names { get { lock (s_lock) return Plugins().Keys.ToList(); } }

    /// <summary>The editors with something to meta-train (a hyper-network), sorted: what an error lists when another is given.</summary>
    public static IReadOnlyList<string> MetaTrainableNames => Names.Where(n => typeof(IMetaTrainable).IsAssignableFrom(EditorType(n))).OrderBy(n => n, StringComparer.Ordinal).ToList();

    /// <summary>The assembly and type of a registered editor.</summary>
    public static Type EditorType(string name)
    {
        lock (s_lock)
            return Plugins().TryGetValue(name, out var t) ? t
                : throw new KeyNotFoundException($"No editor \"{name}\". Editors: {string.Join(", ", Plugins().Keys.OrderBy(n => n))}.");
    }

    private static Dictionary<string, Type> Plugins() => s_plugins ??= Index(Discover().Concat(s_assemblies).ToHashSet());

    private static IEnumerable<Assembly> Discover()
    {
        var dirs = new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(EditorRegistry).Assembly.Location) }
            .Where(d => !string.IsNullOrEmpty(d) && Directory.Exists(d)).Select(d => Path.GetFullPath(d!)).Distinct();
        var found = new List<Assembly>();
        foreach (var file in dirs.SelectMany(d => Directory.EnumerateFiles(d, AssemblyPattern)).OrderBy(f => f, StringComparer.Ordinal))
        {
            var name = AssemblyName.GetAssemblyName(file);
            var loaded = AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a => a.GetName().Name == name.Name);
            if (loaded is null)
            {
                // By name when the host references it (it is in the application's dependency list), else from the file.
                try { loaded = Assembly.Load(name); }
                catch (FileNotFoundException) { loaded = System.Runtime.Loader.AssemblyLoadContext.Default.LoadFromAssemblyPath(file); }
            }
            found.Add(loaded);
        }
        return found;
    }

    private static Dictionary<string, Type> Index(IEnumerable<Assembly> assemblies)
    {
        var index = new Dictionary<string, Type>(StringComparer.OrdinalIgnoreCase);
        foreach (var t in assemblies.SelectMany(a => a.GetTypes()))
        {
            if (t.GetCustomAttribute<EditorPluginAttribute>() is not { } attr) continue;
            if (!typeof(IEditor).IsAssignableFrom(t) || t.GetConstructor([typeof(EditorContext), typeof(HyperParameters)]) is null)
                throw new InvalidOperationException($"Editor {attr.Name} ({t.FullName}): an editor implements IEditor and has a constructor (EditorContext, HyperParameters).");
            if (index.TryGetValue(attr.Name, out var other) && other != t)
                throw new InvalidOperationException($"Two editors are named {attr.Name}: {other.FullName} ({other.Assembly.GetName().Name}) and {t.FullName} ({t.Assembly.GetName().Name}).");
            index[attr.Name] = t;
        }
        return index;
    }

    private static (Type Type, EditorPluginAttribute Plugin) Find(string name)
    {
        var type = EditorType(name);
        return (type, type.GetCustomAttribute<EditorPluginAttribute>()!);
    }

    /// <summary>The resource name of a plugin's defaults for a family (as its assembly embeds them).</summary>
    private static string DefaultsName(EditorPluginAttribute plugin, string family) => $"editor-plugins/{plugin.Folder}/hparams/{family}.json";   // as EditRuntime.Editors.csproj names them

    /// <summary>The model families a plugin ships defaults for (its hparams/FAMILY.json files).</summary>
    public static IReadOnlyList<string> Families(string plugin)
    {
        var (type, attr) = Find(plugin);
        var dir = $"editor-plugins/{attr.Folder}/hparams/";
        return type.Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(dir, StringComparison.Ordinal) && n.EndsWith(".json", StringComparison.Ordinal))
            .Select(n => n[dir.Length..^".json".Length]).OrderBy(f => f, StringComparer.Ordinal).ToList();
    }

    /// <summary>The embedded default hyper-parameters of a plugin for a model family (e.g. "editrt-tiny", "gpt2").</summary>
    public static JsonObject Defaults(string plugin, string family)
    {
        var (type, attr) = Find(plugin);
        var name = DefaultsName(attr, family);
        using var s = type.Assembly.GetManifestResourceStream(name)
            ?? throw new KeyNotFoundException($"Editor {attr.Name} has no default hyper-parameters for model family \"{family}\" ({name}).");
        using var reader = new StreamReader(s);
        return HyperParameters.ParseFile(reader.ReadToEnd(), name);
    }

    /// <summary>Builds an editor: defaults for <paramref name="family"/>, then <paramref name="hparamsFile"/>, then <paramref name="overrides"/> (text values, as --set gives them).</summary>
    /// <param name="overridesSource">How errors name the overrides ("--set" on the command line).</param>
    /// <exception cref="HyperParameterException">An unknown key, a duplicate key in the file, a wrong type or an out-of-range value.</exception>
    public static IEditor Create(string name, EditorContext context, string family, string? hparamsFile = null,
        IReadOnlyDictionary<string, string>? overrides = null, string overridesSource = "--set")
    {
        var (type, attr) = Find(name);
        var hp = new HyperParameters(attr.Name, Defaults(attr.Name, family), DefaultsName(attr, family));
        if (hparamsFile is not null) hp.Apply(HyperParameters.ReadFile(hparamsFile), hparamsFile);
        foreach (var (k, v) in overrides ?? new Dictionary<string, string>())
            hp.Set(k, HyperParameters.ParseOverride(v), $"{overridesSource} {k}={v}");
        IEditor editor;
        try { editor = (IEditor)Activator.CreateInstance(type, context, hp)!; }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            // The plugin's own error (a bad hyper-parameter, a taken site), not the reflection wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
        if (hp.Unread.Count > 0)
        {
            editor.Dispose();
            throw new InvalidOperationException($"{attr.Name} did not read its hyper-parameter(s) {string.Join(", ", hp.Unread)} ({string.Join(", ", hp.Unread.Select(hp.SourceOf).Distinct())}): " +
                                                "an editor reads every hyper-parameter in its constructor (remove the key from the file, or read it).");
        }
        return editor;
    }
}
