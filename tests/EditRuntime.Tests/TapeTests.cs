using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Vulkan;
using EditRuntime.Compute;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The autograd tape on the Vulkan backend, against gradients derived by hand in float64.</summary>
public sealed class TapeTests : GpuTest
{
    private VulkanBackend Be => new(Device) { PoisonAllocations = true };

    [Test]
    public void Matmul_mul_sum_chain_matches_hand_derived_gradients()
    {
        var be = Be;
        int M = 13, K = 7, N = 11;
        var a = HostReference.RandomNormal(Rng, M * K);
        var b = HostReference.RandomNormal(Rng, K * N);
        var c = HostReference.RandomNormal(Rng, M * N);
        using var ta = be.FromArray(a, M, K);
        using var tb = be.FromArray(b, K, N);
        using var tc = be.FromArray(c, M, N);
        using var tape = new Tape(be);
        var A = tape.Param(ta, name: "A");
        var B = tape.Param(tb, name: "B");
        var C = tape.Constant(tc);
        var L = tape.Sum(tape.Mul(tape.Matmul(A, B), C)); // L = Σ (A·B) ⊙ C
        tape.Backward(L);
        // dL/dA = C·Bᵀ, dL/dB = Aᵀ·C
        var gA = HostReference.Matmul(c, b, null, 1, M, K, N, false, true);
        var gB = HostReference.Matmul(a, c, null, 1, K, N, M, true, false);
        AssertClose(be.ToFloatArray(A.Grad!), gA, 1e-5, "dL/dA");
        AssertClose(be.ToFloatArray(B.Grad!), gB, 1e-5, "dL/dB");
        Assert.That(C.Grad, Is.Null, "constants get no gradient");
        A.ClearGrad(); B.ClearGrad();
    }

    [Test]
    public void A_value_used_twice_accumulates_and_frozen_params_get_nothing()
    {
        var be = Be;
        var x = HostReference.RandomNormal(Rng, 257);
        var w = HostReference.RandomNormal(Rng, 257);
        using var tx = be.FromArray(x, 257);
        using var tw = be.FromArray(w, 257);
        using var tape = new Tape(be);
        var X = tape.Param(tx);
        var W = tape.Param(tw, requiresGrad: false);
        // L = mean(x ⊙ x − 3x + w)  →  dL/dx = (2x − 3) / n
        var L = tape.Mean(tape.Add(tape.Sub(tape.Mul(X, X), tape.Scale(X, 3f)), W));
        tape.Backward(L);
        AssertClose(be.ToFloatArray(X.Grad!), x.Select(v => (2.0 * v - 3) / 257).ToArray(), 1e-5, "dL/dx");
        Assert.That(W.Grad, Is.Null);
        // A second backward accumulates into the leaf gradient.
        tape.Backward(L);
        AssertClose(be.ToFloatArray(X.Grad!), x.Select(v => 2 * (2.0 * v - 3) / 257).ToArray(), 1e-5, "accumulated dL/dx");
        X.ClearGrad();
    }

    [Test]
    public void Row_sum_reshape_and_broadcast_matmul_backward()
    {
        var be = Be;
        var a = HostReference.RandomNormal(Rng, 3 * 5 * 4);
        var w = HostReference.RandomNormal(Rng, 4 * 6);
        using var ta = be.FromArray(a, 3, 5, 4);
        using var tw = be.FromArray(w, 4, 6);
        using var tape = new Tape(be);
        var A = tape.Param(ta); var W = tape.Param(tw);
        // L = Σ rows of (A·W) reshaped to (15, 6): every output element counts once → dL/dA = 1·Wᵀ, dL/dW = Σ_b A_bᵀ·1
        var L = tape.Sum(tape.RowSum(tape.Reshape(tape.Matmul(A, W), 15, 6)));
        tape.Backward(L);
        var ones = Enumerable.Repeat(1f, 15 * 6).ToArray();
        var gA = HostReference.Matmul(ones, w, null, 1, 15, 4, 6, false, true);
        var gW = HostReference.Matmul(a, ones, null, 1, 4, 6, 15, true, false);
        AssertClose(be.ToFloatArray(A.Grad!), gA, 1e-5, "dL/dA");
        AssertClose(be.ToFloatArray(W.Grad!), gW, 1e-5, "dL/dW (broadcast over the batch)");
        A.ClearGrad(); W.ClearGrad();
    }

    [Test]
    public void Backward_checks_its_arguments()
    {
        var be = Be;
        using var t = be.FromArray(new float[6], 2, 3);
        using var tape = new Tape(be);
        var X = tape.Param(t);
        var Y = tape.Scale(X, 2f);
        Assert.Throws<ArgumentException>(() => tape.Backward(Y), "a non-scalar output needs a seed");
        var C = tape.Scale(tape.Constant(t), 2f);
        Assert.Throws<InvalidOperationException>(() => tape.Backward(C), "nothing requires a gradient");
        Assert.That(tape.RecordCount, Is.EqualTo(1), "ops on constants are not recorded");
    }
}
