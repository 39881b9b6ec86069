using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Text;
using NUnit.Framework;

// Not under EditRuntime.Tests on purpose: that namespace's [SetUpFixture] opens a Vulkan device, and
// none of these tests need one. Run them with --filter "FullyQualifiedName~HfTokenizerTests".
namespace EditRuntime.TextTests.HfTokenizerTests;

/// <summary>Writing tokenizer.json files in the format of Hugging Face's tokenizers, as published.</summary>
internal static class HfFiles
{
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static JsonObject Tokenizer(JsonObject model, JsonArray addedTokens, JsonNode? normalizer = null, JsonNode? preTokenizer = null,
                                       JsonNode? postProcessor = null, JsonNode? decoder = null) => new()
    {
        ["version"] = "1.0",
        ["truncation"] = null,
        ["padding"] = null,
        ["added_tokens"] = addedTokens,
        ["normalizer"] = normalizer,
        ["pre_tokenizer"] = preTokenizer,
        ["post_processor"] = postProcessor,
        ["decoder"] = decoder,
        ["model"] = model,
    };

    /// <summary>A BPE model: the vocabulary in id order, merges as "left right" strings (or [left, right] pairs).</summary>
    public static JsonObject Bpe(IEnumerable<KeyValuePair<string, int>> vocab, IEnumerable<string> merges, bool mergesAsPairs = false,
                                 string? unkToken = null, bool fuseUnk = false, bool byteFallback = false, bool ignoreMerges = false)
    {
        var v = new JsonObject();
        foreach (var (token, id) in vocab) v[token] = id;
        var m = new JsonArray();
        foreach (string merge in merges)
            m.Add(mergesAsPairs ? new JsonArray(merge.Split(' ').Select(p => (JsonNode?)p).ToArray()) : JsonValue.Create(merge));
        return new JsonObject
        {
            ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = unkToken, ["continuing_subword_prefix"] = null,
            ["end_of_word_suffix"] = null, ["fuse_unk"] = fuseUnk, ["byte_fallback"] = byteFallback, ["ignore_merges"] = ignoreMerges,
            ["vocab"] = v, ["merges"] = m,
        };
    }

    public static JsonObject Added(int id, string content, bool special = true, bool normalized = false, bool lstrip = false, bool rstrip = false) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = lstrip, ["rstrip"] = rstrip,
        ["normalized"] = normalized, ["special"] = special,
    };

    public static JsonObject ByteLevel(bool addPrefixSpace = false, bool useRegex = true) => new()
    {
        ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = true, ["use_regex"] = useRegex,
    };

    public static JsonObject Split(string regex) => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false,
    };

    public static JsonObject Sequence(string listName, params JsonNode[] items) => new()
    {
        ["type"] = "Sequence", [listName] = new JsonArray(items),
    };

    /// <summary>TemplateProcessing that puts <paramref name="bos"/> (id <paramref name="bosId"/>) before a sequence.</summary>
    public static JsonObject BosTemplate(string bos, int bosId) => new()
    {
        ["type"] = "TemplateProcessing",
        ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                                   new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
        ["pair"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                                 new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                                 new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 1 } },
                                 new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
        ["special_tokens"] = new JsonObject
        {
            [bos] = new JsonObject { ["id"] = bos, ["ids"] = new JsonArray(bosId), ["tokens"] = new JsonArray(bos) },
        },
    };

    /// <summary>A tokenizer.json as GPT-2's: BPE over vocab.json/merges.txt, ByteLevel pre-tokenizer and decoder, &lt;|endoftext|&gt; added.</summary>
    public static JsonObject Gpt2Style(string vocabJson, string mergesTxt, bool mergesAsPairs = false)
    {
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(vocabJson))!.OrderBy(kv => kv.Value).ToList();
        var merges = File.ReadAllLines(mergesTxt).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal));
        int eot = vocab.Single(kv => kv.Key == Gpt2Tokenizer.EndOfText).Value;
        var model = Bpe(vocab, merges, mergesAsPairs);
        model["continuing_subword_prefix"] = "";
        model["end_of_word_suffix"] = "";
        return Tokenizer(model, [Added(eot, Gpt2Tokenizer.EndOfText, normalized: true)],
                         preTokenizer: ByteLevel(),
                         postProcessor: new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false },
                         decoder: ByteLevel(addPrefixSpace: true));
    }

    public static string Write(string dir, string name, JsonNode json)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        return path;
    }

    public static string NewDir() => Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "editrt-hftok-" + Guid.NewGuid().ToString("N"))).FullName;
}

