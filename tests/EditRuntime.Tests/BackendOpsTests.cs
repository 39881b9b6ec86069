using System.Reflection;
using EditRuntime.Backends;
using EditRuntime.Torch;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>Editor op interfaces beside the core contract: both backends implement them, and a backend that does not
/// is refused loudly, naming itself and the interface.</summary>
public sealed class BackendOpsTests : GpuTest
{
    /// <summary>An IBackend that implements nothing else (a proxy: only Name answers).</summary>
    public class CoreOnlyBackend : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? method, object?[]? args) =>
            method?.Name == "get_Name" ? "core-only" : throw new NotImplementedException(method?.Name);
    }

    [Test]
    public void Both_backends_implement_the_editor_op_interfaces()
    {
        using var vulkan = new VulkanBackend(Device);
        using var torch = new TorchBackend();
        foreach (IBackend be in new IBackend[] { vulkan, torch })
        {
            Assert.That(be.Ops<ILoraOps>(), Is.SameAs(be), be.Name);
            Assert.That(be.Ops<IMoEOps>(), Is.SameAs(be), be.Name);
            Assert.That(be.Ops<ILlamaOps>(), Is.SameAs(be), be.Name);
        }
    }

    [Test]
    public void A_backend_without_an_op_interface_is_refused_by_name()
    {
        var be = DispatchProxy.Create<IBackend, CoreOnlyBackend>();
        var e = Assert.Throws<UnsupportedOpException>(() => be.Ops<IMoEOps>())!;
        Assert.That(e.Message, Does.Contain("core-only backend").And.Contain("IMoEOps"));
        Assert.That(e.BackendName, Is.EqualTo("core-only"));
        e = Assert.Throws<UnsupportedOpException>(() => be.Ops<ILoraOps>())!;
        Assert.That(e.Message, Does.Contain("ILoraOps"));
    }

    /// <summary>Bad calls, one per kind of check; each builds its inputs on the backend it is given.</summary>
    private static readonly (string What, Action<IBackend> Call)[] BadCalls =
    [
        ("add shapes", b => b.Add(F(b, 3, 4), F(b, 4, 3))),
        ("gelu dtype", b => b.Gelu(I(b, 3))),
        ("softmax scalar", b => b.Softmax(b.FromArray(new[] { 1f }))),
        ("reshape count", b => b.Reshape(F(b, 3, 4), 5, 2)),
        ("from_array count", b => b.FromArray(new float[5], 2, 3)),
        ("copy_strided dtypes", b => b.CopyStrided(F(b, 4), I(b, 4), 1, 4, 0, 4, 0, 4)),
        ("copy_strided block", b => b.CopyStrided(F(b, 4), F(b, 4), 2, 3, 0, 3, 0, 3)),
        ("transpose12 rank", b => b.Transpose12(F(b, 2, 3, 4))),
        ("row_max empty", b => b.RowMax(F(b, 3, 0))),
        ("row_sum_backward rows", b => b.RowSumBackward(F(b, 2), [3, 4], 1f)),
        ("matmul ranks", b => b.Matmul(F(b, 2, 3, 4), F(b, 2, 4, 5, 1))),
        ("matmul_backward gy", b => b.MatmulBackward(F(b, 3, 4), F(b, 4, 5), F(b, 3, 4))),
        ("bias_add bias", b => b.BiasAdd(F(b, 3, 4), F(b, 5))),
        ("layernorm gamma", b => b.LayerNorm(F(b, 3, 4), F(b, 5), F(b, 4))),
        ("layernorm eps", b => b.LayerNorm(F(b, 3, 4), F(b, 4), F(b, 4), -1f)),
        ("softmax_backward gy", b => b.SoftmaxBackward(F(b, 3, 4), F(b, 4, 3))),
        ("attention q", b => b.CausalAttention(F(b, 2, 3, 4), F(b, 2, 3, 4), F(b, 2, 3, 4), null)),
        ("attention k", b => b.CausalAttention(F(b, 1, 2, 3, 4), F(b, 1, 2, 2, 4), F(b, 1, 2, 3, 4), null)),
        ("attention mask", b => b.CausalAttention(F(b, 1, 2, 3, 4), F(b, 1, 2, 3, 4), F(b, 1, 2, 3, 4), F(b, 1, 2))),
        ("attention gy", b => b.CausalAttentionBackward(F(b, 1, 2, 3, 4), F(b, 1, 2, 3, 4), F(b, 1, 2, 3, 4), null, F(b, 1, 2, 3, 3))),
        ("embedding table", b => b.Embedding(I(b, 3), F(b, 2, 3, 4))),
        ("embedding_backward vocab", b => b.EmbeddingBackward(I(b, 3), F(b, 3, 4), -1)),
        ("cross_entropy targets", b => b.CrossEntropy(F(b, 3, 4), I(b, 2))),
        ("cross_entropy_backward gy", b => b.CrossEntropyBackward(F(b, 3, 4), I(b, 3), F(b, 2))),
        ("adam step", b => { var p = F(b, 4); b.AdamStep(p, F(b, 4), F(b, 4), F(b, 4), new AdamConfig(0.1f), 0); }),
        ("adam beta2", b => b.AdamStep(F(b, 4), F(b, 4), F(b, 4), F(b, 4), new AdamConfig(0.1f, Beta2: 1f), 1)),
        ("adam aliasing", b => { var p = F(b, 4); b.AdamStep(p, F(b, 4), p, F(b, 4), new AdamConfig(0.1f), 1); }),
        ("lora ids", b => b.Ops<ILoraOps>().LoraForward(F(b, 2, 3, 4), F(b, 1, 4, 2), F(b, 1, 2, 5), F(b, 2), 1f)),
        ("lora block", b => b.Ops<ILoraOps>().LoraBackward(F(b, 2, 3, 4), F(b, 1, 4, 2), F(b, 1, 2, 5), I(b, 2), F(b, 2, 3, 5), 1f, 1)),
        ("cluster centres", b => b.Ops<ILoraOps>().ClusterLookup(F(b, 2, 3), F(b, 0, 3), F(b, 0), F(b, 1, 3), I(b, 1, 2))),
        ("moe experts", b => b.Ops<IMoEOps>().MoeRoute(I(b, 3, 2), IMoEOps.MaxExperts + 1)),
        ("moe gate k", b => b.Ops<IMoEOps>().MoeGateTopK(F(b, 3, 4), 5)),
        ("moe gate gWeights", b => b.Ops<IMoEOps>().MoeGateTopKBackward(F(b, 3, 4), 2, F(b, 3, 1))),
        ("grouped offsets", b => b.Ops<IMoEOps>().GroupedMatmul(F(b, 6, 3), F(b, 2, 3, 4), I(b, 2))),
        ("combine position", b => b.Ops<IMoEOps>().MoeCombine(F(b, 6, 4), F(b, 3, 2), F(b, 6))),
        ("rms_norm weight", b => b.Ops<ILlamaOps>().RmsNorm(F(b, 3, 4), F(b, 5))),
        ("rms_norm eps", b => b.Ops<ILlamaOps>().RmsNorm(F(b, 3, 4), F(b, 4), float.NaN)),
        ("rms_norm_backward gy", b => b.Ops<ILlamaOps>().RmsNormBackward(F(b, 3, 4), F(b, 4), F(b, 4, 3))),
        ("rope rank", b => b.Ops<ILlamaOps>().Rope(F(b, 2, 3, 4), F(b, 2), 0)),
        ("rope odd head dimension", b => b.Ops<ILlamaOps>().Rope(F(b, 1, 2, 3, 5), F(b, 2), 0)),
        ("rope invFreq", b => b.Ops<ILlamaOps>().Rope(F(b, 1, 2, 3, 4), F(b, 4), 0)),
        ("rope start", b => b.Ops<ILlamaOps>().Rope(F(b, 1, 2, 3, 4), F(b, 2), -1)),
        ("rope far start", b => b.Ops<ILlamaOps>().Rope(F(b, 1, 2, 3, 4), F(b, 2), (1 << 24) - 2)),
        ("rope offsets dtype", b => b.Ops<ILlamaOps>().Rope(F(b, 2, 2, 3, 4), F(b, 2), 0, F(b, 2))),
        ("rope offsets shape", b => b.Ops<ILlamaOps>().Rope(F(b, 2, 2, 3, 4), F(b, 2), 0, I(b, 3))),
        ("rope_backward invFreq", b => b.Ops<ILlamaOps>().RopeBackward(F(b, 3), F(b, 1, 2, 3, 4), 0)),
        ("silu_mul shapes", b => b.Ops<ILlamaOps>().SiluMul(F(b, 3, 4), F(b, 4, 3))),
        ("silu_mul_backward gy", b => b.Ops<ILlamaOps>().SiluMulBackward(F(b, 3, 4), F(b, 3, 4), F(b, 3))),
    ];

    private static Tensor F(IBackend b, params int[] shape) => b.FromArray(new float[shape.Aggregate(1, (x, d) => x * d)], shape);
    private static Tensor I(IBackend b, params int[] shape) => b.FromArray(new int[shape.Aggregate(1, (x, d) => x * d)], shape);

    [Test]
    public void Both_backends_refuse_bad_calls_with_the_same_exception_and_message()
    {
        using var vulkan = new VulkanBackend(Device);
        using var torch = new TorchBackend();
        var differ = new List<string>();
        foreach (var (what, call) in BadCalls)
        {
            var ev = Assert.Catch<ArgumentException>(() => call(vulkan), $"vulkan: {what}")!;
            var et = Assert.Catch<ArgumentException>(() => call(torch), $"torch: {what}")!;
            TestContext.Out.WriteLine($"{what}: {ev.Message}");
            if (ev.GetType() != et.GetType() || ev.Message != et.Message)
                differ.Add($"{what}:\n  vulkan {ev.GetType().Name}: {ev.Message}\n  torch  {et.GetType().Name}: {et.Message}");
        }
        Assert.That(differ, Is.Empty, string.Join("\n", differ));
    }
}
