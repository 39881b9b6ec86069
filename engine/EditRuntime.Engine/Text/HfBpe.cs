using System.Collections.Concurrent;
using System.Text;

namespace EditRuntime.Text;

/// <summary>
/// The <c>"BPE"</c> model of a tokenizer.json, word for word as Hugging Face's tokenizers (models/bpe) tokenizes:
/// <list type="bullet">
/// <item>With <c>ignore_merges</c>, a word that is itself a vocabulary token is that one token (LLaMA-3).</item>
/// <item>Otherwise each character (code point) of the word is its vocabulary token; a character that is not
///   one becomes, with <c>byte_fallback</c>, the tokens <c>&lt;0xXX&gt;</c> of its UTF-8 bytes when the
///   vocabulary has all of them; else <c>unk_token</c> (consecutive ones fused into one with <c>fuse_unk</c>);
///   else, as in tokenizers, it is dropped.</item>
/// <item>Then, while some adjacent pair has a merge, the pair with the lowest rank is merged, the leftmost
///   first among equal ranks (tokenizers' Word::merge_all with its priority queue).</item>
/// </list>
/// Instances are immutable apart from a word cache and safe to use from several threads.
/// </summary>
internal sealed class HfBpe
{
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 16;

    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idsLookup;
    private readonly Dictionary<int, string> _tokens;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly int _unkId;      // -1: no unk_token
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteIds; // with byte_fallback: the id of "<0xXX>" for each byte, -1 where there is none
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private int _cacheCount;

    /// <summary>Number of vocabulary entries.</summary>
    public int Count => _ids.Count;

    /// <summary>The largest vocabulary id, −1 for an empty vocabulary.</summary>
    public int MaxId { get; }

