using System.Collections.Concurrent;
using System.Text;

namespace EditRuntime.Text;

/// <summary>
/// GPT-2's byte-level BPE tokenizer, token for token as GPT-2's encoder.py (and Hugging Face's GPT-2
/// tokenizer) encodes, over a vocab.json (token → id) and merges.txt (merge rules in rank order).
/// <list type="bullet">
/// <item>Text is split by <see cref="Gpt2PreTokenizer"/> (GPT-2's regex, on code points); each word is
///   UTF-8 encoded and written with GPT-2's byte characters (<see cref="ByteLevel"/>).</item>
/// <item>BPE: while some adjacent pair of symbols has a merge rule, take the pair with the lowest rank
///   and merge every occurrence of it, left to right without overlaps ("a a a" → "aa a"); then look
///   up each symbol's id. Results are cached per word.</item>
/// <item>Special token: by default the literal text <c>&lt;|endoftext|&gt;</c> encodes to
///   <see cref="EndOfTextId"/> (50256 for GPT-2), as Hugging Face's GPT-2 tokenizer and tiktoken with
///   <c>allowed_special="all"</c> do; the text on either side is encoded separately and no whitespace is
///   stripped. With <c>Encode(text, allowSpecial: false)</c> it is ordinary text ("&lt;|", "endoftext",
///   "|&gt;"), as in GPT-2's original encoder.py.</item>
/// <item>Lone UTF-16 surrogates (not valid Unicode) are encoded as U+FFFD; <see cref="Decode"/> turns
///   invalid UTF-8 (a token sequence that cuts a character) into U+FFFD like Python's
///   <c>errors="replace"</c> (one U+FFFD per maximal invalid subsequence).</item>
/// </list>
/// Instances are immutable apart from the word cache and safe to use from several threads.
/// </summary>
public sealed class Gpt2Tokenizer : EditRuntime.Models.ITokenizer
{
    /// <summary>The end-of-text special token.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>Words longer than this (in symbols) use the O(n log n) BPE instead of GPT-2's O(n²) rounds.</summary>
    internal const int NaiveBpeMaxLength = 48;
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 17;

    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;
    private readonly byte[][] _tokenBytes;
    private readonly int[] _byteToId = new int[256];
    private readonly Dictionary<long, int> _rank;        // (left id, right id) → rank
    private readonly (int Left, int Right)[] _mergePairs; // rank → pair
    private readonly int[] _mergeResult;                  // rank → id of the merged token
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    private int _cacheCount;

    /// <summary>Number of ids (vocab.json ids run from 0 to VocabSize − 1).</summary>
    public int VocabSize => _tokens.Length;
    /// <summary>The id of <c>&lt;|endoftext|&gt;</c> (50256 in GPT-2).</summary>
    public int EndOfTextId { get; }
    /// <summary>Number of merge rules.</summary>
    public int MergeCount => _mergePairs.Length;

    private Gpt2Tokenizer(string[] tokens, Dictionary<string, int> ids, List<BpeFiles.MergeEntry> merges,
                          string vocabSource, string mergesSource, bool mergesAreEntries)
    {
        _tokens = tokens;
        _ids = ids;
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        for (int b = 0; b < 256; b++)
        {
            string s = ByteLevel.ByteToChar((byte)b).ToString();
            if (!ids.TryGetValue(s, out _byteToId[b]))
                throw new TokenizerFileException(vocabSource, 0,
                    $"there is no token {BpeFiles.Quote(s)} for byte 0x{b:X2}; a byte-level vocabulary has a token for each of the 256 bytes.");
        }
        if (!ids.TryGetValue(EndOfText, out int eot))
            throw new TokenizerFileException(vocabSource, 0, $"there is no {EndOfText} token.");
        EndOfTextId = eot;

        _tokenBytes = new byte[tokens.Length][];
        for (int id = 0; id < tokens.Length; id++)
            _tokenBytes[id] = ByteLevel.TryDecode(tokens[id], out var bytes) ? bytes : Encoding.UTF8.GetBytes(tokens[id]);

        _rank = new Dictionary<long, int>(merges.Count);
        _mergePairs = new (int, int)[merges.Count];
        _mergeResult = new int[merges.Count];
        var firstLine = new Dictionary<long, int>(merges.Count);
        string where = mergesAreEntries ? "entry" : "line";
        for (int r = 0; r < merges.Count; r++)
        {
            var m = merges[r];
            if (!ids.TryGetValue(m.Left, out int a))
                throw new TokenizerFileException(mergesSource, m.Line, where, $"token {BpeFiles.Quote(m.Left)} is not in the vocabulary ({vocabSource}).");
            if (!ids.TryGetValue(m.Right, out int b))
                throw new TokenizerFileException(mergesSource, m.Line, where, $"token {BpeFiles.Quote(m.Right)} is not in the vocabulary ({vocabSource}).");
            if (!ids.TryGetValue(m.Left + m.Right, out int c))
                throw new TokenizerFileException(mergesSource, m.Line, where,
                    $"merging {BpeFiles.Quote(m.Left)} and {BpeFiles.Quote(m.Right)} gives {BpeFiles.Quote(m.Left + m.Right)}, which is not in the vocabulary ({vocabSource}).");
            long key = PairKey(a, b);
            if (!firstLine.TryAdd(key, m.Line))
                throw new TokenizerFileException(mergesSource, m.Line, where,
                    $"merge {BpeFiles.Quote(m.Left)} {BpeFiles.Quote(m.Right)} appears twice (first at {where} {firstLine[key]}).");
            _rank[key] = r;
            _mergePairs[r] = (a, b);
            _mergeResult[r] = c;
        }
    }

