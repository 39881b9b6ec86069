using EditRuntime.Backends;
using EditRuntime.Vulkan;
using EditRuntime.Compute;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Bias add, GELU, LayerNorm, softmax and Adam on the Vulkan backend against float64 host loops
/// (analytic backward formulas in double), on odd shapes, with every allocation poisoned with NaN.
/// </summary>
public sealed class VulkanLayersTests : GpuTest
{
    private const double Elementwise = 1e-5, Reduction = 1e-4;
    private VulkanBackend B = null!;

    [SetUp]
    public void CreateBackend() => B = new VulkanBackend(Device) { PoisonAllocations = true };

    [TearDown]
    public void DisposeBackend() => B.Dispose();

    // (rows..., C): odd sizes; C = 1; C = 1000; rank 1; enough rows for chunked column sums (600 > 256).
    private static IEnumerable<TestCaseData> Shapes()
    {
        yield return new TestCaseData(new[] { 37, 3, 129 }).SetArgDisplayNames("37x3x129");
        yield return new TestCaseData(new[] { 111, 1 }).SetArgDisplayNames("111x1");
        yield return new TestCaseData(new[] { 3, 1000 }).SetArgDisplayNames("3x1000");
        yield return new TestCaseData(new[] { 129 }).SetArgDisplayNames("129");
        yield return new TestCaseData(new[] { 600, 7 }).SetArgDisplayNames("600x7");
    }

    // ---------------------------------------------------------------- helpers

    private static long Count(int[] shape) => shape.Aggregate(1L, (a, d) => a * d);
    private float[] Randn(long n, float scale = 1f) => HostReference.RandomNormal(Rng, n, scale);
    private Tensor Up(float[] data, params int[] shape) => B.FromArray(data, shape);
    private float[] Down(Tensor t) => B.ToFloatArray(t);

    private static double[] BiasAddRef(float[] x, float[] bias) => x.Select((v, i) => (double)v + bias[i % bias.Length]).ToArray();

    private static double[] ColSumRef(float[] x, int cols)
    {
        var s = new double[cols];
        for (int i = 0; i < x.Length; i++) s[i % cols] += x[i];
        return s;
    }

    private const double K = 0.79788456080286535588, A = 0.044715; // √(2/π)

    private static double GeluRef(double x) => 0.5 * x * (1 + Math.Tanh(K * (x + A * x * x * x)));