    private HfBpe(Dictionary<string, int> ids, Dictionary<int, string> tokens, Dictionary<long, (int, int)> merges,
                  int unkId, bool fuseUnk, bool ignoreMerges, bool byteFallback)
    {
        _ids = ids;
        _idsLookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _tokens = tokens;
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _ignoreMerges = ignoreMerges;
        MaxId = tokens.Count == 0 ? -1 : tokens.Keys.Max();
        if (byteFallback)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++) _byteIds[b] = ids.GetValueOrDefault($"<0x{b:X2}>", -1);
        }
    }

    /// <summary>Reads the <c>model</c> object (its <c>type</c> already checked to be BPE).</summary>
    public static HfBpe Read(HfJson model)
    {
        model.OnlyFields("type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                         "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges");
        if (model.TryNonNull("dropout", out var dropout) && dropout.Number() != 0)
            throw dropout.Error("BPE dropout skips merges at random; only null or 0 is supported.");
        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryNonNull(affix, out var value) && value.String().Length != 0)
                throw value.Error("only null or \"\" is supported (the byte-level and SentencePiece BPE models have none).");
        bool fuseUnk = model.TryNonNull("fuse_unk", out var f) && f.Bool();
        bool byteFallback = model.TryNonNull("byte_fallback", out var bf) && bf.Bool();
        bool ignoreMerges = model.TryNonNull("ignore_merges", out var im) && im.Bool();

        var vocab = model.Field("vocab", "a JSON object {\"token\": id, …}");
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var tokens = new Dictionary<int, string>();
        foreach (var (token, idNode) in vocab.Properties())
        {
            int id = idNode.Int();
            if (!ids.TryAdd(token, id)) throw idNode.Error("the token appears twice in the vocabulary.");
            if (!tokens.TryAdd(id, token)) throw idNode.Error($"id {id} is also the id of {BpeFiles.Quote(tokens[id])}.");
        }

        int unkId = -1;
        if (model.TryNonNull("unk_token", out var unk) && !ids.TryGetValue(unk.String(), out unkId))
            throw unk.Error($"{BpeFiles.Quote(unk.String())} is not in model.vocab.");

        var mergesNode = model.Field("merges", "an array of merges, \"left right\" strings or [\"left\", \"right\"] pairs");
        var merges = new Dictionary<long, (int, int)>(mergesNode.Count);
        bool? strings = null;
        int rank = 0;
        foreach (var m in mergesNode.Items())
        {
            string left, right;
            if (m.IsString)
            {
                if (strings == false) throw m.Error("a \"left right\" string among [\"left\", \"right\"] pairs; merges must all have one form.");
                strings = true;
                string line = m.String();
                if (line.StartsWith("#version", StringComparison.Ordinal)) continue; // skipped by tokenizers too
                string[] parts = line.Split(' ');
                if (parts.Length != 2)
                    throw m.Error($"expected \"left right\" (two tokens separated by one space), got {parts.Length} space-separated parts.");
                (left, right) = (parts[0], parts[1]);
            }
            else if (m.IsArray)
            {
                if (strings == true) throw m.Error("a [\"left\", \"right\"] pair among \"left right\" strings; merges must all have one form.");
                strings = false;
                if (m.Count != 2) throw m.Error($"expected a pair [\"left\", \"right\"], got {m.Count} items.");
                var pair = m.Items().Select(i => i.String()).ToArray();
                (left, right) = (pair[0], pair[1]);
            }
            else throw m.Error("expected a merge, \"left right\" or [\"left\", \"right\"].");

            if (!ids.TryGetValue(left, out int a)) throw m.Error($"{BpeFiles.Quote(left)} is not in model.vocab.");
            if (!ids.TryGetValue(right, out int b)) throw m.Error($"{BpeFiles.Quote(right)} is not in model.vocab.");
            if (!ids.TryGetValue(left + right, out int c))
                throw m.Error($"merging {BpeFiles.Quote(left)} and {BpeFiles.Quote(right)} gives {BpeFiles.Quote(left + right)}, which is not in model.vocab.");
            merges[PairKey(a, b)] = (rank++, c); // a repeated pair keeps its last rank, as in tokenizers
        }
        return new HfBpe(ids, tokens, merges, unkId, fuseUnk, ignoreMerges, byteFallback);
    }

    /// <summary>The id of a vocabulary token.</summary>
    public bool TryGetId(string token, out int id) => _ids.TryGetValue(token, out id);

    /// <summary>The vocabulary token with this id, or null.</summary>
    public string? Token(int id) => _tokens.GetValueOrDefault(id);

    /// <summary>Appends the ids of one pre-tokenized word (valid UTF-16) to <paramref name="output"/>.</summary>
    public void Tokenize(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _ids.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        int[] result = MergeAll(Symbols(word));
        if (cacheable)
        {
            if (Interlocked.Increment(ref _cacheCount) > MaxCacheEntries)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 0);
            }
            _cache.TryAdd(word, result);
        }
        output.AddRange(result);
    }

    /// <summary>The initial symbols of a word: one per character (tokenizers' BPE::merge_word before merging).</summary>
    private List<int> Symbols(string word)
    {
        var symbols = new List<int>(word.Length);
        bool unkPending = false;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var c = word.AsSpan(i, len);
            i += len;
            if (_idsLookup.TryGetValue(c, out int id))
            {
                if (unkPending) symbols.Add(_unkId);
                unkPending = false;
                symbols.Add(id);
                continue;
            }
            if (_byteIds != null)
            {
                int n = Encoding.UTF8.GetBytes(c, utf8);
                bool all = true;
                for (int k = 0; k < n; k++) all &= _byteIds[utf8[k]] >= 0;
                if (all)
                {
                    // As in tokenizers, an unknown character still waiting to be emitted stays waiting.
                    for (int k = 0; k < n; k++) symbols.Add(_byteIds[utf8[k]]);
                    continue;
                }
            }
            if (_unkId >= 0)
            {
                if (unkPending && !_fuseUnk) symbols.Add(_unkId);
                unkPending = true;
            }
        }
        if (unkPending) symbols.Add(_unkId);
        return symbols;
    }

    private static long PairKey(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>
    /// Merges by rank: a priority queue of (rank, position) pairs, the lowest first; an entry whose pair has
    /// changed since it was queued (its merge no longer gives the same token) is skipped. A merged symbol
    /// keeps the left position, so position 0 is never removed.
    /// </summary>
    private int[] MergeAll(List<int> symbols)
    {
        int n = symbols.Count;
        int[] sym = symbols.ToArray();
        if (n < 2) return sym;
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }
        var queue = new PriorityQueue<(int Pos, int NewId), long>(n);
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(PairKey(sym[i], sym[i + 1]), out var m)) queue.Enqueue((i, m.NewId), QueueKey(m.Rank, i));

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos]) continue;
            int right = next[pos];
            if (right < 0) continue;
            if (!_merges.TryGetValue(PairKey(sym[pos], sym[right]), out var current) || current.NewId != top.NewId) continue;
            sym[pos] = top.NewId;
            alive[right] = false;
            int after = next[right];
            next[pos] = after;
            if (after >= 0) prev[after] = pos;
            int before = prev[pos];
            if (before >= 0 && _merges.TryGetValue(PairKey(sym[before], sym[pos]), out var left))
                queue.Enqueue((before, left.NewId), QueueKey(left.Rank, before));
            if (after >= 0 && _merges.TryGetValue(PairKey(sym[pos], sym[after]), out var following))
                queue.Enqueue((pos, following.NewId), QueueKey(following.Rank, pos));
        }

        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(sym[i]);
        return result.ToArray();
    }

    private static long QueueKey(int rank, int pos) => ((long)rank << 32) | (uint)pos;
}
