using EditRuntime.IO;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace EditRuntime.Models;

/// <summary>A Hugging Face LLaMA-family config.json is missing a field, has a wrong type, breaks a rule or asks for
/// something this runtime does not implement. The message names the file and the field.</summary>
public class LlamaConfigException(string source, string field, string rule, Exception? inner = null)
    : ConfigFieldException("LLaMA", source, field, rule, inner);

/// <summary>
/// The hyperparameters of a Hugging Face config.json for the LLaMA family: model_type "llama", "qwen2" or "mistral"
/// (pre-RMSNorm decoder, rotary positions in the rotate_half layout, grouped-query attention, SwiGLU MLP).
/// <para>
/// Differences between the three that this record captures: qwen2 always has q/k/v biases and no o_proj bias (its
/// attention_bias / mlp_bias keys, if present, are ignored as transformers ignores them); mistral has no biases at
/// all (same); llama has q/k/v/o biases iff attention_bias and gate/up/down biases iff mlp_bias.
/// </para>
/// <para>
/// Keys that change the function and are not implemented are refused, naming the file and the key: a rope_scaling
/// other than "llama3" (or "default"), hidden_act other than "silu", a sliding window that can bite (qwen2 with
/// use_sliding_window true and sliding_window &lt; max_position_embeddings, or layer_types with a sliding layer;
/// mistral with sliding_window &lt; max_position_embeddings), and every key not in <see cref="HarmlessKeys"/> nor
/// read here. Decided and documented: attention_dropout (any value in [0, 1)) is accepted and not applied — the
/// runtime computes the eval-mode function, as for GPT-2's dropouts; pretraining_tp ≥ 1 is accepted because
/// transformers' pretraining_tp &gt; 1 path only slices the same matmuls and sums the slices (the same function up
/// to float rounding).
/// </para>
/// </summary>
public sealed record LlamaConfig
{
    public static readonly IReadOnlyList<string> SupportedModelTypes = ["llama", "qwen2", "mistral"];

    /// <summary>
    /// Keys accepted and ignored: bookkeeping, generation defaults, tokenizer ids and training-only settings that do not
    /// change the forward at inference (<c>attention_dropout</c> and <c>pretraining_tp</c> are read and checked).
    /// </summary>
    public static readonly IReadOnlySet<string> HarmlessKeys = new HashSet<string>(StringComparer.Ordinal)
    {
        "architectures", "transformers_version", "torch_dtype", "dtype", "use_cache", "initializer_range",
        "_name_or_path", "pad_token_id", "max_window_layers", "output_attentions", "output_hidden_states",
        "return_dict", "torchscript", "id2label", "label2id", "problem_type", "tokenizer_class", "task_specific_params",
        "is_encoder_decoder", "is_decoder", "add_cross_attention", "tie_encoder_decoder", "chunk_size_feed_forward",
        "prefix", "sep_token_id", "decoder_start_token_id", "finetuning_task", "cross_attention_hidden_size",
        "do_sample", "temperature", "top_p", "top_k", "max_length", "min_length", "num_beams", "repetition_penalty",
        "length_penalty", "no_repeat_ngram_size", "early_stopping", "num_return_sequences", "bad_words_ids",
        "auto_map",
    };

