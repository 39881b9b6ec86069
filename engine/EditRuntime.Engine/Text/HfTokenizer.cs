using System.Text;
using System.Text.Json;

namespace EditRuntime.Text;

/// <summary>
/// A token that a tokenizer.json adds on top of its model's vocabulary (<c>added_tokens</c>): found in the
/// text before anything else and encoded as its own id.
/// </summary>
/// <param name="Id">The token's id.</param>
/// <param name="Content">The text that stands for it ("&lt;|endoftext|&gt;", "&lt;s&gt;").</param>
/// <param name="Special">Special tokens are left out by <c>Decode(ids, skipSpecialTokens: true)</c>.</param>
/// <param name="Normalized">Found in the normalized text rather than in the text as given.</param>
/// <param name="LStrip">Takes the whitespace on its left with it.</param>
/// <param name="RStrip">Takes the whitespace on its right with it.</param>
public sealed record HfAddedToken(int Id, string Content, bool Special, bool Normalized, bool LStrip, bool RStrip);

/// <summary>
/// A tokenizer loaded from a Hugging Face <c>tokenizer.json</c> (the format of the <c>tokenizers</c> library) as
/// published for GPT-2, LLaMA-3 and Qwen2 (byte-level BPE) and LLaMA-2 and Mistral (SentencePiece-style BPE
/// with "▁" and byte fallback), encoding token for token as tokenizers does:
/// <list type="number">
/// <item>The text is split on its added tokens (<see cref="AddedTokens"/>): at each place the longest one that
///   starts there, exact match; <c>lstrip</c>/<c>rstrip</c> tokens take the whitespace beside them. Each is
///   its id.</item>
/// <item>Each other piece goes through the normalizer (<see cref="HfNormalizer"/>), is split again on the
///   added tokens marked <c>normalized</c>, then split into words by the pre-tokenizer
///   (<see cref="HfPreTokenizer"/>), and each word is tokenized by the BPE model (<see cref="HfBpe"/>).</item>
/// </list>
/// The post-processor is not applied: <see cref="Encode"/> adds no BOS or EOS. The caller adds them, and
/// <see cref="TemplatePrefixIds"/> / <see cref="TemplateSuffixIds"/> say which ones the file's
/// TemplateProcessing would add (LLaMA-2's &lt;s&gt;, LLaMA-3's &lt;|begin_of_text|&gt;).
/// <para>Everything in the file that could change the ids or the decoded text must be understood: another
/// model type (Unigram, WordPiece), normalizer, pre-tokenizer, decoder or post-processor type, a Split with
/// invert true, an unknown field (the post-processor, which is only read for its template, aside), truncation or
/// padding, a single_word added token, … is refused with a <see cref="TokenizerFileException"/> naming the file
/// and the JSON path of the field. Lone UTF-16 surrogates
/// in the text (not valid Unicode, which tokenizers never sees) are encoded as U+FFFD.</para>
/// Instances are immutable apart from a word cache and safe to use from several threads.
/// </summary>
public sealed class HfTokenizer : EditRuntime.Models.ITokenizer
{
    private readonly HfBpe _model;
    private readonly HfNormalizer? _normalizer;
    private readonly HfPreTokenizer? _preTokenizer;
    private readonly HfDecoder? _decoder;
    private readonly Dictionary<int, HfAddedToken> _addedById;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly HashSet<string> _specialContents;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;

    /// <summary>The file this tokenizer was loaded from.</summary>
    public string FilePath { get; }

    /// <summary>One more than the largest id of the vocabulary and the added tokens: ids run from 0 to VocabSize − 1 (there may be gaps).</summary>
    public int VocabSize { get; }

    /// <summary>The added tokens, in the order of the file.</summary>
    public IReadOnlyList<HfAddedToken> AddedTokens { get; }

    /// <summary>The ids that the file's TemplateProcessing puts before a single sequence (empty without one).</summary>
    public IReadOnlyList<int> TemplatePrefixIds { get; }

    /// <summary>The ids that the file's TemplateProcessing puts after a single sequence (empty without one).</summary>
    public IReadOnlyList<int> TemplateSuffixIds { get; }

