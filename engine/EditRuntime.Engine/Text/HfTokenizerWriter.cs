using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.IO;

namespace EditRuntime.Text;

/// <summary>Writes a Hugging Face tokenizer.json for a byte-level BPE vocabulary in GPT-2's files (vocab.json and
/// merges.txt): the BPE model, GPT-2's ByteLevel pre-tokenizer and decoder, the end-of-text token as an added special
/// token, and a TemplateProcessing post-processor that puts a BOS before every sequence (as LLaMA 3's
/// &lt;|begin_of_text|&gt;). What `editrt train` gives the built-in LLaMA-layout model; <see cref="HfTokenizer"/> reads
/// it back and encodes exactly as <see cref="Gpt2Tokenizer"/> does on the same files.</summary>
public static class HfTokenizerWriter
{
    public static void WriteByteLevel(string vocabJson, string mergesTxt, string bosToken, string path)
    {
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(vocabJson))
                    ?? throw new InvalidDataException($"{vocabJson}: empty.");
        if (!vocab.TryGetValue(bosToken, out int bosId)) throw new ArgumentException($"{vocabJson}: no token \"{bosToken}\" to put before sequences.");
        var v = new JsonObject();
        foreach (var (token, id) in vocab.OrderBy(kv => kv.Value)) v[token] = id;
        var merges = new JsonArray(File.ReadAllLines(mergesTxt).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal))
            .Select(l => (JsonNode?)JsonValue.Create(l)).ToArray());
        JsonObject ByteLevel(bool prefixSpace) => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = prefixSpace, ["trim_offsets"] = true, ["use_regex"] = true };
        JsonObject Special(string seq, int typeId) => new() { [seq == "A" || seq == "B" ? "Sequence" : "SpecialToken"] = new JsonObject { ["id"] = seq, ["type_id"] = typeId } };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = bosId, ["content"] = bosToken, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(false),
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special(bosToken, 0), Special("A", 0)),
                ["pair"] = new JsonArray(Special(bosToken, 0), Special("A", 0), Special(bosToken, 1), Special("B", 1)),
                ["special_tokens"] = new JsonObject
                {
                    [bosToken] = new JsonObject { ["id"] = bosToken, ["ids"] = new JsonArray(bosId), ["tokens"] = new JsonArray(bosToken) },
                },
            },
            ["decoder"] = ByteLevel(true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = v, ["merges"] = merges,
            },
        };
        AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
    }
}
