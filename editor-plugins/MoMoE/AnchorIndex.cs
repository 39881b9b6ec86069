using EditRuntime.Models;
using EditRuntime.Text;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MOMoE's knowledge anchors: the subjects of the edits made so far, their token spans and the expert
/// group that holds their edits, and the matching of those spans in an input.
/// A subject is known by two spans, " Subject" (inside a sentence) and "Subject" (at its start).
/// Matching is leftmost-longest over a token trie; a match must be a whole word sequence: it starts with
/// a space-led token, at the first position, or after a token that ends in a non-letter/digit, and the
/// token after it (if any) must not continue the word (start with a letter or digit).
/// </summary>
public sealed class AnchorIndex
{
    public sealed record Anchor(string Subject, int[] Span, int[] BareSpan, float[] Embedding)
    {
        /// <summary>The expert group that holds this subject's edits (the latest batch that edited it).</summary>
        public int Group { get; set; }
    }

    private sealed class Node
    {
        public Dictionary<int, Node>? Next;
        public int Anchor = -1;
    }

    private readonly ITokenizer _tok;
    private readonly List<Anchor> _anchors = new();
    private readonly Dictionary<string, int> _bySubject = new(StringComparer.Ordinal);
    private readonly Node _root = new();
    private readonly Dictionary<int, (bool StartsWord, bool ContinuesWord, bool EndsInWordChar)> _flags = new();

    public AnchorIndex(ITokenizer tokenizer) => _tok = tokenizer;

    public IReadOnlyList<Anchor> Anchors => _anchors;
    public int Count => _anchors.Count;
    public int? Find(string subject) => _bySubject.TryGetValue(subject, out var i) ? i : null;

    /// <summary>Adds a subject (or returns the existing one's id).</summary>
    public int Add(string subject, float[] embedding, int group)
    {
        if (_bySubject.TryGetValue(subject, out var id)) return id;
        var span = _tok.EncodePlain(" " + subject);
        var bare = _tok.EncodePlain(subject);
        if (span.Length == 0) throw new ArgumentException($"MOMoE: the subject \"{subject}\" has no tokens.");
        id = _anchors.Count;
        _anchors.Add(new Anchor(subject, span, bare, embedding) { Group = group });
        _bySubject[subject] = id;
        Insert(span, id);
        if (bare.Length > 0) Insert(bare, id);
        return id;
    }

    public void Clear()
    {
        _anchors.Clear();
        _bySubject.Clear();
        _root.Next = null;
        _root.Anchor = -1;
    }

    private void Insert(int[] span, int id)
    {
        var n = _root;
        foreach (var t in span)
        {
            n.Next ??= new Dictionary<int, Node>();
            if (!n.Next.TryGetValue(t, out var c)) n.Next[t] = c = new Node();
            n = c;
        }
        if (n.Anchor < 0) n.Anchor = id; // a span shared by two subjects keeps the first
    }

    private (bool StartsWord, bool ContinuesWord, bool EndsInWordChar) Flags(int id)
    {
        if (_flags.TryGetValue(id, out var f)) return f;
        string s = id >= 0 && id < _tok.VocabSize ? _tok.Decode([id]) : "";
        f = (s.Length > 0 && s[0] == ' ', s.Length > 0 && char.IsLetterOrDigit(s[0]), s.Length > 0 && char.IsLetterOrDigit(s[^1]));
        _flags[id] = f;
        return f;
    }

    /// <summary>The matches in a token sequence: (start, end exclusive, anchor id), left to right, not overlapping.
    /// <paramref name="allowed"/> (when given) restricts matching to some anchors.</summary>
    public List<(int Start, int End, int Anchor)> Matches(ReadOnlySpan<int> ids, Func<int, bool>? allowed = null)
    {
        var found = new List<(int, int, int)>();
        for (int s = 0; s < ids.Length; s++)
        {
            int best = -1, bestEnd = -1;
            var n = _root;
            for (int e = s; e < ids.Length; e++)
            {
                if (n.Next is null || !n.Next.TryGetValue(ids[e], out var c)) break;
                n = c;
                if (n.Anchor < 0 || (allowed is not null && !allowed(n.Anchor))) continue;
                bool startOk = s == 0 || Flags(ids[s]).StartsWord || !Flags(ids[s - 1]).EndsInWordChar;
                bool endOk = e + 1 == ids.Length || !Flags(ids[e + 1]).ContinuesWord;
                if (startOk && endOk) { best = n.Anchor; bestEnd = e + 1; }
            }
            if (best < 0) continue;
            found.Add((s, bestEnd, best));
            s = bestEnd - 1;
        }
        return found;
    }

    /// <summary>
    /// The anchor routing each position of a sequence (−1: none). Causal: a match counts from its last
    /// token on. <paramref name="afterSubject"/>: every position from the subject's last token until the next
    /// match; else only the subject's last token.
    /// </summary>
    public int[] ActivePerPosition(ReadOnlySpan<int> ids, bool afterSubject, Func<int, bool>? allowed = null)
    {
        var active = new int[ids.Length];
        Array.Fill(active, -1);
        var m = Matches(ids, allowed);
        for (int i = 0; i < m.Count; i++)
        {
            int from = m[i].End - 1;
            int to = afterSubject ? (i + 1 < m.Count ? m[i + 1].End - 1 : ids.Length) : from + 1;
            for (int p = from; p < to; p++) active[p] = m[i].Anchor;
        }
        return active;
    }
}
