using System.Text.Json;
using EditRuntime.IO;
using EditRuntime.Text;

namespace EditRuntime.Models;

/// <summary>
/// A model folder in the Hugging Face GPT-2 layout (config.json, model.safetensors, vocab.json,
/// merges.txt) plus, for models trained by EditRuntime, editrt.json with how prompts are fed:
/// <c>{"prepend_bos": true}</c> when the model was trained with &lt;|endoftext|&gt; before every sequence.
/// </summary>
public sealed record ModelDirectory(string Path, Gpt2Config Config, Dictionary<string, HostTensor> Weights, Gpt2Tokenizer Tokenizer, bool PrependBos) : IModelFolder
{
    ITokenizer IModelFolder.Tokenizer => Tokenizer;
    IReadOnlyDictionary<string, HostTensor> IModelFolder.Weights => Weights;

    /// <summary>1 when prompts start with BOS (<see cref="PrependBos"/>), else 0.</summary>
    public int PromptPrefixLength => PrependBos ? 1 : 0;

    public ModelShape Shape => Gpt2Model.ShapeOf(Config);

    /// <summary>&lt;|endoftext|&gt;: GPT-2 generation stops there.</summary>
    public IReadOnlyList<int> StopIds => [Tokenizer.EndOfTextId];

    public const string SettingsFile = "editrt.json";

    public static ModelDirectory Load(string dir)
    {
        var tok = LoadTokenizer(dir);
        var (config, weights) = Gpt2Checkpoint.Load(dir);
        if (tok.VocabSize > config.VocabSize)
            throw new InvalidDataException($"{dir}: the tokenizer has {tok.VocabSize} tokens but config.json's vocab_size is {config.VocabSize}.");
        return new ModelDirectory(dir, config, weights, tok, ReadPrependBos(dir));
    }

    /// <summary>Only the tokenizer of a model directory (vocab.json + merges.txt), with the same checks as <see cref="Load"/>.</summary>
    public static Gpt2Tokenizer LoadTokenizer(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"No model directory {dir}.");
        foreach (var f in new[] { "vocab.json", "merges.txt" })
            if (!File.Exists(System.IO.Path.Combine(dir, f)))
                throw new FileNotFoundException($"{dir}: {f} is missing (a GPT-2 model directory holds config.json, model.safetensors, vocab.json and merges.txt).");
        return Gpt2Tokenizer.FromDirectory(dir);
    }

    private static bool ReadPrependBos(string dir)
    {
        var path = System.IO.Path.Combine(dir, SettingsFile);
        if (!File.Exists(path)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object, got {doc.RootElement.ValueKind}.");
            if (!doc.RootElement.TryGetProperty("prepend_bos", out var v)) return false;
            // A string "true" or a number is refused, not read as false: prompts would lose their start token silently.
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new InvalidDataException($"{path}: \"prepend_bos\" must be true or false, got {v.GetRawText()}."),
            };
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {e.Message}"); }
    }

    public static void WriteSettings(string dir, bool prependBos) =>
        AtomicFile.WriteAllText(System.IO.Path.Combine(dir, SettingsFile), $"{{\n  \"prepend_bos\": {(prependBos ? "true" : "false")}\n}}\n");

    /// <summary>The hyper-parameter family of editors' defaults for this model (editor-plugins/NAME/hparams/FAMILY.json):
    /// "editrt-tiny" for models trained by EditRuntime (prompts start with BOS), else "gpt2". The one place it is inferred.</summary>
    public string Family => PrependBos ? "editrt-tiny" : "gpt2";

    /// <summary>The BOS id to put before prompts, or null.</summary>
    public int? Bos => PrependBos ? Tokenizer.EndOfTextId : null;

    /// <summary>Token ids of a prompt as this model expects them.</summary>
    public int[] EncodePrompt(string prompt) => Bos is int b ? [b, .. Tokenizer.Encode(prompt)] : Tokenizer.Encode(prompt);
}