    public string ModelType { get; init; } = "llama";
    public int VocabSize { get; init; } = 32000;
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>num_key_value_heads (defaults to num_attention_heads: plain multi-head attention).</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    /// <summary>head_dim as stored; null = hidden_size / num_attention_heads (see <see cref="HeadDim"/>).</summary>
    public int? HeadDimOverride { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public Llama3RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>llama's attention_bias (q/k/v/o biases); ignored for qwen2 and mistral (see <see cref="QkvBias"/>).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>llama's mlp_bias (gate/up/down biases); ignored for qwen2 and mistral.</summary>
    public bool MlpBias { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int? BosTokenId { get; init; } = 1;
    /// <summary>eos_token_id: one id or a list (LLaMA 3.1 lists three); empty when null.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [2];
    /// <summary>torch_dtype (or dtype) as stored: informational only, weights are computed in float32.</summary>
    public string? TorchDtype { get; init; }
    /// <summary>attention_dropout: accepted in [0, 1) and never applied (eval-mode function).</summary>
    public double AttentionDropout { get; init; }

    public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    /// <summary>Query heads per key/value head (grouped-query attention).</summary>
    public int KvGroups => NumAttentionHeads / NumKeyValueHeads;
    public bool QkvBias => ModelType == "qwen2" || (ModelType == "llama" && AttentionBias);
    public bool OBias => ModelType == "llama" && AttentionBias;
    public bool MlpBiases => ModelType == "llama" && MlpBias;

    // ---- small configs for tests --------------------------------------------------------------

    /// <summary>
    /// A LLaMA-3-shaped small model: GQA 4:1 (8 query heads, 2 key/value heads), rope_theta 500000, rope_scaling
    /// "llama3" (factor 8, low 1, high 4) with original_max_position_embeddings 512 so that the head dimension's four
    /// frequencies fall in each band, untied head, no biases. LLaMA 3's real vocabulary (128256) is a parameter.
    /// </summary>
    public static LlamaConfig SmallLlama3(int vocabSize = 256, int layers = 2) => new()
    {
        ModelType = "llama", VocabSize = vocabSize, HiddenSize = 64, IntermediateSize = 160, NumHiddenLayers = layers,
        NumAttentionHeads = 8, NumKeyValueHeads = 2, HeadDimOverride = null, MaxPositionEmbeddings = 128, RmsNormEps = 1e-5,
        RopeTheta = 500000, RopeScaling = new Llama3RopeScaling(8, 1, 4, 512), TieWordEmbeddings = false,
        BosTokenId = 0, EosTokenIds = [1], TorchDtype = "float32",
    };

    /// <summary>A Qwen2-shaped small model: q/k/v biases, tied embeddings, GQA 2:1, rope_theta 1e6, no rope scaling.</summary>
    public static LlamaConfig SmallQwen2(int vocabSize = 256, int layers = 2) => new()
    {
        ModelType = "qwen2", VocabSize = vocabSize, HiddenSize = 48, IntermediateSize = 112, NumHiddenLayers = layers,
        NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64, RmsNormEps = 1e-6,
        RopeTheta = 1e6, TieWordEmbeddings = true, BosTokenId = 0, EosTokenIds = [1], TorchDtype = "float32",
    };

    // ---- parameters ---------------------------------------------------------------------------

    /// <summary>The parameters with their Hugging Face names and shapes (linear weights (out, in)), in file order.</summary>
    public IReadOnlyList<(string Name, int[] Shape)> ParameterShapes()
    {
        int v = VocabSize, c = HiddenSize, f = IntermediateSize, q = NumAttentionHeads * HeadDim, kv = NumKeyValueHeads * HeadDim;
        var list = new List<(string, int[])> { ("model.embed_tokens.weight", [v, c]) };
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            string h = $"model.layers.{i}.";
            list.Add((h + "input_layernorm.weight", [c]));
            list.Add((h + "self_attn.q_proj.weight", [q, c]));
            if (QkvBias) list.Add((h + "self_attn.q_proj.bias", [q]));
            list.Add((h + "self_attn.k_proj.weight", [kv, c]));
            if (QkvBias) list.Add((h + "self_attn.k_proj.bias", [kv]));
            list.Add((h + "self_attn.v_proj.weight", [kv, c]));
            if (QkvBias) list.Add((h + "self_attn.v_proj.bias", [kv]));
            list.Add((h + "self_attn.o_proj.weight", [c, q]));
            if (OBias) list.Add((h + "self_attn.o_proj.bias", [c]));
            list.Add((h + "post_attention_layernorm.weight", [c]));
            list.Add((h + "mlp.gate_proj.weight", [f, c]));
            if (MlpBiases) list.Add((h + "mlp.gate_proj.bias", [f]));
            list.Add((h + "mlp.up_proj.weight", [f, c]));
            if (MlpBiases) list.Add((h + "mlp.up_proj.bias", [f]));
            list.Add((h + "mlp.down_proj.weight", [c, f]));
            if (MlpBiases) list.Add((h + "mlp.down_proj.bias", [c]));
        }
        list.Add(("model.norm.weight", [c]));
        if (!TieWordEmbeddings) list.Add(("lm_head.weight", [v, c]));
        return list;
    }

    public long ParameterCount => ParameterShapes().Sum(p => p.Shape.Aggregate(1L, (a, d) => a * d));

    // ---- validation ---------------------------------------------------------------------------

    /// <exception cref="LlamaConfigException"/>
    public void Validate(string source = "<config>")
    {
        if (!SupportedModelTypes.Contains(ModelType))
            throw new LlamaConfigException(source, "model_type", $"\"{ModelType}\" is not one of {string.Join(", ", SupportedModelTypes.Select(t => $"\"{t}\""))}");
        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        if (HeadDimOverride is int hd) Positive("head_dim", hd);
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new LlamaConfigException(source, "num_key_value_heads", $"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        if (HeadDimOverride is null && HiddenSize % NumAttentionHeads != 0)
            throw new LlamaConfigException(source, "num_attention_heads", $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads} (and no head_dim is given)");
        if (HeadDim % 2 != 0)
            throw new LlamaConfigException(source, HeadDimOverride is null ? "num_attention_heads" : "head_dim", $"the head dimension {HeadDim} must be even for rotary embeddings");
        if (!(RmsNormEps > 0) || !((float)RmsNormEps > 0) || float.IsInfinity((float)RmsNormEps))
            throw new LlamaConfigException(source, "rms_norm_eps", $"must be a positive number that is finite and non-zero in float32, got {RmsNormEps}");
        if (!double.IsFinite(RopeTheta) || RopeTheta <= 0)
            throw new LlamaConfigException(source, "rope_theta", $"must be a finite number > 0, got {RopeTheta}");
        if (RopeScaling is { } s)
        {
            if (!double.IsFinite(s.Factor) || s.Factor <= 0) throw new LlamaConfigException(source, "rope_scaling.factor", $"must be finite and > 0, got {s.Factor}");
            if (!double.IsFinite(s.LowFreqFactor) || s.LowFreqFactor <= 0) throw new LlamaConfigException(source, "rope_scaling.low_freq_factor", $"must be finite and > 0, got {s.LowFreqFactor}");
            if (!double.IsFinite(s.HighFreqFactor) || s.HighFreqFactor <= s.LowFreqFactor)
                throw new LlamaConfigException(source, "rope_scaling.high_freq_factor", $"must be finite and > low_freq_factor {s.LowFreqFactor}, got {s.HighFreqFactor}");
            if (s.OriginalMaxPositionEmbeddings <= 0)
                throw new LlamaConfigException(source, "rope_scaling.original_max_position_embeddings", $"must be > 0, got {s.OriginalMaxPositionEmbeddings}");
        }
        if (HiddenAct != "silu")
            throw new LlamaConfigException(source, "hidden_act", $"\"{HiddenAct}\" is not supported (only \"silu\", SwiGLU's gate)");
        if (!(AttentionDropout >= 0 && AttentionDropout < 1))
            throw new LlamaConfigException(source, "attention_dropout", $"must be in [0, 1), got {AttentionDropout}");
        if (BosTokenId is int b && (b < 0 || b >= VocabSize))
            throw new LlamaConfigException(source, "bos_token_id", $"{b} is outside the vocabulary [0, {VocabSize})");
        foreach (int e in EosTokenIds)
            if (e < 0 || e >= VocabSize) throw new LlamaConfigException(source, "eos_token_id", $"{e} is outside the vocabulary [0, {VocabSize})");
        long q = (long)NumAttentionHeads * HeadDim;
        if ((long)VocabSize * HiddenSize > Array.MaxLength || q * HiddenSize > Array.MaxLength || (long)IntermediateSize * HiddenSize > Array.MaxLength)
            throw new LlamaConfigException(source, "hidden_size", "a weight matrix would exceed the largest host array");

        void Positive(string field, int value)
        {
            if (value <= 0) throw new LlamaConfigException(source, field, $"must be a positive integer, got {value}");
        }
    }

