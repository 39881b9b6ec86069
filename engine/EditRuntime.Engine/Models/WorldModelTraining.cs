using System.Text.Json;
using System.Text.Json.Serialization;
using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Text;

namespace EditRuntime.Models;

/// <summary>The training recipe of a built-in model (models/NAME/train_config.json).</summary>
public sealed record TrainRecipe
{
    /// <summary>"gpt2" (the default) or "llama": RMSNorm, RoPE, SwiGLU, grouped-query attention, untied head, the
    /// tokenizer as tokenizer.json with a BOS template (the built-in LLaMA-layout model).</summary>
    [JsonPropertyName("arch")] public string Arch { get; init; } = "gpt2";
    [JsonPropertyName("world_seed")] public int WorldSeed { get; init; } = 1234;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 2048;
    [JsonPropertyName("n_positions")] public int NPositions { get; init; } = 64;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 192;
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 4;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 6;
    /// <summary>LLaMA layout only: key/value heads (n_head / num_key_value_heads query heads share one).</summary>
    [JsonPropertyName("num_key_value_heads"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NumKeyValueHeads { get; init; }
    /// <summary>LLaMA layout only: the SwiGLU MLP's width.</summary>
    [JsonPropertyName("intermediate_size"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? IntermediateSize { get; init; }
    /// <summary>LLaMA layout only: RoPE's base (default 10000).</summary>
    [JsonPropertyName("rope_theta"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? RopeTheta { get; init; }
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
            if (r.Arch is not ("gpt2" or "llama")) throw new InvalidDataException($"{path}: \"arch\" must be \"gpt2\" or \"llama\", got \"{r.Arch}\".");
            if (r.Arch == "gpt2" && (r.NumKeyValueHeads ?? r.IntermediateSize ?? (object?)r.RopeTheta) is not null)
                throw new InvalidDataException($"{path}: num_key_value_heads, intermediate_size and rope_theta are for \"arch\": \"llama\"; this recipe trains GPT-2.");
            if (r.Arch == "llama" && (r.NumKeyValueHeads is null || r.IntermediateSize is null))
                throw new InvalidDataException($"{path}: \"arch\": \"llama\" needs num_key_value_heads and intermediate_size.");
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

        // 2. Our byte-level BPE vocabulary (GPT-2: vocab.json + merges.txt; LLaMA layout: the same as tokenizer.json).
        var sw = System.Diagnostics.Stopwatch.StartNew();
        bool llama = recipe.Arch == "llama";
        string bpeDir = llama ? Path.Combine(outDir, ".bpe") : outDir;
        var vocab = BpeTrainer.TrainAndSave(sentences, recipe.VocabSize, bpeDir);
        var tok = Gpt2Tokenizer.FromDirectory(bpeDir);
        int eot = tok.EndOfTextId;
        if (llama)
        {
            HfTokenizerWriter.WriteByteLevel(Path.Combine(bpeDir, "vocab.json"), Path.Combine(bpeDir, "merges.txt"), Gpt2Tokenizer.EndOfText, Path.Combine(outDir, LlamaDirectory.TokenizerFileName));
            Directory.Delete(bpeDir, true);
            Log($"BPE: {tok.VocabSize} tokens ({vocab.Merges.Count} merges) in {sw.Elapsed.TotalSeconds:0.0} s → tokenizer.json (byte-level, {Gpt2Tokenizer.EndOfText} as BOS)");
        }
        else Log($"BPE: {tok.VocabSize} tokens ({vocab.Merges.Count} merges) in {sw.Elapsed.TotalSeconds:0.0} s → vocab.json, merges.txt");
        var seqs = sentences.Select(l => new[] { eot }.Concat(tok.Encode(l)).ToArray()).ToList();
        Log($"tokens: {seqs.Sum(q => q.Length)} in {seqs.Count} sequences (mean {seqs.Average(q => q.Length):0.0}, max {seqs.Max(q => q.Length)})");

        // 3. The model.
        using var model = llama ? NewLlama(be, recipe, tok, init, Log) : NewGpt2(be, recipe, tok, init, Log);

        var rng = new Random(recipe.Seed);
        var sample = world.Facts.OrderBy(_ => rng.Next()).Take(recipe.EvalSample).ToList();
        int[] Enc(string t) => tok.Encode(t);
        string Evaluate(int step)
        {
            var trained = TeacherForcedAccuracy.Measure(model, Enc, sample.SelectMany(f => f.TrainingPrompts().Select(p => (p, f.Object.Name))), eot);
            var held = TeacherForcedAccuracy.Measure(model, Enc, sample.SelectMany(f => f.HeldOutPrompts().Select(p => (p, f.Object.Name))), eot);
            return $"eval @ {step}: trained facts {trained.TokenAccuracy:P1} (exact {trained.ExactMatch:P1}), held-out paraphrases {held.TokenAccuracy:P1} (exact {held.ExactMatch:P1}) on {sample.Count} facts";
        }
        using (var trainer = new ModelTrainer(model, new TrainOptions
        {
            Steps = recipe.Steps, BatchSize = recipe.BatchSize, LearningRate = recipe.LearningRate, WarmupSteps = recipe.WarmupSteps,
            WeightDecay = recipe.WeightDecay, Seed = recipe.Seed,
        }))
            trainer.Run(seqs, Log, Evaluate, recipe.EvalEvery);

        // 4. Save, then measure on everything.
        IModelFolder saved;
        if (model is LlamaModel lm)
        {
            LlamaCheckpoint.Save(outDir, lm.Config, lm.ToHost());
            EditRuntime.IO.AtomicFile.WriteAllText(Path.Combine(outDir, "train_config.json"), recipe.ToJson());
            LlamaDirectory.WriteSettings(outDir);   // marks the built-in family (its BOS is in tokenizer.json's template)
            saved = LlamaDirectory.Load(outDir);
        }
        else
        {
            var g = (Gpt2Model)model;
            Gpt2Checkpoint.Save(outDir, g.Config, g.ToHost());
            EditRuntime.IO.AtomicFile.WriteAllText(Path.Combine(outDir, "train_config.json"), recipe.ToJson());
            ModelDirectory.WriteSettings(outDir, prependBos: true); // every training sequence starts with <|endoftext|>
            saved = ModelDirectory.Load(outDir);
        }
        var acc = MeasureAll(model, saved, world);
        Log($"final: trained facts {acc.Trained.TokenAccuracy:P2} token accuracy (exact {acc.Trained.ExactMatch:P2}) over {acc.Trained.Count} prompts");
        Log($"final: held-out paraphrase templates {acc.HeldOut.TokenAccuracy:P2} (exact {acc.HeldOut.ExactMatch:P2}) over {acc.HeldOut.Count} prompts");
        Log($"final: unedited model on target_new of the eval requests {acc.TargetNew.TokenAccuracy:P2} (exact {acc.TargetNew.ExactMatch:P2}) over {acc.TargetNew.Count}");
        Log($"finished in {(DateTime.UtcNow - started).TotalMinutes:0.0} min");
        log.Close();
        File.Move(logPath + ".tmp", logPath, overwrite: true);
        return acc;
    }


    private static ILanguageModel NewGpt2(IBackend be, TrainRecipe recipe, Gpt2Tokenizer tok, string? init, Action<string> log)
    {
        int eot = tok.EndOfTextId;
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
            log($"initialised from {init}");
        }
        else start = Gpt2Model.RandomWeights(config, recipe.Seed);
        var model = new Gpt2Model(be, config, start);
        log($"model: {config.ParameterCount / 1e6:0.00}M parameters ({config.NLayer} layers, {config.NEmbd} wide, {config.NHead} heads, {config.NPositions} positions, vocab {config.VocabSize}) on {be.Name} ({be.DeviceDescription})");
        return model;
    }

    /// <summary>The LLaMA-layout model of a recipe: LLaMA 3's function (RMSNorm eps 1e-5, SwiGLU, RoPE without scaling,
    /// grouped-query attention, untied head, no biases), BOS and EOS the end-of-text token.</summary>
    public static LlamaConfig LlamaConfigOf(TrainRecipe recipe, int vocabSize, int eot) => new()
    {
        ModelType = "llama", VocabSize = vocabSize, HiddenSize = recipe.NEmbd, IntermediateSize = recipe.IntermediateSize ?? 4 * recipe.NEmbd,
        NumHiddenLayers = recipe.NLayer, NumAttentionHeads = recipe.NHead, NumKeyValueHeads = recipe.NumKeyValueHeads ?? recipe.NHead,
        MaxPositionEmbeddings = recipe.NPositions, RmsNormEps = 1e-5, RopeTheta = recipe.RopeTheta ?? 10000, TieWordEmbeddings = false,
        BosTokenId = eot, EosTokenIds = [eot], TorchDtype = "float32",
    };

    private static ILanguageModel NewLlama(IBackend be, TrainRecipe recipe, Gpt2Tokenizer tok, string? init, Action<string> log)
    {
        var config = LlamaConfigOf(recipe, tok.VocabSize, tok.EndOfTextId);
        config.Validate();
        Dictionary<string, HostTensor> start;
        if (init is not null)
        {
            var (initConfig, initWeights) = LlamaCheckpoint.Load(init);
            if (initConfig.ToJson() != config.ToJson()) throw new ArgumentException($"--init {init}: its config.json differs from this recipe's model.");
            start = initWeights;
            log($"initialised from {init}");
        }
        else start = LlamaCheckpoint.RandomWeights(config, recipe.Seed);
        var model = new LlamaModel(be, config, start);
        log($"model: {config.ParameterCount / 1e6:0.00}M parameters (LLaMA layout: {config.NumHiddenLayers} layers, {config.HiddenSize} wide, {config.NumAttentionHeads} heads / {config.NumKeyValueHeads} key-value heads, SwiGLU {config.IntermediateSize}, {config.MaxPositionEmbeddings} positions, vocab {config.VocabSize}) on {be.Name} ({be.DeviceDescription})");
        return model;
    }

    public sealed record Accuracies((double TokenAccuracy, double ExactMatch, int Count) Trained,
        (double TokenAccuracy, double ExactMatch, int Count) HeldOut, (double TokenAccuracy, double ExactMatch, int Count) TargetNew);

    public static Accuracies MeasureAll(ILanguageModel model, IModelFolder md, SyntheticWorld world)
    {
        var trained = TeacherForcedAccuracy.Measure(model, md, world.Facts.SelectMany(f => f.TrainingPrompts().Select(p => (p, f.Object.Name))));
        var held = TeacherForcedAccuracy.Measure(model, md, world.Facts.SelectMany(f => f.HeldOutPrompts().Select(p => (p, f.Object.Name))));
        var tnew = TeacherForcedAccuracy.Measure(model, md, world.EvalRequests.Select(r => (r.Prompt, r.TargetNew.Name)));
        return new Accuracies(trained, held, tnew);
    }
}