    private static double GeluGradRef(double x)
    {
        double t = Math.Tanh(K * (x + A * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * A * x * x);
    }

    /// <summary>LayerNorm forward and backward in double: (y, gx, ggamma, gbeta).</summary>
    private static (double[] Y, double[] Gx, double[] GGamma, double[] GBeta) LayerNormRef(float[] x, float[] gamma, float[] beta, float[] gy, double eps)
    {
        int C = gamma.Length, rows = x.Length / C;
        var y = new double[x.Length]; var gx = new double[x.Length];
        var gg = new double[C]; var gb = new double[C];
        var xhat = new double[C];
        for (int r = 0; r < rows; r++)
        {
            int o = r * C;
            double mean = 0;
            for (int c = 0; c < C; c++) mean += x[o + c];
            mean /= C;
            double var = 0;
            for (int c = 0; c < C; c++) var += (x[o + c] - mean) * (x[o + c] - mean);
            var /= C;
            double rstd = 1 / Math.Sqrt(var + eps);
            double a = 0, b = 0;
            for (int c = 0; c < C; c++)
            {
                xhat[c] = (x[o + c] - mean) * rstd;
                y[o + c] = xhat[c] * gamma[c] + beta[c];
                double g = (double)gy[o + c] * gamma[c];
                a += g; b += g * xhat[c];
                gg[c] += gy[o + c] * xhat[c];
                gb[c] += gy[o + c];
            }
            a /= C; b /= C;
            for (int c = 0; c < C; c++) gx[o + c] = rstd * ((double)gy[o + c] * gamma[c] - a - xhat[c] * b);
        }
        return (y, gx, gg, gb);
    }

    /// <summary>Softmax forward and backward in double: (y, gx).</summary>
    private static (double[] Y, double[] Gx) SoftmaxRef(float[] x, float[] gy, int C)
    {
        var y = new double[x.Length]; var gx = new double[x.Length];
        for (int o = 0; o < x.Length; o += C)
        {
            double m = double.NegativeInfinity, s = 0, dot = 0;
            for (int c = 0; c < C; c++) m = Math.Max(m, x[o + c]);
            for (int c = 0; c < C; c++) s += y[o + c] = Math.Exp(x[o + c] - m);
            for (int c = 0; c < C; c++) { y[o + c] /= s; dot += gy[o + c] * y[o + c]; }
            for (int c = 0; c < C; c++) gx[o + c] = y[o + c] * (gy[o + c] - dot);
        }
        return (y, gx);
    }

    private void CheckLayerNorm(float[] xh, int[] shape, string what)
    {
        int C = shape[^1];
        var gh = Randn(C); var bh = Randn(C); var gyh = Randn(xh.Length);
        using var x = Up(xh, shape); using var gamma = Up(gh, C); using var beta = Up(bh, C); using var gy = Up(gyh, shape);
        var (ry, rgx, rgg, rgb) = LayerNormRef(xh, gh, bh, gyh, 1e-5);
        using var y = B.LayerNorm(x, gamma, beta, 1e-5f);
        Assert.That(y.Shape, Is.EqualTo(shape));
        AssertClose(Down(y), ry, Reduction, $"{what} y");
        var (gx, gg, gb) = B.LayerNormBackward(x, gamma, beta, gy, 1e-5f);
        using (gx) using (gg) using (gb)
        {
            Assert.That(gx.Shape, Is.EqualTo(shape));
            Assert.That(gg.Shape, Is.EqualTo(new[] { C }));
            Assert.That(gb.Shape, Is.EqualTo(new[] { C }));
            AssertClose(Down(gx), rgx, Reduction, $"{what} gx");
            AssertClose(Down(gg), rgg, Reduction, $"{what} ggamma");
            AssertClose(Down(gb), rgb, Reduction, $"{what} gbeta");
        }
    }

    private void CheckSoftmax(float[] xh, int[] shape, string what)
    {
        var gyh = Randn(xh.Length);
        using var x = Up(xh, shape); using var gy = Up(gyh, shape);
        var (ry, rgx) = SoftmaxRef(xh, gyh, shape[^1]);
        using var y = B.Softmax(x);
        Assert.That(y.Shape, Is.EqualTo(shape));
        AssertClose(Down(y), ry, Reduction, $"{what} y");
        using var gx = B.SoftmaxBackward(x, gy);
        AssertClose(Down(gx), rgx, Reduction, $"{what} gx");
    }

    // ---------------------------------------------------------------- bias add

    [TestCaseSource(nameof(Shapes))]
    public void BiasAdd_forward_and_backward_match_float64(int[] shape)
    {
        int C = shape[^1];
        var xh = Randn(Count(shape)); var bh = Randn(C); var gyh = Randn(Count(shape));
        using var x = Up(xh, shape); using var bias = Up(bh, C); using var gy = Up(gyh, shape);
        using var y = B.BiasAdd(x, bias);
        Assert.That(y.Shape, Is.EqualTo(shape));
        AssertClose(Down(y), BiasAddRef(xh, bh), Elementwise, "bias_add y");
        var (gx, gb) = B.BiasAddBackward(x, bias, gy);
        using (gx) using (gb)
        {
            Assert.That(gx.Shape, Is.EqualTo(shape));
            Assert.That(Down(gx), Is.EqualTo(gyh), "gx must be an exact copy of gy");
            Assert.That(gb.Shape, Is.EqualTo(new[] { C }));
            AssertClose(Down(gb), ColSumRef(gyh, C), Reduction, "bias_add gbias");
        }
    }

    // ---------------------------------------------------------------- GELU

    [TestCaseSource(nameof(Shapes))]
    public void Gelu_forward_and_backward_match_float64(int[] shape)
    {
        var xh = Randn(Count(shape), 3f); var gyh = Randn(Count(shape));
        using var x = Up(xh, shape); using var gy = Up(gyh, shape);
        using var y = B.Gelu(x);
        Assert.That(y.Shape, Is.EqualTo(shape));
        AssertClose(Down(y), xh.Select(v => GeluRef(v)).ToArray(), Elementwise, "gelu y");
        using var gx = B.GeluBackward(x, gy);
        AssertClose(Down(gx), xh.Select((v, i) => gyh[i] * GeluGradRef(v)).ToArray(), Elementwise, "gelu gx");
    }

    /// <summary>
    /// GELU and its derivative in double through 0.5·(1 + tanh u) = σ(2u) and 0.5·(1 − tanh² u) = 2·σ(2u)·σ(−2u):
    /// in the negative tail 1 + tanh(u) cancels to nothing even in double (x = −7: 1 + tanh u ≈ 7e−16).
    /// </summary>
    private static (double Y, double Grad) GeluTailRef(double x)
    {
        double u = K * (x + A * x * x * x);
        if (double.IsInfinity(u)) return u > 0 ? (x, 1) : (0, 0);
        double s = 1 / (1 + Math.Exp(-2 * u)), sm = 1 / (1 + Math.Exp(2 * u));
        return (x * s, s + 2 * x * s * sm * K * (1 + 3 * A * x * x));
    }

    [Test]
    public void Gelu_is_accurate_in_both_tails_and_finite_for_huge_inputs()
    {
        // The two double references agree where the tanh form is still accurate.
        for (double t = -4; t <= 4; t += 0.125)
        {
            Assert.That(GeluTailRef(t).Y, Is.EqualTo(GeluRef(t)).Within(1e-12), $"references differ at {t}");
            Assert.That(GeluTailRef(t).Grad, Is.EqualTo(GeluGradRef(t)).Within(1e-12), $"reference gradients differ at {t}");
        }
        // Per element: relative 1e-4, or absolute 1e-30 where the value underflows float anyway.
        float[] xh = [-1e30f, -1e4f, -100f, -30f, -10f, -7f, -5.5f, -3f, -1f, -1e-3f, -1e-30f, 0f, 1e-30f, 1e-3f, 1f, 3f, 5.5f, 10f, 100f, 1e4f, 1e30f];
        using var x = Up(xh, xh.Length);
        using var ones = Up(Enumerable.Repeat(1f, xh.Length).ToArray(), xh.Length);
        using var y = B.Gelu(x);
        using var gx = B.GeluBackward(x, ones);
        var yh = Down(y); var gh = Down(gx);
        for (int i = 0; i < xh.Length; i++)
        {
            var (ry, rg) = GeluTailRef(xh[i]);
            Assert.That(float.IsFinite(yh[i]) && float.IsFinite(gh[i]), $"gelu({xh[i]}) = {yh[i]}, gelu'({xh[i]}) = {gh[i]}");
            Assert.That(Math.Abs(yh[i] - ry), Is.LessThanOrEqualTo(1e-4 * Math.Abs(ry) + 1e-30), $"gelu({xh[i]}) = {yh[i]}, expected {ry}");
            Assert.That(Math.Abs(gh[i] - rg), Is.LessThanOrEqualTo(1e-4 * Math.Abs(rg) + 1e-30), $"gelu'({xh[i]}) = {gh[i]}, expected {rg}");
        }
    }

    // ---------------------------------------------------------------- LayerNorm

    [TestCaseSource(nameof(Shapes))]
    public void LayerNorm_forward_and_backward_match_float64(int[] shape) => CheckLayerNorm(Randn(Count(shape)), shape, "layernorm");

    [Test]
    public void LayerNorm_is_stable_with_a_large_mean_offset()
    {
        int[] shape = [23, 769];
        var xh = Randn(Count(shape)).Select(v => 1000f + v).ToArray();
        CheckLayerNorm(xh, shape, "layernorm 1000 + N(0,1)");
    }

    [Test]
    public void LayerNorm_of_a_constant_row_is_beta()
    {
        int C = 50;
        var gh = Randn(C); var bh = Randn(C);
        using var x = Up(Enumerable.Repeat(3.25f, 2 * C).ToArray(), 2, C);
        using var gamma = Up(gh, C); using var beta = Up(bh, C);
        using var y = B.LayerNorm(x, gamma, beta);
        AssertClose(Down(y), bh.Concat(bh).Select(v => (double)v).ToArray(), Reduction, "layernorm of a constant row");
    }

    // ---------------------------------------------------------------- softmax

    [TestCaseSource(nameof(Shapes))]
    public void Softmax_forward_and_backward_match_float64(int[] shape) => CheckSoftmax(Randn(Count(shape)), shape, "softmax");

    [Test]
    public void Softmax_is_stable_with_large_logits()
    {
        // Rows around +80 (e^x overflows float past 88), around −80 (e^x underflows to 0), and mixed ±80.
        int rows = 9, C = 129;
        var n = rows * C;
        var noise = Randn(n, 5f);
        var xh = new float[n];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < C; c++)
                xh[r * C + c] = (r % 3 == 0 ? 80f : r % 3 == 1 ? -80f : (c % 2 == 0 ? 80f : -80f)) + noise[r * C + c];
        CheckSoftmax(xh, [rows, C], "softmax ±80");
    }

