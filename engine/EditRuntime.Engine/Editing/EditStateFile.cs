using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>
/// The one file format of every editor's saved edits: a SafeTensors file (written atomically, through
/// <see cref="SafeTensorsWriter"/> and <see cref="IO.AtomicFile"/>) whose metadata records the editor's
/// name, the envelope's format version and the hyper-parameters the state was made with, beside the
/// editor's own tensors and metadata entries (JSON text each).
/// Files written before the envelope had a version (format 0: the same keys, without "format") load too.
/// A file that cannot be loaded — another editor's, damaged, saved with another configuration — is an
/// <see cref="InvalidDataException"/> whose message starts with the path.
/// </summary>
public static class EditStateFile
{
    /// <summary>The envelope version this build writes; it reads this one and every earlier one.</summary>
    public const int Format = 1;

    /// <summary>Metadata keys the envelope owns; an editor's own entries use other names.</summary>
    public static readonly string[] ReservedKeys = ["editor", "format", "hparams"];

    /// <summary>Writes an edit state (replacing any file at <paramref name="path"/> atomically: readers see the old file or the new one).</summary>
    /// <param name="metadata">The editor's own entries (e.g. labels, live edit ids), each stored as JSON text.</param>
    public static void Save(string path, string editor, HyperParameters hyperParameters,
        IEnumerable<(string Name, HostTensor Tensor)> tensors, IReadOnlyDictionary<string, JsonNode?>? metadata = null)
    {
        var meta = new Dictionary<string, string>
        {
            ["editor"] = editor,
            ["format"] = Format.ToString(CultureInfo.InvariantCulture),
            ["hparams"] = hyperParameters.ToJson().ToJsonString(),
        };
        foreach (var (k, v) in metadata ?? new Dictionary<string, JsonNode?>())
        {
            if (ReservedKeys.Contains(k)) throw new ArgumentException($"{editor}: the edit-state metadata key \"{k}\" belongs to the envelope.");
            meta[k] = v?.ToJsonString() ?? "null";
        }
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>
    /// Opens an edit state for <paramref name="editor"/>: refused (naming both) when it belongs to another
    /// editor, when it is no edit state, or when its format is newer than this build's. The editor then
    /// reads and checks everything it needs from the returned state before it changes anything of its own.
    /// </summary>
    public static EditState Open(string path, string editor)
    {
        SafeTensorsFile file;
        try { file = SafeTensorsFile.Open(path); }
        catch (SafeTensorsFormatException e) { throw new InvalidDataException($"{path}: not an edit-state file ({e.Message})."); }
        try
        {
            // Save writes every byte of the data section as some tensor's; bytes no tensor covers mean a damaged
            // file (bytes inserted or appended), whose tensors then hold shifted garbage that would load as values.
            if (file.Warnings.Count > 0)
                throw new InvalidDataException($"{path}: not a complete edit-state file ({file.Warnings[0]}).");
            if (!file.Metadata.TryGetValue("editor", out var owner))
                throw new InvalidDataException($"{path}: not an edit-state file (no editor is recorded in its metadata).");
            if (owner != editor)
                throw new InvalidDataException($"{path}: an edit state of {owner}, not of {editor}; load it into a {owner} editor.");
            int format = 0;
            if (file.Metadata.TryGetValue("format", out var f) && (!int.TryParse(f, NumberStyles.None, CultureInfo.InvariantCulture, out format) || format > Format))
                throw new InvalidDataException($"{path}: edit-state format \"{f}\"; this build reads formats 0 to {Format} (written by a newer EditRuntime?).");
            if (!file.Metadata.TryGetValue("hparams", out var hpText))
                throw new InvalidDataException($"{path}: the {editor} edit state records no hyper-parameters.");
            JsonObject saved;
            try { saved = JsonNode.Parse(hpText) as JsonObject ?? throw new InvalidDataException($"{path}: the recorded hyper-parameters are not a JSON object."); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: the recorded hyper-parameters are not valid JSON ({e.Message})."); }
            return new EditState(file, editor, format, new HyperParameters(editor, saved, $"{path} (saved)"));
        }
        catch { file.Dispose(); throw; }
    }
}

/// <summary>
/// An opened edit state: typed reads of its tensors and metadata whose errors are
/// <see cref="InvalidDataException"/>s naming the file and the entry. Nothing here changes an editor, so
/// an editor that reads everything first and swaps its state last never loses its current edits to a bad file.
/// </summary>
public sealed class EditState : IDisposable
{
    private readonly SafeTensorsFile _file;

    internal EditState(SafeTensorsFile file, string editor, int format, HyperParameters saved)
    {
        _file = file;
        Editor = editor;
        Format = format;
        HyperParameters = saved;
    }

    public string Path => _file.Path;
    public string Editor { get; }
    /// <summary>The envelope format it was written in (0: before the envelope had a version).</summary>
    public int Format { get; }
    /// <summary>The hyper-parameters the state was made with.</summary>
    public HyperParameters HyperParameters { get; }
    public IEnumerable<string> TensorNames => _file.Names;

    /// <summary>An error about this file.</summary>
    public InvalidDataException Invalid(string problem) => new($"{Path}: {problem}");

    public bool Has(string tensor) => _file.Contains(tensor);

    /// <summary>A tensor of the given shape (−1: any size in that dimension); missing or of another shape is an error naming both shapes.</summary>
    public HostTensor Tensor(string name, params int[] shape)
    {
        if (!_file.Contains(name)) throw Invalid($"the {Editor} edit state has no tensor \"{name}\".");
        HostTensor t;
        try { t = _file.Read(name); }
        catch (SafeTensorsFormatException e) { throw Invalid($"tensor \"{name}\": {e.Message}"); }
        if (t.Shape.Length != shape.Length || t.Shape.Where((d, i) => shape[i] >= 0 && d != shape[i]).Any())
            throw Invalid($"tensor \"{name}\" is {ShapeText(t.Shape)}, this {Editor} editor needs {ShapeText(shape)}.");
        // A NaN/∞ in a saved state makes every prediction through it NaN (or, as an id or a radius, a wrong cast): refused here.
        if (Gpt2Checkpoint.FirstNonFinite(t.Data) is int bad)
            throw Invalid($"tensor \"{name}\" element {bad} is {t.Data[bad].ToString(CultureInfo.InvariantCulture)}; an edit state holds finite values only.");
        return t;

        static string ShapeText(int[] s) => "(" + string.Join(", ", s.Select(d => d < 0 ? "any" : d.ToString(CultureInfo.InvariantCulture))) + ")";
    }

    /// <summary>One metadata entry as JSON (what <see cref="EditStateFile.Save"/> wrote).</summary>
    public JsonNode Json(string key)
    {
        if (!_file.Metadata.TryGetValue(key, out var text)) throw Invalid($"the {Editor} edit state has no metadata entry \"{key}\".");
        try { return JsonNode.Parse(text) ?? throw Invalid($"metadata \"{key}\" is null."); }
        catch (JsonException e) { throw Invalid($"metadata \"{key}\" is not valid JSON ({e.Message})."); }
    }

    public JsonArray Array(string key) => Json(key) as JsonArray ?? throw Invalid($"metadata \"{key}\" must be a JSON array.");
    public JsonObject Object(string key) => Json(key) as JsonObject ?? throw Invalid($"metadata \"{key}\" must be a JSON object.");

    /// <summary>An integer entry in [min, max].</summary>
    public int Int(string key, int min = int.MinValue, int max = int.MaxValue) =>
        Json(key) is JsonValue v && v.TryGetValue<int>(out var i) && i >= min && i <= max ? i
            : throw Invalid($"metadata \"{key}\" must be an integer in [{min}, {max}], got {Truncated(key)}.");

    /// <summary>Converts one entry with <paramref name="read"/>; any error of the conversion (a cast, a missing field) becomes an error naming the entry.</summary>
    public T Read<T>(string key, Func<JsonNode, T> read)
    {
        var node = Json(key);
        try { return read(node); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or InvalidCastException or NullReferenceException or ArgumentException or KeyNotFoundException)
        {
            throw Invalid($"metadata \"{key}\" is not what a {Editor} edit state holds ({e.Message}).");
        }
    }

    /// <summary>
    /// Refuses a state saved with another value of a hyper-parameter the state's layout depends on (a site,
    /// a capacity): the saved value, read as the editor reads its own, must equal <paramref name="current"/>.
    /// </summary>
    /// <param name="same">Equality (e.g. within a tolerance); default: <see cref="EqualityComparer{T}.Default"/>.</param>
    public void RequireSame<T>(string key, T current, Func<HyperParameters, string, T> read, Func<T, T, bool>? same = null)
    {
        T saved;
        try { saved = read(HyperParameters, key); }
        catch (HyperParameterException e) { throw Invalid($"its recorded hyper-parameters are not usable: {e.Message}"); }
        if (!(same?.Invoke(saved, current) ?? EqualityComparer<T>.Default.Equals(saved, current)))
            throw Invalid($"saved with {key} = {Show(saved)}, this editor has {Show(current)} (create the editor with the saved hyper-parameters).");

        static string Show(T v) => v is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : v?.ToString() ?? "null";
    }

    private string Truncated(string key)
    {
        var s = _file.Metadata[key];
        return s.Length <= 60 ? s : s[..57] + "...";
    }

    public void Dispose() => _file.Dispose();
}