    private HfTokenizer(string path, HfJson root)
    {
        FilePath = path;
        root.OnlyFields("version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model");
        if (root.TryField("version", out var version) && version.String() != "1.0")
            throw version.Error($"version {BpeFiles.Quote(version.String())} is not supported; expected \"1.0\".");
        foreach (string name in new[] { "truncation", "padding" })
            if (root.TryNonNull(name, out var node))
                throw node.Error($"{name} changes what Encode returns and is not supported; expected null (truncate or pad in the caller).");

        var model = root.Field("model", "the model object (type \"BPE\")");
        if (model.TryField("type", out var type))
        {
            if (type.String() != "BPE")
                throw type.Error($"the model type {BpeFiles.Quote(type.String())} is not supported; expected \"BPE\".");
        }
        else if (!model.TryField("merges", out _))
            throw new TokenizerFileException(path, 0, "model.type is missing and the model has no merges; expected a BPE model (type \"BPE\").");
        _model = HfBpe.Read(model);

        _normalizer = root.TryField("normalizer", out var normalizer) ? HfNormalizer.Read(normalizer) : null;
        _preTokenizer = root.TryField("pre_tokenizer", out var preTokenizer) ? HfPreTokenizer.Read(preTokenizer) : null;
        _decoder = root.TryField("decoder", out var decoder) ? HfDecoder.Read(decoder) : null;

        var added = new List<HfAddedToken>();
        _addedById = [];
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        int nextNewId = _model.Count; // tokenizers' first id for an added token that the model does not have
        if (root.TryNonNull("added_tokens", out var addedTokens))
            foreach (var item in addedTokens.Items()) added.Add(ReadAddedToken(item, ref nextNewId));
        AddedTokens = added;
        _specialContents = added.Where(t => t.Special).Select(t => t.Content).ToHashSet(StringComparer.Ordinal);
        _rawMatcher = new AddedTokenMatcher(added.Where(t => !t.Normalized));
        _normalizedMatcher = new AddedTokenMatcher(added.Where(t => t.Normalized));
        VocabSize = Math.Max(_model.MaxId, added.Count == 0 ? -1 : added.Max(t => t.Id)) + 1;

        (TemplatePrefixIds, TemplateSuffixIds) = root.TryField("post_processor", out var post) ? ReadPostProcessor(post) : ([], []);
    }

