using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Torch;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The trainer's weight decay: on every matrix but a learned position embedding, on either architecture.</summary>
public sealed class ModelTrainerTests
{
    private static readonly Gpt2Config Gpt2 = new() { VocabSize = 61, NPositions = 16, NEmbd = 32, NLayer = 1, NHead = 4, BosTokenId = 60, EosTokenId = 60 };

    /// <summary>One step from the same weights on the same batch with weight decay 0 and 0.5: the parameters after it.</summary>
    private static (Dictionary<string, float[]> Plain, Dictionary<string, float[]> Decayed) OneStep(IBackend be, Func<ILanguageModel> make, List<int[]> seqs)
    {
        Dictionary<string, float[]> Run(float decay)
        {
            using var model = make();
            using var trainer = new ModelTrainer(model, new TrainOptions { Steps = 1, BatchSize = 4, WarmupSteps = 1, LearningRate = 1e-2f, WeightDecay = decay, Seed = 5 });
            float loss = trainer.TrainStep(seqs);
            Assert.That(float.IsFinite(loss), Is.True);
            return model.Parameters.ToDictionary(kv => kv.Key, kv => be.ToFloatArray(kv.Value));
        }
        return (Run(0f), Run(0.5f));
    }

    [Test]
    public void Gpt2_decays_its_matrices_and_not_the_position_embedding()
    {
        using var be = new TorchBackend();
        var w = Gpt2Model.RandomWeights(Gpt2, 3);
        var seqs = new List<int[]> { new[] { 60, 1, 2, 3, 4 }, new[] { 60, 7, 8, 9 } };
        using (var probe = new Gpt2Model(be, Gpt2, w)) Assert.That(probe.PositionEmbeddingName, Is.EqualTo("wpe.weight"));
        var (plain, decayed) = OneStep(be, () => new Gpt2Model(be, Gpt2, w), seqs);
        Assert.That(decayed["wpe.weight"], Is.EqualTo(plain["wpe.weight"]), "the position embedding takes no decay");
        Assert.That(plain["wpe.weight"], Is.Not.EqualTo(w["wpe.weight"].Data), "it is trained");
        foreach (var name in new[] { "wte.weight", "h.0.mlp.c_fc.weight", "h.0.attn.c_attn.weight" })
            Assert.That(decayed[name], Is.Not.EqualTo(plain[name]), $"{name} is decayed");
        Assert.That(decayed["h.0.ln_1.weight"], Is.EqualTo(plain["h.0.ln_1.weight"]), "vectors take no decay");
    }

    [Test]
    public void Llama_has_no_position_parameter_and_decays_every_matrix()
    {
        using var be = new TorchBackend();
        var cfg = LlamaConfig.SmallLlama3(vocabSize: 61, layers: 1);
        var w = LlamaCheckpoint.RandomWeights(cfg, 3);
        var seqs = new List<int[]> { new[] { 1, 2, 3, 4, 5 }, new[] { 7, 8, 9 } };
        using (var probe = new LlamaModel(be, cfg, w)) Assert.That(probe.PositionEmbeddingName, Is.Null);
        var (plain, decayed) = OneStep(be, () => new LlamaModel(be, cfg, w), seqs);
        foreach (var (name, values) in plain)
        {
            bool matrix = w[name].Shape.Length == 2;
            if (matrix) Assert.That(decayed[name], Is.Not.EqualTo(values), $"{name} is decayed");
            else Assert.That(decayed[name], Is.EqualTo(values), $"{name} (a vector) is not");
        }
    }
}