/// <summary>GPT-2's vocabulary as a tokenizer.json must encode exactly as <see cref="Gpt2Tokenizer"/> (and GPT-2) does.</summary>
[TestFixture]
public class Gpt2VocabularyTests
{
    private string _dir = "";
    private HfTokenizer _hf = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _ = TokFixtures.Gpt2; // fails with how to get GPT-2's files when they are missing
        _dir = HfFiles.NewDir();
        string g = TokFixtures.Gpt2Dir;
        _hf = HfTokenizer.Load(HfFiles.Write(_dir, "tokenizer.json", HfFiles.Gpt2Style(Path.Combine(g, "vocab.json"), Path.Combine(g, "merges.txt"))));
    }

    [OneTimeTearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Test]
    public void MatchesGpt2sReferenceIds()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TokFixtures.FixtureDir, "gpt2_reference.json")));
        var failures = new List<string>();
        int n = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            int[] ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] got = _hf.Encode(text);
            if (!got.SequenceEqual(ids)) failures.Add($"{JsonSerializer.Serialize(text)}: [{string.Join(",", got)}] != [{string.Join(",", ids)}]");
            if (!got.SequenceEqual(TokFixtures.Gpt2.Encode(text))) failures.Add($"Gpt2Tokenizer differs on {JsonSerializer.Serialize(text)}");
            if (_hf.Decode(ids) != text) failures.Add($"decode {JsonSerializer.Serialize(text)}");
            n++;
        }
        Assert.That(n, Is.GreaterThanOrEqualTo(300));
        Assert.That(failures, Is.Empty);
    }

    [Test]
    public void RandomText_EncodesAsGpt2Tokenizer_AndRoundTrips()
    {
        var rnd = new Random(17);
        for (int t = 0; t < 1500; t++)
        {
            string s = TokFixtures.RandomText(rnd, 80);
            int[] ids = _hf.Encode(s);
            Assert.That(ids, Is.EqualTo(TokFixtures.Gpt2.Encode(s)), JsonSerializer.Serialize(s));
            Assert.That(_hf.Decode(ids), Is.EqualTo(s), JsonSerializer.Serialize(s));
        }
    }

    [Test]
    public void EndOfText_InsideText_IsOneId()
    {
        Assert.That(_hf.Encode("Hello world<|endoftext|> the end"), Is.EqualTo(new[] { 15496, 995, 50256, 262, 886 }));
        Assert.That(_hf.Encode("<|endoftext|><|endoftext|>"), Is.EqualTo(new[] { 50256, 50256 }));
        Assert.That(_hf.Encode("<|endoftext|"), Is.EqualTo(new[] { 27, 91, 437, 1659, 5239, 91 }), "a partial special token is text");
        Assert.That(_hf.Decode([15496, 995, 50256]), Is.EqualTo("Hello world<|endoftext|>"));
        Assert.That(_hf.Decode([15496, 995, 50256], skipSpecialTokens: true), Is.EqualTo("Hello world"));
    }

    [Test]
    public void Vocabulary_Accessors()
    {
        Assert.That(_hf.VocabSize, Is.EqualTo(50257));
        Assert.That(_hf.TokenToId("Ġthe"), Is.EqualTo(262));
        Assert.That(_hf.TokenToId(" the"), Is.Null, "vocabulary tokens are written in GPT-2's byte characters");
        Assert.That(_hf.TokenToId("<|endoftext|>"), Is.EqualTo(50256));
        Assert.That(_hf.IdToToken(262), Is.EqualTo("Ġthe"));
        Assert.That(_hf.IdToToken(50257), Is.Null);
        Assert.That(_hf.AddedTokens, Is.EqualTo(new[] { new HfAddedToken(50256, "<|endoftext|>", Special: true, Normalized: true, LStrip: false, RStrip: false) }));
        Assert.That(_hf.TemplatePrefixIds, Is.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => _hf.Decode([50257]));
    }

    [Test]
    public void MergesAsPairs_GiveTheSameIds()
    {
        string g = TokFixtures.Gpt2Dir;
        var pairs = HfTokenizer.Load(HfFiles.Write(_dir, "pairs.json",
            HfFiles.Gpt2Style(Path.Combine(g, "vocab.json"), Path.Combine(g, "merges.txt"), mergesAsPairs: true)));
        var rnd = new Random(3);
        for (int t = 0; t < 300; t++)
        {
            string s = TokFixtures.RandomText(rnd, 60);
            Assert.That(pairs.Encode(s), Is.EqualTo(_hf.Encode(s)), JsonSerializer.Serialize(s));
        }
    }
}