    /// <summary>Loads a tokenizer.json.</summary>
    /// <exception cref="TokenizerFileException">The file is not valid JSON, or has something that is not supported;
    /// the message names the file and the JSON path of the field.</exception>
    public static HfTokenizer Load(string tokenizerJsonPath)
    {
        ReadOnlyMemory<byte> data = File.ReadAllBytes(tokenizerJsonPath);
        if (data.Span.StartsWith("\uFEFF"u8)) data = data[3..];
        JsonDocument doc;
        try { doc = JsonDocument.Parse(data, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e)
        {
            // System.Text.Json's message quotes the offending text: give only where.
            throw new TokenizerFileException(tokenizerJsonPath, (int)(e.LineNumber ?? 0) + 1,
                $"invalid JSON at byte {e.BytePositionInLine + 1} of the line; expected a tokenizer.json object.", e);
        }
        using (doc)
        {
            var root = new HfJson(tokenizerJsonPath, "", doc.RootElement);
            return new HfTokenizer(tokenizerJsonPath, root);
        }
    }

    /// <summary>
    /// One entry of added_tokens. Its id must be the one tokenizers gives it when loading: the vocabulary's id
    /// when the model has the token, else the next id after the vocabulary (tokenizers ignores the file's id
    /// there, so a different one is refused rather than guessed).
    /// </summary>
    private HfAddedToken ReadAddedToken(HfJson item, ref int nextNewId)
    {
        item.OnlyFields("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special");
        var contentNode = item.Field("content", "the token's text");
        string content = contentNode.String();
        if (content.Length == 0) throw contentNode.Error("an added token must not be empty.");
        if (_addedByContent.ContainsKey(content)) throw contentNode.Error($"the added token {BpeFiles.Quote(content)} appears twice.");
        bool Flag(string name) => item.Field(name, "true or false").Bool();
        bool special = Flag("special"), normalized = Flag("normalized"), lstrip = Flag("lstrip"), rstrip = Flag("rstrip");
        if (Flag("single_word"))
            throw item.Error("single_word true is not supported (its word boundaries follow Rust's \\w, which .NET does not reproduce exactly).");
        if (normalized && _normalizer != null && _normalizer.Normalize(content) != content)
            throw item.Error($"normalized is true and the normalizer changes {BpeFiles.Quote(content)} into {BpeFiles.Quote(_normalizer.Normalize(content))}; " +
                             "such tokens match and decode differently across tokenizers versions, so they are not supported.");

        var idNode = item.Field("id", "the token's id");
        int id = idNode.Int();
        bool inVocab = _model.TryGetId(content, out int expected);
        if (!inVocab) expected = nextNewId++;
        if (id != expected)
            throw idNode.Error($"{BpeFiles.Quote(content)} has id {id} here, but tokenizers gives it id {expected} " +
                               (inVocab ? "(its id in model.vocab)." : "(the next id after model.vocab's size and the new added tokens before it)."));
        if (_model.Token(id) is { } other && other != content)
            throw idNode.Error($"id {id} is also the id of {BpeFiles.Quote(other)} in model.vocab.");

        var token = new HfAddedToken(id, content, special, normalized, lstrip, rstrip);
        _addedById[id] = token;
        _addedByContent[content] = id;
        return token;
    }

    /// <summary>Reads the post-processor (TemplateProcessing, ByteLevel, a Sequence of them, or null) for its template's ids.</summary>
    private (int[] Prefix, int[] Suffix) ReadPostProcessor(HfJson json)
    {
        if (json.IsNull) return ([], []);
        switch (HfTypes.Read(json, "post-processor", "TemplateProcessing", "ByteLevel", "Sequence"))
        {
            case "ByteLevel":
                return ([], []); // it only trims offsets
            case "Sequence":
                var parts = json.Field("processors", "an array of post-processors").Items().Select(ReadPostProcessor).ToList();
                var templates = parts.Where(p => p.Prefix.Length + p.Suffix.Length > 0).ToList();
                if (templates.Count > 1) throw json.Error("more than one post-processor adds tokens; expected at most one TemplateProcessing.");
                return templates.Count == 1 ? templates[0] : ([], []);
            default: // "TemplateProcessing"
                var specials = json.Field("special_tokens", "an object {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], …}, …}");
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool sequenceSeen = false;
                foreach (var piece in json.Field("single", "the template of a single sequence").Items())
                {
                    if (piece.TryField("Sequence", out _))
                    {
                        if (sequenceSeen) throw piece.Error("the single template has the sequence twice.");
                        sequenceSeen = true;
                        continue;
                    }
                    var name = piece.Field("SpecialToken", "{\"SpecialToken\": {\"id\": …}} or {\"Sequence\": {\"id\": \"A\"}}").Field("id", "the special token's name").String();
                    var entry = specials.Properties().FirstOrDefault(p => p.Name == name);
                    if (entry.Name == null) throw piece.Error($"{BpeFiles.Quote(name)} is not in {specials.Path}.");
                    foreach (var idNode in entry.Value.Field("ids", "the special token's ids").Items())
                    {
                        int id = idNode.Int();
                        if (IdToToken(id) == null) throw idNode.Error($"id {id} is neither in model.vocab nor an added token.");
                        (sequenceSeen ? suffix : prefix).Add(id);
                    }
                }
                if (!sequenceSeen) throw json.Error("the single template has no sequence.");
                return (prefix.ToArray(), suffix.ToArray());
        }
    }

    // ---------------------------------------------------------------- vocabulary

    /// <summary>The id of a token (an added token's content, or a vocabulary token as written in the file, e.g. "Ġthe" or "▁the").</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out int id)) return id;
        return _model.TryGetId(token, out id) ? id : null;
    }

