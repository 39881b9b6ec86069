using EditRuntime.Backends;
using EditRuntime.Editing;
using EditRuntime.Models;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>What every host (CLI, Lua, tests) shares: the backend factory, the family of a model, --set parsing, editrt.json.</summary>
public sealed class HostPlumbingTests
{
    [Test]
    public void The_backend_factory_knows_both_backends_and_names_the_choices_for_any_other()
    {
        Assert.That(BackendFactory.Names, Is.EqualTo(new[] { "vulkan", "torch" }));
        Assert.That(BackendFactory.Check(" Torch "), Is.EqualTo("torch"));
        var e = Assert.Throws<ArgumentException>(() => BackendFactory.Create("cuda"));
        Assert.That(e!.Message, Is.EqualTo("unknown backend \"cuda\"; choose one of vulkan, torch"));
        using var torch = BackendFactory.Create("torch");
        Assert.That(torch.Name, Is.EqualTo("torch"));
    }

    [Test]
    public void Set_overrides_are_key_value_pairs_each_key_once()
    {
        var ov = HyperParameterOverrides.Parse(["lr=0.1", "radius = 2", "name=a=b"]);
        Assert.That(ov, Is.EqualTo(new Dictionary<string, string> { ["lr"] = "0.1", ["radius"] = " 2", ["name"] = "a=b" }));
        Assert.That(() => HyperParameterOverrides.Parse(["lr"]), Throws.ArgumentException.With.Message.EqualTo("--set lr: expected key=value."));
        Assert.That(() => HyperParameterOverrides.Parse(["=3"]), Throws.ArgumentException.With.Message.Contains("expected key=value"));
        Assert.That(() => HyperParameterOverrides.Parse(["lr=1", "lr=2"]), Throws.ArgumentException.With.Message.EqualTo("--set lr=2: \"lr\" is set twice."));
    }

    [Test]
    public void Editrt_json_prepend_bos_must_be_a_boolean_and_sets_the_family()
    {
        var dir = Directory.CreateTempSubdirectory("editrt-settings-").FullName;
        try
        {
            foreach (var f in new[] { "config.json", "model.safetensors", "vocab.json", "merges.txt" })
                File.Copy(Path.Combine(EditRuntime.TextTests.TokFixtures.RepoRoot, "models", "editrt-tiny", f), Path.Combine(dir, f));
            Assert.That(ModelDirectory.Load(dir).Family, Is.EqualTo("gpt2"), "no editrt.json: a Hugging Face model");
            ModelDirectory.WriteSettings(dir, prependBos: true);
            var md = ModelDirectory.Load(dir);
            Assert.That((md.PrependBos, md.Family), Is.EqualTo((true, "editrt-tiny")));
            foreach (var bad in new[] { "{\"prepend_bos\": \"true\"}", "{\"prepend_bos\": 1}", "{\"prepend_bos\": null}", "[true]" })
            {
                File.WriteAllText(Path.Combine(dir, ModelDirectory.SettingsFile), bad);
                var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.Load(dir), bad);
                Assert.That(e!.Message, Does.StartWith(Path.Combine(dir, ModelDirectory.SettingsFile) + ": "), bad);
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
