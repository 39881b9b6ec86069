using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EditRuntime.Text;

/// <summary>
/// The <c>pre_tokenizer</c> of a tokenizer.json: splits a normalized piece of text into the words that the
/// model tokenizes one by one. Supported, as tokenizers applies them:
/// <list type="bullet">
/// <item><c>ByteLevel</c>: puts a space before a piece that does not start with one when
///   <c>add_prefix_space</c>; splits it with GPT-2's regex when <c>use_regex</c> (absent: true), by
///   <see cref="Gpt2PreTokenizer"/>; then writes each word's UTF-8 bytes as GPT-2's byte characters
///   (<see cref="ByteLevel"/>). <c>trim_offsets</c> only moves offsets and is ignored.</item>
/// <item><c>Split</c> with behavior <c>Isolated</c> and <c>invert</c> false: each match of the pattern and
///   each stretch between matches is a word (LLaMA-3's and Qwen2's regexes).</item>
/// <item><c>Sequence</c>: each pre-tokenizer splits every word of the previous one.</item>
/// </list>
/// Empty words are dropped, as tokenizers drops them.
/// </summary>
internal abstract class HfPreTokenizer
{
    /// <summary>Appends the non-empty words of <paramref name="piece"/> (non-empty, valid UTF-16) to <paramref name="output"/>.</summary>
    public abstract void Split(string piece, List<string> output);

    /// <summary>The pre-tokenizer described by <paramref name="json"/>; null for JSON null.</summary>
    public static HfPreTokenizer? Read(HfJson json) => json.IsNull ? null : ReadStep(json);

    private static HfPreTokenizer ReadStep(HfJson json)
    {
        switch (HfTypes.Read(json, "pre-tokenizer", "ByteLevel", "Split", "Sequence"))
        {
            case "ByteLevel":
            {
                json.OnlyFields("type", "add_prefix_space", "trim_offsets", "use_regex");
                bool addPrefixSpace = json.Field("add_prefix_space", "true or false").Bool();
                json.Field("trim_offsets", "true or false").Bool();
                bool useRegex = !json.TryField("use_regex", out var r) || r.Bool();
                return new ByteLevelStep(addPrefixSpace, useRegex);
            }
            case "Split":
            {
                json.OnlyFields("type", "pattern", "behavior", "invert");
                var behavior = json.Field("behavior", "\"Isolated\"");
                if (behavior.String() != "Isolated")
                    throw behavior.Error($"the Split behavior {BpeFiles.Quote(behavior.String())} is not supported; expected \"Isolated\".");
                var invert = json.Field("invert", "false");
                if (invert.Bool()) throw invert.Error("a Split with invert true is not supported; expected false.");
                var patternNode = json.Field("pattern", "{\"Regex\": \"…\"} or {\"String\": \"…\"}");
                var (isRegex, pattern) = HfTypes.ReadPattern(patternNode);
                if (!isRegex) return new StringSplitStep(pattern);
                patternNode.TryField("Regex", out var regexNode);
                return new RegexSplitStep(HfRegex.Compile(pattern, regexNode));
            }
            default: // "Sequence"
            {
                json.OnlyFields("type", "pretokenizers");
                var steps = json.Field("pretokenizers", "an array of pre-tokenizers").Items().Select(ReadStep).ToArray();
                return new SequenceStep(steps);
            }
        }
    }

    /// <summary>Adds <paramref name="piece"/>[start, end) to <paramref name="output"/> when it is not empty.</summary>
    private static void AddRange(string piece, int start, int end, List<string> output)
    {
        if (end > start) output.Add(start == 0 && end == piece.Length ? piece : piece[start..end]);
    }