    /// <summary>The token with this id (an added token's content, else the vocabulary token), or null when no token has it.</summary>
    public string? IdToToken(int id) => _addedById.TryGetValue(id, out var added) ? added.Content : _model.Token(id);

    // ---------------------------------------------------------------- encode / decode

    /// <summary>The ids of <paramref name="text"/>, without the BOS/EOS of the post-processor (see <see cref="TemplatePrefixIds"/>).</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!ValidUtf16(text)) text = Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text)); // lone surrogates → U+FFFD
        var ids = new List<int>(text.Length / 3 + 4);
        var words = new List<string>();
        foreach (var (start, end, rawToken) in _rawMatcher.Split(text))
        {
            if (rawToken >= 0) { ids.Add(rawToken); continue; }
            string piece = text[start..end];
            if (_normalizer != null) piece = _normalizer.Normalize(piece);
            foreach (var (s, e, token) in _normalizedMatcher.Split(piece))
            {
                if (token >= 0) { ids.Add(token); continue; }
                words.Clear();
                if (_preTokenizer == null) words.Add(piece[s..e]);
                else _preTokenizer.Split(piece[s..e], words);
                foreach (string w in words) _model.Tokenize(w, ids);
            }
        }
        return ids.ToArray();
    }

    /// <summary>The text of <paramref name="ids"/>, special tokens included.</summary>
    public string Decode(IEnumerable<int> ids) => Decode(ids, skipSpecialTokens: false);

    /// <summary>
    /// The text of <paramref name="ids"/> through the file's decoder (without one, the tokens joined by spaces, as
    /// tokenizers does). With <paramref name="skipSpecialTokens"/>, tokens whose text is a special added token are left out.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            string token = IdToToken(id) ?? throw new ArgumentOutOfRangeException(nameof(ids), id, $"no token has id {id} in {FilePath}.");
            if (!(skipSpecialTokens && _specialContents.Contains(token))) tokens.Add(token);
        }
        return _decoder == null ? string.Join(" ", tokens) : _decoder.Decode(tokens);
    }

    private static bool ValidUtf16(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (!char.IsSurrogate(s[i])) continue;
            if (!char.IsHighSurrogate(s[i]) || i + 1 == s.Length || !char.IsLowSurrogate(s[i + 1])) return false;
            i++;
        }
        return true;
    }

    /// <summary>
    /// Finds added tokens as tokenizers' AddedVocabulary does: scanning left to right, at the first place where
    /// some token starts, the longest one starting there; lstrip widens the match over the whitespace on its
    /// left (not into the previous match), rstrip over the whitespace on its right, and the search goes on from
    /// the end of the token itself.
    /// </summary>
    private sealed class AddedTokenMatcher
    {
        private readonly Dictionary<char, HfAddedToken[]> _byFirstChar;

        public AddedTokenMatcher(IEnumerable<HfAddedToken> tokens) =>
            _byFirstChar = tokens.GroupBy(t => t.Content[0])
                                 .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());

        /// <summary>The pieces of <paramref name="text"/>: (start, end, id of the added token or −1 for other text); none for empty text.</summary>
        public List<(int Start, int End, int Token)> Split(string text)
        {
            var pieces = new List<(int, int, int)>();
            int done = 0;
            for (int i = 0; i < text.Length && _byFirstChar.Count > 0;)
            {
                var match = _byFirstChar.TryGetValue(text[i], out var candidates)
                    ? candidates.FirstOrDefault(t => text.AsSpan(i).StartsWith(t.Content, StringComparison.Ordinal))
                    : null;
                if (match == null) { i++; continue; }
                int start = i, end = i + match.Content.Length;
                i = end;
                if (match.LStrip)
                {
                    while (start > 0 && char.IsWhiteSpace(text[start - 1])) start--;
                    start = Math.Max(start, done);
                }
                if (match.RStrip)
                    while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
                if (done < start) pieces.Add((done, start, -1));
                pieces.Add((start, end, match.Id));
                done = end;
            }
            if (done < text.Length) pieces.Add((done, text.Length, -1));
            return pieces;
        }
    }
}