    // ---------------------------------------------------------------- loading

    /// <summary>Loads GPT-2 style vocab.json (GPT-2's encoder.json) and merges.txt (GPT-2's vocab.bpe).</summary>
    /// <exception cref="TokenizerFileException">A file is malformed; the message names the file and line.</exception>
    public static Gpt2Tokenizer Load(string vocabJsonPath, string mergesTxtPath)
    {
        var entries = BpeFiles.ReadVocabJson(vocabJsonPath);
        var merges = BpeFiles.ReadMerges(mergesTxtPath);
        var (tokens, ids) = BuildVocabulary(entries, vocabJsonPath, "line");
        return new Gpt2Tokenizer(tokens, ids, merges, vocabJsonPath, mergesTxtPath, mergesAreEntries: false);
    }

    /// <summary>Loads <c>vocab.json</c> and <c>merges.txt</c> from <paramref name="directory"/>.</summary>
    public static Gpt2Tokenizer FromDirectory(string directory) =>
        Load(Path.Combine(directory, "vocab.json"), Path.Combine(directory, "merges.txt"));

    /// <summary>
    /// A tokenizer over an in-memory vocabulary: <paramref name="tokens"/>[i] is the token with id i
    /// (GPT-2 byte characters, e.g. "Ġthe"; it must include the 256 byte tokens and <c>&lt;|endoftext|&gt;</c>),
    /// and <paramref name="merges"/> are the merge rules in rank order. Errors name the list entry (1-based).
    /// </summary>
    public static Gpt2Tokenizer FromVocabulary(IReadOnlyList<string> tokens, IEnumerable<(string Left, string Right)> merges)
    {
        var entries = new List<BpeFiles.VocabEntry>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++) entries.Add(new BpeFiles.VocabEntry(tokens[i], i, i + 1));
        var mergeEntries = merges.Select((m, i) => new BpeFiles.MergeEntry(m.Left, m.Right, i + 1)).ToList();
        var (t, ids) = BuildVocabulary(entries, "tokens (in memory)", "entry");
        return new Gpt2Tokenizer(t, ids, mergeEntries, "tokens (in memory)", "merges (in memory)", mergesAreEntries: true);
    }

    private static (string[] Tokens, Dictionary<string, int> Ids) BuildVocabulary(List<BpeFiles.VocabEntry> entries, string source, string where)
    {
        if (entries.Count == 0) throw new TokenizerFileException(source, 0, "the vocabulary is empty.");
        TokenizerFileException Error(int line, string message) => new(source, line, where, message);
        var ids = new Dictionary<string, int>(entries.Count, StringComparer.Ordinal);
        var lineOfToken = new Dictionary<string, int>(entries.Count, StringComparer.Ordinal);
        int maxId = entries.Max(e => e.Id);
        if (maxId >= entries.Count)
        {
            var present = new bool[entries.Count];
            foreach (var e in entries) if (e.Id < present.Length) present[e.Id] = true;
            int missing = Array.IndexOf(present, false);
            var big = entries.First(e => e.Id == maxId);
            throw Error(big.Line,
                $"ids must run from 0 to {entries.Count - 1} without gaps ({entries.Count} tokens), but token {BpeFiles.Quote(big.Token)} has id {maxId} and id {missing} is missing.");
        }
        var tokens = new string?[entries.Count];
        var lineOfId = new int[entries.Count];
        foreach (var e in entries)
        {
            if (!lineOfToken.TryAdd(e.Token, e.Line))
                throw Error(e.Line, $"token {BpeFiles.Quote(e.Token)} appears twice (first at {where} {lineOfToken[e.Token]}).");
            if (tokens[e.Id] is { } other)
                throw Error(e.Line,
                    $"id {e.Id} is given to both {BpeFiles.Quote(other)} ({where} {lineOfId[e.Id]}) and {BpeFiles.Quote(e.Token)}.");
            if (e.Token.Length == 0)
                throw Error(e.Line, $"token with id {e.Id} is empty.");
            tokens[e.Id] = e.Token;
            lineOfId[e.Id] = e.Line;
            ids[e.Token] = e.Id;
        }
        return (tokens!.Select(t => t!).ToArray(), ids);
    }

    // ---------------------------------------------------------------- vocabulary

    /// <summary>The vocabulary token with this id, in GPT-2's byte characters ("Ġthe" for " the").</summary>
    public string TokenText(int id) => _tokens[CheckId(id)];

    /// <summary>The bytes that this id decodes to (UTF-8 of " the" for "Ġthe").</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => _tokenBytes[CheckId(id)];

    /// <summary>The id of a vocabulary token given in GPT-2's byte characters ("Ġthe", not " the").</summary>
    public bool TryGetId(string token, out int id) => _ids.TryGetValue(token, out id);

    /// <summary>The merge rules in rank order, as vocabulary tokens.</summary>
    public IEnumerable<(string Left, string Right)> Merges =>
        _mergePairs.Select(p => (_tokens[p.Left], _tokens[p.Right]));

    private int CheckId(int id)
    {
        if ((uint)id >= (uint)_tokens.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token ids run from 0 to {_tokens.Length - 1}.");
        return id;
    }

    // ---------------------------------------------------------------- encode / decode

    /// <summary>The ids of <paramref name="text"/>; <c>&lt;|endoftext|&gt;</c> in the text becomes <see cref="EndOfTextId"/>.</summary>
    public int[] Encode(string text) => Encode(text, allowSpecial: true);

    /// <summary>The ids of <paramref name="text"/> with &lt;|endoftext|&gt; encoded as ordinary text.</summary>
    public int[] EncodePlain(string text) => Encode(text, allowSpecial: false);

    /// <summary>
    /// The ids of <paramref name="text"/>. With <paramref name="allowSpecial"/> the literal
    /// <c>&lt;|endoftext|&gt;</c> becomes <see cref="EndOfTextId"/> (Hugging Face / tiktoken); without it
    /// it is ordinary text (GPT-2's encoder.py).
    /// </summary>
    public int[] Encode(string text, bool allowSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        EncodeTo(text, ids, allowSpecial);
        return ids.ToArray();
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void EncodeTo(ReadOnlySpan<char> text, List<int> ids, bool allowSpecial = true)
    {
        if (allowSpecial)
        {
            int at;
            while ((at = text.IndexOf(EndOfText, StringComparison.Ordinal)) >= 0)
            {
                EncodeOrdinary(text[..at], ids);
                ids.Add(EndOfTextId);
                text = text[(at + EndOfText.Length)..];
            }
        }
        EncodeOrdinary(text, ids);
    }

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        int i = 0;
        while (i < text.Length)
        {
            int len = Gpt2PreTokenizer.MatchAt(text, i);
            ids.AddRange(EncodeWord(text.Slice(i, len)));
            i += len;
        }
    }

    /// <summary>The ids of one pre-tokenized word (cached).</summary>
    internal int[] EncodeWord(ReadOnlySpan<char> word)
    {
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cacheLookup.TryGetValue(word, out var cached)) return cached;

        int max = Encoding.UTF8.GetMaxByteCount(word.Length);
        byte[]? rented = null;
        Span<byte> buf = max <= 512 ? stackalloc byte[max] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(max));
        int n = Encoding.UTF8.GetBytes(word, buf); // lone surrogates become EF BF BD (U+FFFD)
        var symbols = new int[n];
        for (int k = 0; k < n; k++) symbols[k] = _byteToId[buf[k]];
        if (rented != null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);

        int[] result = n <= NaiveBpeMaxLength ? BpeRounds(symbols) : BpeHeap(symbols);
        if (cacheable)
        {
            if (Interlocked.Increment(ref _cacheCount) > MaxCacheEntries)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 0);
            }
            _cacheLookup.TryAdd(word, result);
        }
        return result;
    }

    /// <summary>The text of <paramref name="ids"/>: their bytes, decoded as UTF-8 with U+FFFD for invalid sequences.</summary>
    public string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));

    /// <summary>The concatenated bytes of <paramref name="ids"/>.</summary>
    public byte[] DecodeBytes(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (int id in ids) bytes.AddRange(_tokenBytes[CheckId(id)]);
        return bytes.ToArray();
    }

    // ---------------------------------------------------------------- BPE

    private static long PairKey(int a, int b) => ((long)a << 32) | (uint)b;

    private bool TryRank(int a, int b, out int rank) => _rank.TryGetValue(PairKey(a, b), out rank);

    /// <summary>
    /// GPT-2's algorithm (encoder.py's bpe), on ids: each round finds the adjacent pair with the lowest
    /// rank and merges all its occurrences left to right. O(n²) per word; used for short words.
    /// </summary>
    internal int[] BpeRounds(int[] symbols)
    {
        int n = symbols.Length;
        while (n > 1)
        {
            int best = int.MaxValue;
            for (int k = 0; k + 1 < n; k++)
                if (TryRank(symbols[k], symbols[k + 1], out int r) && r < best) best = r;
            if (best == int.MaxValue) break;
            var (a, b) = _mergePairs[best];
            int c = _mergeResult[best], w = 0;
            for (int k = 0; k < n;)
            {
                if (k + 1 < n && symbols[k] == a && symbols[k + 1] == b) { symbols[w++] = c; k += 2; }
                else symbols[w++] = symbols[k++];
            }
            n = w;
        }
        return n == symbols.Length ? symbols : symbols[..n];
    }

    /// <summary>
    /// The same result as <see cref="BpeRounds"/> in O(n log n): symbols in a linked list, candidate
    /// pairs in a heap keyed by (rank, position). A round takes every heap entry of the lowest rank (in
    /// position order, i.e. left to right) before merging any, so pairs created by the round — whatever
    /// their rank — wait for the next round, exactly as in GPT-2's rounds. Stale entries are skipped.
    /// </summary>
    internal int[] BpeHeap(int[] symbols)
    {
        int n = symbols.Length;
        if (n < 2) return symbols;
        int[] sym = symbols;
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
        var heap = new PriorityQueue<int, long>(n);
        for (int i = 0; i + 1 < n; i++)
            if (TryRank(sym[i], sym[i + 1], out int r)) heap.Enqueue(i, ((long)r << 32) | (uint)i);
        var batch = new List<int>();
        while (heap.TryPeek(out _, out long top))
        {
            int rank = (int)(top >> 32);
            batch.Clear();
            while (heap.TryPeek(out int pos, out long key) && (int)(key >> 32) == rank) { heap.Dequeue(); batch.Add(pos); }
            var (a, b) = _mergePairs[rank];
            int c = _mergeResult[rank];
            foreach (int pos in batch)
            {
                int q = next[pos];
                if (q < 0 || sym[pos] != a || sym[q] != b || prev[q] != pos) continue; // stale (merged away or changed)
                sym[pos] = c;
                int after = next[q];
                next[pos] = after;
                if (after >= 0) prev[after] = pos;
                next[q] = -1; prev[q] = -2; // q is gone
                int p = prev[pos];
                if (p >= 0 && TryRank(sym[p], c, out int r1)) heap.Enqueue(p, ((long)r1 << 32) | (uint)p);
                if (after >= 0 && TryRank(c, sym[after], out int r2)) heap.Enqueue(pos, ((long)r2 << 32) | (uint)pos);
            }
        }
        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i]) result.Add(sym[i]);
        return result.ToArray();
    }
}