    // ---- JSON ---------------------------------------------------------------------------------

    /// <summary>Loads and validates a config.json (a file, or a directory holding one).</summary>
    public static LlamaConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException e) { throw new FileNotFoundException($"LLaMA config '{path}' does not exist", path, e); }
        return Parse(bytes, path);
    }

    public static LlamaConfig Parse(string json, string source = "<config>") => Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    public static LlamaConfig Parse(ReadOnlySpan<byte> utf8Json, string source = "<config>")
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8Json)) throw new LlamaConfigException(source, "(file)", "not valid UTF-8 text");
        try { return ParseDocument(utf8Json, source); }
        catch (InvalidOperationException e) { throw new LlamaConfigException(source, "(file)", $"a key or string is not valid text ({e.Message})", e); }
    }

    private static LlamaConfig ParseDocument(ReadOnlySpan<byte> utf8Json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(utf8Json.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e) { throw new LlamaConfigException(source, "(file)", $"not valid JSON ({e.Message})", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new LlamaConfigException(source, "(file)", $"the root must be a JSON object, found {root.ValueKind}");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
                if (!seen.Add(prop.Name)) throw new LlamaConfigException(source, prop.Name, "appears twice");

            var r = new Reader(root, source);
            string modelType = r.Str("model_type") ?? throw new LlamaConfigException(source, "model_type", "missing (must be \"llama\", \"qwen2\" or \"mistral\")");
            if (!SupportedModelTypes.Contains(modelType))
                throw new LlamaConfigException(source, "model_type", $"\"{modelType}\" is not one of {string.Join(", ", SupportedModelTypes.Select(t => $"\"{t}\""))}");

            // transformers' defaults per model type.
            var d = modelType switch
            {
                "qwen2" => new LlamaConfig { ModelType = "qwen2", VocabSize = 151936, IntermediateSize = 22016, MaxPositionEmbeddings = 32768, BosTokenId = null, EosTokenIds = [] },
                "mistral" => new LlamaConfig { ModelType = "mistral", IntermediateSize = 14336, NumKeyValueHeads = 8, MaxPositionEmbeddings = 4096 * 32 },
                _ => new LlamaConfig(),
            };
            int heads = r.Int("num_attention_heads") ?? d.NumAttentionHeads;
            int maxPos = r.Int("max_position_embeddings") ?? d.MaxPositionEmbeddings;

            // rope: rope_theta and rope_scaling, or (newer transformers) rope_parameters holding both.
            double ropeTheta = r.Number("rope_theta") ?? d.RopeTheta;
            Llama3RopeScaling? scaling = null;
            if (root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind != JsonValueKind.Null)
                scaling = ParseRope(rs, source, "rope_scaling", ref ropeTheta, allowTheta: false);
            if (root.TryGetProperty("rope_parameters", out var rp) && rp.ValueKind != JsonValueKind.Null)
            {
                if (scaling is not null) throw new LlamaConfigException(source, "rope_parameters", "given beside rope_scaling; give one");
                scaling = ParseRope(rp, source, "rope_parameters", ref ropeTheta, allowTheta: true);
            }

            // Sliding windows: refused where they change attention within max_position_embeddings.
            // transformers' default sliding_window for mistral and qwen2 is 4096 when the key is absent.
            bool windowGiven = root.TryGetProperty("sliding_window", out _);
            int? window = windowGiven ? r.Int("sliding_window", nullable: true) : modelType is "mistral" or "qwen2" ? 4096 : null;
            string windowNote = windowGiven ? "" : " (absent: transformers' default 4096)";
            bool useWindow = r.Bool("use_sliding_window") ?? false;
            if (modelType == "mistral" && window is int mw && mw < maxPos)
                throw new LlamaConfigException(source, "sliding_window", $"{mw}{windowNote} < max_position_embeddings {maxPos}: sliding-window attention is not implemented");
            if (modelType == "qwen2" && useWindow && window is int qw && qw < maxPos)
                throw new LlamaConfigException(source, "sliding_window", $"use_sliding_window is true and sliding_window {qw}{windowNote} < max_position_embeddings {maxPos}: sliding-window attention is not implemented");
            if (modelType == "llama" && (root.TryGetProperty("sliding_window", out _) || root.TryGetProperty("use_sliding_window", out _)))
                throw new LlamaConfigException(source, root.TryGetProperty("sliding_window", out _) ? "sliding_window" : "use_sliding_window", "not a llama key; sliding-window attention is not implemented");
            if (root.TryGetProperty("layer_types", out var lt) && lt.ValueKind != JsonValueKind.Null)
            {
                if (lt.ValueKind != JsonValueKind.Array) throw new LlamaConfigException(source, "layer_types", $"must be a list, got {lt.GetRawText()}");
                foreach (var t in lt.EnumerateArray())
                    if (t.ValueKind != JsonValueKind.String || t.GetString() != "full_attention")
                        throw new LlamaConfigException(source, "layer_types", $"entry {t.GetRawText()}: only \"full_attention\" layers are implemented");
            }

            int tp = r.Int("pretraining_tp") ?? 1;
            if (tp < 1) throw new LlamaConfigException(source, "pretraining_tp", $"must be ≥ 1, got {tp}");

            IReadOnlyList<int> eos = d.EosTokenIds;
            if (root.TryGetProperty("eos_token_id", out var eosEl))
            {
                if (eosEl.ValueKind == JsonValueKind.Array)
                    eos = eosEl.EnumerateArray().Select((e, i) => IntValue(e, source, $"eos_token_id[{i}]")).ToArray();
                else eos = r.Int("eos_token_id", nullable: true) is int one ? [one] : [];
            }

            var cfg = new LlamaConfig
            {
                ModelType = modelType,
                VocabSize = r.Int("vocab_size") ?? d.VocabSize,
                HiddenSize = r.Int("hidden_size") ?? d.HiddenSize,
                IntermediateSize = r.Int("intermediate_size") ?? d.IntermediateSize,
                NumHiddenLayers = r.Int("num_hidden_layers") ?? d.NumHiddenLayers,
                NumAttentionHeads = heads,
                NumKeyValueHeads = r.Int("num_key_value_heads", nullable: true) ?? heads,
                HeadDimOverride = r.Int("head_dim", nullable: true),
                MaxPositionEmbeddings = maxPos,
                RmsNormEps = r.Number("rms_norm_eps") ?? d.RmsNormEps,
                RopeTheta = ropeTheta,
                RopeScaling = scaling,
                TieWordEmbeddings = r.Bool("tie_word_embeddings") ?? false,
                AttentionBias = r.Bool("attention_bias") ?? false,
                MlpBias = r.Bool("mlp_bias") ?? false,
                HiddenAct = r.Str("hidden_act") ?? "silu",
                BosTokenId = root.TryGetProperty("bos_token_id", out _) ? r.Int("bos_token_id", nullable: true) : d.BosTokenId,
                EosTokenIds = eos,
                TorchDtype = r.Str("torch_dtype") ?? r.Str("dtype"),
                AttentionDropout = r.Number("attention_dropout") ?? 0,
            };

            var read = new HashSet<string>(StringComparer.Ordinal)
            {
                "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
                "rope_parameters", "tie_word_embeddings", "attention_bias", "mlp_bias", "hidden_act", "bos_token_id", "eos_token_id",
                "torch_dtype", "dtype", "attention_dropout", "pretraining_tp", "sliding_window", "use_sliding_window", "layer_types",
            };
            foreach (var prop in root.EnumerateObject())
                if (!read.Contains(prop.Name) && !HarmlessKeys.Contains(prop.Name))
                    throw new LlamaConfigException(source, prop.Name,
                        "unknown key: it may change the function, and this runtime does not implement it (keys known to be harmless: see LlamaConfig.HarmlessKeys)");
            cfg.Validate(source);
            return cfg;
        }
    }

    private static Llama3RopeScaling? ParseRope(JsonElement el, string source, string key, ref double theta, bool allowTheta)
    {
        if (el.ValueKind != JsonValueKind.Object) throw new LlamaConfigException(source, key, $"must be an object or null, got {el.GetRawText()}");
        var r = new Reader(el, source, key + ".");
        string? type = r.Str("rope_type") ?? r.Str("type");
        if (allowTheta && r.Number("rope_theta") is double t) theta = t;
        var known = new HashSet<string>(StringComparer.Ordinal) { "rope_type", "type", "rope_theta" };
        if (type is null or "default")
        {
            foreach (var p in el.EnumerateObject())
                if (!known.Contains(p.Name)) throw new LlamaConfigException(source, $"{key}.{p.Name}", $"not used by the default rotary embedding; refused rather than ignored");
            return null;
        }
        if (type != "llama3")
            throw new LlamaConfigException(source, $"{key}.rope_type", $"\"{type}\" is not implemented (only \"llama3\" and \"default\")");
        known.UnionWith(["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]);
        foreach (var p in el.EnumerateObject())
            if (!known.Contains(p.Name)) throw new LlamaConfigException(source, $"{key}.{p.Name}", "not a llama3 rope_scaling key; refused rather than ignored");
        double Need(string f) => r.Number(f) ?? throw new LlamaConfigException(source, $"{key}.{f}", "missing (required by rope_type \"llama3\")");
        int orig = r.Int("original_max_position_embeddings") ?? throw new LlamaConfigException(source, $"{key}.original_max_position_embeddings", "missing (required by rope_type \"llama3\")");
        return new Llama3RopeScaling(Need("factor"), Need("low_freq_factor"), Need("high_freq_factor"), orig);
    }

    private static int IntValue(JsonElement el, string source, string field)
    {
        if (el.ValueKind != JsonValueKind.Number) throw new LlamaConfigException(source, field, $"must be an integer, got {el.GetRawText()}");
        if (el.TryGetInt32(out int v)) return v;
        if (el.TryGetDouble(out double dv) && dv == Math.Floor(dv) && dv >= int.MinValue && dv <= int.MaxValue) return (int)dv;
        throw new LlamaConfigException(source, field, $"must be a 32-bit integer, got {el.GetRawText()}");
    }

    private readonly struct Reader(JsonElement obj, string source, string prefix = "")
    {
        public int? Int(string field, bool nullable = false)
        {
            if (!obj.TryGetProperty(field, out var el)) return null;
            if (el.ValueKind == JsonValueKind.Null)
                return nullable ? null : throw new LlamaConfigException(source, prefix + field, "must be an integer, got null");
            return IntValue(el, source, prefix + field);
        }

        public double? Number(string field)
        {
            if (!obj.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
            if (el.ValueKind != JsonValueKind.Number || !el.TryGetDouble(out double v))
                throw new LlamaConfigException(source, prefix + field, $"must be a number, got {el.GetRawText()}");
            return v;
        }

        public string? Str(string field)
        {
            if (!obj.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
            if (el.ValueKind != JsonValueKind.String) throw new LlamaConfigException(source, prefix + field, $"must be a string, got {el.GetRawText()}");
            return el.GetString();
        }

        public bool? Bool(string field)
        {
            if (!obj.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
            return el.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new LlamaConfigException(source, prefix + field, $"must be true or false, got {el.GetRawText()}"),
            };
        }
    }

    /// <summary>Writes config.json (atomically) in the Hugging Face layout; <paramref name="path"/> is a file or a directory.</summary>
    public void Save(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        Validate(path);
        AtomicFile.WriteAllBytes(path, ToJsonBytes());
    }

    public string ToJson() => System.Text.Encoding.UTF8.GetString(ToJsonBytes());

    private byte[] ToJsonBytes()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue(ModelType switch { "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", _ => "LlamaForCausalLM" });
            w.WriteEndArray();
            if (ModelType == "llama")
            {
                w.WriteBoolean("attention_bias", AttentionBias);
                w.WriteBoolean("mlp_bias", MlpBias);
            }
            w.WriteNumber("attention_dropout", AttentionDropout);
            if (BosTokenId is int b) w.WriteNumber("bos_token_id", b); else w.WriteNull("bos_token_id");
            if (EosTokenIds.Count == 1) w.WriteNumber("eos_token_id", EosTokenIds[0]);
            else if (EosTokenIds.Count == 0) w.WriteNull("eos_token_id");
            else { w.WriteStartArray("eos_token_id"); foreach (int e in EosTokenIds) w.WriteNumberValue(e); w.WriteEndArray(); }
            if (HeadDimOverride is int hd) w.WriteNumber("head_dim", hd);
            w.WriteString("hidden_act", HiddenAct);
            w.WriteNumber("hidden_size", HiddenSize);
            w.WriteNumber("intermediate_size", IntermediateSize);
            w.WriteNumber("max_position_embeddings", MaxPositionEmbeddings);
            w.WriteString("model_type", ModelType);
            w.WriteNumber("num_attention_heads", NumAttentionHeads);
            w.WriteNumber("num_hidden_layers", NumHiddenLayers);
            w.WriteNumber("num_key_value_heads", NumKeyValueHeads);
            w.WriteNumber("rms_norm_eps", RmsNormEps);
            if (RopeScaling is { } s)
            {
                w.WriteStartObject("rope_scaling");
                w.WriteNumber("factor", s.Factor);
                w.WriteNumber("high_freq_factor", s.HighFreqFactor);
                w.WriteNumber("low_freq_factor", s.LowFreqFactor);
                w.WriteNumber("original_max_position_embeddings", s.OriginalMaxPositionEmbeddings);
                w.WriteString("rope_type", "llama3");
                w.WriteEndObject();
            }
            else w.WriteNull("rope_scaling");
            w.WriteNumber("rope_theta", RopeTheta);
            if (ModelType == "mistral") w.WriteNull("sliding_window");
            w.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            if (TorchDtype is not null) w.WriteString("torch_dtype", TorchDtype);
            if (ModelType == "qwen2") w.WriteBoolean("use_sliding_window", false);
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }
}
