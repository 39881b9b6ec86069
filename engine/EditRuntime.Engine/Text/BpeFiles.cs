using System.Text;
using System.Text.Json;

namespace EditRuntime.Text;

/// <summary>
/// A vocab.json or merges.txt that cannot be used. The message names the file and, where the problem
/// sits on one line, that line (1-based): "…/merges.txt line 17: expected two tokens …".
/// </summary>
public sealed class TokenizerFileException : FormatException
{
    /// <summary>The file (or, for in-memory vocabularies, a description of the list).</summary>
    public string FilePath { get; }
    /// <summary>1-based line number (entry number for in-memory lists), 0 when the problem is the whole file.</summary>
    public int Line { get; }

    public TokenizerFileException(string filePath, int line, string message, Exception? inner = null)
        : this(filePath, line, "line", message, inner) { }

    /// <summary><paramref name="lineWord"/> names the unit: "line" in files, "entry" in in-memory lists.</summary>
    internal TokenizerFileException(string filePath, int line, string lineWord, string message, Exception? inner = null)
        : base($"{filePath}{(line > 0 ? $" {lineWord} {line}" : "")}: {message}", inner)
    {
        FilePath = filePath;
        Line = line;
    }
}

/// <summary>Reading and (atomically) writing GPT-2's vocab.json and merges.txt.</summary>
internal static class BpeFiles
{
    internal readonly record struct VocabEntry(string Token, int Id, int Line);
    internal readonly record struct MergeEntry(string Left, string Right, int Line);

    internal const string MergesHeader = "#version: 0.2";
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>vocab.json: one JSON object mapping each token to its integer id.</summary>
    internal static List<VocabEntry> ReadVocabJson(string path)
    {
        byte[] data = File.ReadAllBytes(path);
        ReadOnlySpan<byte> json = data;
        if (json.StartsWith("\uFEFF"u8)) json = json[3..];
        var entries = new List<VocabEntry>();
        int lineAt = 1, lineOffset = 0; // line numbers counted incrementally: entries come in file order
        if (json.Trim(" \t\r\n"u8).IsEmpty)
            throw new TokenizerFileException(path, 1, "the file is empty; expected a JSON object {\"token\": id, …}.");
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new TokenizerFileException(path, LineOf(json, reader.TokenStartIndex),
                    $"expected a JSON object {{\"token\": id, …}} but the file starts with a {reader.TokenType}.");
            while (true)
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.EndObject) break;
                lineAt += json[lineOffset..(int)reader.TokenStartIndex].Count((byte)'\n');
                lineOffset = (int)reader.TokenStartIndex;
                int line = lineAt;
                string token;
                try { token = reader.GetString()!; }
                catch (InvalidOperationException e)
                {
                    throw new TokenizerFileException(path, line, "a token is not valid UTF-8.", e);
                }
                reader.Read();
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int id) || id < 0)
                {
                    // The file's text is never quoted: a file linked in from elsewhere must not leak into messages.
                    string got = reader.TokenType == JsonTokenType.Number ? "a fraction or a number out of range" : $"a {reader.TokenType}";
                    throw new TokenizerFileException(path, line, $"a token's id must be a non-negative 32-bit integer, got {got}.");
                }
                entries.Add(new VocabEntry(token, id, line));
            }
            if (reader.Read())
                throw new TokenizerFileException(path, LineOf(json, reader.TokenStartIndex), "unexpected content after the JSON object.");
        }
        catch (JsonException e)
        {
            // System.Text.Json's message quotes the offending character: give only where, and what was expected.
            throw new TokenizerFileException(path, (int)(e.LineNumber ?? 0) + 1,
                $"invalid JSON at byte {e.BytePositionInLine + 1} of the line; expected a JSON object {{\"token\": id, …}}.", e);
        }
        return entries;
    }

    /// <summary>
    /// merges.txt: an optional first line "#version: …", then one merge per line, "left right", in rank
    /// order (line 2 is rank 0). Trailing empty lines are ignored; CR LF line ends are accepted.
    /// </summary>
    internal static List<MergeEntry> ReadMerges(string path)
    {
        string text;
        try { text = StrictUtf8.GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException e)
        {
            throw new TokenizerFileException(path, 0, "the file is not valid UTF-8.", e);
        }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        string[] lines = text.Split('\n');
        int last = lines.Length;
        while (last > 0 && lines[last - 1].TrimEnd('\r').Length == 0) last--;
        var merges = new List<MergeEntry>(last);
        for (int i = 0; i < last; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (i == 0 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            string[] parts = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new TokenizerFileException(path, i + 1,
                    $"expected a merge \"left right\" (two tokens separated by a space), got {(parts.Length == 0 ? "an empty line" : $"{parts.Length} tokens")}.");
            merges.Add(new MergeEntry(parts[0], parts[1], i + 1));
        }
        return merges;
    }

    private static int LineOf(ReadOnlySpan<byte> data, long offset)
    {
        int end = (int)Math.Min(offset, data.Length);
        return 1 + data[..end].Count((byte)'\n');
    }

    internal static string Quote(string s)
    {
        const int max = 60;
        var sb = new StringBuilder("\"");
        foreach (char c in s.Length > max ? s[..max] : s)
        {
            if (c < 0x20 || c == '"' || c == '\\' || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:X4}");
            else sb.Append(c);
        }
        if (s.Length > max) sb.Append('…');
        return sb.Append('"').ToString();
    }

    /// <summary>vocab.json like GPT-2's encoder.json: {"token": id, …} in id order, raw UTF-8.</summary>
    internal static void WriteVocabJson(string path, IReadOnlyList<string> tokens)
    {
        var sb = new StringBuilder(tokens.Count * 16);
        sb.Append('{');
        for (int id = 0; id < tokens.Count; id++)
        {
            if (id > 0) sb.Append(", ");
            AppendJsonString(sb, tokens[id]);
            sb.Append(": ").Append(id);
        }
        sb.Append('}');
        WriteAtomically(path, sb.ToString());
    }

    internal static void WriteMerges(string path, IReadOnlyList<(string Left, string Right)> merges)
    {
        var sb = new StringBuilder(merges.Count * 12 + 16);
        sb.Append(MergesHeader).Append('\n');
        foreach (var (l, r) in merges)
        {
            if (l.Length == 0 || r.Length == 0 || l.AsSpan().IndexOfAny(' ', '\t', '\n') >= 0 || r.AsSpan().IndexOfAny(' ', '\t', '\n') >= 0
                || l.Contains('\r') || r.Contains('\r'))
                throw new ArgumentException($"merge ({Quote(l)}, {Quote(r)}) cannot be written to merges.txt: a token is empty or has whitespace.");
            sb.Append(l).Append(' ').Append(r).Append('\n');
        }
        WriteAtomically(path, sb.ToString());
    }

    private static void AppendJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) sb.Append(c).Append(s[++i]);
                    else if (c < 0x20 || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:x4}"); // lone surrogates: never in real tokens
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Writes <paramref name="path"/> as a whole or not at all (creating its directory).</summary>
    internal static void WriteAtomically(string path, string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        EditRuntime.IO.AtomicFile.WriteAllText(path, content);
    }
}