    private sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : HfPreTokenizer
    {
        public override void Split(string piece, List<string> output)
        {
            string s = addPrefixSpace && piece[0] != ' ' ? " " + piece : piece;
            if (!useRegex)
            {
                output.Add(ToByteCharacters(s));
                return;
            }
            for (int i = 0; i < s.Length;)
            {
                int len = Gpt2PreTokenizer.MatchAt(s, i);
                output.Add(ToByteCharacters(s.AsSpan(i, len)));
                i += len;
            }
        }

        private static string ToByteCharacters(ReadOnlySpan<char> word)
        {
            int max = Encoding.UTF8.GetMaxByteCount(word.Length);
            Span<byte> bytes = max <= 1024 ? stackalloc byte[max] : new byte[max];
            int n = Encoding.UTF8.GetBytes(word, bytes);
            var chars = n <= 1024 ? stackalloc char[n] : new char[n];
            for (int k = 0; k < n; k++) chars[k] = ByteLevel.ByteToChar(bytes[k]);
            return new string(chars);
        }
    }

    private sealed class RegexSplitStep(HfRegex regex) : HfPreTokenizer
    {
        public override void Split(string piece, List<string> output)
        {
            var matches = new List<(int Start, int End)>();
            regex.Matches(piece, matches);
            int previous = 0;
            foreach (var (start, end) in matches)
            {
                AddRange(piece, previous, start, output);
                AddRange(piece, start, end, output);
                previous = end;
            }
            AddRange(piece, previous, piece.Length, output);
        }
    }

    private sealed class StringSplitStep(string literal) : HfPreTokenizer
    {
        public override void Split(string piece, List<string> output)
        {
            int previous = 0, at;
            while ((at = piece.IndexOf(literal, previous, StringComparison.Ordinal)) >= 0)
            {
                AddRange(piece, previous, at, output);
                AddRange(piece, at, at + literal.Length, output);
                previous = at + literal.Length;
            }
            AddRange(piece, previous, piece.Length, output);
        }
    }

    private sealed class SequenceStep(HfPreTokenizer[] steps) : HfPreTokenizer
    {
        public override void Split(string piece, List<string> output)
        {
            var words = new List<string> { piece };
            foreach (var step in steps)
            {
                var next = new List<string>(words.Count * 2);
                foreach (string w in words) step.Split(w, next);
                words = next;
            }
            output.AddRange(words);
        }
    }
}

/// <summary>
/// A Split pattern of a tokenizer.json, which tokenizers runs with Oniguruma on code points, run with .NET's
/// Regex on UTF-16. Two precautions make the matches the same:
/// <list type="bullet">
/// <item>.NET sees an astral character (𝐀, 😀, 𠀀) as two surrogates of category Cs, so <c>\p{L}</c> would not
///   match 𝐀 and <c>[^\r\n\p{L}\p{N}]?</c> could take half of 😀. The text is matched with each astral
///   character replaced by one BMP character of the same Unicode category (and no ASCII case partner), and
///   the matches are mapped back.</item>
/// <item>That is exact only when the pattern tells characters apart by category, so patterns are refused
///   unless they are written in printable ASCII, with escapes among <c>\s \S \d \D \p{..} \P{..} \r \n \t \f \v
///   \A \z \Z</c> or an escaped punctuation character, general categories only in <c>\p{..}</c>, no <c>^</c> or
///   <c>$</c> outside a class (their line semantics differ), no nested classes or <c>&amp;&amp;</c>, and no
///   inline option other than <c>i</c>. LLaMA-3's, Qwen2's and GPT-2's patterns qualify. Patterns that can
///   match the empty string are refused too.</item>
/// </list>
/// </summary>
internal sealed class HfRegex
{
    private static readonly string[] GeneralCategories =
        ["L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Ps", "Pe", "Pi",
         "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn"];

    /// <summary>For each Unicode category, a BMP character of it (not ASCII, not a case partner of ASCII), or '\0'.</summary>
    private static readonly char[] StandIn = BuildStandIns();

    private readonly Regex _regex;

    private HfRegex(Regex regex) => _regex = regex;

