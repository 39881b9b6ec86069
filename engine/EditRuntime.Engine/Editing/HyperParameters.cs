using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>
/// A hyper-parameter that is missing, unknown, of the wrong type or out of range. The message names
/// where the value came from (a file, "--set"), the key, what was expected and what was received, so a
/// user can fix the one line that is wrong.
/// </summary>
public sealed class HyperParameterException(string message) : ArgumentException(message);

/// <summary>
/// An editor's hyper-parameters, read through typed methods whose errors name the key. Values come in
/// layers — the editor's defaults for the model family, a user file, <c>--set key=value</c> overrides —
/// and each key remembers the layer it came from, so an error points at the file (or flag) to change.
/// Editors read every key in their constructor, before any work or allocation; the registry refuses an
/// editor that leaves a key of its defaults unread (a typo in a defaults file would otherwise pass silently).
/// </summary>
public sealed class HyperParameters
{
    private readonly JsonObject _values = new();
    private readonly Dictionary<string, string> _sources = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    /// <param name="editor">The editor these belong to (named in every error).</param>
    /// <param name="values">The first layer (an editor's defaults); deep-copied.</param>
    /// <param name="source">Where that layer comes from (e.g. "editor-plugins/FtL/hparams/editrt-tiny.json").</param>
    public HyperParameters(string editor, JsonObject values, string source)
    {
        Editor = editor;
        foreach (var (k, v) in values)
        {
            _values[k] = v?.DeepClone();
            _sources[k] = source;
        }
    }

    public string Editor { get; }
    public IEnumerable<string> Keys => _values.Select(p => p.Key);
    public bool Contains(string key) => _values.ContainsKey(key);

    /// <summary>The file (or "--set", ...) the current value of a key came from.</summary>
    public string SourceOf(string key) => _sources.TryGetValue(key, out var s) ? s : "(not set)";

    /// <summary>The keys no typed method has read yet.</summary>
    public IReadOnlyList<string> Unread => Keys.Where(k => !_read.Contains(k)).ToList();

    /// <summary>A copy of the values, as an editor describes itself and as edit-state files record them.</summary>
    public JsonObject ToJson() => (JsonObject)_values.DeepClone();

    public override string ToString() => ToJson().ToJsonString();

    // ---------------------------------------------------------------- layers

    /// <summary>Replaces the value of a known key. An unknown key is an error listing the known ones.</summary>
    public void Set(string key, JsonNode? value, string source)
    {
        if (!_values.ContainsKey(key))
            throw new HyperParameterException($"{source}: \"{key}\" is not a hyper-parameter of {Editor} (known: {string.Join(", ", Keys)}).");
        _values[key] = value?.DeepClone();
        _sources[key] = source;
        _read.Remove(key);
    }

    /// <summary>Every key of a layer (a user file) over the current values.</summary>
    public void Apply(JsonObject layer, string source)
    {
        foreach (var (k, v) in layer) Set(k, v, source);
    }

