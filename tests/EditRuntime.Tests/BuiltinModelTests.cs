using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Models;
using EditRuntime.Text;
using EditRuntime.TextTests;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The committed built-in model (models/editrt-tiny) loads, knows its world's facts, and agrees across backends.</summary>
public sealed class BuiltinModelTests : GpuTest
{
    private static string Dir => Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");

    private static ModelDirectory Load()
    {
        Assert.That(File.Exists(Path.Combine(Dir, "model.safetensors")), Is.True,
            $"the built-in model is missing from {Dir}: it is committed; rebuild it with './editrt train --config models/editrt-tiny/train_config.json'");
        var md = ModelDirectory.Load(Dir);
        Assert.That(md.PrependBos, Is.True, "the built-in model was trained with <|endoftext|> before every sequence");
        return md;
    }

    [Test]
    public void It_knows_trained_facts_and_not_the_counterfactual_targets()
    {
        var md = Load();
        var tok = md.Tokenizer;
        using var model = new Gpt2Model(new VulkanBackend(Device), md.Config, md.Weights);
        var world = SyntheticWorld.Generate(null, 1234);
        var facts = world.Facts.OrderBy(_ => Rng.Next()).Take(24).ToList();
        var trained = TeacherForcedAccuracy.Measure(model, tok.Encode, facts.Select(f => (f.TrainingPrompts()[Rng.Next(7)], f.Object.Name)), md.Bos);
        var held = TeacherForcedAccuracy.Measure(model, tok.Encode, facts.Select(f => (f.HeldOutPrompts()[0], f.Object.Name)), md.Bos);
        var tnew = TeacherForcedAccuracy.Measure(model, tok.Encode, world.EvalRequests.Take(24).Select(r => (r.Prompt, r.TargetNew.Name)), md.Bos);
        TestContext.Out.WriteLine($"trained {trained.TokenAccuracy:P1}, held-out {held.TokenAccuracy:P1}, target_new {tnew.TokenAccuracy:P1}");
        Assert.That(trained.TokenAccuracy, Is.GreaterThanOrEqualTo(0.9), "trained facts");
        Assert.That(held.TokenAccuracy, Is.GreaterThanOrEqualTo(0.5), "held-out paraphrases");
        Assert.That(tnew.ExactMatch, Is.LessThanOrEqualTo(0.1), "the unedited model should not already give target_new");
    }

    [Test]
    public void Vulkan_and_torch_generate_the_same_answer()
    {
        var md = Load();
        var tok = md.Tokenizer;
        using var torch = new EditRuntime.Torch.TorchBackend();
        using var vk = new Gpt2Model(new VulkanBackend(Device), md.Config, md.Weights);
        using var th = new Gpt2Model(torch, md.Config, md.Weights);
        var world = SyntheticWorld.Generate(null, 1234);
        foreach (var f in world.Facts.OrderBy(_ => Rng.Next()).Take(3))
        {
            var prompt = md.EncodePrompt(f.TrainingPrompts()[0]);
            var a = vk.GenerateGreedy(prompt, 4, tok.EndOfTextId);
            var b = th.GenerateGreedy(prompt, 4, tok.EndOfTextId);
            TestContext.Out.WriteLine($"{f.TrainingPrompts()[0]} →{tok.Decode(a)} | {tok.Decode(b)} (true: {f.Object.Name})");
            Assert.That(a, Is.EqualTo(b));
        }
    }
}
