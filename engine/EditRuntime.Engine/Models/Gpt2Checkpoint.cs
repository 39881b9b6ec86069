using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EditRuntime.Models;

/// <summary>A GPT-2 checkpoint lacks a tensor, has one of the wrong shape, an untied head, or one it should not have. The message names the file and the tensor.</summary>
public class Gpt2CheckpointException : ModelFileException
{
    public string? TensorName { get; }

    public Gpt2CheckpointException(string filePath, string? tensorName, string rule, Exception? inner = null)
        : base(filePath, tensorName is null ? $"GPT-2 checkpoint '{filePath}': {rule}" : $"GPT-2 checkpoint '{filePath}', tensor '{tensorName}': {rule}", inner)
        => TensorName = tensorName;
}

/// <summary>
/// GPT-2 checkpoints in the Hugging Face layout: a directory with config.json and model.safetensors
/// (or a sharded model.safetensors.index.json). Tensor names are the GPT2Model names without the
/// "transformer." prefix (see <see cref="Gpt2Config.ParameterShapes"/>); linear weights keep the
/// Conv1D layout [in, out]. Files like vocab.json / merges.txt are neither needed nor touched.
/// </summary>
public static class Gpt2Checkpoint
{
    public const string ConfigFileName = "config.json";
    public const string WeightsFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";
    /// <summary>The prefix GPT2LMHeadModel puts before GPT2Model names; accepted on load, never written.</summary>
    public const string HfPrefix = "transformer.";
    public const string LmHeadName = "lm_head.weight";

    private static readonly Regex BufferName = new(@"^h\.\d+\.attn\.(bias|masked_bias)$", RegexOptions.CultureInvariant);

    /// <summary>Our name for a name found in a Hugging Face file: the "transformer." prefix removed.</summary>
    public static string CanonicalName(string fileName) =>
        fileName.StartsWith(HfPrefix, StringComparison.Ordinal) ? fileName[HfPrefix.Length..] : fileName;

    /// <summary>True for the causal-mask buffers (h.{i}.attn.bias, h.{i}.attn.masked_bias) that old checkpoints store; they are not parameters.</summary>
    public static bool IsBuffer(string canonicalName) => BufferName.IsMatch(canonicalName);

