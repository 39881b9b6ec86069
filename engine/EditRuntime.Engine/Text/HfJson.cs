using System.Text.Json;

namespace EditRuntime.Text;

/// <summary>
/// A value of a tokenizer.json together with its JSON path (<c>pre_tokenizer.pretokenizers[1].type</c>), so
/// that every error names the file and the field: "…/tokenizer.json: model.vocab is missing; expected …".
/// </summary>
internal readonly struct HfJson
{
    private readonly JsonElement _element;
    // The path is put together only when an error needs it: a vocabulary has 10⁵ entries.
    private readonly string _path;   // the whole path, or the container's for an array item or an object entry
    private readonly int _index;     // array item: its index; else −1
    private readonly string? _key;   // object entry: its key

    /// <summary>The file the value was read from.</summary>
    public string File { get; }

    /// <summary>The JSON path of the value; empty for the top level.</summary>
    public string Path => _index >= 0 ? $"{_path}[{_index}]" : _key != null ? $"{_path}[{BpeFiles.Quote(_key)}]" : _path;

    public HfJson(string file, string path, JsonElement element) : this(file, path, element, -1, null) { }

    private HfJson(string file, string path, JsonElement element, int index, string? key)
    {
        File = file;
        _path = path;
        _element = element;
        _index = index;
        _key = key;
    }

    /// <summary>True when the value is JSON <c>null</c>.</summary>
    public bool IsNull => _element.ValueKind == JsonValueKind.Null;

    /// <summary>True when the value is a JSON string.</summary>
    public bool IsString => _element.ValueKind == JsonValueKind.String;

    /// <summary>True when the value is a JSON array.</summary>
    public bool IsArray => _element.ValueKind == JsonValueKind.Array;

    /// <summary>An error about this value: "{file}: {path}: {message}".</summary>
    public TokenizerFileException Error(string message) =>
        new(File, 0, $"{(Path.Length == 0 ? "the top level" : Path)}: {message}");

    private string ChildPath(string name) => Path.Length == 0 ? name : $"{Path}.{name}";

    private string KindName => _element.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private void RequireObject()
    {
        if (_element.ValueKind != JsonValueKind.Object) throw Error($"expected a JSON object, got {KindName}.");
    }

    /// <summary>The field <paramref name="name"/>; an error naming <paramref name="expected"/> when it is missing.</summary>
    public HfJson Field(string name, string expected)
    {
        RequireObject();
        if (!_element.TryGetProperty(name, out var value))
            throw new TokenizerFileException(File, 0, $"{ChildPath(name)} is missing; expected {expected}.");
        return new HfJson(File, ChildPath(name), value);
    }

    /// <summary>The field <paramref name="name"/>, or false when the object has no such field.</summary>
    public bool TryField(string name, out HfJson value)
    {
        RequireObject();
        bool found = _element.TryGetProperty(name, out var element);
        value = new HfJson(File, ChildPath(name), element);
        return found;
    }

    /// <summary>The field <paramref name="name"/> when it is present and not null.</summary>
    public bool TryNonNull(string name, out HfJson value) => TryField(name, out value) && !value.IsNull;

    /// <summary>Refuses any field not in <paramref name="known"/>: an unknown field could change the output.</summary>
    public void OnlyFields(params string[] known)
    {
        RequireObject();
        foreach (var p in _element.EnumerateObject())
            if (Array.IndexOf(known, p.Name) < 0)
                throw new TokenizerFileException(File, 0,
                    $"{ChildPath(p.Name)} is not a field this tokenizer knows ({string.Join(", ", known)}), so it is refused rather than ignored.");
    }

    /// <summary>The string value.</summary>
    public string String()
    {
        if (_element.ValueKind != JsonValueKind.String) throw Error($"expected a string, got {KindName}.");
        try { return _element.GetString()!; }
        catch (InvalidOperationException e) { throw new TokenizerFileException(File, 0, $"{Path}: the string is not valid UTF-16 text.", e); }
    }

    /// <summary>The boolean value.</summary>
    public bool Bool() => _element.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Error($"expected true or false, got {KindName}."),
    };

    /// <summary>The value as a non-negative 32-bit integer.</summary>
    public int Int()
    {
        if (_element.ValueKind != JsonValueKind.Number || !_element.TryGetInt32(out int v) || v < 0)
            throw Error($"expected a non-negative integer, got {(_element.ValueKind == JsonValueKind.Number ? "a fraction, a negative number or a number out of range" : KindName)}.");
        return v;
    }

    /// <summary>The value as a number.</summary>
    public double Number()
    {
        if (_element.ValueKind != JsonValueKind.Number) throw Error($"expected a number, got {KindName}.");
        return _element.GetDouble();
    }

    /// <summary>The items of an array, each with its path (<c>…[3]</c>).</summary>
    public IEnumerable<HfJson> Items()
    {
        if (_element.ValueKind != JsonValueKind.Array) throw Error($"expected a JSON array, got {KindName}.");
        return Enumerate(this);

        static IEnumerable<HfJson> Enumerate(HfJson array)
        {
            string path = array.Path;
            int i = 0;
            foreach (var item in array._element.EnumerateArray())
                yield return new HfJson(array.File, path, item, i++, null);
        }
    }

    /// <summary>The number of items of an array.</summary>
    public int Count => _element.ValueKind == JsonValueKind.Array ? _element.GetArrayLength() : throw Error($"expected a JSON array, got {KindName}.");

    /// <summary>The fields of an object in file order, each value with its path.</summary>
    public IEnumerable<(string Name, HfJson Value)> Properties()
    {
        RequireObject();
        return Enumerate(this);

        static IEnumerable<(string, HfJson)> Enumerate(HfJson obj)
        {
            string path = obj.Path;
            int i = 0;
            foreach (var p in obj._element.EnumerateObject())
            {
                string name;
                try { name = p.Name; }
                catch (InvalidOperationException e)
                {
                    throw new TokenizerFileException(obj.File, 0, $"{path}: the name of field {i + 1} is not valid UTF-16 text.", e);
                }
                i++;
                yield return (name, new HfJson(obj.File, path, p.Value, -1, name));
            }
        }
    }
}