    // ---------------------------------------------------------------- threads per row

    [TestCase(1)]
    [TestCase(8)]
    [TestCase(32)]
    [TestCase(256)]
    public void Row_ops_match_float64_for_every_threads_per_row(int maxThreads)
    {
        // The device type picks the default (32 on lavapipe); the GPU default of 256 is checked here too.
        B.MaxRowThreads = maxThreads;
        foreach (var shape in new[] { new[] { 5, 2100 }, new[] { 7, 129 }, new[] { 9, 3 } })
        {
            string what = $"threads ≤ {maxThreads} ({B.RowThreadsFor(shape[^1])}), {Tensor.Format(shape)}";
            CheckLayerNorm(Randn(Count(shape)), shape, "layernorm " + what);
            CheckSoftmax(Randn(Count(shape)), shape, "softmax " + what);
        }
    }

    // ---------------------------------------------------------------- more rows than one grid dimension holds

    [Test]
    public void Row_ops_cover_more_than_65535_rows()
    {
        int[] shape = [66_000, 2];
        Assert.That(shape[0], Is.GreaterThan((int)Device.Info.MaxWorkgroupCount[0]), "this device has a larger grid: the test no longer crosses it");
        CheckLayerNorm(Randn(Count(shape)), shape, "layernorm 66000 rows");
        CheckSoftmax(Randn(Count(shape)), shape, "softmax 66000 rows");
    }

