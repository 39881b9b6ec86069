namespace EditRuntime.Text;

/// <summary>
/// The <c>normalizer</c> of a tokenizer.json: <c>NFC</c>, <c>Prepend</c> (puts its string before a non-empty
/// text: LLaMA-2's "▁"), <c>Replace</c> with a <c>String</c> pattern (every occurrence, left to right: LLaMA-2's
/// " " → "▁"), and a <c>Sequence</c> of these, applied in order. Anything else is refused.
/// </summary>
internal sealed class HfNormalizer
{
    private readonly List<Func<string, string>> _steps;

    private HfNormalizer(List<Func<string, string>> steps) => _steps = steps;

    /// <summary>The normalized text.</summary>
    public string Normalize(string text)
    {
        foreach (var step in _steps) text = step(text);
        return text;
    }

    /// <summary>The normalizer described by <paramref name="json"/>; null for JSON null.</summary>
    public static HfNormalizer? Read(HfJson json)
    {
        if (json.IsNull) return null;
        var steps = new List<Func<string, string>>();
        ReadInto(json, steps);
        return new HfNormalizer(steps);
    }

    private static void ReadInto(HfJson json, List<Func<string, string>> steps)
    {
        switch (HfTypes.Read(json, "normalizer", "NFC", "Prepend", "Replace", "Sequence"))
        {
            case "NFC":
                json.OnlyFields("type");
                steps.Add(HfNfc.Normalize);
                break;
            case "Prepend":
                json.OnlyFields("type", "prepend");
                string prefix = json.Field("prepend", "the string to put before the text").String();
                steps.Add(s => s.Length == 0 ? s : prefix + s);
                break;
            case "Replace":
                json.OnlyFields("type", "pattern", "content");
                string pattern = HfTypes.ReadStringPattern(json.Field("pattern", "{\"String\": \"…\"}"));
                string content = json.Field("content", "the replacement string").String();
                steps.Add(s => s.Replace(pattern, content, StringComparison.Ordinal));
                break;
            case "Sequence":
                json.OnlyFields("type", "normalizers");
                foreach (var item in json.Field("normalizers", "an array of normalizers").Items()) ReadInto(item, steps);
                break;
        }
    }
}
