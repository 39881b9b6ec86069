using System.Text.Json;
using System.Text.Json.Serialization;
using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Text;

namespace EditRuntime.Models;

/// <summary>The training recipe of a built-in model (models/NAME/train_config.json).</summary>
public sealed record TrainRecipe
{
    [JsonPropertyName("world_seed")] public int WorldSeed { get; init; } = 1234;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 2048;
    [JsonPropertyName("n_positions")] public int NPositions { get; init; } = 64;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 192;
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 4;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 6;
    [JsonPropertyName("steps")] public int Steps { get; init; } = 5000;
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 64;
    [JsonPropertyName("learning_rate")] public float LearningRate { get; init; } = 3e-3f;
    [JsonPropertyName("warmup_steps")] public int WarmupSteps { get; init; } = 100;
    [JsonPropertyName("weight_decay")] public float WeightDecay { get; init; } = 0.01f;
    [JsonPropertyName("seed")] public int Seed { get; init; } = 1;
    [JsonPropertyName("eval_every")] public int EvalEvery { get; init; } = 1000;
    [JsonPropertyName("eval_sample")] public int EvalSample { get; init; } = 400;

    public static TrainRecipe Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"No training recipe {path}.");
        try
        {
            var r = JsonSerializer.Deserialize<TrainRecipe>(File.ReadAllText(path), new JsonSerializerOptions { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow })
                    ?? throw new InvalidDataException($"{path}: empty.");
            return r;
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {e.Message}"); }
    }

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>
/// The built-in model's training pipeline (what `editrt train` runs): synthetic world → corpus → our BPE
/// vocabulary → GPT-2 trained from scratch on the given backend → a model directory in the Hugging Face
/// layout with the recipe, the log (train_log.txt, written atomically at the end) and the accuracies
/// (trained facts, held-out paraphrases, the unedited model on target_new).
/// </summary>
public static class WorldModelTraining
{
    /// <param name="init">A model directory to continue from (same world, vocabulary and shape), or null for random weights.</param>
    /// <param name="recipeSource">Where the recipe came from (its path), for the log's first line.</param>
    /// <param name="progress">Receives every log line as it is written (the command prints them).</param>
    public static Accuracies Run(IBackend be, TrainRecipe recipe, string recipeSource, string outDir, string? init, Action<string> progress)
    {
        Directory.CreateDirectory(outDir);
        var logPath = Path.Combine(outDir, "train_log.txt");
        using var log = new StreamWriter(logPath + ".tmp");
        void Log(string line)
        {
            progress(line);
            log.WriteLine(line);
            log.Flush();
        }
        var started = DateTime.UtcNow;
        Log($"editrt train {recipeSource} → {outDir} on {be.Name}, started {started:u}");
        Log(recipe.ToJson());

        // 1. The world and its corpus.
        var world = SyntheticWorld.Generate(null, recipe.WorldSeed);
        var dataDir = Path.Combine(outDir, "data");
        world.WriteAll(dataDir);
        var sentences = world.Corpus.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l != "<|endoftext|>").ToList();
        Log($"world seed {recipe.WorldSeed}: {world.Facts.Count} facts, {sentences.Count} training sentences → {dataDir}");

        // 2. Our byte-level BPE vocabulary.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var vocab = BpeTrainer.TrainAndSave(sentences, recipe.VocabSize, outDir);
        var tok = Gpt2Tokenizer.FromDirectory(outDir);
        Log($"BPE: {tok.VocabSize} tokens ({vocab.Merges.Count} merges) in {sw.Elapsed.TotalSeconds:0.0} s → vocab.json, merges.txt");
        int eot = tok.EndOfTextId;
        var seqs = sentences.Select(l => new[] { eot }.Concat(tok.Encode(l)).ToArray()).ToList();
        Log($"tokens: {seqs.Sum(q => q.Length)} in {seqs.Count} sequences (mean {seqs.Average(q => q.Length):0.0}, max {seqs.Max(q => q.Length)})");

