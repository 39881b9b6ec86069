using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EditRuntime.Models;

/// <summary>A LLaMA-family checkpoint lacks a tensor, has one of the wrong shape, or one it should not have. The message names the file and the tensor.</summary>
public class LlamaCheckpointException : ModelFileException
{
    public string? TensorName { get; }

    public LlamaCheckpointException(string filePath, string? tensorName, string rule, Exception? inner = null)
        : base(filePath, tensorName is null ? $"LLaMA checkpoint '{filePath}': {rule}" : $"LLaMA checkpoint '{filePath}', tensor '{tensorName}': {rule}", inner)
        => TensorName = tensorName;
}

/// <summary>
/// LLaMA / Qwen2 / Mistral checkpoints in the Hugging Face layout: a directory with config.json (see
/// <see cref="LlamaConfig"/>) and model.safetensors or a sharded model.safetensors.index.json, tensor names as
/// transformers' *ForCausalLM writes them (<see cref="LlamaConfig.ParameterShapes"/>). F32, F16 and BF16 tensors
/// load as float32. The rotary buffers old checkpoints store (model.layers.N.self_attn.rotary_emb.inv_freq) are
/// skipped (the table is computed from the config); with tied embeddings a stored lm_head.weight must equal
/// model.embed_tokens.weight bitwise.
/// </summary>
public static class LlamaCheckpoint
{
    public const string ConfigFileName = "config.json";
    public const string WeightsFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";
    public const string EmbedName = "model.embed_tokens.weight";
    public const string LmHeadName = "lm_head.weight";

    private static readonly Regex RotaryBuffer = new(@"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$", RegexOptions.CultureInvariant);

