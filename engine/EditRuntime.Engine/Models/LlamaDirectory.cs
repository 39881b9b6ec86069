using System.Text.Json;
using EditRuntime.Text;

namespace EditRuntime.Models;

/// <summary>
/// A LLaMA-family model folder (model_type "llama", "qwen2" or "mistral") as Hugging Face publishes it:
/// config.json (<see cref="LlamaConfig"/>), model.safetensors or model.safetensors.index.json with its shards
/// (<see cref="LlamaCheckpoint"/>) and tokenizer.json (<see cref="HfTokenizer"/>).
/// <para>
/// generation_config.json is ignored: its sampling defaults (temperature, top_p, ...) do not apply to greedy decoding,
/// and its eos_token_id is not read — generation stops at config.json's eos_token_id (<see cref="StopIds"/>).
/// tokenizer_config.json and special_tokens_map.json are ignored too (the chat template is not applied); the BOS comes
/// from tokenizer.json's post_processor (<see cref="HfTokenizer.TemplatePrefixIds"/>), as transformers' tokenizer adds it.
/// SentencePiece's tokenizer.model alone is not read: a tokenizer.json is required.
/// </para>
/// </summary>
public sealed record LlamaDirectory(string Path, LlamaConfig Config, Dictionary<string, HostTensor> Weights, HfTokenizer Tokenizer) : IModelFolder
{
    ITokenizer IModelFolder.Tokenizer => Tokenizer;
    IReadOnlyDictionary<string, HostTensor> IModelFolder.Weights => Weights;

    /// <summary>The tokens tokenizer.json's post-processor puts before a prompt (LLaMA 3's BOS; none for Qwen2).</summary>
    public int PromptPrefixLength => Tokenizer.TemplatePrefixIds.Count;

    public ModelShape Shape => LlamaModel.ShapeOf(Config);

    /// <summary>
    /// The hyper-parameter family of editors' defaults: "editrt-tiny-llama" for a model trained by EditRuntime (an
    /// editrt.json beside config.json, written by `editrt train`), else "llama" (every LLaMA-family checkpoint: LLaMA,
    /// Qwen2 and Mistral share the layout and site names).
    /// </summary>
    public string Family => File.Exists(System.IO.Path.Combine(Path, ModelDirectory.SettingsFile)) ? BuiltinFamily : "llama";

    /// <summary>The family of the built-in LLaMA-layout model.</summary>
    public const string BuiltinFamily = "editrt-tiny-llama";

    /// <summary>Writes editrt.json (atomically): the folder holds a model trained by EditRuntime (<see cref="Family"/>).</summary>
    public static void WriteSettings(string dir) =>
        EditRuntime.IO.AtomicFile.WriteAllText(System.IO.Path.Combine(dir, ModelDirectory.SettingsFile), $"{{\n  \"family\": \"{BuiltinFamily}\"\n}}\n");

    public const string TokenizerFileName = "tokenizer.json";

    /// <summary>
    /// Whether <paramref name="dir"/> holds a config.json whose model_type is one of
    /// <see cref="LlamaConfig.SupportedModelTypes"/>. False when there is no config.json, when it is not a JSON object, or
    /// when its model_type is missing, not a string or another family (e.g. "gpt2"): such folders are left to the GPT-2
    /// loader, whose errors then name the file.
    /// </summary>
    public static bool IsLlamaFolder(string dir)
    {
        if (string.IsNullOrEmpty(dir) || !Directory.Exists(dir)) return false;
        string configPath = System.IO.Path.Combine(dir, LlamaCheckpoint.ConfigFileName);
        if (!File.Exists(configPath)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath),
                new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("model_type", out var t)
                && t.ValueKind == JsonValueKind.String
                && LlamaConfig.SupportedModelTypes.Contains(t.GetString());
        }
        catch (JsonException) { return false; }
    }

    /// <summary>Loads and checks the folder: tokenizer.json first (so that a folder without one fails before any weight is
    /// read), then config.json, the vocabulary check, then the weights.</summary>
    /// <exception cref="DirectoryNotFoundException">No such folder.</exception>
    /// <exception cref="FileNotFoundException">config.json, tokenizer.json or the weights are missing; the message names the file expected.</exception>
    /// <exception cref="LlamaConfigException">config.json is wrong, or its vocab_size is smaller than the tokenizer's ids (naming both files).</exception>
    /// <exception cref="LlamaCheckpointException">A weight is missing, misshapen or unexpected.</exception>
    /// <exception cref="TokenizerFileException">tokenizer.json is wrong or uses something unsupported.</exception>
    public static LlamaDirectory Load(string dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"LLaMA model directory '{dir}' does not exist");
        string configPath = System.IO.Path.Combine(dir, LlamaCheckpoint.ConfigFileName);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"LLaMA model directory '{dir}' has no {LlamaCheckpoint.ConfigFileName}", configPath);
        string tokPath = System.IO.Path.Combine(dir, TokenizerFileName);
        if (!File.Exists(tokPath))
            throw new FileNotFoundException(
                $"'{tokPath}' is missing: a LLaMA-family folder needs the Hugging Face tokenizers file {TokenizerFileName} next to " +
                $"{LlamaCheckpoint.ConfigFileName} and {LlamaCheckpoint.WeightsFileName} (or {LlamaCheckpoint.IndexFileName}); " +
                "a SentencePiece tokenizer.model alone is not read", tokPath);

        var config = LlamaConfig.Load(configPath);
        var tokenizer = HfTokenizer.Load(tokPath);
        if (tokenizer.VocabSize > config.VocabSize)
            throw new LlamaConfigException(configPath, "vocab_size",
                $"{config.VocabSize} is smaller than the ids of '{tokPath}' (its largest id is {tokenizer.VocabSize - 1}, so it needs a vocab_size of at least {tokenizer.VocabSize})");

        var (loaded, weights) = LlamaCheckpoint.Load(dir);
        return new LlamaDirectory(dir, loaded, weights, tokenizer);
    }

    /// <summary>The ids generation stops at: config.json's eos_token_id (one or several; none when null).</summary>
    public IReadOnlyList<int> StopIds => Config.EosTokenIds;

    /// <summary>Token ids of a prompt as the model expects them: what tokenizer.json's TemplateProcessing puts before a
    /// single sequence (LLaMA 3's &lt;|begin_of_text|&gt;; nothing for Qwen2), then the encoded text.</summary>
    public int[] EncodePrompt(string text) => [.. Tokenizer.TemplatePrefixIds, .. Tokenizer.Encode(text)];
}
