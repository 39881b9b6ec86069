using EditRuntime.Backends;
using EditRuntime.Compute;
using EditRuntime.Models;
using EditRuntime.Torch;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// The LLaMA-family ops beyond their validation rows (ValidationTableTests runs those, Vulkan against Torch): the RoPE
/// frequency table against hand-worked values, and RoPE on both backends against a float64 host rotation in Hugging
/// Face's rotate_half layout, far positions and negative offsets included, and undone by its backward.
/// </summary>
public sealed class LlamaOpsTests : GpuTest
{
    private static readonly Llama3RopeScaling Llama31 = new(8, 1, 4, 8192);

    [Test]
    public void Rope_frequencies_are_theta_powers()
    {
        var f = RopeFrequencies.Compute(64, 10000);
        Assert.That(f, Has.Length.EqualTo(32));
        Assert.That(f[0], Is.EqualTo(1f));
        Assert.That(f[1], Is.EqualTo((float)0.7498942093324559));    // 10000^(−2/64)
        Assert.That(f[31], Is.EqualTo((float)1.333521432163324e-4)); // 10000^(−62/64)
    }

    /// <summary>
    /// LLaMA 3.1's table (head dimension 128, rope_theta 500000, factor 8, low 1, high 4, original 8192): wavelengths
    /// below 8192/4 = 2048 keep their frequency, above 8192/1 = 8192 are divided by 8, and between them blend.
    /// </summary>
    [Test]
    public void Rope_frequencies_with_llama3_scaling_match_hand_worked_values()
    {
        var f = RopeFrequencies.Compute(128, 500000, Llama31);
        Assert.That(f, Has.Length.EqualTo(64));
        // i = 0: 500000⁰ = 1, wavelength 2π < 2048: unchanged.
        Assert.That(f[0], Is.EqualTo(1f));
        // i = 20: 500000^(−40/128) = 0.016560440080994446, wavelength 379.4 < 2048: unchanged.
        Assert.That(f[20], Is.EqualTo((float)0.016560440080994446));
        // i = 30: 500000^(−60/128) = 0.0021311195369119653, wavelength 2π/that = 2948.30 in [2048, 8192]:
        // smooth = (8192/2948.30 − 1)/(4 − 1) = 0.5928493, (1 − smooth)·f/8 + smooth·f = 0.6437431·f = 0.0013718935677611381.
        Assert.That(f[30], Is.EqualTo((float)0.0013718935677611381));
        // i = 34: 500000^(−68/128) = 0.0009384738703573801, wavelength 6695.1, smooth = 0.0745266: 0.00017850781276799638.
        Assert.That(f[34], Is.EqualTo((float)0.00017850781276799638));
        // i = 35: 500000^(−70/128) = 0.0007644969883171747, wavelength 8218.7 > 8192: divided by 8.
        Assert.That(f[35], Is.EqualTo((float)(0.0007644969883171747 / 8)));
        // i = 63: 500000^(−126/128) = 2.455140791131609e-06, divided by 8.
        Assert.That(f[63], Is.EqualTo((float)(2.455140791131609e-06 / 8)));
        // Monotone: every frequency below the one before.
        for (int i = 1; i < f.Length; i++) Assert.That(f[i], Is.LessThan(f[i - 1]), $"i = {i}");
    }