    /// <summary>Loads and checks config.json and every weight of <paramref name="dir"/>; tensors come back as float32 in <see cref="LlamaConfig.ParameterShapes"/> order.</summary>
    /// <exception cref="LlamaCheckpointException">Missing, misshapen, unexpected or duplicate tensor; an untied stored head of a tied model; a non-finite weight.</exception>
    /// <exception cref="LlamaConfigException">config.json is wrong.</exception>
    /// <exception cref="SafeTensorsFormatException">A weights file is corrupt.</exception>
    public static (LlamaConfig Config, Dictionary<string, HostTensor> Tensors) Load(string dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"LLaMA checkpoint directory '{dir}' does not exist");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"LLaMA checkpoint '{dir}' has no {ConfigFileName}", configPath);
        var config = LlamaConfig.Load(configPath);

        var files = new List<SafeTensorsFile>();
        try
        {
            var (paths, index) = WeightFiles(dir);
            foreach (string path in paths) files.Add(SafeTensorsFile.Open(path));
            string source = index ?? files[0].Path;

            var expected = config.ParameterShapes();
            var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
            var where = new Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)>(StringComparer.Ordinal);
            (SafeTensorsFile File, SafeTensorInfo Info)? tiedHead = null;
            var unexpected = new List<(string File, string Name)>();
            foreach (var f in files)
                foreach (var info in f.Tensors)
                {
                    if (RotaryBuffer.IsMatch(info.Name)) continue;
                    if (config.TieWordEmbeddings && info.Name == LmHeadName)
                    {
                        if (tiedHead is not null) throw new LlamaCheckpointException(f.Path, info.Name, "stored twice");
                        tiedHead = (f, info);
                        continue;
                    }
                    if (!expectedNames.Contains(info.Name)) { unexpected.Add((f.Path, info.Name)); continue; }
                    if (where.TryGetValue(info.Name, out var other))
                        throw new LlamaCheckpointException(f.Path, info.Name, $"stored twice (also in '{other.File.Path}')");
                    where[info.Name] = (f, info);
                }

            if (unexpected.Count > 0)
                throw new LlamaCheckpointException(unexpected[0].File, unexpected[0].Name,
                    $"not a parameter of this {config.ModelType} model (num_hidden_layers {config.NumHiddenLayers}, {Describe(config)}; "
                    + $"{unexpected.Count} unexpected tensor(s): " + string.Join(", ", unexpected.Take(8).Select(n => $"'{n.Name}'"))
                    + (unexpected.Count > 8 ? ", ..." : "") + $"); does {ConfigFileName} match the weights?");
            var missing = expected.Where(e => !where.ContainsKey(e.Name)).Select(e => e.Name).ToList();
            if (missing.Count > 0)
                throw new LlamaCheckpointException(source, missing[0],
                    $"missing ({missing.Count} of {expected.Count} parameters are: " + string.Join(", ", missing.Take(8).Select(n => $"'{n}'"))
                    + (missing.Count > 8 ? ", ..." : "") + $"; {Describe(config)})");

            foreach (var (name, shape) in expected)
            {
                var (f, info) = where[name];
                if (!info.Shape.SequenceEqual(shape.Select(d => (long)d)))
                    throw new LlamaCheckpointException(f.Path, name, $"expected shape {Show(shape)} from {ConfigFileName}, got {Show(info.Shape)}");
            }
            if (tiedHead is { } th && !th.Info.Shape.SequenceEqual(expected[0].Shape.Select(d => (long)d)))
                throw new LlamaCheckpointException(th.File.Path, LmHeadName, $"expected shape {Show(expected[0].Shape)} (tied to {EmbedName}), got {Show(th.Info.Shape)}");

            var tensors = new Dictionary<string, HostTensor>(expected.Count, StringComparer.Ordinal);
            bool checkFinite = !Gpt2Checkpoint.AllowNonFiniteWeights;
            foreach (var (name, _) in expected)
            {
                var (f, info) = where[name];
                var t = tensors[name] = f.Read(name);
                if (checkFinite && Gpt2Checkpoint.FirstNonFinite(t.Data) is int bad)
                    throw new LlamaCheckpointException(f.Path, name,
                        $"element {bad} is {t.Data[bad]}; weights must be finite (to load such a model anyway, set {Gpt2Checkpoint.AllowNonFiniteVariable}=1)");
            }
            if (tiedHead is { } head)
            {
                var lm = head.File.Read(LmHeadName);
                if (!MemoryMarshal.Cast<float, int>(lm.Data).SequenceEqual(MemoryMarshal.Cast<float, int>(tensors[EmbedName].Data)))
                    throw new LlamaCheckpointException(head.File.Path, LmHeadName, $"differs from {EmbedName} but {ConfigFileName} says tie_word_embeddings true");
            }
            return (config, tensors);
        }
        finally
        {
            foreach (var f in files) f.Dispose();
        }
    }

    private static string Describe(LlamaConfig c) =>
        $"q/k/v biases {(c.QkvBias ? "yes" : "no")}, o_proj bias {(c.OBias ? "yes" : "no")}, MLP biases {(c.MlpBiases ? "yes" : "no")}, "
        + $"lm_head {(c.TieWordEmbeddings ? "tied" : "separate")}";

    /// <summary>The weight files: model.safetensors, or the shards named by model.safetensors.index.json (and the index path).</summary>
    private static (List<string> Files, string? Index) WeightFiles(string dir)
    {
        string single = Path.Combine(dir, WeightsFileName);
        if (File.Exists(single)) return ([single], null);
        string index = Path.Combine(dir, IndexFileName);
        if (!File.Exists(index))
            throw new FileNotFoundException($"LLaMA checkpoint '{dir}' has neither {WeightsFileName} nor {IndexFileName}", single);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new LlamaCheckpointException(index, null, "must be an object with a \"weight_map\" object");
            var shards = new List<string>();
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw new LlamaCheckpointException(index, p.Name, "the weight_map value must be a file name");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new LlamaCheckpointException(index, p.Name, $"shard '{shard}' must be a plain file name in the checkpoint directory");
                if (!File.Exists(Path.Combine(dir, shard)))
                    throw new LlamaCheckpointException(index, p.Name, $"shard '{shard}' does not exist in '{dir}'");
                if (!shards.Contains(shard)) shards.Add(shard);
            }
            if (shards.Count == 0) throw new LlamaCheckpointException(index, null, "weight_map is empty");
            return (shards.Select(s => Path.Combine(dir, s)).ToList(), index);
        }
        catch (JsonException e)
        {
            throw new LlamaCheckpointException(index, null, $"not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>Checks that <paramref name="tensors"/> holds exactly the parameters of <paramref name="config"/> with their shapes.</summary>
    /// <exception cref="LlamaCheckpointException"/>
    public static void CheckTensors(LlamaConfig config, IReadOnlyDictionary<string, HostTensor> tensors, string source)
    {
        var expected = config.ParameterShapes();
        foreach (var (name, shape) in expected)
        {
            if (!tensors.TryGetValue(name, out var t)) throw new LlamaCheckpointException(source, name, $"missing ({Describe(config)})");
            if (!t.Shape.SequenceEqual(shape)) throw new LlamaCheckpointException(source, name, $"expected shape {Show(shape)}, got {Show(t.Shape)}");
            if (t.Data.LongLength != shape.Aggregate(1L, (a, d) => a * d))
                throw new LlamaCheckpointException(source, name, $"{t.Data.LongLength} values for shape {Show(shape)}");
        }
        var names = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var extra = tensors.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            throw new LlamaCheckpointException(source, extra[0], $"not a parameter of this {config.ModelType} model ({Describe(config)})");
    }

    /// <summary>
    /// Random weights: linear and embedding weights N(0, <paramref name="std"/>), biases N(0, std) too (so that a
    /// test sees them), RMSNorm gains 1 + N(0, 0.1). Deterministic in <paramref name="seed"/>.
    /// </summary>
    public static Dictionary<string, HostTensor> RandomWeights(LlamaConfig config, int seed, float std = 0.02f)
    {
        config.Validate();
        var rng = new Random(seed);
        var w = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in config.ParameterShapes())
        {
            long n = shape.Aggregate(1L, (a, d) => a * d);
            var data = Compute.HostReference.RandomNormal(rng, n, name.EndsWith("norm.weight", StringComparison.Ordinal) ? 0.1f : std);
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) for (long i = 0; i < n; i++) data[i] += 1f;
            w[name] = new HostTensor(shape, data);
        }
        return w;
    }

    /// <summary>Writes config.json and model.safetensors (sorted names, metadata {"format": "pt"}), each atomically.</summary>
    public static void Save(string dir, LlamaConfig config, IReadOnlyDictionary<string, HostTensor> tensors, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        config.Validate(Path.Combine(dir, ConfigFileName));
        CheckTensors(config, tensors, "<tensors to save>");
        Directory.CreateDirectory(dir);
        SafeTensorsWriter.Write(Path.Combine(dir, WeightsFileName), config.ParameterShapes().Select(p => (p.Name, tensors[p.Name])),
            new Dictionary<string, string> { ["format"] = "pt" }, dtype);
        config.Save(Path.Combine(dir, ConfigFileName));
    }

    /// <summary>A random-weight checkpoint for tests (<see cref="RandomWeights"/>): config.json + model.safetensors in <paramref name="dir"/>. Returns the weights written.</summary>
    public static Dictionary<string, HostTensor> WriteRandom(string dir, LlamaConfig config, int seed, float std = 0.02f, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        var w = RandomWeights(config, seed, std);
        Save(dir, config, w, dtype);
        return w;
    }

    private static string Show(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
    private static string Show(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";
}