    // ---------------------------------------------------------------- column sums

    [Test]
    public void Column_sums_are_deterministic()
    {
        int[] shape = [1500, 33];
        var xh = Randn(Count(shape)); var gyh = Randn(Count(shape)); var g = Randn(33); var b = Randn(33);
        using var x = Up(xh, shape); using var gy = Up(gyh, shape); using var gamma = Up(g, 33); using var beta = Up(b, 33);
        float[] Run()
        {
            var (gx, gg, gb) = B.LayerNormBackward(x, gamma, beta, gy);
            var (gx2, gbias) = B.BiasAddBackward(x, beta, gy);
            var all = Down(gx).Concat(Down(gg)).Concat(Down(gb)).Concat(Down(gbias)).ToArray();
            foreach (var t in new[] { gx, gg, gb, gx2, gbias }) t.Dispose();
            return all;
        }
        var first = Run();
        Assert.That(Run(), Is.EqualTo(first), "two runs differ");
    }

    [Test]
    public void No_rows_give_zero_parameter_gradients()
    {
        int C = 5;
        using var x = Up(new float[0], 0, C); using var gy = Up(new float[0], 0, C);
        using var gamma = Up(Randn(C), C); using var beta = Up(Randn(C), C);
        var (gx, gb) = B.BiasAddBackward(x, beta, gy);
        using (gx) using (gb)
        {
            Assert.That(gx.Shape, Is.EqualTo(new[] { 0, C }));
            Assert.That(Down(gb), Is.EqualTo(new float[C]));
        }
        var (lgx, lgg, lgb) = B.LayerNormBackward(x, gamma, beta, gy);
        using (lgx) using (lgg) using (lgb)
        {
            Assert.That(lgx.Shape, Is.EqualTo(new[] { 0, C }));
            Assert.That(Down(lgg), Is.EqualTo(new float[C]));
            Assert.That(Down(lgb), Is.EqualTo(new float[C]));
        }
        using var y = B.LayerNorm(x, gamma, beta);
        using var s = B.Softmax(x);
        Assert.That(y.Shape, Is.EqualTo(new[] { 0, C }));
        Assert.That(s.Shape, Is.EqualTo(new[] { 0, C }));
    }

    // ---------------------------------------------------------------- Adam

