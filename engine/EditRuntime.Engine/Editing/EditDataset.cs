using System.Text.Json;

namespace EditRuntime.Editing;

/// <summary>The model-editing benchmark file formats <see cref="EditDataset"/> reads.</summary>
public enum EditDatasetFormat
{
    /// <summary>Decide from the first record's fields (requested_rewrite → CounterFact; src/alt → zsRE; prompt + target_new → Flat).</summary>
    Auto,
    /// <summary>zsRE in MEND's eval format: subject, src, alt, answers[], rephrase, loc ("nq question: ..."), loc_ans.</summary>
    ZsreMend,
    /// <summary>CounterFact in ROME's format: case_id, requested_rewrite{prompt with "{}", subject, target_new{str}, target_true{str}}, paraphrase_prompts, neighborhood_prompts.</summary>
    CounterFact,
    /// <summary>EasyEdit's flat records: prompt, target_new, ground_truth, subject, rephrase_prompt, locality_prompt, locality_ground_truth.</summary>
    Flat,
}

/// <summary>
/// Loads model-editing benchmark files (a JSON array of records) into <see cref="EditRequest"/>s.
/// </summary>
/// <remarks>
/// <para>Per format (fields not listed are ignored):</para>
/// <list type="bullet">
/// <item>zsRE (MEND): prompt = src, target_new = alt, target_true = answers[0] (null if answers is
/// empty; a bare string is accepted too), rephrases = [rephrase] (string or list, optional),
/// locality = [(loc without its "nq question: " prefix, loc_ans)] (optional; loc_ans may be a list,
/// its first item is used).</item>
/// <item>CounterFact (ROME): prompt = requested_rewrite.prompt with every "{}" replaced by
/// requested_rewrite.subject (a prompt without "{}" is an error); target_new.str / target_true.str
/// (a bare string for target_new/target_true is accepted); case_id → CaseId; paraphrase_prompts →
/// rephrases; neighborhood_prompts → locality whose answer is target_true (ROME's semantics)
/// unless the record has neighborhood_answers (our synthetic world's), one per prompt.</item>
/// <item>Flat (EasyEdit): prompt, subject, target_new (string or list: first item), ground_truth
/// (string, list: first item, null or absent → null), rephrase_prompt (string or list, optional),
/// locality_prompt (string or list, optional) with locality_ground_truth (one answer per prompt;
/// an answer may itself be a list of alternatives: the first is used).</item>
/// </list>
/// <para>Normalisation (the joining rule): prompts lose trailing whitespace, targets and answers
/// leading whitespace, subjects both; so a scorer can always use <c>prompt + " " + target</c>.
/// Required strings must not be empty.</para>
/// <para>An empty array <c>[]</c> is a valid, empty dataset (an empty list is returned). An empty
/// file, invalid or truncated JSON, a top level that is not an array, a record that is not an
/// object, a missing or mistyped field: all throw <see cref="EditDatasetException"/> naming the
/// file, the record index and the field. Records are parsed one at a time (one small
/// <see cref="JsonDocument"/> each), so the JSON tree of a large file is never held whole.</para>
/// </remarks>
public static partial class EditDataset
{
    /// <summary>The prefix MEND's zsRE files put before every locality question.</summary>
    public const string ZsreLocPrefix = "nq question: ";

    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        MaxDepth = 64,
    };

    /// <summary>Reads the benchmark file at <paramref name="path"/>. <see cref="EditRequest.Source"/> is its file name.</summary>
    public static IReadOnlyList<EditRequest> Load(string path, EditDatasetFormat format = EditDatasetFormat.Auto)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Parse(File.ReadAllBytes(path), Path.GetFileName(path), format);
    }

    /// <summary>Reads benchmark records from UTF-8 JSON bytes; <paramref name="sourceName"/> names them in requests and errors.</summary>
    public static IReadOnlyList<EditRequest> Parse(ReadOnlySpan<byte> utf8Json, string sourceName, EditDatasetFormat format = EditDatasetFormat.Auto)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        if (!Enum.IsDefined(format))
            throw new EditDatasetException(sourceName, null, null, $"unknown format {(int)format} (expected one of {string.Join(", ", Enum.GetNames<EditDatasetFormat>())})");
        if (utf8Json.StartsWith("\uFEFF"u8)) utf8Json = utf8Json[3..];
        if (IsBlank(utf8Json)) throw new EditDatasetException(sourceName, null, null, "the file is empty (expected a JSON array of records)");

        var reader = new Utf8JsonReader(utf8Json, ReaderOptions);
        Next(ref reader, sourceName, null);
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new EditDatasetException(sourceName, null, null,
                $"the top level is {Describe(reader.TokenType)}, expected an array of records"
                + (reader.TokenType == JsonTokenType.StartObject ? " (JSON Lines files are not supported: wrap the records in [ ])" : ""));

        var requests = new List<EditRequest>();
        for (int index = 0; ; index++)
        {
            if (!Next(ref reader, sourceName, index))
                throw new EditDatasetException(sourceName, index, null, "the JSON ends before the array is closed (truncated file?)");
            if (reader.TokenType == JsonTokenType.EndArray) break;

            JsonDocument doc;
            try { doc = JsonDocument.ParseValue(ref reader); }
            catch (JsonException e) { throw Invalid(sourceName, index, e); }
            using (doc)
            {
                var record = new RecordReader(sourceName, index);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new EditDatasetException(sourceName, index, null, $"is {Describe(root.ValueKind)}, expected an object");
                if (format == EditDatasetFormat.Auto) format = Detect(root, sourceName, index);
                requests.Add(format switch
                {
                    EditDatasetFormat.ZsreMend => record.Zsre(root),
                    EditDatasetFormat.CounterFact => record.CounterFact(root),
                    _ => record.Flat(root),
                });
            }
        }
        try
        {
            if (reader.Read())
                throw new EditDatasetException(sourceName, null, null, $"unexpected {Describe(reader.TokenType)} after the array of records");
        }
        catch (JsonException e) { throw Invalid(sourceName, null, e); }
        return requests.AsReadOnly();
    }

    /// <summary>The format of a record, judged by its fields (what <see cref="EditDatasetFormat.Auto"/> uses on the first record).</summary>
    public static EditDatasetFormat Detect(JsonElement record, string sourceName = "<json>", int index = 0)
    {
        if (record.ValueKind != JsonValueKind.Object)
            throw new EditDatasetException(sourceName, index, null, $"is {Describe(record.ValueKind)}, expected an object");
        if (record.TryGetProperty("requested_rewrite", out _)) return EditDatasetFormat.CounterFact;
        if (record.TryGetProperty("src", out _) || record.TryGetProperty("alt", out _)) return EditDatasetFormat.ZsreMend;
        if (record.TryGetProperty("prompt", out _) && record.TryGetProperty("target_new", out _)) return EditDatasetFormat.Flat;
        // A name that is not text (invalid UTF-8, half a surrogate pair) is shown as such: .NET's reader would throw naming no file.
        var fields = record.EnumerateObject().Take(12).Select(p => { try { return p.Name; } catch (InvalidOperationException) { return "(not valid text)"; } }).ToList();
        throw new EditDatasetException(sourceName, index, null,
            $"cannot tell the format from fields [{string.Join(", ", fields)}]: expected \"requested_rewrite\" (CounterFact), "
            + "\"src\"/\"alt\" (zsRE) or \"prompt\" + \"target_new\" (flat); pass the format explicitly if it is one of these");
    }

    // ------------------------------------------------------------------ reading helpers

    private static bool IsBlank(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes) if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')) return false;
        return true;
    }

    /// <summary>Advances the reader; false at the end of input. Invalid JSON becomes an <see cref="EditDatasetException"/>.</summary>
    private static bool Next(ref Utf8JsonReader reader, string file, int? index)
    {
        try { return reader.Read(); }
        catch (JsonException e) { throw Invalid(file, index, e); }
    }

    private static EditDatasetException Invalid(string file, int? index, JsonException e)
    {
        string where = e.LineNumber is long line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
        return new EditDatasetException(file, index, null, $"invalid or truncated JSON{where}: {FirstSentence(e.Message)}", e);
    }

    private static string FirstSentence(string message)
    {
        // System.Text.Json appends " Path: ..." / " LineNumber: ..." (already given as line and byte).
        foreach (var tail in new[] { " Path:", " LineNumber:" })
        {
            int cut = message.IndexOf(tail, StringComparison.Ordinal);
            if (cut > 0) message = message[..cut];
        }
        return message.Trim();
    }

    internal static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => t.ToString(),
    };

    internal static string Describe(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => k.ToString(),
    };
}
