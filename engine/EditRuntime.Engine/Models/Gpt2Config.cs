using EditRuntime.IO;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace EditRuntime.Models;

/// <summary>Which GELU a GPT-2 config asks for.</summary>
public enum Gpt2Gelu
{
    /// <summary>The tanh approximation: "gelu_new" (GPT-2's own) or "gelu_pytorch_tanh".</summary>
    Tanh,
    /// <summary>The exact erf form: "gelu".</summary>
    Erf,
}

/// <summary>A Hugging Face GPT-2 config.json is missing a field, has a wrong type or breaks a rule. The message names the file and the field.</summary>
public class Gpt2ConfigException(string source, string field, string rule, Exception? inner = null)
    : ConfigFieldException("GPT-2", source, field, rule, inner);

/// <summary>
/// The GPT-2 hyperparameters of a Hugging Face config.json (model_type "gpt2"). Property names follow
/// the JSON fields; unknown JSON fields (dropouts, task heads, ...) are ignored on load and not written.
/// </summary>
public sealed record Gpt2Config
{
    public const string ModelTypeName = "gpt2";
    public static readonly IReadOnlyList<string> SupportedActivations = ["gelu_new", "gelu_pytorch_tanh", "gelu"];

    /// <summary>vocab_size (V).</summary>
    public int VocabSize { get; init; } = 50257;
    /// <summary>n_positions (P; "n_ctx" in old configs): the largest sequence length, rows of wpe.</summary>
    public int NPositions { get; init; } = 1024;
    /// <summary>n_embd (C).</summary>
    public int NEmbd { get; init; } = 768;
    /// <summary>n_layer (L).</summary>
    public int NLayer { get; init; } = 12;
    /// <summary>n_head (H).</summary>
    public int NHead { get; init; } = 12;
    /// <summary>n_inner: MLP width, null for 4 x n_embd. See <see cref="InnerSize"/>.</summary>
    public int? NInner { get; init; }
    public double LayerNormEpsilon { get; init; } = 1e-5;
    /// <summary>gelu_new (default), gelu_pytorch_tanh or gelu.</summary>
    public string ActivationFunction { get; init; } = "gelu_new";
    /// <summary>Whether lm_head shares wte (the only head this runtime supports).</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    public int? BosTokenId { get; init; } = 50256;
    public int? EosTokenId { get; init; } = 50256;
    public string ModelType { get; init; } = ModelTypeName;

    /// <summary>MLP width: n_inner, or 4 x n_embd when it is null.</summary>
    public int InnerSize => NInner ?? 4 * NEmbd;
    /// <summary>n_embd / n_head.</summary>
    public int HeadDim => NEmbd / NHead;
    public Gpt2Gelu Gelu => ActivationFunction == "gelu" ? Gpt2Gelu.Erf : Gpt2Gelu.Tanh;

    // ---- presets (the Hugging Face hub configs of the OpenAI checkpoints) -----------------

    /// <summary>gpt2 (124M): V 50257, P 1024, C 768, L 12, H 12.</summary>
    public static Gpt2Config Gpt2 { get; } = new();
    /// <summary>distilgpt2 (82M): gpt2 with 6 layers.</summary>
    public static Gpt2Config DistilGpt2 { get; } = new() { NLayer = 6 };
    /// <summary>gpt2-medium (355M): C 1024, L 24, H 16.</summary>
    public static Gpt2Config Gpt2Medium { get; } = new() { NEmbd = 1024, NLayer = 24, NHead = 16 };
    /// <summary>gpt2-large (774M): C 1280, L 36, H 20.</summary>
    public static Gpt2Config Gpt2Large { get; } = new() { NEmbd = 1280, NLayer = 36, NHead = 20 };
    /// <summary>gpt2-xl (1.5B): C 1600, L 48, H 25.</summary>
    public static Gpt2Config Gpt2Xl { get; } = new() { NEmbd = 1600, NLayer = 48, NHead = 25 };