    [TestCase(false, 0.1f, TestName = "Adam_with_L2_weight_decay_three_steps_match_float64")]
    [TestCase(false, 0f, TestName = "Adam_without_weight_decay_three_steps_match_float64")]
    [TestCase(true, 0.1f, TestName = "AdamW_three_steps_match_float64")]
    public void Adam_steps_match_float64(bool decoupled, float weightDecay)
    {
        int[] shape = [37, 129];
        int n = (int)Count(shape);
        var cfg = new AdamConfig(0.05f, Beta1: 0.9f, Beta2: 0.999f, Epsilon: 1e-8f, WeightDecay: weightDecay, Decoupled: decoupled);
        var ph = Randn(n);
        using var p = Up(ph, shape);
        using var m = Up(new float[n], shape);
        using var v = Up(new float[n], shape);
        double[] P = ph.Select(x => (double)x).ToArray(), M = new double[n], V = new double[n];
        double lr = cfg.LearningRate, b1 = cfg.Beta1, b2 = cfg.Beta2, eps = cfg.Epsilon, wd = cfg.WeightDecay;
        for (int step = 1; step <= 3; step++)
        {
            var gh = Randn(n);
            using var g = Up(gh, shape);
            B.AdamStep(p, g, m, v, cfg, step);
            // PyTorch's _single_tensor_adam, in double.
            double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
            for (int i = 0; i < n; i++)
            {
                double gi = gh[i];
                if (decoupled) P[i] *= 1 - lr * wd;
                else gi += wd * P[i];
                M[i] = b1 * M[i] + (1 - b1) * gi;
                V[i] = b2 * V[i] + (1 - b2) * gi * gi;
                double denom = Math.Sqrt(V[i]) / Math.Sqrt(bc2) + eps;
                P[i] -= lr / bc1 * M[i] / denom;
            }
            AssertClose(Down(p), P, Elementwise, $"step {step} param");
            AssertClose(Down(m), M, Elementwise, $"step {step} m");
            AssertClose(Down(v), V, Elementwise, $"step {step} v");
            Assert.That(Down(g), Is.EqualTo(gh), "the grad tensor must not change");
        }
    }

    // ---------------------------------------------------------------- argument checks

    [Test]
    public void Wrong_shapes_and_dtypes_name_the_op_and_argument()
    {
        using var x = Up(Randn(20), 4, 5);
        using var v5 = Up(Randn(5), 5);
        using var v4 = Up(Randn(4), 4);
        using var x45 = Up(Randn(20), 5, 4);
        using var ints = B.FromArray(new int[5], 5);
        using var scalar = Up(new[] { 1f });
        // An ArgumentException or a subclass (ArgumentOutOfRangeException for a step out of range): the checks are OpChecks', shared with Torch.
        void Expect(TestDelegate code, string op, string arg) =>
            Assert.That(code, Throws.InstanceOf<ArgumentException>().With.Message.Contains(op + ":").And.Message.Contains(arg), $"{op} / {arg}");

        Expect(() => B.BiasAdd(x, v4), "bias_add", "bias");
        Expect(() => B.BiasAdd(x, ints), "bias_add", "bias");
        Expect(() => B.BiasAdd(scalar, v5), "bias_add", "scalar");
        Expect(() => B.BiasAddBackward(x, v5, x45), "bias_add_backward", "gy");
        Expect(() => B.BiasAddBackward(x, v4, x), "bias_add_backward", "bias");
        Expect(() => B.Gelu(ints), "gelu", "x");
        Expect(() => B.GeluBackward(x, x45), "gelu_backward", "gy");
        Expect(() => B.LayerNorm(x, v4, v5), "layernorm", "gamma");
        Expect(() => B.LayerNorm(x, v5, v4), "layernorm", "beta");
        Expect(() => B.LayerNorm(x, v5, v5, -1f), "layernorm", "eps");
        Expect(() => B.LayerNorm(x, v5, v5, float.NaN), "layernorm", "eps");
        Expect(() => B.LayerNormBackward(x, v5, v5, x45), "layernorm_backward", "gy");
        Expect(() => B.LayerNormBackward(x, ints, v5, x), "layernorm_backward", "gamma");
        Expect(() => B.Softmax(ints), "softmax", "x");
        Expect(() => B.SoftmaxBackward(x, x45), "softmax_backward", "gy");
        Assert.That(() => B.MaxRowThreads = 48, Throws.ArgumentException.With.Message.Contains("MaxRowThreads"));
        Assert.That(() => B.MaxRowThreads = 2048, Throws.ArgumentException.With.Message.Contains("MaxRowThreads"));
        var cfg = new AdamConfig(1e-3f);
        Expect(() => B.AdamStep(x, x45, x, x, cfg, 1), "adam_step", "grad");
        Expect(() => B.AdamStep(x, x, x45, x, cfg, 1), "adam_step", "m");
        Expect(() => B.AdamStep(x, x, x, x45, cfg, 1), "adam_step", "v");
        Expect(() => B.AdamStep(x, x, x, ints, cfg, 1), "adam_step", "v");
        Expect(() => B.AdamStep(x, x, x, x, cfg, 0), "adam_step", "step");
        Expect(() => B.AdamStep(x, x, x, x, cfg with { Beta2 = 1f }, 1), "adam_step", "beta2");
        Expect(() => B.AdamStep(x, x, x, x, cfg with { LearningRate = float.NaN }, 1), "adam_step", "learning rate");
    }
}
