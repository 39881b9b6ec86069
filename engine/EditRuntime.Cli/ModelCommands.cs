using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Models;
using EditRuntime.Text;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>generate, logprob, tokenize and world: the model and data commands.</summary>
internal static class ModelCommands
{
    public static int Tokenize(string dir, string text)
    {
        // A LLaMA-family folder's tokenizer.json, else GPT-2's vocab.json + merges.txt (no weights are read).
        ITokenizer tok = LlamaDirectory.IsLlamaFolder(dir) ? HfTokenizer.Load(Path.Combine(dir, LlamaDirectory.TokenizerFileName)) : ModelDirectory.LoadTokenizer(dir);
        var ids = tok.Encode(text);
        Console.WriteLine(string.Join(" ", ids));
        Console.Error.WriteLine($"{ids.Length} tokens: " + string.Join(" | ", ids.Select(i => tok is Gpt2Tokenizer g ? g.TokenText(i) : tok.Decode([i]))));
        return 0;
    }

    /// <summary>Greedy generation on a model folder of either layout: the prompt as the model expects it (GPT-2 built-in:
    /// after &lt;|endoftext|&gt;; LLaMA family: after tokenizer.json's template prefix), a key/value cache, stopping at the
    /// folder's stop ids (GPT-2's &lt;|endoftext|&gt;; config.json's eos_token_id), which end the text and are not printed.</summary>
    public static int Generate(DeviceOptions options, string backendName, string dir, string prompt, int maxTokens)
    {
        var md = ModelFolders.Load(dir);
        var ids = md.EncodePrompt(prompt);
        if (ids.Length == md.PromptPrefixLength) throw new ArgumentException("--prompt: the prompt has no tokens.");
        if (maxTokens < 0) throw new ArgumentException($"--max-tokens: {maxTokens} is negative; give 0 or more.");
        int positions = md.Shape.Positions;
        if (ids.Length > positions)
            throw new ArgumentException($"--prompt: {ids.Length} tokens exceed the model's {positions} positions.");
        // Refused before any work, not cut short silently: past the last position the model has nothing to attend with.
        int most = Math.Max(0, positions - ids.Length + 1);
        if (maxTokens > most)
            throw new ArgumentException($"--max-tokens: {maxTokens} tokens after a prompt of {ids.Length} exceed the model's {positions} positions; at most {most} can follow this prompt.");
        using var be = BackendFactory.Create(backendName, options);
        using var model = ModelFolders.Open(be, md);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var generated = model.GenerateGreedy(ids, maxTokens, md.StopIds);
        double s = sw.Elapsed.TotalSeconds;
        var shown = generated.Length > 0 && md.StopIds.Contains(generated[^1]) ? generated[..^1] : generated;
        Console.WriteLine(prompt + md.Tokenizer.Decode(shown));
        Console.Error.WriteLine($"[{be.Name}: {generated.Length} tokens in {s:0.00} s, {generated.Length / s:0.0} tokens/s, greedy with a key/value cache, {md.Shape.Architecture}]");
        return 0;
    }

    public static int LogProb(DeviceOptions options, string backendName, string dir, string prompt, string target)
    {
        var md = ModelFolders.Load(dir);
        var tok = md.Tokenizer;
        using var be = BackendFactory.Create(backendName, options);
        using var model = ModelFolders.Open(be, md);
        var p = md.EncodePrompt(prompt);
        var t = tok.Encode(target);
        if (p.Length == md.PromptPrefixLength || t.Length == 0) throw new ArgumentException("logprob: --prompt and --target need at least one token each.");
        var score = model.ScoreTargets([(p, t)])[0];
        Console.WriteLine($"log p(target | prompt) = {score.LogProb:0.0000}   (mean NLL {score.MeanNll:0.0000} per token, {t.Length} tokens, argmax accuracy {score.Accuracy:0.00})");
        for (int j = 0; j < t.Length; j++)
            Console.WriteLine($"  {j,3}  {t[j],6}  {Show(tok.Decode([t[j]])),-16} {score.TokenLogProbs[j],10:0.0000}  {(score.ArgmaxHits[j] ? "argmax" : "")}");
        return 0;
    }

    private static string Show(string s) => "\"" + s.Replace("\n", "\\n") + "\"";

    /// <summary>Accuracies of a model trained on the synthetic world (the world seed comes from the folder's train_config.json).</summary>
    public static int Facts(DeviceOptions options, string backendName, string dir)
    {
        var md = ModelFolders.Load(dir);
        var recipePath = Path.Combine(dir, "train_config.json");
        int seed = File.Exists(recipePath) ? TrainRecipe.Load(recipePath).WorldSeed : 1234;
        var world = SyntheticWorld.Generate(null, seed);
        using var be = BackendFactory.Create(backendName, options);
        using var model = ModelFolders.Open(be, md);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var acc = WorldModelTraining.MeasureAll(model, md, world);
        Console.WriteLine($"model {dir} on {be.Name}, world seed {seed}{(md.PromptPrefixLength > 0 ? $", prompts after {md.Tokenizer.Decode(md.EncodePrompt("")).Trim()}" : "")}; teacher-forced token accuracy (exact match):");
        Console.WriteLine($"  objects of trained facts (training templates)   {acc.Trained.TokenAccuracy:P2} ({acc.Trained.ExactMatch:P2}) over {acc.Trained.Count} prompts");
        Console.WriteLine($"  held-out paraphrase templates                   {acc.HeldOut.TokenAccuracy:P2} ({acc.HeldOut.ExactMatch:P2}) over {acc.HeldOut.Count} prompts");
        Console.WriteLine($"  unedited model on target_new (eval requests)    {acc.TargetNew.TokenAccuracy:P2} ({acc.TargetNew.ExactMatch:P2}) over {acc.TargetNew.Count} prompts");
        Console.Error.WriteLine($"[{sw.Elapsed.TotalSeconds:0.0} s]");
        return 0;
    }

    public static int World(string outDir, int seed)
    {
        var world = SyntheticWorld.Generate(null, seed);
        world.WriteAll(outDir);
        Console.WriteLine($"synthetic world (seed {seed}): {world.Facts.Count} facts, {world.TrainRequests.Count} train / {world.EvalRequests.Count} eval edit requests, corpus {world.CorpusSize.Bytes} bytes in {world.CorpusSize.Sentences} sentences → {outDir}");
        foreach (var f in SyntheticWorld.FileNames) Console.WriteLine($"  {Path.Combine(outDir, f)}");
        return 0;
    }
}