    private static char[] BuildStandIns()
    {
        var table = new char[32];
        for (int c = 0x0400; c < 0xFFFE; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF || c is >= 0x2100 and <= 0x214F) continue; // surrogates; letterlike symbols (Kelvin sign)
            int cat = (int)CharUnicodeInfo.GetUnicodeCategory((char)c);
            if (table[cat] == '\0' && char.ToUpperInvariant((char)c) >= 0x80 && char.ToLowerInvariant((char)c) >= 0x80)
                table[cat] = (char)c;
        }
        return table;
    }

    /// <summary>Checks <paramref name="pattern"/> (see the class comment) and compiles it; errors name <paramref name="node"/>.</summary>
    public static HfRegex Compile(string pattern, HfJson node)
    {
        TokenizerFileException Refuse(int at, string why) =>
            node.Error($"{why} (at offset {at}); only patterns whose matches are the same under Oniguruma (tokenizers) and .NET are supported.");

        bool inClass = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c < 0x20 || c > 0x7E) throw Refuse(i, $"the pattern has the character U+{(int)c:X4}, which is not printable ASCII");
            if (c == '\\')
            {
                if (i + 1 == pattern.Length) throw Refuse(i, "the pattern ends with a backslash");
                char e = pattern[++i];
                if (e < 0x20 || e > 0x7E) throw Refuse(i, $"the pattern has the character U+{(int)e:X4}, which is not printable ASCII");
                if (e is 'p' or 'P')
                {
                    int close = pattern.IndexOf('}', i);
                    string name = i + 1 < pattern.Length && pattern[i + 1] == '{' && close > 0 ? pattern[(i + 2)..close] : "";
                    if (Array.IndexOf(GeneralCategories, name) < 0)
                        throw Refuse(i - 1, $"\\{e} must name a general category in braces, such as \\{e}{{L}}");
                    i = close;
                }
                else if (char.IsAsciiLetterOrDigit(e) && "sSdDrntfvAzZ".IndexOf(e) < 0)
                    throw Refuse(i - 1, $"the escape \\{e} is not supported");
                continue;
            }
            if (inClass)
            {
                if (c == '[') throw Refuse(i, "nested character classes are not supported");
                if (c == '&' && i + 1 < pattern.Length && pattern[i + 1] == '&') throw Refuse(i, "class intersection (&&) is not supported");
                if (c == ']') inClass = false;
                continue;
            }
            switch (c)
            {
                case '[':
                    inClass = true;
                    if (i + 1 < pattern.Length && pattern[i + 1] == '^') i++;
                    if (i + 1 < pattern.Length && pattern[i + 1] == ']') i++; // a leading ']' is literal
                    break;
                case '^' or '$':
                    throw Refuse(i, $"the anchor {c} is not supported");
                case '(' when i + 2 < pattern.Length && pattern[i + 1] == '?' && (char.IsAsciiLetter(pattern[i + 2]) || pattern[i + 2] == '-'):
                    int j = i + 2;
                    while (j < pattern.Length && (char.IsAsciiLetter(pattern[j]) || pattern[j] == '-')) j++;
                    if (pattern[(i + 2)..j].Any(o => o is not ('i' or '-'))) throw Refuse(i, "inline options other than i are not supported");
                    break;
            }
        }

        Regex regex;
        try { regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled); }
        catch (RegexParseException e)
        {
            throw node.Error($".NET cannot compile the pattern: {e.Error} at offset {e.Offset}.");
        }
        if (regex.IsMatch("")) throw node.Error("the pattern matches the empty string, which is not supported.");
        return new HfRegex(regex);
    }

    /// <summary>Appends the (start, end) of each match in <paramref name="text"/> (valid UTF-16), in order, as UTF-16 offsets.</summary>
    public void Matches(string text, List<(int Start, int End)> output)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            foreach (var m in _regex.EnumerateMatches(text)) output.Add((m.Index, m.Index + m.Length));
            return;
        }
        // One char per code point; origin[k] is where char k of the view starts in the text.
        var view = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            origin.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                char standIn = StandIn[(int)category];
                if (standIn == '\0') throw new InvalidOperationException($"no BMP stand-in for Unicode category {category}.");
                view.Append(standIn);
                i++;
            }
            else view.Append(text[i]);
        }
        origin.Add(text.Length);
        foreach (var m in _regex.EnumerateMatches(view.ToString())) output.Add((origin[m.Index], origin[m.Index + m.Length]));
    }
}