    /// <summary>
    /// Loads config.json and the weights of <paramref name="dir"/>, checking that every parameter is
    /// present with its shape, that nothing else is (mask buffers aside), and that an lm_head.weight,
    /// if stored, equals wte (tied). Tensors come back as float32 in canonical order.
    /// </summary>
    /// <exception cref="Gpt2CheckpointException">Missing, misshapen, unexpected or duplicate tensor; untied head.</exception>
    /// <exception cref="Gpt2ConfigException">config.json is wrong.</exception>
    /// <exception cref="SafeTensorsFormatException">A weights file is corrupt.</exception>
    public static (Gpt2Config Config, Dictionary<string, HostTensor> Tensors) Load(string dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"GPT-2 checkpoint directory '{dir}' does not exist");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"GPT-2 checkpoint '{dir}' has no {ConfigFileName}", configPath);
        var config = Gpt2Config.Load(configPath);

        var files = new List<SafeTensorsFile>();
        try
        {
            foreach (string path in WeightFiles(dir)) files.Add(SafeTensorsFile.Open(path));
            string source = files.Count == 1 ? files[0].Path : Path.Combine(dir, IndexFileName);

            var expected = config.ParameterShapes();
            var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
            var where = new Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)>(StringComparer.Ordinal);
            (SafeTensorsFile File, SafeTensorInfo Info)? lmHead = null;
            var unexpected = new List<string>();

            foreach (var f in files)
            {
                foreach (var info in f.Tensors)
                {
                    string canon = CanonicalName(info.Name);
                    if (canon == LmHeadName)
                    {
                        if (lmHead is not null) throw new Gpt2CheckpointException(f.Path, info.Name, $"{LmHeadName} is stored twice");
                        lmHead = (f, info);
                        continue;
                    }
                    if (IsBuffer(canon)) continue;
                    if (!expectedNames.Contains(canon)) { unexpected.Add(info.Name); continue; }
                    if (where.TryGetValue(canon, out var other))
                        throw new Gpt2CheckpointException(f.Path, info.Name,
                            $"stored twice (also as '{other.Info.Name}' in '{other.File.Path}')");
                    where[canon] = (f, info);
                }
            }

            if (unexpected.Count > 0)
                throw new Gpt2CheckpointException(source, unexpected[0],
                    $"not a parameter of a GPT-2 with n_layer {config.NLayer} ({unexpected.Count} unexpected tensor(s): "
                    + string.Join(", ", unexpected.Take(8).Select(n => $"'{n}'")) + (unexpected.Count > 8 ? ", ..." : "")
                    + $"); does {ConfigFileName} match the weights?");

            var missing = expected.Where(e => !where.ContainsKey(e.Name)).Select(e => e.Name).ToList();
            if (missing.Count > 0)
                throw new Gpt2CheckpointException(source, missing[0],
                    $"missing ({missing.Count} of {expected.Count} parameters are: "
                    + string.Join(", ", missing.Take(8).Select(n => $"'{n}'")) + (missing.Count > 8 ? ", ..." : "") + ")");

            // Check every shape from the headers before reading any data.
            foreach (var (name, shape) in expected)
            {
                var (f, info) = where[name];
                if (!SameShape(info.Shape, shape))
                    throw new Gpt2CheckpointException(f.Path, info.Name, $"expected shape {Show(shape)}, got {Show(info.Shape)}");
            }
            if (lmHead is { } lh && !SameShape(lh.Info.Shape, expected[0].Shape))
                throw new Gpt2CheckpointException(lh.File.Path, lh.Info.Name,
                    $"expected shape {Show(expected[0].Shape)} (tied to wte.weight), got {Show(lh.Info.Shape)}");
            if (lmHead is null && !config.TieWordEmbeddings)
                throw new Gpt2CheckpointException(source, LmHeadName,
                    $"{ConfigFileName} says tie_word_embeddings false but no {LmHeadName} is stored; only heads tied to wte are supported");

            var tensors = new Dictionary<string, HostTensor>(expected.Count, StringComparer.Ordinal);
            bool checkFinite = !AllowNonFiniteWeights;
            foreach (var (name, _) in expected)
            {
                var (f, info) = where[name];
                var t = tensors[name] = f.Read(info.Name);
                // One NaN weight makes every logit NaN: generate would print "!!!!" and eval report LS 1.000 with exit 0.
                if (checkFinite && FirstNonFinite(t.Data) is int bad)
                    throw new Gpt2CheckpointException(f.Path, info.Name,
                        $"element {bad} (index {Show(Unflatten(bad, info.Shape))}) is {t.Data[bad]}; weights must be finite " +
                        $"(to load such a model anyway, set {AllowNonFiniteVariable}=1 or pass --allow-nonfinite-weights)");
            }

            if (lmHead is { } head)
            {
                var lm = head.File.Read(head.Info.Name);
                var wte = tensors["wte.weight"];
                // Bitwise: a head stored in a wider dtype than wte must still be the same values.
                if (!MemoryMarshal.Cast<float, int>(lm.Data).SequenceEqual(MemoryMarshal.Cast<float, int>(wte.Data)))
                    throw new Gpt2CheckpointException(head.File.Path, head.Info.Name,
                        $"differs from wte.weight (first at element {FirstDifference(lm.Data, wte.Data)}); only heads tied to wte are supported");
            }
            return (config, tensors);
        }
        finally
        {
            foreach (var f in files) f.Dispose();
        }
    }

    /// <summary>Environment variable that lets non-finite weights load (for inspecting a broken checkpoint); the CLI's
    /// --allow-nonfinite-weights sets it.</summary>
    public const string AllowNonFiniteVariable = "EDITRT_ALLOW_NONFINITE_WEIGHTS";

    /// <summary>Whether <see cref="Load"/> accepts NaN/∞ weights (<see cref="AllowNonFiniteVariable"/> = 1); refused by default.</summary>
    public static bool AllowNonFiniteWeights => Environment.GetEnvironmentVariable(AllowNonFiniteVariable) == "1";

    /// <summary>Index of the first NaN or ±∞, or null.</summary>
    public static int? FirstNonFinite(ReadOnlySpan<float> data)
    {
        // Vectorised: x − x is 0 for finite x and NaN for NaN/∞, so a sum-free scan over blocks finds the block first.
        int i = 0;
        var v = System.Numerics.Vector<float>.Count;
        for (; i + v <= data.Length; i += v)
        {
            var x = new System.Numerics.Vector<float>(data.Slice(i, v));
            var z = x - x;
            if (!System.Numerics.Vector.EqualsAll(z, System.Numerics.Vector<float>.Zero)) break;
        }
        for (; i < data.Length; i++) if (!float.IsFinite(data[i])) return i;
        return null;
    }

    private static long[] Unflatten(long flat, IReadOnlyList<long> shape)
    {
        var idx = new long[shape.Count];
        for (int d = shape.Count - 1; d >= 0; d--) { idx[d] = shape[d] == 0 ? 0 : flat % shape[d]; flat = shape[d] == 0 ? 0 : flat / shape[d]; }
        return idx;
    }

    /// <summary>
    /// Writes config.json and model.safetensors (names without the prefix, sorted, metadata
    /// {"format": "pt"} as transformers requires), each file atomically. The tensors must be exactly
    /// the parameters of <paramref name="config"/> with their shapes. When the config says
    /// tie_word_embeddings false, lm_head.weight is written as a copy of wte so that transformers
    /// loads the same model.
    /// </summary>
    public static void Save(string dir, Gpt2Config config, IReadOnlyDictionary<string, HostTensor> tensors,
        SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        config.Validate(Path.Combine(dir, ConfigFileName));
        CheckTensors(config, tensors, "<tensors to save>");

        Directory.CreateDirectory(dir);
        var list = config.ParameterShapes().Select(p => (p.Name, tensors[p.Name])).ToList();
        if (!config.TieWordEmbeddings) list.Add((LmHeadName, tensors["wte.weight"]));
        SafeTensorsWriter.Write(Path.Combine(dir, WeightsFileName), list,
            new Dictionary<string, string> { ["format"] = "pt" }, dtype);
        config.Save(Path.Combine(dir, ConfigFileName));
    }

    /// <summary>Checks that <paramref name="tensors"/> holds exactly the parameters of <paramref name="config"/>, each with its shape and a matching data length.</summary>
    /// <exception cref="Gpt2CheckpointException"/>
    public static void CheckTensors(Gpt2Config config, IReadOnlyDictionary<string, HostTensor> tensors, string source)
    {
        var expected = config.ParameterShapes();
        foreach (var (name, shape) in expected)
        {
            if (!tensors.TryGetValue(name, out var t))
                throw new Gpt2CheckpointException(source, name, "missing");
            if (!SameShape(t.Shape, shape))
                throw new Gpt2CheckpointException(source, name, $"expected shape {Show(shape)}, got {Show(t.Shape)}");
            if (t.Data.LongLength != t.Shape.Aggregate(1L, (a, d) => a * d))
                throw new Gpt2CheckpointException(source, name, $"{t.Data.LongLength} values for shape {Show(t.Shape)}");
        }
        if (tensors.Count != expected.Count)
        {
            var names = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
            var extra = tensors.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
            throw new Gpt2CheckpointException(source, extra[0],
                $"not a parameter of a GPT-2 with n_layer {config.NLayer} (unexpected: {string.Join(", ", extra.Take(8).Select(n => $"'{n}'"))})");
        }
    }

    private static List<string> WeightFiles(string dir)
    {
        string single = Path.Combine(dir, WeightsFileName);
        if (File.Exists(single)) return [single];
        string index = Path.Combine(dir, IndexFileName);
        if (!File.Exists(index))
        {
            string hint = File.Exists(Path.Combine(dir, "pytorch_model.bin"))
                ? " (it has pytorch_model.bin, which is not read: convert it to safetensors)" : "";
            throw new FileNotFoundException($"GPT-2 checkpoint '{dir}' has neither {WeightsFileName} nor {IndexFileName}{hint}", single);
        }

        // Sharded: {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}.
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new Gpt2CheckpointException(index, null, "must be an object with a \"weight_map\" object");
            var shards = new List<string>();
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new Gpt2CheckpointException(index, p.Name, "the weight_map value must be a file name");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new Gpt2CheckpointException(index, p.Name, $"shard '{shard}' must be a plain file name in the checkpoint directory");
                if (!shards.Contains(shard)) shards.Add(shard);
            }
            if (shards.Count == 0) throw new Gpt2CheckpointException(index, null, "weight_map is empty");
            return shards.Select(s => Path.Combine(dir, s)).ToList();
        }
        catch (JsonException e)
        {
            throw new Gpt2CheckpointException(index, null, $"not valid JSON ({e.Message})", e);
        }
    }

    private static bool SameShape(long[] got, int[] want)
    {
        if (got.Length != want.Length) return false;
        for (int i = 0; i < got.Length; i++) if (got[i] != want[i]) return false;
        return true;
    }

    private static bool SameShape(int[] got, int[] want) => got.AsSpan().SequenceEqual(want);

    private static string Show(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
    private static string Show(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";

    private static long FirstDifference(float[] a, float[] b)
    {
        for (long i = 0; i < a.LongLength; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i])) return i;
        return -1;
    }
}