/// <summary>The built-in model's own vocabulary (always in the repository, no download needed), written as a tokenizer.json.</summary>
[TestFixture]
public class BuiltInVocabularyTests
{
    [Test]
    public void EncodesAsGpt2Tokenizer_AndRoundTrips()
    {
        string dir = HfFiles.NewDir();
        try
        {
            string model = Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");
            var gpt2 = Gpt2Tokenizer.FromDirectory(model);
            var hf = HfTokenizer.Load(HfFiles.Write(dir, "tokenizer.json",
                HfFiles.Gpt2Style(Path.Combine(model, "vocab.json"), Path.Combine(model, "merges.txt"))));
            Assert.That(hf.VocabSize, Is.EqualTo(gpt2.VocabSize));
            var rnd = new Random(23);
            var texts = TokFixtures.SyntheticCorpus(5, 20_000).Concat(Enumerable.Range(0, 500).Select(_ => TokFixtures.RandomText(rnd, 60)));
            foreach (string s in texts)
            {
                int[] ids = hf.Encode(s);
                Assert.That(ids, Is.EqualTo(gpt2.Encode(s)), JsonSerializer.Serialize(s));
                Assert.That(hf.Decode(ids), Is.EqualTo(s));
            }
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }
}

/// <summary>
/// A LLaMA-2-style (SentencePiece BPE) tokenizer.json made by hand: "▁" for spaces, Prepend + Replace normalizer, no
/// pre-tokenizer, byte fallback tokens &lt;0x00&gt;..&lt;0xFF&gt; (ids 3..258), and LLaMA-2's decoder sequence.
/// Expected ids are worked out by hand from the merge ranks below.
/// </summary>
[TestFixture]
public class Llama2StyleTests
{
    // 259.. : the pieces; merge rank r is the r-th line of Merges.
    private static readonly string[] Pieces =
        ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world"];
    private static readonly string[] Merges =
        ["▁ h", "l l", "▁h e", "▁he ll", "▁hell o", "▁ w", "o r", "▁w or", "▁wor l", "▁worl d"];
    private const int Space = 259, H = 260, L = 262, O = 263, W = 264, SpaceH = 267, LL = 268, Hell = 270, Hello = 271, World = 276;

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = HfFiles.NewDir();

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private static int Byte(int b) => 3 + b;