/// <summary>Reading the parts that the normalizers, pre-tokenizers and decoders of a tokenizer.json share.</summary>
internal static class HfTypes
{
    /// <summary>The <c>type</c> of a component, refused unless it is one of <paramref name="supported"/>.</summary>
    public static string Read(HfJson json, string what, params string[] supported)
    {
        string list = string.Join(", ", supported.Select(s => $"\"{s}\""));
        var node = json.Field("type", $"the {what} type ({list})");
        string type = node.String();
        if (Array.IndexOf(supported, type) < 0)
            throw node.Error($"the {what} type {BpeFiles.Quote(type)} is not supported; expected one of {list}.");
        return type;
    }

    /// <summary>A pattern <c>{"String": "…"}</c> or <c>{"Regex": "…"}</c>: (true, regex) or (false, literal string).</summary>
    public static (bool IsRegex, string Value) ReadPattern(HfJson json)
    {
        json.OnlyFields("String", "Regex");
        bool isString = json.TryField("String", out var s), isRegex = json.TryField("Regex", out var r);
        if (isString == isRegex) throw json.Error("expected exactly one of {\"String\": \"…\"} and {\"Regex\": \"…\"}.");
        string value = (isRegex ? r : s).String();
        if (value.Length == 0) throw (isRegex ? r : s).Error("an empty pattern is not supported.");
        return (isRegex, value);
    }

    /// <summary>A pattern that must be <c>{"String": "…"}</c> (what Replace uses in the supported families).</summary>
    public static string ReadStringPattern(HfJson json)
    {
        var (isRegex, value) = ReadPattern(json);
        if (isRegex) throw json.Error("a Regex pattern is not supported here; expected {\"String\": \"…\"}.");
        return value;
    }
}
