using EditRuntime.Backends;
using EditRuntime.Torch;
using EditRuntime.Validation;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The `editrt validate` table under NUnit: every op, forward and backward, Vulkan against libtorch.</summary>
public sealed class ValidationTableTests : GpuTest
{
    private TorchBackend? _torch;

    [OneTimeSetUp]
    public void OpenTorch()
    {
        try { _torch = new TorchBackend(); }
        catch (Exception e) { Assert.Fail("The Torch reference backend could not be loaded: " + e.Message + " — run 'make deps' (libtorch-dev) and 'make build'."); }
    }

    [OneTimeTearDown]
    public void CloseTorch() => _torch?.Dispose();

    private static IEnumerable<TestCaseData> Rows() =>
        OpValidation.Cases.Select(c => new TestCaseData(c.Op).SetName($"Validate_{c.Op}"));

    [TestCaseSource(nameof(Rows))]
    public void Vulkan_matches_torch(string op)
    {
        var c = OpValidation.Cases.Single(x => x.Op == op);
        using var vulkan = new VulkanBackend(Device);
        var r = OpValidation.Validate(vulkan, _torch!, c, Rng);
        TestContext.Out.WriteLine($"{op} {c.ShapeText}: fwd {r.ForwardError:0.0e+00} bwd {r.BackwardError:0.0e+00} limit {c.Limit:0e+00}");
        Assert.That(r.Error, Is.Null, r.Error);
        Assert.That(r.ForwardError, Is.LessThanOrEqualTo(c.Limit), "forward");
        if (c.HasBackward) Assert.That(r.BackwardError, Is.LessThanOrEqualTo(c.Limit), "backward");
    }

    [Test]
    public void A_wrong_kernel_is_caught()
    {
        // The table must be able to fail: a deliberately wrong "reference" (Vulkan with a sign flip) fails.
        var c = new ValidationCase("scale_wrong", [new Input.Floats([37, 129])], (t, x) => t.Scale(x[0], 2f), OpValidation.Elementwise);
        var wrong = new ValidationCase("scale_wrong", c.Inputs, (t, x) => t.Scale(x[0], -2f), c.Limit);
        using var vulkan = new VulkanBackend(Device);
        var host = OpValidation.MakeInputs(c, Rng);
        var a = OpValidation.Run(vulkan, c, host, s => new float[s.Aggregate(1, (p, d) => p * d)]);
        var b = OpValidation.Run(_torch!, wrong, host, s => new float[s.Aggregate(1, (p, d) => p * d)]);
        Assert.That(OpValidation.Compare(a.Output, b.Output), Is.GreaterThan(1.0));
        Assert.That(OpValidation.Compare(new[] { float.NaN, 1f }, new[] { 1f, 1f }), Is.EqualTo(double.PositiveInfinity), "NaN never passes");
    }

    [Test]
    public void Unsupported_ops_name_op_and_backend()
    {
        var e = new UnsupportedOpException("fft", "vulkan", "no kernel");
        Assert.That(e.Message, Is.EqualTo("Op 'fft' is not supported by the vulkan backend: no kernel"));
    }
}