    private HfTokenizer Load(bool byteFallback = true, bool fuseUnk = true)
    {
        var vocab = new List<string> { "<unk>", "<s>", "</s>" };
        vocab.AddRange(Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"));
        vocab.AddRange(Pieces);
        var json = HfFiles.Tokenizer(
            HfFiles.Bpe(vocab.Select((t, i) => KeyValuePair.Create(t, i)), Merges, unkToken: "<unk>", fuseUnk: fuseUnk, byteFallback: byteFallback),
            [HfFiles.Added(0, "<unk>"), HfFiles.Added(1, "<s>"), HfFiles.Added(2, "</s>")],
            normalizer: HfFiles.Sequence("normalizers",
                new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            postProcessor: HfFiles.BosTemplate("<s>", 1),
            decoder: HfFiles.Sequence("decoders",
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                new JsonObject { ["type"] = "ByteFallback" },
                new JsonObject { ["type"] = "Fuse" },
                new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }));
        return HfTokenizer.Load(HfFiles.Write(_dir, "tokenizer.json", json));
    }

    [Test]
    public void Encodes_WithPrependReplace_AndMergesByRank()
    {
        var t = Load();
        // "▁hello▁world": ▁h (0), ll (1), ▁he (2), ▁hell (3), ▁hello (4), ▁w (5), or (6), ▁wor (7), ▁worl (8), ▁world (9).
        Assert.That(t.Encode("hello world"), Is.EqualTo(new[] { Hello, World }));
        Assert.That(t.Encode("hell"), Is.EqualTo(new[] { Hell }));
        // "▁low": no merge applies to ▁l, lo or ow.
        Assert.That(t.Encode("low"), Is.EqualTo(new[] { Space, L, O, W }));
        // "▁▁world": ▁w takes the second ▁; the first stays alone.
        Assert.That(t.Encode(" world"), Is.EqualTo(new[] { Space, World }));
        // No pre-tokenizer: the whole text is one word, so merges run across the spaces' ▁.
        Assert.That(t.Encode("hello  hello"), Is.EqualTo(new[] { Hello, Space, Hello }));
        Assert.That(t.Encode(""), Is.Empty);
        Assert.That(t.VocabSize, Is.EqualTo(277));
        Assert.That(t.TemplatePrefixIds, Is.EqualTo(new[] { 1 }));
        Assert.That(t.TemplateSuffixIds, Is.Empty);
        Assert.That(t.TokenToId("▁hello"), Is.EqualTo(Hello));
        Assert.That(t.TokenToId("<0x0A>"), Is.EqualTo(Byte(0x0A)));
    }

    [Test]
    public void CharactersNotInTheVocabulary_GoThroughByteFallback()
    {
        var t = Load();
        // "▁héllo": é is C3 A9; ▁h (0) and ll (1) still merge around it, ▁he cannot.
        Assert.That(t.Encode("héllo"), Is.EqualTo(new[] { SpaceH, Byte(0xC3), Byte(0xA9), LL, O }));
        Assert.That(t.Encode("hello!\n"), Is.EqualTo(new[] { Hello, Byte(0x21), Byte(0x0A) }));
        Assert.That(t.Encode("😀"), Is.EqualTo(new[] { Space, Byte(0xF0), Byte(0x9F), Byte(0x98), Byte(0x80) }));
        Assert.That(t.Decode(t.Encode("😀")), Is.EqualTo("😀"));
        // A byte run that is not UTF-8 decodes to one U+FFFD per byte token.
        Assert.That(t.Decode([Hello, Byte(0xF0), Byte(0x9F)]), Is.EqualTo("hello\uFFFD\uFFFD"));
    }

    [Test]
    public void WithoutByteFallback_UnknownCharactersAreUnk()
    {
        Assert.That(Load(byteFallback: false).Encode("héé h"), Is.EqualTo(new[] { SpaceH, 0, SpaceH }), "fused: one <unk> for é é");
        Assert.That(Load(byteFallback: false, fuseUnk: false).Encode("héé h"), Is.EqualTo(new[] { SpaceH, 0, 0, SpaceH }));
    }

    [Test]
    public void SpecialTokens_AreSplitFirst_EachPieceNormalizedOnItsOwn()
    {
        var t = Load();
        // Pieces "</s>", "hello", "<s>", " world": each other piece gets its own ▁ ("▁hello", "▁▁world").
        int[] ids = t.Encode("</s>hello<s> world");
        Assert.That(ids, Is.EqualTo(new[] { 2, Hello, 1, Space, World }));
        // Decoding: Replace, ByteFallback, Fuse, then Strip removes one leading space of the whole text only.
        Assert.That(t.Decode(ids), Is.EqualTo("</s> hello<s>  world"));
        Assert.That(t.Decode(ids, skipSpecialTokens: true), Is.EqualTo("hello  world"));
        Assert.That(t.AddedTokens.Select(a => (a.Id, a.Content, a.Special)), Is.EqualTo(new[] { (0, "<unk>", true), (1, "<s>", true), (2, "</s>", true) }));
    }

    [Test]
    public void Decode_RoundTrips_RandomText()
    {
        var t = Load();
        var rnd = new Random(29);
        string[] alphabet = ["h", "e", "l", "o", "w", "r", "d", " ", "  ", "\n", "é", "😀", "東京", "!", "\t", "hello", " world", "𝐀"];
        for (int i = 0; i < 500; i++)
        {
            string s = string.Concat(Enumerable.Range(0, rnd.Next(12)).Select(_ => alphabet[rnd.Next(alphabet.Length)]));
            Assert.That(t.Decode(t.Encode(s)), Is.EqualTo(s), JsonSerializer.Serialize(s));
        }
    }
}

/// <summary>
/// A LLaMA-3-style tokenizer.json made by hand: LLaMA-3's Split regex, then ByteLevel without its regex, BPE with
/// ignore_merges, special tokens after the vocabulary. Ids 0..255 are the bytes in GPT-2's order ('a' = 64,
/// 'Ġ' (space) = 220, 'Ċ' (newline) = 198).
/// </summary>
[TestFixture]
public class Llama3StyleTests
{
    private static readonly string[] Extra = ["Ġt", "he", "Ġthe", "12", "123", "45", "456", "Ġcat", "Ģa", "xð"];
    private static readonly string[] Merges = ["Ġ t", "h e", "Ġt he", "1 2", "12 3", "4 5", "45 6", "Ģ a", "x ð"];
    private const int TheId = 258, OneTwoThree = 260, FourFive = 261, FourFiveSix = 262, Cat = 263, Begin = 266, Eot = 267;

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = HfFiles.NewDir();

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private HfTokenizer Load(bool ignoreMerges = true, JsonArray? added = null, JsonNode? normalizer = null)
    {
        var vocab = TokFixtures.ByteTokens().Concat(Extra).Select((t, i) => KeyValuePair.Create(t, i));
        var json = HfFiles.Tokenizer(
            HfFiles.Bpe(vocab, Merges, mergesAsPairs: true, ignoreMerges: ignoreMerges),
            added ?? [HfFiles.Added(Begin, "<|begin_of_text|>"), HfFiles.Added(Eot, "<|eot_id|>")],
            normalizer: normalizer,
            preTokenizer: HfFiles.Sequence("pretokenizers", HfFiles.Split(HfFiles.Llama3Pattern), HfFiles.ByteLevel(useRegex: false)),
            postProcessor: HfFiles.Sequence("processors",
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                HfFiles.BosTemplate("<|begin_of_text|>", Begin)),
            decoder: HfFiles.ByteLevel(addPrefixSpace: true));
        return HfTokenizer.Load(HfFiles.Write(_dir, "tokenizer.json", json));
    }