    public static IReadOnlyDictionary<string, Gpt2Config> Presets { get; } = new Dictionary<string, Gpt2Config>(StringComparer.OrdinalIgnoreCase)
    {
        ["gpt2"] = Gpt2,
        ["distilgpt2"] = DistilGpt2,
        ["gpt2-medium"] = Gpt2Medium,
        ["gpt2-large"] = Gpt2Large,
        ["gpt2-xl"] = Gpt2Xl,
    };

    /// <summary>A preset by hub name (gpt2, distilgpt2, gpt2-medium, gpt2-large, gpt2-xl; case-insensitive, "openai-community/" prefix allowed).</summary>
    public static Gpt2Config Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = name.StartsWith("openai-community/", StringComparison.OrdinalIgnoreCase) ? name["openai-community/".Length..]
            : name.StartsWith("distilbert/", StringComparison.OrdinalIgnoreCase) ? name["distilbert/".Length..] : name;
        return Presets.TryGetValue(key, out var c) ? c
            : throw new ArgumentException($"no GPT-2 preset '{name}' (known: {string.Join(", ", Presets.Keys)})", nameof(name));
    }

    // ---- parameters --------------------------------------------------------------------------

    /// <summary>
    /// The parameters in canonical order with their shapes: Hugging Face GPT2Model names without the
    /// "transformer." prefix, linear weights in Conv1D layout [in, out].
    /// </summary>
    public IReadOnlyList<(string Name, int[] Shape)> ParameterShapes()
    {
        int v = VocabSize, p = NPositions, c = NEmbd, f = InnerSize;
        var list = new List<(string, int[])>(4 + 12 * NLayer)
        {
            ("wte.weight", [v, c]),
            ("wpe.weight", [p, c]),
        };
        for (int i = 0; i < NLayer; i++)
        {
            string h = $"h.{i}.";
            list.Add((h + "ln_1.weight", [c]));
            list.Add((h + "ln_1.bias", [c]));
            list.Add((h + "attn.c_attn.weight", [c, 3 * c]));
            list.Add((h + "attn.c_attn.bias", [3 * c]));
            list.Add((h + "attn.c_proj.weight", [c, c]));
            list.Add((h + "attn.c_proj.bias", [c]));
            list.Add((h + "ln_2.weight", [c]));
            list.Add((h + "ln_2.bias", [c]));
            list.Add((h + "mlp.c_fc.weight", [c, f]));
            list.Add((h + "mlp.c_fc.bias", [f]));
            list.Add((h + "mlp.c_proj.weight", [f, c]));
            list.Add((h + "mlp.c_proj.bias", [c]));
        }
        list.Add(("ln_f.weight", [c]));
        list.Add(("ln_f.bias", [c]));
        return list;
    }

    /// <summary>Number of parameters (tied head counted once): 124,439,808 for gpt2.</summary>
    public long ParameterCount => ParameterShapes().Sum(p => p.Shape.Aggregate(1L, (a, d) => a * d));

    // ---- validation --------------------------------------------------------------------------

    /// <summary>Checks the rules (positive sizes, n_embd divisible by n_head, a supported activation, ...).</summary>
    /// <param name="source">What to name in errors (a file path).</param>
    /// <exception cref="Gpt2ConfigException"/>
    public void Validate(string source = "<config>")
    {
        Positive("vocab_size", VocabSize);
        Positive("n_positions", NPositions);
        Positive("n_embd", NEmbd);
        Positive("n_layer", NLayer);
        Positive("n_head", NHead);
        if (NInner is int ni) Positive("n_inner", ni);
        if (NEmbd % NHead != 0)
            throw new Gpt2ConfigException(source, "n_head", $"n_embd {NEmbd} is not divisible by n_head {NHead}");
        // The kernels compute in float32: 1e300 is finite as a double but ∞ there, 1e-50 is 0.
        if (!(LayerNormEpsilon > 0) || double.IsInfinity(LayerNormEpsilon) || !((float)LayerNormEpsilon > 0) || float.IsInfinity((float)LayerNormEpsilon))
            throw new Gpt2ConfigException(source, "layer_norm_epsilon", $"must be a positive number that is finite and non-zero in float32, got {LayerNormEpsilon}");
        if (!SupportedActivations.Contains(ActivationFunction))
            throw new Gpt2ConfigException(source, "activation_function",
                $"unsupported activation \"{ActivationFunction}\" (supported: {string.Join(", ", SupportedActivations)})");
        if (ModelType != ModelTypeName)
            throw new Gpt2ConfigException(source, "model_type", $"must be \"{ModelTypeName}\", got \"{ModelType}\"");
        if (BosTokenId is int b && (b < 0 || b >= VocabSize))
            throw new Gpt2ConfigException(source, "bos_token_id", $"{b} is outside the vocabulary [0, {VocabSize})");
        if (EosTokenId is int e && (e < 0 || e >= VocabSize))
            throw new Gpt2ConfigException(source, "eos_token_id", $"{e} is outside the vocabulary [0, {VocabSize})");
        // Guard the sizes that host arrays and 32-bit GPU indexing depend on.
        if ((long)VocabSize * NEmbd > Array.MaxLength || (long)NEmbd * 3 * NEmbd > Array.MaxLength
            || (long)NEmbd * InnerSize > Array.MaxLength || (long)NPositions * NEmbd > Array.MaxLength)
            throw new Gpt2ConfigException(source, "n_embd", "a weight matrix would exceed the largest host array");

        void Positive(string field, int value)
        {
            if (value <= 0) throw new Gpt2ConfigException(source, field, $"must be a positive integer, got {value}");
        }
    }

    // ---- JSON ------------------------------------------------------------------------------------

    /// <summary>Loads and validates a Hugging Face config.json (a file, or a directory holding one).</summary>
    public static Gpt2Config Load(string path)
    {
        if (Directory.Exists(path)) path = System.IO.Path.Combine(path, "config.json");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException e) { throw new FileNotFoundException($"GPT-2 config '{path}' does not exist", path, e); }
        return Parse(bytes, path);
    }

    /// <summary>Parses and validates config.json text; <paramref name="source"/> is named in errors.</summary>
    public static Gpt2Config Parse(string json, string source = "<config>") =>
        Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    public static Gpt2Config Parse(ReadOnlySpan<byte> utf8Json, string source = "<config>")
    {
        // System.Text.Json checks a string's UTF-8 only when it is read, with an InvalidOperationException naming no file.
        if (!System.Text.Unicode.Utf8.IsValid(utf8Json))
            throw new Gpt2ConfigException(source, "(file)", "not valid UTF-8 text");
        try { return ParseDocument(utf8Json, source); }
        catch (InvalidOperationException e)
        {
            // A key or value escaping half a surrogate pair ("\ud800"): not text, whatever the field.
            throw new Gpt2ConfigException(source, "(file)", $"a key or string is not valid text ({e.Message})", e);
        }
    }

    private static Gpt2Config ParseDocument(ReadOnlySpan<byte> utf8Json, string source)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8Json.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new Gpt2ConfigException(source, "(file)", $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new Gpt2ConfigException(source, "(file)", $"the root must be a JSON object, found {root.ValueKind}");
            // JSON readers disagree on which of two equal keys wins (ours would take the first, Python's the last).
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
                if (!seen.Add(prop.Name)) throw new Gpt2ConfigException(source, prop.Name, "appears twice");

            var d = new Gpt2Config();
            string modelType = Str(root, source, "model_type") ?? ModelTypeName;
            if (modelType != ModelTypeName)
                throw new Gpt2ConfigException(source, "model_type", $"must be \"{ModelTypeName}\", got \"{modelType}\"");

            int? nPositions = Int(root, source, "n_positions", nullable: false);
            int? nCtx = Int(root, source, "n_ctx", nullable: false);
            // transformers sizes the position table by n_positions; n_ctx is the legacy name, used when n_positions is absent.

            var cfg = new Gpt2Config
            {
                VocabSize = Int(root, source, "vocab_size", nullable: false) ?? d.VocabSize,
                NPositions = nPositions ?? nCtx ?? d.NPositions,
                NEmbd = Int(root, source, "n_embd", nullable: false) ?? d.NEmbd,
                NLayer = Int(root, source, "n_layer", nullable: false) ?? d.NLayer,
                NHead = Int(root, source, "n_head", nullable: false) ?? d.NHead,
                NInner = Int(root, source, "n_inner", nullable: true),
                LayerNormEpsilon = Number(root, source, "layer_norm_epsilon") ?? d.LayerNormEpsilon,
                ActivationFunction = Str(root, source, "activation_function") ?? d.ActivationFunction,
                TieWordEmbeddings = Bool(root, source, "tie_word_embeddings") ?? d.TieWordEmbeddings,
                BosTokenId = root.TryGetProperty("bos_token_id", out _) ? Int(root, source, "bos_token_id", nullable: true) : d.BosTokenId,
                EosTokenId = root.TryGetProperty("eos_token_id", out _) ? Int(root, source, "eos_token_id", nullable: true) : d.EosTokenId,
                ModelType = modelType,
            };
            cfg.Validate(source);
            return cfg;
        }
    }

    /// <summary>Writes config.json (atomically) in the Hugging Face layout; <paramref name="path"/> is a file or a directory.</summary>
    public void Save(string path)
    {
        if (Directory.Exists(path)) path = System.IO.Path.Combine(path, "config.json");
        Validate(path);
        AtomicFile.WriteAllBytes(path, ToJsonBytes());
    }

    /// <summary>The config.json text (indented, fields sorted as transformers writes them).</summary>
    public string ToJson() => System.Text.Encoding.UTF8.GetString(ToJsonBytes());

    private byte[] ToJsonBytes()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("activation_function", ActivationFunction);
            w.WriteStartArray("architectures");
            w.WriteStringValue("GPT2LMHeadModel");
            w.WriteEndArray();
            WriteNullable(w, "bos_token_id", BosTokenId);
            WriteNullable(w, "eos_token_id", EosTokenId);
            w.WriteNumber("layer_norm_epsilon", LayerNormEpsilon);
            w.WriteString("model_type", ModelType);
            w.WriteNumber("n_ctx", NPositions);
            w.WriteNumber("n_embd", NEmbd);
            w.WriteNumber("n_head", NHead);
            WriteNullable(w, "n_inner", NInner);
            w.WriteNumber("n_layer", NLayer);
            w.WriteNumber("n_positions", NPositions);
            w.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, int? value)
    {
        if (value is int v) w.WriteNumber(name, v); else w.WriteNull(name);
    }

    private static int? Int(JsonElement root, string source, string field, bool nullable)
    {
        if (!root.TryGetProperty(field, out var el)) return null;
        if (el.ValueKind == JsonValueKind.Null)
            return nullable ? null : throw new Gpt2ConfigException(source, field, "must be an integer, got null");
        if (el.ValueKind != JsonValueKind.Number)
            throw new Gpt2ConfigException(source, field, $"must be an integer, got {el.ValueKind} {el.GetRawText()}");
        if (el.TryGetInt32(out int v)) return v;
        // 768.0 is accepted as 768 (some tools write floats); 12.5 or 1e12 is not.
        if (el.TryGetDouble(out double dv) && dv == Math.Floor(dv) && dv >= int.MinValue && dv <= int.MaxValue) return (int)dv;
        throw new Gpt2ConfigException(source, field, $"must be a 32-bit integer, got {el.GetRawText()}");
    }

    private static double? Number(JsonElement root, string source, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind != JsonValueKind.Number || !el.TryGetDouble(out double v))
            throw new Gpt2ConfigException(source, field, $"must be a number, got {el.GetRawText()}");
        return v;
    }

    private static string? Str(JsonElement root, string source, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind != JsonValueKind.String)
            throw new Gpt2ConfigException(source, field, $"must be a string, got {el.GetRawText()}");
        return el.GetString();
    }

    private static bool? Bool(JsonElement root, string source, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        return el.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new Gpt2ConfigException(source, field, $"must be true or false, got {el.GetRawText()}"),
        };
    }
}