    /// <summary>
    /// A hyper-parameter file: one JSON object, each key once (System.Text.Json keeps duplicates silently
    /// until the object is used, and which one wins is not what a user would guess).
    /// </summary>
    public static JsonObject ParseFile(string json, string source)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = false });
        var keys = new Stack<HashSet<string>>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: keys.Push(new HashSet<string>(StringComparer.Ordinal)); break;
                    case JsonTokenType.EndObject: keys.Pop(); break;
                    case JsonTokenType.PropertyName:
                        var name = reader.GetString()!;
                        if (!keys.Peek().Add(name))
                            throw new HyperParameterException($"{source}: \"{name}\" is given twice (line {LineOf(bytes, reader.TokenStartIndex)}); give each hyper-parameter once.");
                        break;
                }
            }
            return JsonNode.Parse(bytes, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip }) as JsonObject
                ?? throw new HyperParameterException($"{source}: hyper-parameters must be one JSON object ({{\"key\": value, ...}}).");
        }
        catch (JsonException e) { throw new HyperParameterException($"{source}: not valid JSON: {e.Message}"); }
        // A key or string escaping half a surrogate pair ("\ud800"): .NET's reader throws this, naming no file.
        catch (InvalidOperationException e) { throw new HyperParameterException($"{source}: a key or string is not valid text ({e.Message})"); }
    }

    /// <summary>Reads a hyper-parameter file as <see cref="ParseFile"/> does, refusing bytes that are not UTF-8 (a lenient
    /// read would turn them into U+FFFD silently, e.g. inside a site name).</summary>
    public static JsonObject ReadFile(string path)
    {
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new HyperParameterException($"{path}: not valid UTF-8 text."); }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        return ParseFile(text, path);
    }

    private static int LineOf(byte[] bytes, long offset) => 1 + bytes.AsSpan(0, (int)offset).Count((byte)'\n');

    /// <summary>
    /// The value of <c>--set key=TEXT</c>: a number when TEXT parses as one (exactly as written when it is a
    /// JSON number), true/false for those words, else the text as a string. Type checks are the reader's:
    /// <c>--set steps=abc</c> becomes the string "abc", refused when the editor reads steps as an integer.
    /// </summary>
    public static JsonNode ParseOverride(string text)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
        {
            try { if (JsonNode.Parse(text) is JsonValue exact && exact.GetValueKind() == JsonValueKind.Number) return exact; }
            catch (JsonException) { }
            return JsonValue.Create(d);   // NaN, Infinity, "+5": refused by the typed reads, with the text shown
        }
        return text switch
        {
            "true" => JsonValue.Create(true),
            "false" => JsonValue.Create(false),
            _ => JsonValue.Create(text),
        };
    }

    // ---------------------------------------------------------------- typed reads

    /// <summary>An integer in [min, max]; 2.5 is not one, 1e30 is out of range.</summary>
    public int Int(string key, int min = int.MinValue, int max = int.MaxValue) => (int)Long(key, min, max);

    /// <summary>An integer in [min, max], exact (no rounding through double for integer literals).</summary>
    public long Long(string key, long min = long.MinValue, long max = long.MaxValue)
    {
        var v = Scalar(key, out var node);
        string expected = $"an integer in [{min}, {max}]";
        long result;
        if (v.TryGetValue<long>(out var l)) result = l;
        else if (v.TryGetValue<decimal>(out var m))
        {
            if (m != decimal.Truncate(m)) throw Wrong(key, expected, node);
            if (m < long.MinValue || m > long.MaxValue) throw Wrong(key, expected, node);
            result = (long)m;
        }
        else if (v.TryGetValue<double>(out var d))
        {
            if (!double.IsFinite(d) || d != Math.Floor(d) || d < -9.2e18 || d > 9.2e18) throw Wrong(key, expected, node);
            result = (long)d;
        }
        else throw Wrong(key, expected, node);
        if (result < min || result > max) throw Wrong(key, expected, node);
        return result;
    }

    /// <summary>A finite number in [min, max] (or (min, max] with <paramref name="minExclusive"/>).</summary>
    public double Double(string key, double min = double.MinValue, double max = double.MaxValue, bool minExclusive = false)
    {
        var v = Scalar(key, out var node);
        string expected = $"a finite number in {Interval(min, max, minExclusive)}";
        if (!v.TryGetValue<double>(out var d) || !double.IsFinite(d)) throw Wrong(key, expected, node);
        if (!InRange(d, min, max, minExclusive)) throw Wrong(key, expected, node);
        return d;
    }

    /// <summary>
    /// A number that is finite as a float32 and in [min, max] (or (min, max]) both as written and after
    /// the conversion (1e300 overflows float32; 1e-50 becomes 0, which a positive range refuses).
    /// The value is the float32 nearest the written double, as editors have always converted.
    /// </summary>
    public float Float(string key, float min = float.MinValue, float max = float.MaxValue, bool minExclusive = false)
    {
        var v = Scalar(key, out var node);
        string expected = $"a float32 number in {Interval(min, max, minExclusive)}";
        if (!v.TryGetValue<double>(out var d) || !double.IsFinite(d)) throw Wrong(key, expected, node);
        float f = (float)d;
        if (!float.IsFinite(f) || !InRange(d, min, max, minExclusive) || !InRange(f, min, max, minExclusive)) throw Wrong(key, expected, node);
        return f;
    }

    /// <summary>A JSON boolean (true/false; from --set the words true and false). The string "true" in a file is not one.</summary>
    public bool Bool(string key)
    {
        var v = Scalar(key, out var node);
        if (v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw Wrong(key, "true or false", node);
    }

    /// <summary>A JSON string's text; an escape that leaves half a UTF-16 surrogate pair ("\ud800") is not text, and is
    /// refused as the key's wrong value rather than escaping as the JSON reader's InvalidOperationException.</summary>
    private string Text(JsonValue v, string key, string expected, JsonNode? node)
    {
        try { return v.GetValue<string>(); }
        catch (InvalidOperationException) { throw Wrong(key, expected + " (its text holds an unpaired UTF-16 surrogate escape)", node); }
    }

    /// <summary>A non-empty string; with <paramref name="allowed"/>, one of those.</summary>
    public string String(string key, params string[] allowed)
    {
        var v = Scalar(key, out var node);
        string expected = allowed.Length == 0 ? "a non-empty string" : "one of " + string.Join(", ", allowed.Select(a => $"\"{a}\""));
        if (v.GetValueKind() != JsonValueKind.String) throw Wrong(key, expected, node);
        var s = Text(v, key, expected, node);
        if (s.Length == 0 || (allowed.Length > 0 && !allowed.Contains(s, StringComparer.Ordinal))) throw Wrong(key, expected, node);
        return s;
    }

    /// <summary>
    /// A non-empty list of non-empty strings: a JSON array, or one comma-separated string (what --set can
    /// give). With <paramref name="distinct"/>, no entry twice.
    /// </summary>
    public IReadOnlyList<string> StringList(string key, bool distinct = true)
    {
        var node = Node(key);
        string expected = "a non-empty list of strings" + (distinct ? " without repeats" : "") + " (a JSON array, or one comma-separated string)";
        List<string> list;
        if (node is JsonArray a)
            list = a.Select(n => n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? Text(v, key, expected, node).Trim() : throw Wrong(key, expected, node)).ToList();
        else if (node is JsonValue s && s.GetValueKind() == JsonValueKind.String)
            list = Text(s, key, expected, node).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        else throw Wrong(key, expected, node);
        if (list.Count == 0 || list.Any(x => x.Length == 0) || (distinct && list.Distinct(StringComparer.Ordinal).Count() != list.Count)) throw Wrong(key, expected, node);
        _read.Add(key);
        return list;
    }

    /// <summary>A non-empty list of integers in [min, max]: a JSON array, or one comma-separated string.</summary>
    public IReadOnlyList<int> IntList(string key, int min = int.MinValue, int max = int.MaxValue)
    {
        var node = Node(key);
        string expected = $"a non-empty list of integers in [{min}, {max}] (a JSON array, one comma-separated string, or one integer)";
        IEnumerable<JsonNode?> items = node switch
        {
            JsonArray a => a,
            JsonValue s when s.GetValueKind() == JsonValueKind.String =>
                Text(s, key, expected, node).Split(',', StringSplitOptions.TrimEntries).Select(t => (JsonNode?)ParseOverride(t)),
            JsonValue n when n.GetValueKind() == JsonValueKind.Number => [n],   // --set key=5: a list of one
            _ => throw Wrong(key, expected, node),
        };
        var list = new List<int>();
        foreach (var item in items)
        {
            if (item is not JsonValue v) throw Wrong(key, expected, node);
            long x;
            if (v.TryGetValue<long>(out var l)) x = l;
            else if (v.TryGetValue<double>(out var d) && double.IsFinite(d) && d == Math.Floor(d) && Math.Abs(d) < 9e18) x = (long)d;
            else throw Wrong(key, expected, node);
            if (x < min || x > max) throw Wrong(key, expected, node);
            list.Add((int)x);
        }
        if (list.Count == 0) throw Wrong(key, expected, node);
        _read.Add(key);
        return list;
    }

    /// <summary>A linear site of <paramref name="model"/> (GPT-2: "h.N.attn.c_attn", "h.N.attn.c_proj", "h.N.mlp.c_fc",
    /// "h.N.mlp.c_proj"; LLaMA family: "model.layers.N.self_attn.q_proj" ... "model.layers.N.mlp.down_proj"); with
    /// <paramref name="roles"/>, only sites of those roles (e.g. <see cref="SiteRole.MlpOut"/>).</summary>
    public string Site(string key, ILanguageModel model, SiteRole roles = SiteRole.Any)
    {
        var site = String(key);
        CheckSite(key, site, model, roles);
        return site;
    }

    /// <summary>Linear sites of <paramref name="model"/>, as <see cref="StringList"/> gives them, each checked as <see cref="Site"/>.</summary>
    public IReadOnlyList<string> Sites(string key, ILanguageModel model, SiteRole roles = SiteRole.Any)
    {
        var sites = StringList(key);
        foreach (var s in sites) CheckSite(key, s, model, roles);
        return sites;
    }

    private void CheckSite(string key, string site, ILanguageModel model, SiteRole roles)
    {
        var layout = model.Sites;
        if (!layout.Contains(site, roles))
            throw Error(key, $"must name a linear site of this model ({layout.Describe(roles)}, N < {layout.Layers}), got \"{site}\"");
    }

    /// <summary>An error about a key whose value the editor refuses for its own reason (e.g. two keys that disagree).</summary>
    public HyperParameterException Error(string key, string problem) =>
        new($"{SourceOf(key)}: hyper-parameter \"{key}\" of {Editor} {problem}.");

    // ---------------------------------------------------------------- helpers

    private JsonNode? Node(string key)
    {
        if (!_values.TryGetPropertyValue(key, out var node))
            throw new HyperParameterException($"hyper-parameter \"{key}\" of {Editor} is missing (known: {string.Join(", ", Keys)}); add it to the editor's hparams/FAMILY.json.");
        return node;
    }

    private JsonValue Scalar(string key, out JsonNode? node)
    {
        node = Node(key);
        _read.Add(key);
        return node as JsonValue ?? throw Wrong(key, "a single value", node);
    }

    private HyperParameterException Wrong(string key, string expected, JsonNode? got) =>
        new($"{SourceOf(key)}: hyper-parameter \"{key}\" of {Editor} must be {expected}, got {Describe(got)}.");

    /// <summary>A received value as the user wrote it (numbers keep their digits; NaN and ∞ from --set too).</summary>
    public static string Describe(JsonNode? node)
    {
        try { return DescribeValue(node); }
        catch (InvalidOperationException) { return "a value whose text holds an unpaired UTF-16 surrogate escape"; }   // not writable as JSON text
    }

    private static string DescribeValue(JsonNode? node) => node switch
    {
        null => "null",
        JsonArray a => "the list " + Truncate(a.ToJsonString()),
        JsonObject o => "the object " + Truncate(o.ToJsonString()),
        JsonValue v when v.TryGetValue<JsonElement>(out var e) => e.ValueKind == JsonValueKind.String ? $"the string {Truncate(e.GetRawText())}" : Truncate(e.GetRawText()),
        JsonValue v when v.TryGetValue<double>(out var d) => d.ToString("R", CultureInfo.InvariantCulture),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => "the string " + Truncate(v.ToJsonString()),
        JsonValue v => Truncate(v.ToJsonString()),
    };

    private static string Truncate(string s) => s.Length <= 80 ? s : s[..77] + "...";

    private static bool InRange(double d, double min, double max, bool minExclusive) =>
        (minExclusive ? d > min : d >= min) && d <= max;

    private static string Interval(double min, double max, bool minExclusive)
    {
        static string F(double x) => x switch
        {
            double.MaxValue => "1.8e308",
            double.MinValue => "-1.8e308",
            float.MaxValue => "3.4e38",
            float.MinValue => "-3.4e38",
            _ => x.ToString("R", CultureInfo.InvariantCulture),
        };
        return $"{(minExclusive ? "(" : "[")}{F(min)}, {F(max)}]";
    }
}