    [Test]
    public void Numbers_SplitInGroupsOfAtMostThree()
    {
        var t = Load();
        Assert.That(t.Encode("1234567"), Is.EqualTo(new[] { OneTwoThree, FourFiveSix, 22 })); // "123" "456" "7"
        Assert.That(t.Encode("12345"), Is.EqualTo(new[] { OneTwoThree, FourFive }));
        // " 123": the space is not part of a number (it is its own word by \s+(?!\S)).
        Assert.That(t.Encode("a 123"), Is.EqualTo(new[] { 64, 220, OneTwoThree }));
    }

    [Test]
    public void IgnoreMerges_EmitsAWordThatIsAVocabularyTokenWhole()
    {
        // " the" and " cat" are words of the regex; both are vocabulary tokens.
        Assert.That(Load().Encode(" the cat"), Is.EqualTo(new[] { TheId, Cat }));
        // Without ignore_merges, "Ġcat" is out of reach: no merge makes it.
        Assert.That(Load(ignoreMerges: false).Encode(" the cat"), Is.EqualTo(new[] { TheId, 220, 66, 64, 83 }));
    }

    [Test]
    public void AstralCharacters_AreMatchedAsCodePoints()
    {
        // As in tokenizers (Oniguruma, on code points), "😀abc" is one word: [^\r\n\p{L}\p{N}]? takes 😀 whole and
        // \p{L}+ "abc". Its bytes F0 9F 98 80 'a' 'b' 'c' are ð Ł ĺ Ģ a b c, and the merge "Ģ a" joins 😀's last byte to 'a'.
        var t = Load();
        Assert.That(t.Encode("😀abc"), Is.EqualTo(new[] { 172, 253, 246, 264, 65, 66 }));
        // 𝐀 (U+1D400, F0 9D 90 80) is a letter, so "x𝐀" is one word and the merge "x ð" applies.
        Assert.That(t.Encode("x𝐀"), Is.EqualTo(new[] { 265, 251, 238, 222 }));
        Assert.That(t.Decode(t.Encode("x😀abc 𝐀𝐁 1𝟘")), Is.EqualTo("x😀abc 𝐀𝐁 1𝟘"));
    }

    [Test]
    public void SpecialTokens_AndTemplate()
    {
        var t = Load();
        // "the" is not a vocabulary token (no Ġ): t + he.
        Assert.That(t.Encode("<|begin_of_text|>the<|eot_id|>"), Is.EqualTo(new[] { Begin, 83, 257, Eot }));
        Assert.That(t.TemplatePrefixIds, Is.EqualTo(new[] { Begin }));
        Assert.That(t.VocabSize, Is.EqualTo(268));
        Assert.That(t.IdToToken(Eot), Is.EqualTo("<|eot_id|>"));
        Assert.That(t.TokenToId("<|begin_of_text|>"), Is.EqualTo(Begin));
        Assert.That(t.Decode([Begin, TheId, Eot]), Is.EqualTo("<|begin_of_text|> the<|eot_id|>"));
        Assert.That(t.Decode([Begin, TheId, Eot], skipSpecialTokens: true), Is.EqualTo(" the"));
    }