    [Test]
    public void Rope_frequencies_refuse_bad_arguments_by_name()
    {
        Assert.That(() => RopeFrequencies.Compute(7, 10000), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rope_frequencies: headDim"));
        Assert.That(() => RopeFrequencies.Compute(8, 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rope_frequencies: theta"));
        Assert.That(() => RopeFrequencies.Compute(8, 10000, Llama31 with { Factor = 0 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rope_scaling.factor"));
        Assert.That(() => RopeFrequencies.Compute(8, 10000, Llama31 with { HighFreqFactor = 1 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rope_scaling.high_freq_factor"));
        Assert.That(() => RopeFrequencies.Compute(8, 10000, Llama31 with { OriginalMaxPositionEmbeddings = 0 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rope_scaling.original_max_position_embeddings"));
    }

    private IBackend Open(string backend) => backend == "torch" ? new TorchBackend() : new VulkanBackend(Device);

    /// <summary>Element i pairs with i + D/2 (not i + 1): a unit vector at i = 0, position 1, frequency 1 → (cos 1 at 0, sin 1 at D/2).</summary>
    [TestCase("torch"), TestCase("vulkan")]
    public void Rope_pairs_each_element_with_the_one_half_a_head_away(string backend)
    {
        using var be = Open(backend);
        var ops = be.Ops<ILlamaOps>();
        const int D = 8;
        var x = new float[D]; x[0] = 1;
        using var xt = be.FromArray(x, 1, 1, 1, D);
        using var f = be.FromArray([1f, 0.5f, 0.25f, 0.125f], D / 2);
        using var y = ops.Rope(xt, f, 1);
        var got = be.ToFloatArray(y);
        var want = new float[D]; want[0] = MathF.Cos(1); want[D / 2] = MathF.Sin(1);
        Assert.That(got, Is.EqualTo(want).Within(1e-6f));
        using var x0 = ops.Rope(xt, f, 0);
        Assert.That(be.ToFloatArray(x0), Is.EqualTo(x), "position 0 is the identity");
    }

    /// <summary>
    /// Against the rotation in float64 at the float32 angles float(pos)·invFreq[i], with positions far beyond 2π (start
    /// up to 2²⁰ with inverse frequencies up to 1, negative offsets included); then the backward (the rotation by −θ at
    /// the same positions) gives back the input.
    /// </summary>
    [TestCase("torch", 0), TestCase("vulkan", 0), TestCase("torch", 1 << 20), TestCase("vulkan", 1 << 20)]
    public void Rope_matches_a_float64_rotation_and_its_backward_undoes_it(string backend, int start)
    {
        using var be = Open(backend);
        var ops = be.Ops<ILlamaOps>();
        const int B = 3, H = 2, T = 9, D = 12;
        foreach (var scaling in new Llama3RopeScaling?[] { null, Llama31 })
        {
            var freq = RopeFrequencies.Compute(D, scaling is null ? 10000 : 500000, scaling);
            var x = HostReference.RandomNormal(Rng, B * H * T * D);
            int[] offsets = [0, -7, 5];
            using var xt = be.FromArray(x, B, H, T, D);
            using var ft = be.FromArray(freq, D / 2);
            using var ot = be.FromArray(offsets, B);
            using var y = ops.Rope(xt, ft, start, ot);
            double err = HostReference.RelativeError(be.ToFloatArray(y), HostRope(x, B, H, T, D, freq, start, offsets));
            TestContext.Out.WriteLine($"{backend} start {start} {(scaling is null ? "theta 10000" : "llama3")}: error {err:0.0e+00} against float64");
            Assert.That(err, Is.LessThan(1e-6), "forward against float64");

            using var back = ops.RopeBackward(ft, y, start, ot);
            double round = HostReference.RelativeError(be.ToFloatArray(back), x.Select(v => (double)v).ToArray());
            Assert.That(round, Is.LessThan(1e-6), "the backward rotates back");

            using var noOffsets = ops.Rope(xt, ft, start);
            double plain = HostReference.RelativeError(be.ToFloatArray(noOffsets), HostRope(x, B, H, T, D, freq, start, [0, 0, 0]));
            Assert.That(plain, Is.LessThan(1e-6), "without offsets");
        }
    }

    /// <summary>y[i] = x[i]·cos θ − x[i + D/2]·sin θ, y[i + D/2] = x[i + D/2]·cos θ + x[i]·sin θ, θ = float(pos)·f[i] in float32.</summary>
    private static double[] HostRope(float[] x, int B, int H, int T, int D, float[] f, int start, int[] offsets)
    {
        var y = new double[x.Length];
        int half = D / 2;
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++)
        {
            float angle = (float)(start + t + offsets[b]) * f[i];
            double c = Math.Cos(angle), s = Math.Sin(angle);
            int lo = ((b * H + h) * T + t) * D + i, hi = lo + half;
            y[lo] = x[lo] * c - x[hi] * s;
            y[hi] = x[hi] * c + x[lo] * s;
        }
        return y;
    }
}
