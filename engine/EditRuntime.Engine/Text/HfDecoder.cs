using System.Text;
using System.Text.Unicode;

namespace EditRuntime.Text;

/// <summary>
/// The <c>decoder</c> of a tokenizer.json: turns the token strings of some ids back into text, as tokenizers'
/// decoders do (each transforms the list of strings; the results are concatenated):
/// <list type="bullet">
/// <item><c>ByteLevel</c>: each token's GPT-2 byte characters are bytes (a token with another character is
///   its own UTF-8), all of them decoded as UTF-8 with U+FFFD for invalid sequences.</item>
/// <item><c>Replace</c> with a <c>String</c> pattern, in each token (LLaMA-2's "▁" → " ").</item>
/// <item><c>ByteFallback</c>: each run of <c>&lt;0xXX&gt;</c> tokens is its bytes as UTF-8 when valid, else
///   one U+FFFD per byte token.</item>
/// <item><c>Fuse</c>: all tokens into one.</item>
/// <item><c>Strip</c>: removes up to <c>start</c> leading and <c>stop</c> trailing <c>content</c> characters
///   from each token (LLaMA-2's removes the space that the "▁" of the first word became).</item>
/// <item><c>Sequence</c> of these, applied in order.</item>
/// </list>
/// </summary>
internal sealed class HfDecoder
{
    private readonly List<Func<List<string>, List<string>>> _steps;

    private HfDecoder(List<Func<List<string>, List<string>>> steps) => _steps = steps;

    /// <summary>The text of <paramref name="tokens"/>.</summary>
    public string Decode(List<string> tokens)
    {
        foreach (var step in _steps) tokens = step(tokens);
        return string.Concat(tokens);
    }

    /// <summary>The decoder described by <paramref name="json"/>; null for JSON null.</summary>
    public static HfDecoder? Read(HfJson json)
    {
        if (json.IsNull) return null;
        var steps = new List<Func<List<string>, List<string>>>();
        ReadInto(json, steps);
        return new HfDecoder(steps);
    }

    private static void ReadInto(HfJson json, List<Func<List<string>, List<string>>> steps)
    {
        switch (HfTypes.Read(json, "decoder", "ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Sequence"))
        {
            case "ByteLevel": // its fields matter only to the pre-tokenizer; they are checked, not used
                json.OnlyFields("type", "add_prefix_space", "trim_offsets", "use_regex");
                json.Field("add_prefix_space", "true or false").Bool();
                json.Field("trim_offsets", "true or false").Bool();
                if (json.TryField("use_regex", out var useRegex)) useRegex.Bool();
                steps.Add(ByteLevelDecode);
                break;
            case "Replace":
                json.OnlyFields("type", "pattern", "content");
                string pattern = HfTypes.ReadStringPattern(json.Field("pattern", "{\"String\": \"…\"}"));
                string content = json.Field("content", "the replacement string").String();
                steps.Add(tokens => tokens.Select(t => t.Replace(pattern, content, StringComparison.Ordinal)).ToList());
                break;
            case "ByteFallback":
                json.OnlyFields("type");
                steps.Add(ByteFallbackDecode);
                break;
            case "Fuse":
                json.OnlyFields("type");
                steps.Add(tokens => [string.Concat(tokens)]);
                break;
            case "Strip":
            {
                json.OnlyFields("type", "content", "start", "stop");
                var contentNode = json.Field("content", "one character");
                string c = contentNode.String();
                if (c.EnumerateRunes().Count() != 1) throw contentNode.Error("expected exactly one character.");
                Rune strip = c.EnumerateRunes().First();
                int start = json.Field("start", "a number of characters").Int();
                int stop = json.Field("stop", "a number of characters").Int();
                steps.Add(tokens => tokens.Select(t => Strip(t, strip, start, stop)).ToList());
                break;
            }
            case "Sequence":
                json.OnlyFields("type", "decoders");
                foreach (var item in json.Field("decoders", "an array of decoders").Items()) ReadInto(item, steps);
                break;
        }
    }

    private static List<string> ByteLevelDecode(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string t in tokens)
            bytes.AddRange(ByteLevel.TryDecode(t, out var b) ? b : Encoding.UTF8.GetBytes(t));
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }

    private static List<string> ByteFallbackDecode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        void Flush()
        {
            if (run.Count == 0) return;
            byte[] bytes = run.ToArray();
            if (Utf8.IsValid(bytes)) result.Add(Encoding.UTF8.GetString(bytes));
            else result.AddRange(Enumerable.Repeat("\uFFFD", bytes.Length));
            run.Clear();
        }
        foreach (string t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' && char.IsAsciiHexDigit(t[3]) && char.IsAsciiHexDigit(t[4]))
                run.Add(Convert.ToByte(t.Substring(3, 2), 16));
            else
            {
                Flush();
                result.Add(t);
            }
        }
        Flush();
        return result;
    }

    private static string Strip(string token, Rune content, int start, int stop)
    {
        var runes = token.EnumerateRunes().ToList();
        int first = 0, end = runes.Count;
        while (first < start && first < runes.Count && runes[first] == content) first++;
        while (runes.Count - end < stop && end > first && runes[end - 1] == content) end--;
        if (first == 0 && end == runes.Count) return token;
        var sb = new StringBuilder(token.Length);
        for (int i = first; i < end; i++) sb.Append(runes[i].ToString());
        return sb.ToString();
    }
}