        // 3. The model.
        var config = new Gpt2Config
        {
            VocabSize = tok.VocabSize, NPositions = recipe.NPositions, NEmbd = recipe.NEmbd, NLayer = recipe.NLayer, NHead = recipe.NHead,
            BosTokenId = eot, EosTokenId = eot,
        };
        Dictionary<string, HostTensor> start;
        if (init is not null)
        {
            // Continue from an earlier run's weights (same world, vocabulary and shape) with a fresh schedule.
            var (initConfig, initWeights) = Gpt2Checkpoint.Load(init);
            if (initConfig != config) throw new ArgumentException($"--init {init}: its config.json differs from this recipe's model.");
            start = initWeights;
            Log($"initialised from {init}");
        }
        else start = Gpt2Model.RandomWeights(config, recipe.Seed);
        using var model = new Gpt2Model(be, config, start);
        Log($"model: {config.ParameterCount / 1e6:0.00}M parameters ({config.NLayer} layers, {config.NEmbd} wide, {config.NHead} heads, {config.NPositions} positions, vocab {config.VocabSize}) on {be.Name} ({be.DeviceDescription})");

        var rng = new Random(recipe.Seed);
        var sample = world.Facts.OrderBy(_ => rng.Next()).Take(recipe.EvalSample).ToList();
        int[] Enc(string t) => tok.Encode(t);
        string Evaluate(int step)
        {
            var trained = TeacherForcedAccuracy.Measure(model, Enc, sample.SelectMany(f => f.TrainingPrompts().Select(p => (p, f.Object.Name))), eot);
            var held = TeacherForcedAccuracy.Measure(model, Enc, sample.SelectMany(f => f.HeldOutPrompts().Select(p => (p, f.Object.Name))), eot);
            return $"eval @ {step}: trained facts {trained.TokenAccuracy:P1} (exact {trained.ExactMatch:P1}), held-out paraphrases {held.TokenAccuracy:P1} (exact {held.ExactMatch:P1}) on {sample.Count} facts";
        }
        using (var trainer = new Gpt2Trainer(model, new TrainOptions
        {
            Steps = recipe.Steps, BatchSize = recipe.BatchSize, LearningRate = recipe.LearningRate, WarmupSteps = recipe.WarmupSteps,
            WeightDecay = recipe.WeightDecay, Seed = recipe.Seed,
        }))
            trainer.Run(seqs, Log, Evaluate, recipe.EvalEvery);

        // 4. Save, then measure on everything.
        Gpt2Checkpoint.Save(outDir, config, model.ToHost());
        EditRuntime.IO.AtomicFile.WriteAllText(Path.Combine(outDir, "train_config.json"), recipe.ToJson());
        ModelDirectory.WriteSettings(outDir, prependBos: true); // every training sequence starts with <|endoftext|>
        var acc = MeasureAll(model, ModelDirectory.Load(outDir), world);
        Log($"final: trained facts {acc.Trained.TokenAccuracy:P2} token accuracy (exact {acc.Trained.ExactMatch:P2}) over {acc.Trained.Count} prompts");
        Log($"final: held-out paraphrase templates {acc.HeldOut.TokenAccuracy:P2} (exact {acc.HeldOut.ExactMatch:P2}) over {acc.HeldOut.Count} prompts");
        Log($"final: unedited model on target_new of the eval requests {acc.TargetNew.TokenAccuracy:P2} (exact {acc.TargetNew.ExactMatch:P2}) over {acc.TargetNew.Count}");
        Log($"finished in {(DateTime.UtcNow - started).TotalMinutes:0.0} min");
        log.Close();
        File.Move(logPath + ".tmp", logPath, overwrite: true);
        return acc;
    }


    public sealed record Accuracies((double TokenAccuracy, double ExactMatch, int Count) Trained,
        (double TokenAccuracy, double ExactMatch, int Count) HeldOut, (double TokenAccuracy, double ExactMatch, int Count) TargetNew);

    public static Accuracies MeasureAll(Gpt2Model model, ModelDirectory md, SyntheticWorld world)
    {
        int[] Enc(string t) => md.Tokenizer.Encode(t);
        var trained = TeacherForcedAccuracy.Measure(model, Enc, world.Facts.SelectMany(f => f.TrainingPrompts().Select(p => (p, f.Object.Name))), md.Bos);
        var held = TeacherForcedAccuracy.Measure(model, Enc, world.Facts.SelectMany(f => f.HeldOutPrompts().Select(p => (p, f.Object.Name))), md.Bos);
        var tnew = TeacherForcedAccuracy.Measure(model, Enc, world.EvalRequests.Select(r => (r.Prompt, r.TargetNew.Name)), md.Bos);
        return new Accuracies(trained, held, tnew);
    }
}
