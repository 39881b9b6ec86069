using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>The model an editor works on, and how its prompts are tokenised.</summary>
public sealed record EditorContext(Gpt2Model Model, ModelDirectory Directory)
{
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
    /// <summary>Undoes one edit. Editors that cannot (CanRemove false) throw NotSupportedException naming the method.</summary>
    void Remove(int editId);
    /// <summary>Undoes every edit: the model answers as before the first one.</summary>
    void Reset();
    void Save(string path);
    void Load(string path);
}

/// <summary>Marks an editor class for the registry: its name and the folder of its default hyper-parameters.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class EditorPluginAttribute(string name, string folder) : Attribute
{
    public string Name { get; } = name;
    /// <summary>Its folder under editor-plugins/ (where hparams/FAMILY.json live).</summary>
    public string Folder { get; } = folder;
}

/// <summary>
/// Finds editors by name (case-insensitive) among the classes marked [EditorPlugin] and builds them
/// from hyper-parameters: the plugin's defaults for the model family
/// (editor-plugins/NAME/hparams/FAMILY.json, embedded at build time), then a user file, then
/// key=value overrides.
/// </summary>
public static class EditorRegistry
{
    private static readonly Dictionary<string, Type> s_plugins = typeof(EditorRegistry).Assembly.GetTypes()
        .Where(t => t.GetCustomAttribute<EditorPluginAttribute>() is not null && typeof(IEditor).IsAssignableFrom(t))
        .ToDictionary(t => t.GetCustomAttribute<EditorPluginAttribute>()!.Name, t => t, StringComparer.OrdinalIgnoreCase);

    public static IReadOnlyCollection<string> Names => s_plugins.Keys;

    /// <summary>The embedded default hyper-parameters of a plugin for a model family (e.g. "editrt-tiny", "gpt2").</summary>
    public static JsonObject Defaults(string plugin, string family)
    {
        if (!s_plugins.TryGetValue(plugin, out var type))
            throw new KeyNotFoundException($"No editor \"{plugin}\". Editors: {string.Join(", ", Names.OrderBy(n => n))}.");
        var name = $"editor-plugins/{type.GetCustomAttribute<EditorPluginAttribute>()!.Folder}/hparams/{family}.json";
        using var s = typeof(EditorRegistry).Assembly.GetManifestResourceStream(name)
            ?? throw new KeyNotFoundException($"Editor {plugin} has no default hyper-parameters for model family \"{family}\" ({name}).");
        return JsonNode.Parse(s)!.AsObject();
    }

    public static IEditor Create(string name, EditorContext context, string family, string? hparamsFile = null, IReadOnlyDictionary<string, string>? overrides = null)
    {
        if (!s_plugins.TryGetValue(name, out var type))
            throw new KeyNotFoundException($"No editor \"{name}\". Editors: {string.Join(", ", Names.OrderBy(n => n))}.");
        var pluginName = type.GetCustomAttribute<EditorPluginAttribute>()!.Name;
        var hp = Defaults(pluginName, family);
        if (hparamsFile is not null)
        {
            JsonObject user;
            try { user = JsonNode.Parse(File.ReadAllText(hparamsFile))?.AsObject() ?? throw new InvalidDataException($"{hparamsFile}: not a JSON object."); }
            catch (JsonException e) { throw new InvalidDataException($"{hparamsFile}: {e.Message}"); }
            foreach (var (k, v) in user)
            {
                if (!hp.ContainsKey(k)) throw new ArgumentException($"{hparamsFile}: \"{k}\" is not a hyper-parameter of {pluginName} (known: {string.Join(", ", hp.Select(p => p.Key))}).");
                hp[k] = v?.DeepClone();
            }
        }
        foreach (var (k, v) in overrides ?? new Dictionary<string, string>())
        {
            if (!hp.ContainsKey(k)) throw new ArgumentException($"override {k}={v}: not a hyper-parameter of {pluginName} (known: {string.Join(", ", hp.Select(p => p.Key))}).");
            hp[k] = double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out var d) ? JsonValue.Create(d) : JsonValue.Create(v);
        }
        try { return (IEditor)Activator.CreateInstance(type, context, hp)!; }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            // The plugin's own error (a bad hyper-parameter, a missing site), not the reflection wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }
}
