using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.Text;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Fuzzed loaders (issue 19): seeded byte flips, truncations, insertions and header edits of every file a user
/// hands the runtime. Each case must end in success or a clean error — an exception of a documented type whose
/// message names the file — within <see cref="CaseTimeout"/>; never an internal exception (index, null, cast,
/// overflow, out of memory, ...), a hang, or a silent wrong result (what loads is checked: finite weights,
/// well-formed requests, finite predictions after an editor state loads).
/// Cases per test (fixed; the seed is printed and EDITRT_TEST_SEED replays a run): model files 240
/// (model.safetensors 160 of which 60 header edits, config.json 80), tokenizer files 160 (vocab.json 80,
/// merges.txt 80), datasets 240 (zsRE, CounterFact, flat: 80 each), hyper-parameter files 4 editors × 30,
/// edit states 4 editors × 40.
/// </summary>
[NonParallelizable]
public sealed class FuzzTests
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    private static int Seed(string test)
    {
        int seed = Environment.GetEnvironmentVariable("EDITRT_TEST_SEED") is string s ? int.Parse(s) : 19_000 + test.Length;
        TestContext.Out.WriteLine($"{test}: seed {seed} (rerun with EDITRT_TEST_SEED={seed})");
        return seed;
    }

    private string _dir = "";

    [SetUp]
    public void MakeDir() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"fuzz-{Guid.NewGuid():N}"));

    [TearDown]
    public void RemoveDir() => Directory.Delete(_dir, recursive: true);

    // ---------------------------------------------------------------- model files

    /// <summary>A small random GPT-2 (fast to load a few hundred times) in the Hugging Face layout.</summary>
    private static readonly Gpt2Config SmallConfig = new() { VocabSize = 64, NPositions = 16, NEmbd = 16, NLayer = 2, NHead = 2, BosTokenId = 0, EosTokenId = 0 };

    [Test]
    public void Fuzzed_model_files_load_with_finite_weights_or_fail_cleanly()
    {
        var rng = new Random(Seed(nameof(Fuzzed_model_files_load_with_finite_weights_or_fail_cleanly)));
        var source = Path.Combine(_dir, "source");
        Gpt2Checkpoint.Save(source, SmallConfig, Gpt2Model.RandomWeights(SmallConfig, 5));
        var weights = File.ReadAllBytes(Path.Combine(source, Gpt2Checkpoint.WeightsFileName));
        var config = File.ReadAllBytes(Path.Combine(source, Gpt2Checkpoint.ConfigFileName));
        var tally = new Tally("model files");
        for (int i = 0; i < 240; i++)
        {
            var dir = Path.Combine(_dir, $"case{i}");
            Directory.CreateDirectory(dir);
            bool weightsCase = i < 160;
            var (what, w) = weightsCase ? (i < 60 ? SafeTensorsHeaderEdit(weights, rng) : Mutate(weights, rng, SafeTensorsHeaderEnd(weights))) : ("unchanged", weights);
            var (whatC, c) = weightsCase ? ("unchanged", config) : Mutate(config, rng, config.Length);
            File.WriteAllBytes(Path.Combine(dir, Gpt2Checkpoint.WeightsFileName), w);
            File.WriteAllBytes(Path.Combine(dir, Gpt2Checkpoint.ConfigFileName), c);
            string file = weightsCase ? Gpt2Checkpoint.WeightsFileName : Gpt2Checkpoint.ConfigFileName;
            tally.Case($"{file} {(weightsCase ? what : whatC)}", () =>
            {
                var (cfg, tensors) = Gpt2Checkpoint.Load(dir);
                foreach (var (name, shape) in cfg.ParameterShapes())
                {
                    Assert.That(tensors[name].Shape, Is.EqualTo(shape), name);
                    Assert.That(Gpt2Checkpoint.FirstNonFinite(tensors[name].Data), Is.Null, $"{name}: a loaded model's weights are finite");
                }
            }, dir);
        }
        tally.Report();
    }

    /// <summary>Edits of the 8-byte header length and of one tensor's dtype, shape or data_offsets in the JSON header (re-padded, length rewritten).</summary>
    private static (string What, byte[] Bytes) SafeTensorsHeaderEdit(byte[] file, Random rng)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        var bytes = (byte[])file.Clone();
        int pick = rng.Next(4);
        if (pick == 0)
        {
            ulong[] lengths = [0, 1, n - 1, n + 1, n + 8, (ulong)file.Length, (ulong)file.Length - 8, ulong.MaxValue, 1UL << 63, 100_000_001, (ulong)rng.NextInt64(0, file.Length)];
            ulong v = lengths[rng.Next(lengths.Length)];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, v);
            return ($"header length {v}", bytes);
        }
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)n))!.AsObject();
        var names = header.Select(p => p.Key).Where(k => k != "__metadata__").ToList();
        var name = names[rng.Next(names.Count)];
        var entry = header[name]!.AsObject();
        var shape = entry["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
        var offsets = entry["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
        string what;
        JsonNode? Num(long v) => JsonValue.Create(v);
        switch (pick)
        {
            case 1:
                JsonNode?[] dtypes = ["F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "f32", "", JsonValue.Create(4), null, new JsonArray()];
                var d = dtypes[rng.Next(dtypes.Length)];
                entry["dtype"] = d?.DeepClone();
                what = $"{name} dtype {d?.ToJsonString() ?? "null"}";
                break;
            case 2:
                JsonNode?[] shapes =
                [
                    new JsonArray(), new JsonArray(Num(-1)), new JsonArray(shape.Select(x => Num(x + 1)).ToArray()),
                    new JsonArray(shape.Reverse().Select(Num).ToArray()), new JsonArray(Num(1L << 40), Num(1L << 40)),
                    new JsonArray(Num(long.MaxValue)), new JsonArray(JsonValue.Create(2.5)), new JsonArray(JsonValue.Create("4")),
                    new JsonArray(shape.Append(1).Select(Num).ToArray()), new JsonArray(Num(0)), JsonValue.Create(3), null,
                    new JsonArray(Num(3_000_000_000)), new JsonArray(Num(1L << 31), Num(0)),
                ];
                var sh = shapes[rng.Next(shapes.Length)];
                entry["shape"] = sh;
                what = $"{name} shape {sh?.ToJsonString() ?? "null"}";
                break;
            default:
                long b = offsets[0], e = offsets[1];
                JsonNode?[] offs =
                [
                    new JsonArray(Num(b), Num(e + 4)), new JsonArray(Num(e), Num(b)), new JsonArray(Num(-1), Num(e)),
                    new JsonArray(Num(b), Num(long.MaxValue)), new JsonArray(Num(b)), new JsonArray(Num(b + 4), Num(e + 4)),
                    new JsonArray(Num(0), Num(e - b)), new JsonArray(JsonValue.Create(1e300), Num(e)), new JsonArray(Num(b), Num(e), Num(e)),
                    JsonValue.Create("0,4"), new JsonArray(Num(b - 4), Num(e - 4)), new JsonArray(JsonValue.Create(18446744073709551615UL), Num(e)),
                ];
                var o = offs[rng.Next(offs.Length)];
                entry["data_offsets"] = o;
                what = $"{name} data_offsets {o?.ToJsonString() ?? "null"}";
                break;
        }
        var text = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (text.Length + 7) / 8 * 8;
        var result = new byte[8 + padded + (file.Length - 8 - (int)n)];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)padded);
        text.CopyTo(result, 8);
        result.AsSpan(8 + text.Length, padded - text.Length).Fill((byte)' ');
        file.AsSpan(8 + (int)n).CopyTo(result.AsSpan(8 + padded));
        return (what, result);
    }

    private static int SafeTensorsHeaderEnd(byte[] file) => 8 + (int)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(file), (ulong)file.Length - 8);

    // ---------------------------------------------------------------- tokenizer files

    [Test]
    public void Fuzzed_vocab_and_merges_load_a_working_tokenizer_or_fail_cleanly()
    {
        var rng = new Random(Seed(nameof(Fuzzed_vocab_and_merges_load_a_working_tokenizer_or_fail_cleanly)));
        var builtin = Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");
        var vocab = File.ReadAllBytes(Path.Combine(builtin, "vocab.json"));
        var merges = File.ReadAllBytes(Path.Combine(builtin, "merges.txt"));
        var tally = new Tally("tokenizer files");
        const string sample = "Q: Where was Vaurti Vozobek born? A: The capital of Vamar is Kaigati. <|endoftext|> é ✓";
        for (int i = 0; i < 160; i++)
        {
            var dir = Path.Combine(_dir, $"case{i}");
            Directory.CreateDirectory(dir);
            bool vocabCase = i % 2 == 0;
            var (what, bytes) = Mutate(vocabCase ? vocab : merges, rng, vocabCase ? vocab.Length : merges.Length);
            File.WriteAllBytes(Path.Combine(dir, "vocab.json"), vocabCase ? bytes : vocab);
            File.WriteAllBytes(Path.Combine(dir, "merges.txt"), vocabCase ? merges : bytes);
            tally.Case($"{(vocabCase ? "vocab.json" : "merges.txt")} {what}", () =>
            {
                var tok = Gpt2Tokenizer.FromDirectory(dir);
                var ids = tok.Encode(sample);
                Assert.That(ids, Is.All.InRange(0, tok.VocabSize - 1), "ids within the vocabulary");
                Assert.That(tok.Decode(ids), Is.EqualTo(sample), "a loaded tokenizer round-trips text");
            }, dir);
        }
        tally.Report();
    }

    // ---------------------------------------------------------------- datasets

    private const string ZsreSample = """
        [
          {"subject": "Vaurti Vozobek", "src": "Where was Vaurti Vozobek born?", "alt": "Lurefem", "answers": ["Kaigati"],
           "rephrase": "What is the birthplace of Vaurti Vozobek?", "loc": "nq question: who wrote the caf\u00e9 song", "loc_ans": "Tomas"},
          {"subject": "Detia", "src": "What is the capital of Detia?", "alt": ["Vamar", "V"], "answers": [], "rephrase": ["Detia's capital?", "Capital of Detia?"]}
        ]
        """;

    private const string CounterFactSample = """
        [
          {"case_id": 7, "requested_rewrite": {"prompt": "The capital of {} is", "subject": "Vamar", "target_new": {"str": "Lurefem"}, "target_true": {"str": "Kaigati"}},
           "paraphrase_prompts": ["Vamar's capital is", "In Vamar, the capital is"], "neighborhood_prompts": ["The capital of Detia is"], "neighborhood_answers": ["Kaigati"]},
          {"case_id": 8, "requested_rewrite": {"prompt": "{} was born in", "subject": "Vaurti \u00c9 Vozobek", "target_new": "Detia", "target_true": {"str": "Vamar"}},
           "neighborhood_prompts": ["Tomas was born in", "Ada was born in"]}
        ]
        """;

    private const string FlatSample = """
        [
          {"prompt": "The capital of Vamar is", "subject": "Vamar", "target_new": "Lurefem", "ground_truth": "Kaigati",
           "rephrase_prompt": "Vamar's capital is", "locality_prompt": "The capital of Detia is", "locality_ground_truth": ["Kaigati", "K"]},
          {"prompt": "Vaurti was born in", "subject": "Vaurti", "target_new": ["Detia"], "ground_truth": null,
           "locality_prompt": ["Tomas was born in", "Ada \u00e9 was born in"], "locality_ground_truth": ["Vamar", ["Lurefem", "L"]]}
        ]
        """;

    [TestCase("zsre_eval.json", ZsreSample)]
    [TestCase("counterfact_eval.json", CounterFactSample)]
    [TestCase("flat_eval.json", FlatSample)]
    public void Fuzzed_datasets_parse_into_well_formed_requests_or_fail_cleanly(string name, string sample)
    {
        var rng = new Random(Seed(nameof(Fuzzed_datasets_parse_into_well_formed_requests_or_fail_cleanly) + name));
        var bytes = Encoding.UTF8.GetBytes(sample);
        Assert.That(EditDataset.Parse(bytes, name), Has.Count.EqualTo(2), "the unmutated sample parses");
        var tally = new Tally(name);
        for (int i = 0; i < 80; i++)
        {
            var (what, mutated) = Mutate(bytes, rng, bytes.Length);
            tally.Case(what, () =>
            {
                var reqs = EditDataset.Parse(mutated, name);
                for (int r = 0; r < reqs.Count; r++) WellFormed(reqs[r], r, name);
            }, name);
        }
        tally.Report();
    }

    private static void WellFormed(EditRequest r, int index, string source)
    {
        Assert.That((r.Index, r.Source), Is.EqualTo((index, source)));
        foreach (var (text, field) in new[] { (r.Prompt, "prompt"), (r.Subject, "subject"), (r.TargetNew, "target_new") })
        {
            Assert.That(text, Is.Not.Null.And.Not.Empty, field);
            Assert.That(ValidUtf16(text), Is.True, $"{field} is text (no lone surrogate)");
        }
        Assert.That(r.Prompt, Is.EqualTo(r.Prompt.TrimEnd()), "prompts carry no trailing whitespace");
        Assert.That(r.TargetNew, Is.EqualTo(r.TargetNew.TrimStart()), "targets carry no leading whitespace");
        if (r.TargetTrue is not null) Assert.That(r.TargetTrue, Is.Not.Empty.And.EqualTo(r.TargetTrue.TrimStart()));
        Assert.That(r.RephrasePrompts, Is.All.Not.Null.And.All.Not.Empty);
        foreach (var l in r.Locality) Assert.That(l.Prompt.Length > 0 && l.Answer.Length > 0 && ValidUtf16(l.Prompt) && ValidUtf16(l.Answer), Is.True, l.ToString());
        foreach (var p in r.RephrasePrompts) Assert.That(ValidUtf16(p), Is.True, p);
        if (r.TargetTrue is not null) Assert.That(ValidUtf16(r.TargetTrue), Is.True);
    }

    private static bool ValidUtf16(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            if (char.IsSurrogate(s[i])) return false;
        }
        return true;
    }

    // ---------------------------------------------------------------- editors: hyper-parameter files and saved states

    private const string Family = "editrt-tiny";

    /// <summary>Few optimisation steps: the states only need to exist, not to be good edits (keeps the test seconds long).</summary>
    private static readonly Dictionary<string, Dictionary<string, string>> QuickEdits = new(StringComparer.OrdinalIgnoreCase)
    {
        ["FT-L"] = new() { ["steps"] = "2" },
        ["GRACE"] = new() { ["steps"] = "2" },
        ["MELO"] = new() { ["num_iter"] = "2", ["num_blocks"] = "64" },
        ["MoMoE"] = new() { ["steps"] = "2" },
    };

    public static IEnumerable<string> Editors() => EditorRegistry.Names.OrderBy(n => n, StringComparer.Ordinal);

    [TestCaseSource(nameof(Editors))]
    public void Fuzzed_hyper_parameter_files_build_the_editor_or_fail_cleanly(string editorName)
    {
        var rng = new Random(Seed(nameof(Fuzzed_hyper_parameter_files_build_the_editor_or_fail_cleanly) + editorName));
        using var s = EditorFixtures.Open("torch");
        // A device budget, so that a fuzzed size (num_blocks 17000) is refused by the estimate instead of allocated.
        var ctx = s.Ctx with { DeviceMemoryLimit = 1L << 30 };
        var defaults = EditorRegistry.Defaults(editorName, Family);
        var text = Encoding.UTF8.GetBytes(defaults.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        var tally = new Tally($"{editorName} hparams");
        for (int i = 0; i < 30; i++)
        {
            var file = Path.Combine(_dir, $"hparams{i}.json");
            var (what, bytes) = i < 10 ? ValueEdit(defaults, rng) : Mutate(text, rng, text.Length);
            File.WriteAllBytes(file, bytes);
            tally.Case(what, () =>
            {
                HyperParameters.ReadFile(file);
                using var editor = EditorRegistry.Create(editorName, ctx, Family, file);
                Assert.That(editor.Describe().HyperParameters.Select(p => p.Key), Is.EquivalentTo(defaults.Select(p => p.Key)));
            }, file);
            Assert.That(s.Model.AttachedAdapters, Is.Empty, $"{what}: no adapter is left behind");
        }
        tally.Report();
    }

    /// <summary>One key of a hyper-parameter file set to an odd value.</summary>
    private static (string What, byte[] Bytes) ValueEdit(JsonObject defaults, Random rng)
    {
        var o = (JsonObject)defaults.DeepClone();
        var key = o.Select(p => p.Key).ElementAt(rng.Next(o.Count));
        string[] values = ["-1", "0", "1e400", "-1e400", "2147483648", "1e-45", "2.5", "\"x\"", "null", "[]", "{}", "true", "1e30", "\"h.99.mlp.c_proj\"", "[\"h.2.mlp.c_proj\", 3]", "999999999"];
        var v = values[rng.Next(values.Length)];
        var json = o.ToJsonString().Replace($"\"{key}\":{o[key]?.ToJsonString() ?? "null"}", $"\"{key}\":{v}");
        return ($"{key} = {v}", Encoding.UTF8.GetBytes(json));
    }

    [TestCaseSource(nameof(Editors))]
    public void Fuzzed_edit_states_load_with_finite_predictions_or_fail_cleanly_changing_nothing(string editorName)
    {
        var rng = new Random(Seed(nameof(Fuzzed_edit_states_load_with_finite_predictions_or_fail_cleanly_changing_nothing) + editorName));
        using var s = EditorFixtures.Open("torch");
        var (model, ctx) = (s.Model, s.Ctx with { DeviceMemoryLimit = 1L << 30 });
        var reqs = EditorFixtures.Requests(2);
        var probes = reqs.SelectMany(r => new[] { r.Prompt, r.RephrasePrompts.FirstOrDefault() ?? r.Prompt }).Select(p => ctx.Encode(p, "x").Prompt).ToList();
        var saved = Path.Combine(_dir, "state.safetensors");
        var overrides = QuickEdits.TryGetValue(editorName, out var q) ? q : null;
        using var editor = EditorRegistry.Create(editorName, ctx, Family, overrides: overrides);
        var clock = Stopwatch.StartNew();
        editor.Edit(reqs);
        editor.Save(saved);
        TestContext.Out.WriteLine($"{editorName}: 2 edits and a save in {clock.Elapsed.TotalSeconds:0.0} s");
        var bytes = File.ReadAllBytes(saved);
        float[][] Predict() => probes.Select(model.NextTokenLogits).ToArray();
        var current = Predict();
        var tally = new Tally($"{editorName} state");
        for (int i = 0; i < 40; i++)
        {
            var file = Path.Combine(_dir, $"state{i}.safetensors");
            var (what, mutated) = i % 4 == 0 ? SafeTensorsHeaderEdit(bytes, rng) : i % 4 == 1 ? MetadataEdit(bytes, rng) : Mutate(bytes, rng, SafeTensorsHeaderEnd(bytes));
            File.WriteAllBytes(file, mutated);
            bool loaded = false;
            tally.Case(what, () =>
            {
                editor.Load(file);
                loaded = true;
                // Not Assert: a wrong result is listed with its case (NonFiniteException if a logit is NaN/∞).
                var p = Predict();
                if (p.FirstOrDefault(row => Gpt2Checkpoint.FirstNonFinite(row) is not null) is { } bad)
                    throw new AssertionException($"a prediction is {bad[Gpt2Checkpoint.FirstNonFinite(bad)!.Value]} after the load");
                current = p;
            }, file);
            if (!loaded) Assert.That(Predict(), Is.EqualTo(current), $"{what}: a refused load leaves the edits as they were");
            else { editor.Load(saved); current = Predict(); }   // back to the good state for the next case
        }
        tally.Report();
    }

    /// <summary>One metadata entry of a SafeTensors file (an edit state's ids, maps, hyper-parameters) set to an odd JSON text.</summary>
    private static (string What, byte[] Bytes) MetadataEdit(byte[] file, Random rng)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)n))!.AsObject();
        var meta = header["__metadata__"]!.AsObject();
        var key = meta.Select(p => p.Key).ElementAt(rng.Next(meta.Count));
        var old = meta[key]!.GetValue<string>();
        string[] values = ["-1", "2147483648", "\"abc\"", "null", "[]", "{}", "1e400", "[-1]", "[[0, 99999]]", "{\"0\": -5}", "0", "1.5", "[null]", "[\"x\"]", "\"\"", "[1, 1, 1]"];
        string v = rng.Next(3) switch
        {
            0 => values[rng.Next(values.Length)],
            // A number inside the entry changed (an id, a count, a radius), the rest kept.
            1 => System.Text.RegularExpressions.Regex.Replace(old, @"-?\d+(\.\d+)?([eE][-+]?\d+)?", m => rng.Next(3) == 0 ? values[rng.Next(values.Length)] : m.Value),
            _ => old.Length > 2 ? old[..rng.Next(old.Length)] : "",
        };
        meta[key] = v;
        var text = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (text.Length + 7) / 8 * 8;
        var result = new byte[8 + padded + (file.Length - 8 - (int)n)];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)padded);
        text.CopyTo(result, 8);
        result.AsSpan(8 + text.Length, padded - text.Length).Fill((byte)' ');
        file.AsSpan(8 + (int)n).CopyTo(result.AsSpan(8 + padded));
        return ($"metadata {key} = {(v.Length > 60 ? v[..60] + "..." : v)}", result);
    }

    // ---------------------------------------------------------------- mutations and outcomes

    /// <summary>
    /// One random mutation: 1–4 bytes flipped (a random bit or a random byte), a truncation, an insertion of random or
    /// JSON-ish bytes, or a deletion. Half the positions fall before <paramref name="hot"/> (a file's header), where a change matters most.
    /// </summary>
    private static (string What, byte[] Bytes) Mutate(byte[] input, Random rng, int hot)
    {
        int Pos(int length) => length == 0 ? 0 : rng.Next(2) == 0 ? rng.Next(Math.Max(1, Math.Min(hot, length))) : rng.Next(length);
        var b = (byte[])input.Clone();
        switch (rng.Next(5))
        {
            case 0:
            case 1:
            {
                int k = rng.Next(1, 5);
                var at = new List<int>();
                for (int j = 0; j < k; j++)
                {
                    int p = Pos(b.Length);
                    at.Add(p);
                    if (rng.Next(2) == 0) b[p] ^= (byte)(1 << rng.Next(8)); else b[p] = (byte)rng.Next(256);
                }
                return ($"bytes changed at {string.Join(",", at)}", b);
            }
            case 2:
            {
                int cut = rng.Next(2) == 0 ? Pos(b.Length) : rng.Next(b.Length + 1);
                return ($"truncated to {cut} bytes", b[..cut]);
            }
            case 3:
            {
                string[] chunks = ["\"", "{", "}", "[", "]", ",", ":", "-1", "1e400", "null", "\\u", "\\ud800", "\n", " ", "\0", "\xff", "99999999999999999999", "NaN", "\"\":\"\"", "{}", "[[[[[[[[", "\uFEFF"];
                byte[] ins = rng.Next(2) == 0
                    ? Encoding.UTF8.GetBytes(chunks[rng.Next(chunks.Length)])
                    : Enumerable.Range(0, rng.Next(1, 17)).Select(_ => (byte)rng.Next(256)).ToArray();
                if (ins.Length == 2 && ins[0] == 0xC3 && ins[1] == 0xBF && rng.Next(2) == 0) ins = [0xFF];   // a raw invalid byte too, not only its UTF-8 form
                int p = Pos(b.Length + 1);
                return ($"{ins.Length} byte(s) inserted at {p}", [.. b[..p], .. ins, .. b[p..]]);
            }
            default:
            {
                int p = Pos(b.Length);
                int len = Math.Min(b.Length - p, rng.Next(1, 9));
                return ($"{len} byte(s) deleted at {p}", [.. b[..p], .. b[(p + len)..]]);
            }
        }
    }

    /// <summary>
    /// The outcomes of a test's cases: each one succeeds or throws a clean error (a documented type, the file named),
    /// within <see cref="CaseTimeout"/>. Internal exceptions, timeouts and errors that do not name the file fail the test,
    /// listing the first cases (each with its mutation, to replay).
    /// </summary>
    private sealed class Tally(string kind)
    {
        private int _ok, _refused;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Dictionary<string, int> _types = new();
        private readonly List<string> _failures = new();

        /// <summary>Runs one case; true when it succeeded, false when it was cleanly refused.</summary>
        public bool Case(string what, Action body, string file)
        {
            Exception? error = null;
            var task = Task.Run(() =>
            {
                try { body(); }
                catch (Exception e) { error = e; }
            });
            if (!task.Wait(CaseTimeout)) { _failures.Add($"{what}: no result after {CaseTimeout.TotalSeconds} s (a hang)"); return false; }
            if (error is null) { _ok++; return true; }
            string name = Path.GetFileName(file);
            if (error is AssertionException) _failures.Add($"{what}: loaded, but wrong: {error.Message}");
            else if (!Clean(error)) _failures.Add($"{what}: an internal exception, not a clean error: {error}");
            else if (!error.Message.Contains(name, StringComparison.Ordinal))
                _failures.Add($"{what}: the error does not name the file {name}: {error.GetType().Name}: {error.Message}");
            else
            {
                _refused++;
                _types[error.GetType().Name] = _types.GetValueOrDefault(error.GetType().Name) + 1;
            }
            return false;
        }

        /// <summary>The documented error types of the loaders; ArgumentOutOfRange/ArgumentNull come from inside .NET, not from a loader's check.</summary>
        private static bool Clean(Exception e) => e switch
        {
            ArgumentOutOfRangeException or ArgumentNullException => false,
            InvalidDataException or HyperParameterException or ArgumentException => true,
            ModelFileException or FileNotFoundException or DirectoryNotFoundException => true,
            EditDatasetException or TokenizerFileException => true,
            _ => false,
        };

        /// <summary>Prints the counts; fails listing the first bad cases, if any.</summary>
        public void Report()
        {
            TestContext.Out.WriteLine(
                $"{kind}: {_ok + _refused + _failures.Count} cases, {_ok} loaded and checked, {_refused} refused cleanly " +
                $"({string.Join(", ", _types.OrderByDescending(t => t.Value).Select(t => $"{t.Key} {t.Value}"))}), {_failures.Count} bad; {_clock.Elapsed.TotalSeconds:0.0} s");
            if (_failures.Count > 0)
                Assert.Fail($"{kind}: {_failures.Count} case(s) ended badly:\n" + string.Join("\n", _failures.Take(12)));
        }
    }
}
