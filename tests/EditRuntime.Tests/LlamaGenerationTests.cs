using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Torch;
using EditRuntime.Validation;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// LlamaModel's key/value cache on random small LLaMA-3 (GQA 4:1) and Qwen2 (GQA 2:1, q/k/v biases, tied head) layouts,
/// on both backends: every cached step's logits against the full recomputation's last position, and greedy generation
/// with the cache against greedy generation by full recomputation.
/// </summary>
public sealed class LlamaGenerationTests : GpuTest
{
    private TorchBackend? _torch;

    [OneTimeSetUp]
    public void OpenTorch() => _torch = new TorchBackend();

    [OneTimeTearDown]
    public void CloseTorch() => _torch?.Dispose();

    private static LlamaConfig Layout(string name) => LlamaModelTests.Layout(name);   // the same small LLaMA-3 / Qwen2 layouts

    // Vulkan with poisoned allocations: a read of a cache row not yet written shows as NaN.
    private IBackend Backend(string name) => name switch
    {
        "vulkan" => new VulkanBackend(Device) { PoisonAllocations = true },
        "torch" => _torch!,
        _ => throw new ArgumentException(name),
    };

    private int[] RandomIds(int n, int vocab) => RandomIds(Rng, n, vocab);
    private static int[] RandomIds(Random rng, int n, int vocab) => Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();

    /// <summary>Greedy equality compares argmaxes: on fresh random weights a near tie (top-2 gap under the ~1e-6 the cache
    /// may differ by) could flip a token, so these tests draw their weights and prompts from fixed seeds whose smallest
    /// gap is printed (1.4e-2 qwen2, 8.2e-2 llama3 at this seed, 10⁴ times the cache's difference), and their outcome is the same on every run.</summary>
    private const int GreedySeed = 20261206;

    [TestCase("llama3", "vulkan"), TestCase("llama3", "torch"), TestCase("qwen2", "vulkan"), TestCase("qwen2", "torch")]
    public void Each_cached_step_equals_the_full_recomputation(string layout, string backend)
    {
        var cfg = Layout(layout);
        using var model = new LlamaModel(Backend(backend), cfg, LlamaCheckpoint.RandomWeights(cfg, Rng.Next(), std: 0.15f));
        var seq = RandomIds(7, cfg.VocabSize).ToList();
        const int steps = 12;
        using var cache = model.NewCache(seq.Count + steps);
        double worst = 0;
        var cached = model.CachedLogits(cache, seq.ToArray());   // prefill
        for (int s = 0; ; s++)
        {
            Assert.That(cache.Length, Is.EqualTo(seq.Count));
            var full = model.NextTokenLogits(seq.ToArray());
            double err = OpValidation.Compare(cached, full);
            worst = Math.Max(worst, err);
            Assert.That(err, Is.LessThan(1e-4), $"{layout} {backend}: logits at position {seq.Count - 1} ({(s == 0 ? "prefill" : $"cached step {s}")})");
            if (s == steps) break;
            int next = Rng.Next(cfg.VocabSize);   // teacher-forced random tokens, not only the argmax
            seq.Add(next);
            cached = model.CachedLogits(cache, [next]);
        }
        TestContext.Out.WriteLine($"{layout} {backend}: prefill of 7 + {steps} cached steps, worst logits rel err against the full recomputation {worst:0.0e+00}");
    }

    /// <summary>Greedy decoding by full recomputation of the whole sequence at every step (no cache).</summary>
    private static (int[] Tokens, double MinGap) GreedyUncached(LlamaModel model, int[] prompt, int maxNew)
    {
        var seq = prompt.ToList();
        var result = new List<int>();
        double minGap = double.PositiveInfinity;
        while (result.Count < maxNew && seq.Count <= model.Config.MaxPositionEmbeddings)
        {
            var logits = model.NextTokenLogits(seq.ToArray());
            int next = Gpt2Model.ArgMax(logits);
            var sorted = logits.OrderByDescending(x => x).ToArray();
            minGap = Math.Min(minGap, sorted[0] - sorted[1]);
            result.Add(next);
            if (seq.Count == model.Config.MaxPositionEmbeddings) break;
            seq.Add(next);
        }
        return (result.ToArray(), minGap);
    }

    [TestCase("llama3", "vulkan"), TestCase("llama3", "torch"), TestCase("qwen2", "vulkan"), TestCase("qwen2", "torch")]
    public void Greedy_generation_with_the_cache_gives_the_tokens_of_full_recomputation(string layout, string backend)
    {
        var cfg = Layout(layout);
        var rng = new Random(GreedySeed);
        using var model = new LlamaModel(Backend(backend), cfg, LlamaCheckpoint.RandomWeights(cfg, rng.Next(), std: 0.15f));
        var prompt = RandomIds(rng, 5, cfg.VocabSize);
        var withCache = model.GenerateGreedy(prompt, 16);
        var (without, gap) = GreedyUncached(model, prompt, 16);
        TestContext.Out.WriteLine($"{layout} {backend}: {string.Join(' ', withCache)} (smallest top-2 logit gap {gap:0.0e+00})");
        Assert.That(withCache, Has.Length.EqualTo(16));
        Assert.That(withCache, Is.EqualTo(without));
    }

    [TestCase("vulkan"), TestCase("torch")]
    public void Generation_runs_to_the_last_position_and_stops_at_a_stop_id(string backend)
    {
        var cfg = Layout("qwen2");   // 64 positions
        var rng = new Random(GreedySeed);
        using var model = new LlamaModel(Backend(backend), cfg, LlamaCheckpoint.RandomWeights(cfg, rng.Next(), std: 0.15f));
        var prompt = RandomIds(rng, 58, cfg.VocabSize);
        int room = LlamaModel.MaxNewTokens(cfg, prompt.Length);
        Assert.That(room, Is.EqualTo(7));
        var tokens = model.GenerateGreedy(prompt, 100);
        Assert.That(tokens, Is.EqualTo(GreedyUncached(model, prompt, 100).Tokens));
        Assert.That(tokens, Has.Length.EqualTo(room), "every position up to the last predicts one token");
        var stopped = model.GenerateGreedy(prompt, 100, stopIds: [tokens[2]]);
        int first = Array.IndexOf(tokens, tokens[2]);
        Assert.That(stopped, Is.EqualTo(tokens[..(first + 1)]), "stops at (and includes) the first stop id");
    }

    [Test]
    public void Cache_misuse_is_refused_by_name()
    {
        var cfg = Layout("llama3");
        using var model = new LlamaModel(_torch!, cfg, LlamaCheckpoint.RandomWeights(cfg, Rng.Next()));
        using var cache = model.NewCache(4);
        model.CachedLogits(cache, [3, 4]);
        Assert.That(Assert.Throws<ArgumentException>(() => model.CachedLogits(cache, [5, 6]))!.Message, Does.Contain("one token at a time"));
        model.CachedLogits(cache, [5]);
        model.CachedLogits(cache, [6]);
        Assert.That(Assert.Throws<InvalidOperationException>(() => model.CachedLogits(cache, [7]))!.Message, Does.Contain("holds 4 positions"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => model.NewCache(cfg.MaxPositionEmbeddings + 1))!.Message, Does.Contain("max_position_embeddings"));
        using var other = new LlamaModel(_torch!, cfg, LlamaCheckpoint.RandomWeights(cfg, 1));
        Assert.That(Assert.Throws<ArgumentException>(() => other.CachedLogits(cache, [1]))!.Message, Does.Contain("another model"));
    }
}