    [Test]
    public void AddedTokens_LStripAndRStrip_TakeTheWhitespaceBesideThem()
    {
        var t = Load(added: [HfFiles.Added(266, "<l>", lstrip: true), HfFiles.Added(267, "<r>", rstrip: true, special: false)]);
        Assert.That(t.Encode("a  <l>b"), Is.EqualTo(new[] { 64, 266, 65 }));
        Assert.That(t.Encode("a<r> \n b"), Is.EqualTo(new[] { 64, 267, 65 }));
        Assert.That(t.Encode("a <r> <l> b"), Is.EqualTo(new[] { 64, 220, 267, 266, 220, 65 }), "<l> takes no space that <r> took");
        Assert.That(t.Decode([64, 267, 266], skipSpecialTokens: true), Is.EqualTo("a<r>"), "only special tokens are skipped");
    }

    [Test]
    public void NfcNormalizer_ComposesBeforeTokenizing()
    {
        var t = Load(normalizer: new JsonObject { ["type"] = "NFC" });
        Assert.That(t.Encode("e\u0301"), Is.EqualTo(t.Encode("\u00E9")));
        Assert.That(t.Encode("\u212B"), Is.EqualTo(t.Encode("\u00C5")), "Angstrom sign → Å");
        Assert.That(HfNfc.Normalize("D\u0307\u0323"), Is.EqualTo("\u1E0C\u0307"), "canonical ordering, then composition");
        Assert.That(HfNfc.Normalize("\u1100\u1161\u11A8"), Is.EqualTo("\uAC01"), "Hangul");
        Assert.That(HfNfc.Normalize("\uFB01 \u0958"), Is.EqualTo("\uFB01 \u0915\u093C"), "compatibility characters stay; exclusions decompose");
        // tokenizers' tables are Unicode 9.0's: U+1DFA (Unicode 14) has no combining class there, so U+0323 cannot reach 'a'.
        Assert.That(HfNfc.Normalize("a\u1DFA\u0323"), Is.EqualTo("a\u1DFA\u0323"));
    }

    [Test]
    public void RoundTrips_RandomText()
    {
        var t = Load();
        var rnd = new Random(31);
        for (int i = 0; i < 1000; i++)
        {
            string s = TokFixtures.RandomText(rnd, 60);
            Assert.That(t.Decode(t.Encode(s)), Is.EqualTo(s), JsonSerializer.Serialize(s));
        }
    }
}

/// <summary>What a tokenizer.json must not have: each refusal names the file and the JSON path of the field.</summary>
[TestFixture]
public class RefusalTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = HfFiles.NewDir();

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>A valid byte-level tokenizer.json: 256 byte tokens, "Ġt", one added token.</summary>
    private static JsonObject Valid() => HfFiles.Tokenizer(
        HfFiles.Bpe(TokFixtures.ByteTokens().Append("Ġt").Select((t, i) => KeyValuePair.Create(t, i)), ["Ġ t"]),
        [HfFiles.Added(257, "<|end|>")],
        preTokenizer: HfFiles.Sequence("pretokenizers", HfFiles.Split(HfFiles.Llama3Pattern), HfFiles.ByteLevel(useRegex: false)),
        decoder: HfFiles.ByteLevel());

    private void Refused(JsonObject json, string field, string what)
    {
        string path = HfFiles.Write(_dir, "tokenizer.json", json);
        var e = Assert.Throws<TokenizerFileException>(() => HfTokenizer.Load(path))!;
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.Message, Does.StartWith($"{path}: {field}"));
        Assert.That(e.Message, Does.Contain(what));
    }

    [Test]
    public void TheValidFile_Loads()
    {
        var t = HfTokenizer.Load(HfFiles.Write(_dir, "tokenizer.json", Valid()));
        Assert.That(t.Encode(" t<|end|>"), Is.EqualTo(new[] { 256, 257 }));
    }

    [Test]
    public void UnknownModelType()
    {
        var json = Valid();
        json["model"]!["type"] = "Unigram";
        Refused(json, "model.type", "\"Unigram\" is not supported; expected \"BPE\"");
    }

