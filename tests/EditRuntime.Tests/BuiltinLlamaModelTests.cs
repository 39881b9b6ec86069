using EditRuntime.Data;
using EditRuntime.Models;
using EditRuntime.Text;
using EditRuntime.TextTests;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// The committed built-in LLaMA-layout model (models/editrt-tiny-llama, trained by `editrt train` with "arch": "llama")
/// loads as a Hugging Face LLaMA folder, feeds prompts after its BOS, knows its world's facts and agrees across
/// backends; and the tokenizer.json that training writes encodes exactly as the GPT-2 files it came from.
/// </summary>
public sealed class BuiltinLlamaModelTests : GpuTest
{
    private static string Dir => Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny-llama");

    private static LlamaDirectory Load()
    {
        Assert.That(File.Exists(Path.Combine(Dir, "model.safetensors")), Is.True,
            $"the built-in LLaMA-layout model is missing from {Dir}: it is committed; rebuild it with './editrt train --config models/editrt-tiny-llama/train_config.json'");
        var ld = LlamaDirectory.Load(Dir);
        Assert.That(ld.Family, Is.EqualTo(LlamaDirectory.BuiltinFamily));
        Assert.That(ld.Config.NumKeyValueHeads, Is.LessThan(ld.Config.NumAttentionHeads), "grouped-query attention");
        return ld;
    }

    [Test]
    public void A_written_tokenizer_json_encodes_as_the_gpt2_files_it_came_from_and_puts_the_bos_first()
    {
        string gpt2 = Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");
        var reference = Gpt2Tokenizer.FromDirectory(gpt2);
        string dir = Directory.CreateTempSubdirectory("editrt-tokjson-").FullName;
        try
        {
            string path = Path.Combine(dir, "tokenizer.json");
            HfTokenizerWriter.WriteByteLevel(Path.Combine(gpt2, "vocab.json"), Path.Combine(gpt2, "merges.txt"), Gpt2Tokenizer.EndOfText, path);
            var hf = HfTokenizer.Load(path);
            Assert.That(hf.TemplatePrefixIds, Is.EqualTo(new[] { reference.EndOfTextId }), "the BOS before every prompt");
            Assert.That(hf.VocabSize, Is.EqualTo(reference.VocabSize));
            var world = SyntheticWorld.Generate(null, 1234);
            var texts = world.Corpus.Split('\n', StringSplitOptions.RemoveEmptyEntries).Take(3000).ToList();
            // Random text over the characters the vocabulary was not trained on too (every byte has a token).
            for (int i = 0; i < 300; i++)
                texts.Add(new string(Enumerable.Range(0, Rng.Next(1, 40)).Select(_ => (char)Rng.Next(32, 0x2FF)).ToArray()));
            foreach (var t in texts)
            {
                var ids = hf.Encode(t);
                Assert.That(ids, Is.EqualTo(reference.Encode(t)), t);
                Assert.That(hf.Decode(ids), Is.EqualTo(reference.Decode(ids)), t);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void It_knows_trained_facts_and_not_the_counterfactual_targets()
    {
        var ld = Load();
        using var model = new LlamaModel(new EditRuntime.Vulkan.VulkanBackend(Device), ld.Config, ld.Weights);
        var world = SyntheticWorld.Generate(null, 1234);
        // A fixed sample (every 20th fact): the outcome does not depend on the run's seed.
        var facts = world.Facts.Where((_, i) => i % 20 == 0).ToList();
        var trained = TeacherForcedAccuracy.Measure(model, ld, facts.Select(f => (f.TrainingPrompts()[0], f.Object.Name)));
        var held = TeacherForcedAccuracy.Measure(model, ld, facts.Select(f => (f.HeldOutPrompts()[0], f.Object.Name)));
        var tnew = TeacherForcedAccuracy.Measure(model, ld, world.EvalRequests.Where((_, i) => i % 20 == 0).Select(r => (r.Prompt, r.TargetNew.Name)));
        TestContext.Out.WriteLine($"{facts.Count} facts: trained {trained.TokenAccuracy:P1}, held-out {held.TokenAccuracy:P1}, target_new {tnew.TokenAccuracy:P1} (exact {tnew.ExactMatch:P1})");
        Assert.That(trained.TokenAccuracy, Is.GreaterThanOrEqualTo(0.85), "trained facts");
        Assert.That(held.TokenAccuracy, Is.GreaterThanOrEqualTo(0.5), "held-out paraphrases");
        Assert.That(tnew.ExactMatch, Is.LessThanOrEqualTo(0.1), "the unedited model should not already give target_new");
    }

    [Test]
    public void Vulkan_and_torch_score_and_generate_alike()
    {
        var ld = Load();
        using var torch = new EditRuntime.Torch.TorchBackend();
        using var vk = new LlamaModel(new EditRuntime.Vulkan.VulkanBackend(Device), ld.Config, ld.Weights);
        using var th = new LlamaModel(torch, ld.Config, ld.Weights);
        var world = SyntheticWorld.Generate(null, 1234);
        var reqs = world.EvalRequests.Take(16).Select(r => (ld.EncodePrompt(r.Prompt), ld.Tokenizer.Encode(" " + r.TargetNew.Name))).ToList();
        var a = vk.ScoreTargets(reqs);
        var b = th.ScoreTargets(reqs);
        for (int i = 0; i < reqs.Count; i++)
            Assert.That(a[i].LogProb, Is.EqualTo(b[i].LogProb).Within(1e-3 * Math.Max(1, Math.Abs(b[i].LogProb))), $"request {i}");
        foreach (var f in world.Facts.Take(3))
        {
            var prompt = ld.EncodePrompt(f.TrainingPrompts()[0]);
            var x = vk.GenerateGreedy(prompt, 4, ld.StopIds.ToHashSet());
            var y = th.GenerateGreedy(prompt, 4, ld.StopIds.ToHashSet());
            TestContext.Out.WriteLine($"{f.TrainingPrompts()[0]} →{ld.Tokenizer.Decode(x)} | {ld.Tokenizer.Decode(y)} (true: {f.Object.Name})");
            Assert.That(x, Is.EqualTo(y));
        }
    }
}