    [Test]
    public void UnknownPreTokenizer()
    {
        var json = Valid();
        json["pre_tokenizer"]!["pretokenizers"]![1] = new JsonObject { ["type"] = "Whitespace" };
        Refused(json, "pre_tokenizer.pretokenizers[1].type", "\"Whitespace\" is not supported; expected one of \"ByteLevel\", \"Split\", \"Sequence\"");
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false };
        Refused(json, "pre_tokenizer.type", "\"Metaspace\" is not supported");
    }

    [Test]
    public void MissingVocab()
    {
        var json = Valid();
        json["model"]!.AsObject().Remove("vocab");
        Refused(json, "model.vocab is missing", "expected a JSON object {\"token\": id, …}");
    }

    [Test]
    public void OtherUnsupportedComponents()
    {
        var json = Valid();
        json["pre_tokenizer"]!["pretokenizers"]![0]!["invert"] = true;
        Refused(json, "pre_tokenizer.pretokenizers[0].invert", "invert true is not supported");

        json = Valid();
        json["pre_tokenizer"]!["pretokenizers"]![0]!["behavior"] = "Removed";
        Refused(json, "pre_tokenizer.pretokenizers[0].behavior", "\"Removed\" is not supported; expected \"Isolated\"");

        json = Valid();
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "[一-龥]+|\\s+" };
        Refused(json, "pre_tokenizer.pretokenizers[0].pattern.Regex", "not printable ASCII");

        json = Valid();
        json["normalizer"] = HfFiles.Sequence("normalizers", new JsonObject { ["type"] = "NFC" }, new JsonObject { ["type"] = "Lowercase" });
        Refused(json, "normalizer.normalizers[1].type", "\"Lowercase\" is not supported");

        json = Valid();
        json["decoder"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "always", ["split"] = true };
        Refused(json, "decoder.type", "\"Metaspace\" is not supported");

        json = Valid();
        json["post_processor"] = new JsonObject { ["type"] = "RobertaProcessing" };
        Refused(json, "post_processor.type", "\"RobertaProcessing\" is not supported");

        json = Valid();
        json["truncation"] = new JsonObject { ["max_length"] = 512 };
        Refused(json, "truncation", "not supported; expected null");

        json = Valid();
        json["model"]!["dropout"] = 0.1;
        Refused(json, "model.dropout", "only null or 0");

        json = Valid();
        json["model"]!["continuing_subword_prefix"] = "##";
        Refused(json, "model.continuing_subword_prefix", "only null or \"\"");

        json = Valid();
        json["model"]!["new_option"] = true;
        Refused(json, "model.new_option", "refused rather than ignored");
    }

    [Test]
    public void BadVocabularyMergesAndAddedTokens()
    {
        var json = Valid();
        json["model"]!["merges"]!.AsArray().Add("Ġ q");
        Refused(json, "model.merges[1]", "gives \"Ġq\", which is not in model.vocab");

        json = Valid();
        json["model"]!["merges"]!.AsArray().Add("Ġ t x");
        Refused(json, "model.merges[1]", "expected \"left right\"");

        json = Valid();
        json["model"]!["vocab"]!["Ġt"] = 5;
        Refused(json, "model.vocab[\"Ġt\"]", "id 5 is also the id of");

        json = Valid();
        json["model"]!["unk_token"] = "<unk>";
        Refused(json, "model.unk_token", "\"<unk>\" is not in model.vocab");

        json = Valid();
        json["added_tokens"]![0]!["id"] = 300;
        Refused(json, "added_tokens[0].id", "tokenizers gives it id 257");

        json = Valid();
        json["added_tokens"]![0]!["single_word"] = true;
        Refused(json, "added_tokens[0]", "single_word true is not supported");

        json = Valid();
        json["normalizer"] = new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" };
        json["added_tokens"]![0]!["normalized"] = true;
        Refused(json, "added_tokens[0]", "the normalizer changes \"<|end|>\" into \"▁<|end|>\"");
    }

    [Test]
    public void InvalidJson_NamesTheLine()
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, "{\n  \"version\": \"1.0\",\n  \"model\": {\n");
        var e = Assert.Throws<TokenizerFileException>(() => HfTokenizer.Load(path))!;
        Assert.That(e.Message, Does.StartWith($"{path} line 4: invalid JSON"));
        Assert.Throws<FileNotFoundException>(() => HfTokenizer.Load(Path.Combine(_dir, "nope.json")));
    }
}
