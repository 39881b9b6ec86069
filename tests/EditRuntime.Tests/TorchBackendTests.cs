using System.Diagnostics;
using System.Reflection;
using EditRuntime.Backends;
using EditRuntime.Compute;
using EditRuntime.Torch;
using NUnit.Framework;

// Not under the EditRuntime.Tests namespace on purpose: its [SetUpFixture] opens a validated Vulkan
// device, and the Torch reference backend must be testable without one.
namespace EditRuntime.TorchTests;

/// <summary>
/// The libtorch reference backend against float64 host loops on odd shapes; its backward ops (torch's
/// autograd) against central finite differences of the float64 host forward; errors; thread count.
/// </summary>
[NonParallelizable]
public sealed class TorchBackendTests
{
    private const double Exactish = 1e-6, Forward = 1e-5, Grad = 2e-5;

    private TorchBackend _torch = null!;
    private Random _rng = null!;

    [OneTimeSetUp]
    public void CreateBackend()
    {
        _torch = new TorchBackend { PoisonAllocations = true };
        TestContext.Progress.WriteLine($"[tests] Torch backend: {_torch.DeviceDescription} (threads from {_torch.ThreadSource}, OpenBLAS pool set: {_torch.BlasThreadsSet})");
    }

    [OneTimeTearDown]
    public void DisposeBackend() => _torch.Dispose();

    [SetUp]
    public void Seed()
    {
        int seed = Environment.GetEnvironmentVariable("EDITRT_TEST_SEED") is string s ? int.Parse(s) : Random.Shared.Next();
        _rng = new Random(seed);
        TestContext.Out.WriteLine($"seed {seed} (rerun with EDITRT_TEST_SEED={seed})");
    }

    // ---------------------------------------------------------------- helpers

    private float[] RandomData(long n, float scale = 1f) => HostReference.RandomNormal(_rng, n, scale);

    private (Tensor T, float[] H) RandomTensor(params int[] shape)
    {
        var h = RandomData(shape.Aggregate(1L, (a, d) => a * d));
        return (_torch.FromArray(h, shape), h);
    }

    private static double[] D(float[] x) => Array.ConvertAll(x, v => (double)v);

    /// <summary>Norm-relative error (as the kernel tests), after checking that nothing is NaN or infinite.</summary>
    private static void AssertClose(float[] output, double[] reference, double limit, string what)
    {
        Assert.That(output, Has.Length.EqualTo(reference.Length), $"{what}: length");
        int bad = output.Count(v => !float.IsFinite(v));
        Assert.That(bad, Is.Zero, $"{what}: {bad} of {output.Length} values are NaN or infinite");
        double err = HostReference.RelativeError(output, reference);
        TestContext.Out.WriteLine($"{what}: relative error {err:0.00e+00} (limit {limit:0e+00})");
        Assert.That(err, Is.LessThanOrEqualTo(limit), $"{what}: relative error {err:e3} > {limit:e0}");
    }

    /// <summary>∂/∂x of Σ gy·f(x) by central differences of a float64 function (h = 1e-5, error ~1e-10).</summary>
    private static double[] FiniteDifferences(Func<double[], double> loss, double[] x, double h = 1e-5)
    {
        var g = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double keep = xp[i];
            xp[i] = keep + h; double up = loss(xp);
            xp[i] = keep - h; double down = loss(xp);
            xp[i] = keep;
            g[i] = (up - down) / (2 * h);
        }
        return g;
    }

    private static double Dot(double[] a, float[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    // float64 host forwards, row-major, last dimension = C.

    private static double[] HostGelu(double[] x) => x.Select(v =>
        0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray();

    private static double[] HostLayerNorm(double[] x, double[] gamma, double[] beta, int c, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / c; r++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < c; j++) mean += x[r * c + j];
            mean /= c;
            for (int j = 0; j < c; j++) variance += (x[r * c + j] - mean) * (x[r * c + j] - mean);
            variance /= c;
            double inv = 1 / Math.Sqrt(variance + eps);
            for (int j = 0; j < c; j++) y[r * c + j] = (x[r * c + j] - mean) * inv * gamma[j] + beta[j];
        }
        return y;
    }

    private static double[] HostSoftmax(double[] x, int c)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / c; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < c; j++) max = Math.Max(max, x[r * c + j]);
            for (int j = 0; j < c; j++) sum += y[r * c + j] = Math.Exp(x[r * c + j] - max);
            for (int j = 0; j < c; j++) y[r * c + j] /= sum;
        }
        return y;
    }

    /// <summary>Causal attention (B, H, T, D): query i sees keys j ≤ i with mask[b, j] ≠ 0; none → output 0.</summary>
    private static double[] HostAttention(double[] q, double[] k, double[] v, float[]? mask, int B, int H, int T, int Dh)
    {
        var o = new double[q.Length];
        double scale = 1 / Math.Sqrt(Dh);
        var s = new double[T];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        {
            int bh = (b * H + h) * T * Dh;
            for (int i = 0; i < T; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j <= i; j++)
                {
                    if (mask != null && mask[b * T + j] == 0) { s[j] = double.NegativeInfinity; continue; }
                    double dot = 0;
                    for (int d = 0; d < Dh; d++) dot += q[bh + i * Dh + d] * k[bh + j * Dh + d];
                    s[j] = dot * scale;
                    max = Math.Max(max, s[j]);
                }
                if (double.IsNegativeInfinity(max)) continue; // no key: output 0
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += s[j] = Math.Exp(s[j] - max);
                for (int j = 0; j <= i; j++)
                for (int d = 0; d < Dh; d++)
                    o[bh + i * Dh + d] += s[j] / sum * v[bh + j * Dh + d];
            }
        }
        return o;
    }

    private static double HostCrossEntropy(double[] logits, int[] targets, int v, int ignore)
    {
        double total = 0; int count = 0;
        for (int n = 0; n < targets.Length; n++)
        {
            if (targets[n] == ignore) continue;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < v; j++) max = Math.Max(max, logits[n * v + j]);
            for (int j = 0; j < v; j++) sum += Math.Exp(logits[n * v + j] - max);
            total += max + Math.Log(sum) - logits[n * v + targets[n]];
            count++;
        }
        return count == 0 ? 0 : total / count;
    }

    // ---------------------------------------------------------------- tensors

    [Test]
    public void Tensors_round_trip_poison_and_describe()
    {
        var f = RandomData(3 * 5 * 7);
        using var tf = _torch.FromArray(f, 3, 5, 7);
        Assert.That(tf.Shape, Is.EqualTo(new[] { 3, 5, 7 }));
        Assert.That(tf.Backend, Is.SameAs(_torch));
        Assert.That(_torch.ToFloatArray(tf), Is.EqualTo(f));
        var ids = new[] { 3, -1, int.MaxValue, int.MinValue, 0, 42 };
        using var ti = _torch.FromArray(ids, 2, 3);
        Assert.That(_torch.ToIntArray(ti), Is.EqualTo(ids));

        using var e = _torch.Empty(DType.F32, 4, 9);
        Assert.That(_torch.ToFloatArray(e), Is.All.NaN, "PoisonAllocations: Empty F32 is NaN");
        using var ei = _torch.Empty(DType.I32, 5);
        Assert.That(_torch.ToIntArray(ei), Is.All.EqualTo(0x7FC00000), "PoisonAllocations: Empty I32 holds NaN's bits");
        using var empty = _torch.Empty(DType.F32, 0, 3);
        Assert.That(_torch.ToFloatArray(empty), Is.Empty);

        // Reshape is a copy: filling it leaves the source as it was.
        using var r = _torch.Reshape(tf, 15, 7);
        Assert.That(r.Shape, Is.EqualTo(new[] { 15, 7 }));
        _torch.Fill(r, 2.5f);
        Assert.That(_torch.ToFloatArray(r), Is.All.EqualTo(2.5f));
        Assert.That(_torch.ToFloatArray(tf), Is.EqualTo(f));
        using var ri = _torch.Reshape(ti, 6);
        Assert.That(ri.DType, Is.EqualTo(DType.I32));
        Assert.That(_torch.ToIntArray(ri), Is.EqualTo(ids));

        Assert.That(_torch.Name, Is.EqualTo("torch"));
        Assert.That(_torch.DeviceDescription, Does.Match(@"^CPU \(libtorch 1\.13\.\d+, \d+ threads?(; OpenBLAS \w+ kernels, \d+ threads?)?\)$"));
        TestContext.Out.WriteLine(_torch.DeviceDescription);
    }

    [Test]
    public void Elementwise_and_reductions_match_float64()
    {
        var (a, ah) = RandomTensor(17, 3, 29);
        var (b, bh) = RandomTensor(17, 3, 29);
        using var _a = a; using var _b = b;
        using (var c = _torch.Add(a, b)) AssertClose(_torch.ToFloatArray(c), ah.Select((v, i) => (double)v + bh[i]).ToArray(), Exactish, "add");
        using (var c = _torch.Sub(a, b)) AssertClose(_torch.ToFloatArray(c), ah.Select((v, i) => (double)v - bh[i]).ToArray(), Exactish, "sub");
        using (var c = _torch.Mul(a, b)) AssertClose(_torch.ToFloatArray(c), ah.Select((v, i) => (double)v * bh[i]).ToArray(), Exactish, "mul");
        using (var c = _torch.Scale(a, -1.7f)) AssertClose(_torch.ToFloatArray(c), ah.Select(v => -1.7 * v).ToArray(), Exactish, "scale");
        using (var y = _torch.FromArray(bh, 17, 3, 29))
        {
            _torch.Axpy(0.3f, a, y);
            AssertClose(_torch.ToFloatArray(y), bh.Select((v, i) => v + 0.3 * ah[i]).ToArray(), Exactish, "axpy");
            Assert.That(_torch.ToFloatArray(a), Is.EqualTo(ah), "axpy leaves x alone");
        }

        using (var s = _torch.Sum(a))
        {
            Assert.That(s.Shape, Is.EqualTo(new[] { 1 }));
            Assert.That(_torch.ToFloatArray(s)[0], Is.EqualTo(ah.Sum(v => (double)v)).Within(1e-3));
        }
        int rows = 17 * 3, cols = 29;
        using (var s = _torch.RowSum(a))
        using (var m = _torch.RowMax(a))
        {
            Assert.That(s.Shape, Is.EqualTo(new[] { 17, 3 }));
            Assert.That(m.Shape, Is.EqualTo(new[] { 17, 3 }));
            var refSum = Enumerable.Range(0, rows).Select(r => Enumerable.Range(0, cols).Sum(j => (double)ah[r * cols + j])).ToArray();
            var refMax = Enumerable.Range(0, rows).Select(r => Enumerable.Range(0, cols).Max(j => (double)ah[r * cols + j])).ToArray();
            AssertClose(_torch.ToFloatArray(s), refSum, Forward, "row_sum");
            Assert.That(_torch.ToFloatArray(m), Is.EqualTo(refMax.Select(v => (float)v).ToArray()), "row_max is exact");
        }
        using (var v1 = _torch.FromArray(new[] { 1f, 2f, 4f }, 3))
        using (var s = _torch.RowSum(v1))
        using (var m = _torch.RowMax(v1))
        {
            Assert.That(s.Shape, Is.EqualTo(new[] { 1 }), "row_sum of a rank-1 input has shape [1]");
            Assert.That(_torch.ToFloatArray(s), Is.EqualTo(new[] { 7f }));
            Assert.That(m.Shape, Is.EqualTo(new[] { 1 }));
            Assert.That(_torch.ToFloatArray(m), Is.EqualTo(new[] { 4f }));
        }

        using var gy1 = _torch.FromArray(new[] { 1.5f }, 1);
        using (var g = _torch.SumBackward(gy1, [4, 5], -2f))
        {
            Assert.That(g.Shape, Is.EqualTo(new[] { 4, 5 }));
            Assert.That(_torch.ToFloatArray(g), Is.All.EqualTo(-3f));
        }
        var gyRows = RandomData(rows);
        using var gyr = _torch.FromArray(gyRows, 17, 3);
        using (var g = _torch.RowSumBackward(gyr, [17, 3, 29], 0.5f))
        {
            var want = new double[rows * cols];
            for (int r = 0; r < rows; r++) for (int j = 0; j < cols; j++) want[r * cols + j] = 0.5 * gyRows[r];
            AssertClose(_torch.ToFloatArray(g), want, Exactish, "row_sum_backward");
        }
        using (var g = _torch.RowSumBackward(gy1, [6], 2f))
            Assert.That(_torch.ToFloatArray(g), Is.All.EqualTo(3f), "row_sum_backward of a rank-1 shape");
    }

    // ---------------------------------------------------------------- matmul

    /// <summary>Flat index of op(X)[b, r, c] in X stored row-major as (batch?, rows, cols); op = transpose if trans.</summary>
    private static long OpIndex(int[] shape, bool trans, int b, int r, int c)
    {
        int sr = shape[^2], sc = shape[^1];
        long off = shape.Length == 3 ? (long)b * sr * sc : 0;
        return trans ? off + (long)c * sc + r : off + (long)r * sc + c;
    }

    // batch 0 = rank-2 A and B; bcast = rank-3 A with rank-2 B.
    [TestCase(0, 37, 19, 53, false, false, false)]
    [TestCase(0, 37, 19, 53, true, false, false)]
    [TestCase(0, 37, 19, 53, false, true, false)]
    [TestCase(0, 1, 65, 3, true, true, false)]
    [TestCase(3, 13, 31, 7, false, false, false)]
    [TestCase(3, 13, 31, 7, true, true, false)]
    [TestCase(4, 9, 11, 23, false, false, true)]
    [TestCase(4, 9, 11, 23, true, true, true)]
    public void Matmul_and_backward_match_float64(int batch, int M, int N, int K, bool transA, bool transB, bool bcast)
    {
        int nb = Math.Max(batch, 1);
        int[] aShape = transA ? [K, M] : [M, K], bShape = transB ? [N, K] : [K, N];
        if (batch > 0) aShape = [batch, .. aShape];
        if (batch > 0 && !bcast) bShape = [batch, .. bShape];
        var (a, ah) = RandomTensor(aShape);
        var (b, bh) = RandomTensor(bShape);
        int[] cShape = batch > 0 ? [batch, M, N] : [M, N];
        var (gy, gh) = RandomTensor(cShape);
        using var _a = a; using var _b = b; using var _g = gy;

        var c = new double[nb * M * N];
        var ga = new double[ah.Length];
        var gb = new double[bh.Length];
        for (int bi = 0; bi < nb; bi++)
        {
            int bb = bcast ? 0 : bi;
            for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
            {
                double s = 0, g = gh[(bi * M + m) * N + n];
                for (int k = 0; k < K; k++)
                {
                    double av = ah[OpIndex(aShape, transA, bi, m, k)], bv = bh[OpIndex(bShape, transB, bb, k, n)];
                    s += av * bv;
                    ga[OpIndex(aShape, transA, bi, m, k)] += g * bv; // dop(A) = dC·op(B)ᵀ
                    gb[OpIndex(bShape, transB, bb, k, n)] += av * g; // dop(B) = op(A)ᵀ·dC, summed over a broadcast batch
                }
                c[(bi * M + m) * N + n] = s;
            }
        }
        string what = $"matmul {Tensor.Format(aShape)}{(transA ? "ᵀ" : "")}·{Tensor.Format(bShape)}{(transB ? "ᵀ" : "")}";
        using var y = _torch.Matmul(a, b, transA, transB);
        Assert.That(y.Shape, Is.EqualTo(cShape));
        AssertClose(_torch.ToFloatArray(y), c, Forward, what);
        var (gA, gB) = _torch.MatmulBackward(a, b, gy, transA, transB);
        using (gA) using (gB)
        {
            Assert.That(gA.Shape, Is.EqualTo(aShape));
            Assert.That(gB.Shape, Is.EqualTo(bShape));
            AssertClose(_torch.ToFloatArray(gA), ga, Forward, what + " dA");
            AssertClose(_torch.ToFloatArray(gB), gb, Forward, what + " dB");
        }
    }

    // ---------------------------------------------------------------- layers

    [Test]
    public void BiasAdd_and_backward_match_float64_and_own_their_memory()
    {
        var (x, xh) = RandomTensor(5, 3, 11);
        var (bias, bh) = RandomTensor(11);
        var (gy, gh) = RandomTensor(5, 3, 11);
        using var _x = x; using var _b = bias; using var _g = gy;
        using var y = _torch.BiasAdd(x, bias);
        AssertClose(_torch.ToFloatArray(y), xh.Select((v, i) => (double)v + bh[i % 11]).ToArray(), Exactish, "bias_add");
        var (gx, gbias) = _torch.BiasAddBackward(x, bias, gy);
        using (gx) using (gbias)
        {
            AssertClose(_torch.ToFloatArray(gx), D(gh), Exactish, "bias_add dx");
            var want = new double[11];
            for (int i = 0; i < gh.Length; i++) want[i % 11] += gh[i];
            AssertClose(_torch.ToFloatArray(gbias), want, Forward, "bias_add dbias");
            // dx = gy in value, but it must be a tensor of its own: writing it leaves gy alone.
            _torch.Fill(gx, 0f);
            Assert.That(_torch.ToFloatArray(gy), Is.EqualTo(gh));
        }
    }

    [Test]
    public void Gelu_matches_float64_and_its_backward_finite_differences()
    {
        var (x, xh) = RandomTensor(7, 13);
        var (gy, gh) = RandomTensor(7, 13);
        using var _x = x; using var _g = gy;
        using var y = _torch.Gelu(x);
        AssertClose(_torch.ToFloatArray(y), HostGelu(D(xh)), Forward, "gelu (tanh form)");
        using var gx = _torch.GeluBackward(x, gy);
        AssertClose(_torch.ToFloatArray(gx), FiniteDifferences(p => Dot(HostGelu(p), gh), D(xh)), Grad, "gelu dx vs finite differences");
    }

    [Test]
    public void LayerNorm_matches_float64_and_its_backward_finite_differences()
    {
        const int C = 19;
        const float eps = 1e-5f;
        var (x, xh) = RandomTensor(3, 5, C);
        for (int i = 0; i < xh.Length; i++) xh[i] = xh[i] * 2 + 0.5f; // an offset and a scale the norm must remove
        using var _x0 = x;
        using var xs = _torch.FromArray(xh, 3, 5, C);
        var (gamma, gmh) = RandomTensor(C);
        var (beta, bth) = RandomTensor(C);
        var (gy, gh) = RandomTensor(3, 5, C);
        using var _gm = gamma; using var _bt = beta; using var _g = gy;
        using var y = _torch.LayerNorm(xs, gamma, beta, eps);
        AssertClose(_torch.ToFloatArray(y), HostLayerNorm(D(xh), D(gmh), D(bth), C, eps), Forward, "layernorm");

        var (gx, ggm, gbt) = _torch.LayerNormBackward(xs, gamma, beta, gy, eps);
        using (gx) using (ggm) using (gbt)
        {
            AssertClose(_torch.ToFloatArray(gx), FiniteDifferences(p => Dot(HostLayerNorm(p, D(gmh), D(bth), C, eps), gh), D(xh)), Grad, "layernorm dx vs finite differences");
            AssertClose(_torch.ToFloatArray(ggm), FiniteDifferences(p => Dot(HostLayerNorm(D(xh), p, D(bth), C, eps), gh), D(gmh)), Grad, "layernorm dgamma vs finite differences");
            AssertClose(_torch.ToFloatArray(gbt), FiniteDifferences(p => Dot(HostLayerNorm(D(xh), D(gmh), p, C, eps), gh), D(bth)), Grad, "layernorm dbeta vs finite differences");
        }
    }

    [Test]
    public void Softmax_matches_float64_and_its_backward_finite_differences()
    {
        const int C = 23;
        var (x, xh) = RandomTensor(6, C);
        for (int i = 0; i < xh.Length; i++) xh[i] *= 4; // peaked rows
        using var _x0 = x;
        using var xs = _torch.FromArray(xh, 6, C);
        var (gy, gh) = RandomTensor(6, C);
        using var _g = gy;
        using var y = _torch.Softmax(xs);
        AssertClose(_torch.ToFloatArray(y), HostSoftmax(D(xh), C), Forward, "softmax");
        using var gx = _torch.SoftmaxBackward(xs, gy);
        AssertClose(_torch.ToFloatArray(gx), FiniteDifferences(p => Dot(HostSoftmax(p, C), gh), D(xh)), Grad, "softmax dx vs finite differences");
    }

    // ---------------------------------------------------------------- sequence

    [TestCase(false)]
    [TestCase(true)]
    public void CausalAttention_matches_float64_and_its_backward_finite_differences(bool padded)
    {
        const int B = 2, H = 3, T = 5, Dh = 7;
        var (q, qh) = RandomTensor(B, H, T, Dh);
        var (k, kh) = RandomTensor(B, H, T, Dh);
        var (v, vh) = RandomTensor(B, H, T, Dh);
        var (gy, gh) = RandomTensor(B, H, T, Dh);
        using var _q = q; using var _k = k; using var _v = v; using var _g = gy;
        // Batch 0: all tokens. Batch 1: key 0 is padding (so query 0 has no key at all), as are keys 2 and 4.
        float[]? mh = padded ? [1, 1, 1, 1, 1, 0, 1, 0, 1, 0] : null;
        using var mask = mh is null ? null : _torch.FromArray(mh, B, T);
        string what = padded ? "attention, padded" : "attention";

        using var y = _torch.CausalAttention(q, k, v, mask);
        var yh = _torch.ToFloatArray(y);
        AssertClose(yh, HostAttention(D(qh), D(kh), D(vh), mh, B, H, T, Dh), Forward, what);

        var (gq, gk, gv) = _torch.CausalAttentionBackward(q, k, v, mask, gy);
        using (gq) using (gk) using (gv)
        {
            var gqh = _torch.ToFloatArray(gq);
            AssertClose(gqh, FiniteDifferences(p => Dot(HostAttention(p, D(kh), D(vh), mh, B, H, T, Dh), gh), D(qh)), Grad, what + " dq vs finite differences");
            AssertClose(_torch.ToFloatArray(gk), FiniteDifferences(p => Dot(HostAttention(D(qh), p, D(vh), mh, B, H, T, Dh), gh), D(kh)), Grad, what + " dk vs finite differences");
            AssertClose(_torch.ToFloatArray(gv), FiniteDifferences(p => Dot(HostAttention(D(qh), D(kh), p, mh, B, H, T, Dh), gh), D(vh)), Grad, what + " dv vs finite differences");
            if (padded)
                for (int h = 0; h < H; h++)
                {
                    int row = ((1 * H + h) * T + 0) * Dh; // batch 1, query 0: no key to attend to
                    Assert.That(yh.AsSpan(row, Dh).ToArray(), Is.All.EqualTo(0f), $"head {h}: the fully masked query outputs 0");
                    Assert.That(gqh.AsSpan(row, Dh).ToArray(), Is.All.EqualTo(0f), $"head {h}: the fully masked query gets no gradient");
                }
        }
    }

    [Test]
    public void Embedding_and_backward_with_repeated_ids_match_float64()
    {
        const int V = 7, C = 5;
        var (table, th) = RandomTensor(V, C);
        int[] idh = [3, 0, 3, 6, 3, 1]; // 3 three times; 2, 4 and 5 never
        using var _t = table;
        using var ids = _torch.FromArray(idh, 2, 3);
        using var y = _torch.Embedding(ids, table);
        Assert.That(y.Shape, Is.EqualTo(new[] { 2, 3, C }));
        var want = idh.SelectMany(i => th.Skip(i * C).Take(C)).ToArray();
        Assert.That(_torch.ToFloatArray(y), Is.EqualTo(want), "rows are copied exactly");

        var (gy, gh) = RandomTensor(2, 3, C);
        using var _g = gy;
        using var gt = _torch.EmbeddingBackward(ids, gy, V);
        Assert.That(gt.Shape, Is.EqualTo(new[] { V, C }));
        var gref = new double[V * C];
        for (int n = 0; n < idh.Length; n++) for (int c = 0; c < C; c++) gref[idh[n] * C + c] += gh[n * C + c];
        AssertClose(_torch.ToFloatArray(gt), gref, Forward, "embedding dtable (scatter-add)");
        Assert.That(_torch.ToFloatArray(gt).Skip(2 * C).Take(C), Is.All.EqualTo(0f), "an id never used gets exactly 0");

        using var bad = _torch.FromArray(new[] { 1, V }, 2);
        var e = Assert.Throws<ArgumentException>(() => _torch.Embedding(bad, table))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain("embedding").And.Contain("index out of range"));
        Assert.That(e.InnerException, Is.InstanceOf<TorchException>());
        using var negative = _torch.FromArray(new[] { 0, -1 }, 2);
        Assert.That(() => _torch.Embedding(negative, table), Throws.ArgumentException.With.Message.Contains("index out of range"),
            "a negative id is an error, not Python-style wrap-around");
        using var gyBad = _torch.FromArray(new float[2 * C], 2, C);
        Assert.That(() => _torch.EmbeddingBackward(negative, gyBad, V), Throws.ArgumentException.With.Message.Contains("index out of range"));
    }

    [Test]
    public void CrossEntropy_with_ignored_positions_and_all_ignored_matches_float64()
    {
        const int N = 9, V = 13, ignore = -100;
        var (logits, lh) = RandomTensor(N, V);
        using var _l = logits;
        int[] th = [4, ignore, 0, 12, ignore, 7, 7, ignore, 1];
        using var targets = _torch.FromArray(th, N);
        using var loss = _torch.CrossEntropy(logits, targets, ignore);
        Assert.That(loss.Shape, Is.EqualTo(new[] { 1 }));
        double want = HostCrossEntropy(D(lh), th, V, ignore);
        Assert.That(_torch.ToFloatArray(loss)[0], Is.EqualTo(want).Within(1e-5 * Math.Abs(want)));

        using var gy = _torch.FromArray(new[] { 0.7f }, 1);
        using var gl = _torch.CrossEntropyBackward(logits, targets, gy, ignore);
        // Analytic: gy·(softmax − onehot)/count on counted rows, 0 on ignored rows.
        var sm = HostSoftmax(D(lh), V);
        int count = th.Count(t => t != ignore);
        var gref = new double[N * V];
        for (int n = 0; n < N; n++)
            if (th[n] != ignore)
                for (int j = 0; j < V; j++) gref[n * V + j] = 0.7 * (sm[n * V + j] - (j == th[n] ? 1 : 0)) / count;
        var glh = _torch.ToFloatArray(gl);
        AssertClose(glh, gref, Forward, "cross_entropy dlogits (analytic)");
        AssertClose(glh, FiniteDifferences(p => 0.7 * HostCrossEntropy(p, th, V, ignore), D(lh)), Grad, "cross_entropy dlogits vs finite differences");
        Assert.That(glh.AsSpan(1 * V, V).ToArray(), Is.All.EqualTo(0f), "an ignored row gets no gradient");

        // Another ignore index, and every position ignored: loss 0 and gradient 0, no NaN.
        using var none = _torch.FromArray(Enumerable.Repeat(5, N).ToArray(), N);
        using var zero = _torch.CrossEntropy(logits, none, ignoreIndex: 5);
        Assert.That(_torch.ToFloatArray(zero), Is.EqualTo(new[] { 0f }));
        using var gzero = _torch.CrossEntropyBackward(logits, none, gy, ignoreIndex: 5);
        Assert.That(_torch.ToFloatArray(gzero), Is.All.EqualTo(0f));

        using var outOfRange = _torch.FromArray(Enumerable.Repeat(V, N).ToArray(), N);
        var e = Assert.Throws<ArgumentException>(() => _torch.CrossEntropy(logits, outOfRange, ignore))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain("out of bounds"));
        using var negative = _torch.FromArray(Enumerable.Repeat(-3, N).ToArray(), N);
        Assert.That(() => _torch.CrossEntropy(logits, negative, ignore), Throws.ArgumentException.With.Message.Contains("Target -3 is out of bounds"));
    }

    // ---------------------------------------------------------------- optimizer

    [TestCase(false, 0f)]
    [TestCase(false, 0.1f)]
    [TestCase(true, 0.1f)]
    public void Adam_two_steps_match_pytorch_formula_in_float64(bool decoupled, float weightDecay)
    {
        var config = new AdamConfig(LearningRate: 0.01f, Beta1: 0.8f, Beta2: 0.95f, Epsilon: 1e-6f, WeightDecay: weightDecay, Decoupled: decoupled);
        int[] shape = [7, 9];
        var ph = RandomData(63);
        using var p = _torch.FromArray(ph, shape);
        using var m = _torch.FromArray(new float[63], shape);
        using var v = _torch.FromArray(new float[63], shape);
        double[] P = D(ph), Mo = new double[63], Vo = new double[63];
        double lr = config.LearningRate, b1 = config.Beta1, b2 = config.Beta2, eps = config.Epsilon, wd = config.WeightDecay;
        for (int step = 1; step <= 2; step++)
        {
            var gh = RandomData(63);
            using var g = _torch.FromArray(gh, shape);
            _torch.AdamStep(p, g, m, v, config, step);
            Assert.That(_torch.ToFloatArray(g), Is.EqualTo(gh), "the gradient is not modified");
            double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
            for (int i = 0; i < 63; i++)
            {
                double gi = gh[i];
                if (wd != 0 && decoupled) P[i] *= 1 - lr * wd;
                if (wd != 0 && !decoupled) gi += wd * P[i];
                Mo[i] = b1 * Mo[i] + (1 - b1) * gi;
                Vo[i] = b2 * Vo[i] + (1 - b2) * gi * gi;
                double denom = Math.Sqrt(Vo[i]) / Math.Sqrt(bc2) + eps;
                P[i] -= lr / bc1 * Mo[i] / denom;
            }
            string what = $"{(decoupled ? "AdamW" : "Adam")} wd={wd:g3} step {step}";
            AssertClose(_torch.ToFloatArray(m), Mo, Forward, what + " m");
            AssertClose(_torch.ToFloatArray(v), Vo, Forward, what + " v");
            AssertClose(_torch.ToFloatArray(p), P, Exactish, what + " param");
            // The step itself (≈ lr per element) to a tight tolerance, not just the parameter.
            var got = _torch.ToFloatArray(p);
            double maxErr = 0;
            for (int i = 0; i < 63; i++) maxErr = Math.Max(maxErr, Math.Abs(got[i] - P[i]));
            Assert.That(maxErr, Is.LessThan(1e-3 * lr), what + ": param error relative to the step size");
        }
    }

    // ---------------------------------------------------------------- errors

    /// <summary>A tensor of some other backend (an IBackend proxy named "alien").</summary>
    private sealed class AlienTensor() : Tensor(DType.F32, [2, 2])
    {
        public override IBackend Backend { get; } = DispatchProxy.Create<IBackend, AlienBackend>();
        public override bool IsDisposed => false;
        public override void Dispose() { }
    }

    public class AlienBackend : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? method, object?[]? args) =>
            method?.Name == "get_Name" ? "alien" : throw new NotSupportedException(method?.Name);
    }

    [Test]
    public void Errors_carry_torch_messages_and_the_backend_survives()
    {
        var (a, ah) = RandomTensor(3, 4);
        var (b, _) = RandomTensor(5, 6);
        using var _a = a; using var _b = b;
        var e = Assert.Throws<ArgumentException>(() => _torch.Matmul(a, b))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain("matmul").And.Contain("mat1 and mat2 shapes cannot be multiplied (3x4 and 5x6)"));
        Assert.That(e.InnerException, Is.InstanceOf<TorchException>());
        Assert.That(((TorchException)e.InnerException!).Status, Is.EqualTo(1), "a c10::Error");
        Assert.That(e.Message, Does.Not.Contain("Exception raised from"), "no C++ backtrace in the message");

        // Batched, with mismatched batch sizes: bmm's own message.
        var (a3, _) = RandomTensor(2, 3, 4);
        var (b3, _) = RandomTensor(3, 4, 5);
        using var _a3 = a3; using var _b3 = b3;
        var e3 = Assert.Throws<ArgumentException>(() => _torch.Matmul(a3, b3))!;
        TestContext.Out.WriteLine(e3.Message);
        Assert.That(e3.InnerException, Is.InstanceOf<TorchException>());

        // The same mismatch through the backward (autograd rebuild) is caught too.
        using var gy = _torch.FromArray(new float[18], 3, 6);
        Assert.Throws<ArgumentException>(() => _torch.MatmulBackward(a, b, gy));

        // Validation in C#: dtype, rank, shape, backend, disposed — each names op and argument.
        using var ids = _torch.FromArray(new[] { 1, 2, 3 }, 3);
        Assert.That(() => _torch.Gelu(ids), Throws.ArgumentException.With.Message.Contains("gelu: x must be F32"));
        Assert.That(() => _torch.Matmul(ids, b), Throws.ArgumentException.With.Message.Contains("matmul: A must be F32"));
        Assert.That(() => _torch.Add(a, b), Throws.ArgumentException.With.Message.Contains("add: a [3, 4] and b [5, 6]"));
        using var scalar = _torch.FromArray(new[] { 1f }, Array.Empty<int>());
        Assert.That(() => _torch.Softmax(scalar), Throws.ArgumentException.With.Message.Contains("softmax: x needs at least one dimension"));
        Assert.That(() => _torch.CausalAttention(a, a, a, null), Throws.ArgumentException.With.Message.Contains("causal_attention: q must be (B, H, T, D)"));
        Assert.That(() => _torch.LayerNorm(a, b, b), Throws.ArgumentException.With.Message.Contains("layernorm: gamma must be [4]"));
        using var twoTargets = _torch.FromArray(new[] { 1, 2 }, 2);
        Assert.That(() => _torch.CrossEntropy(a, twoTargets), Throws.ArgumentException.With.Message.Contains("cross_entropy: targets must be [3]"));
        Assert.That(() => _torch.Add(a, new AlienTensor()), Throws.ArgumentException.With.Message.Contains("add: b is a alien tensor"));
        Assert.That(() => _torch.FromArray(new float[5], 2, 3), Throws.ArgumentException.With.Message.Contains("5 values for shape [2, 3]"));
        Assert.That(() => _torch.AdamStep(a, a, a, a, new AdamConfig(0.1f), 1), Throws.ArgumentException.With.Message.Contains("same tensor"));
        Assert.That(() => _torch.AdamStep(a, a, a, a, new AdamConfig(0.1f), 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        var gone = _torch.FromArray(new[] { 1f }, 1);
        gone.Dispose();
        Assert.That(gone.IsDisposed, Is.True);
        Assert.That(() => _torch.Scale(gone, 2f), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("scale: x"));

        // The C ABI itself: a null handle is a status and a message, not a crash.
        using (var nothing = new TorchHandle())
        {
            Assert.That(Native.et_gelu(nothing, out var none), Is.EqualTo(4));
            none.Dispose();
            Assert.That(Native.LastError(), Is.EqualTo("gelu: x is a null tensor handle"));
        }

        // Still alive and correct.
        using var c = _torch.Matmul(a, a, transA: false, transB: true);
        var want = new double[9];
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) for (int kk = 0; kk < 4; kk++) want[i * 3 + j] += (double)ah[i * 4 + kk] * ah[j * 4 + kk];
        AssertClose(_torch.ToFloatArray(c), want, Forward, "matmul after the errors");
    }

    [Test]
    public void Missing_library_errors_name_the_library_and_how_to_install_libtorch()
    {
        var missing = NativeLoader.MissingShimMessage("/x/libeditrt_torch.so");
        Assert.That(missing, Does.Contain("libeditrt_torch.so was not found at /x/libeditrt_torch.so")
            .And.Contain("make deps").And.Contain("apt-get install libtorch-dev"));
        var reason = NativeLoader.LoaderReason("Unable to load shared library 'x' or one of its dependencies. Consider strace:\n" +
                                               "libtorch_cpu.so: cannot open shared object file: No such file or directory");
        Assert.That(reason, Is.EqualTo("libtorch_cpu.so: cannot open shared object file: No such file or directory"));
        var failed = NativeLoader.LoadFailedMessage("/x/libeditrt_torch.so", reason);
        Assert.That(failed, Does.Contain("libtorch_cpu.so: cannot open shared object file").And.Contain("libtorch-dev").And.Contain("make deps"));
        Assert.That(NativeLoader.ExpectedPath, Does.EndWith("/libeditrt_torch.so"));
        Assert.That(File.Exists(NativeLoader.ExpectedPath), "the build copied the shim next to the test assembly");
    }

    // ---------------------------------------------------------------- threads

    [Test]
    public void Thread_count_comes_from_EDITRT_TORCH_THREADS_then_OMP_NUM_THREADS_then_processor_count()
    {
        Assert.That(TorchBackend.ResolveThreads("3", "5", 8), Is.EqualTo((3, "EDITRT_TORCH_THREADS")));
        Assert.That(TorchBackend.ResolveThreads(null, "5", 8), Is.EqualTo((5, "OMP_NUM_THREADS")));
        Assert.That(TorchBackend.ResolveThreads("", " 4,2 ", 8), Is.EqualTo((4, "OMP_NUM_THREADS")), "first entry of a nested OMP list");
        Assert.That(TorchBackend.ResolveThreads(null, null, 8), Is.EqualTo((8, "processor count")));
        Assert.That(() => TorchBackend.ResolveThreads("two", "5", 8), Throws.ArgumentException.With.Message.Contains("EDITRT_TORCH_THREADS='two'"));
        Assert.That(() => TorchBackend.ResolveThreads("0", null, 8), Throws.ArgumentException);
        Assert.That(() => TorchBackend.ResolveThreads(null, "-1", 8), Throws.ArgumentException.With.Message.Contains("OMP_NUM_THREADS"));

        // Live: the variable reaches libtorch, which reports the count back; then restore.
        int original = _torch.Threads;
        string? saved = Environment.GetEnvironmentVariable(TorchBackend.ThreadsVariable);
        try
        {
            Environment.SetEnvironmentVariable(TorchBackend.ThreadsVariable, "1");
            using var one = new TorchBackend();
            Assert.That(one.Threads, Is.EqualTo(1));
            Assert.That(one.ThreadSource, Is.EqualTo("EDITRT_TORCH_THREADS"));
            Assert.That(one.DeviceDescription, Does.Match(@", 1 thread(; OpenBLAS \w+ kernels, \d+ threads?)?\)$"));
            using var a = one.FromArray(RandomData(64 * 64), 64, 64);
            using var c = one.Matmul(a, a);
            Assert.That(one.ToFloatArray(c).All(float.IsFinite));
            using var three = new TorchBackend(3);
            Assert.That(three.Threads, Is.EqualTo(3));
            Assert.That(three.ThreadSource, Is.EqualTo("constructor argument"));
            Assert.That(three.DeviceDescription, Does.Match(@", 3 threads(; OpenBLAS \w+ kernels, \d+ threads?)?\)$"));
            Assert.That(() => new TorchBackend(0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        }
        finally
        {
            Environment.SetEnvironmentVariable(TorchBackend.ThreadsVariable, saved);
            using var restore = new TorchBackend(original);
        }
    }

    [Test]
    public void OpenBLAS_threads_come_from_EDITRT_BLAS_THREADS_else_the_default_and_reach_OpenBLAS()
    {
        Assert.That(TorchBackend.ResolveBlasThreads("3", 2), Is.EqualTo((3, "EDITRT_BLAS_THREADS")));
        Assert.That(TorchBackend.ResolveBlasThreads(null, 2), Is.EqualTo((2, "default")));
        Assert.That(TorchBackend.ResolveBlasThreads(" ", 2).Source, Is.EqualTo("default"));
        Assert.That(() => TorchBackend.ResolveBlasThreads("x", 2), Throws.ArgumentException.With.Message.Contains("EDITRT_BLAS_THREADS='x'"));
        Assert.That(() => TorchBackend.ResolveBlasThreads("0", 2), Throws.ArgumentException);

        // Live: OpenBLAS reports the count it was given (when torch's BLAS is OpenBLAS, as on Debian with libopenblas0-pthread).
        int original = _torch.Threads;
        string? saved = Environment.GetEnvironmentVariable(TorchBackend.BlasThreadsVariable);
        try
        {
            Environment.SetEnvironmentVariable(TorchBackend.BlasThreadsVariable, "1");
            using var one = new TorchBackend(2);
            var (core, threads) = TorchBackend.BlasInfo();
            Assert.That(one.BlasThreadsSet, Is.True, "torch's BLAS here is OpenBLAS (libopenblas0-pthread)");
            Assert.That(core, Is.Not.Null.And.Not.Empty);
            Assert.That(threads, Is.EqualTo(1));
            Assert.That(one.BlasThreadSource, Is.EqualTo("EDITRT_BLAS_THREADS"));
            Assert.That(TorchBackend.BlasCoreSource, Is.Not.Null);
        }
        finally
        {
            Environment.SetEnvironmentVariable(TorchBackend.BlasThreadsVariable, saved);
            using var restore = new TorchBackend(original);
        }
    }

    [Test]
    public void The_probe_reports_OpenBLAS_s_own_kernel_family_and_a_missing_probe_gives_none()
    {
        string probe = Path.Combine(Path.GetDirectoryName(typeof(TorchBackend).Assembly.Location)!, NativeLoader.BlasProbeFile);
        Assert.That(File.Exists(probe), Is.True, $"{probe} is built beside the shim");
        string? core = NativeLoader.ProbeOpenBlasCore(probe);
        TestContext.Out.WriteLine($"OpenBLAS's own detection on this CPU: {core}; in this process: {TorchBackend.BlasInfo().Core} ({TorchBackend.BlasCoreSource})");
        Assert.That(core, Does.Match(@"^\w+$"));
        Assert.That(NativeLoader.ProbeOpenBlasCore(probe + ".missing"), Is.Null);
    }

    // ---------------------------------------------------------------- timing (run explicitly)

    /// <summary>fp32 matmul GFLOP/s (2·n³ per product) with 2 threads, median of 5 after a warm-up, wall time
    /// around the Matmul call (libtorch is synchronous on the CPU).</summary>
    [Test, Explicit("timing, not a check"), Category("Benchmark")]
    public void Matmul_gflops_with_2_threads()
    {
        int original = _torch.Threads;
        try
        {
            using var torch2 = new TorchBackend(2);
            TestContext.Out.WriteLine($"{torch2.DeviceDescription}, OpenBLAS pool set: {torch2.BlasThreadsSet}");
            foreach (int n in new[] { 256, 512, 1024, 2048 })
            {
                using var a = torch2.FromArray(RandomData((long)n * n), n, n);
                using var b = torch2.FromArray(RandomData((long)n * n), n, n);
                torch2.Matmul(a, b).Dispose();
                var ms = new List<double>();
                for (int r = 0; r < 5; r++)
                {
                    var sw = Stopwatch.StartNew();
                    using var c = torch2.Matmul(a, b);
                    ms.Add(sw.Elapsed.TotalMilliseconds);
                }
                ms.Sort();
                double flop = 2.0 * n * n * n;
                TestContext.Out.WriteLine($"matmul {n}x{n}x{n}: median {ms[2]:0.00} ms = {flop / ms[2] / 1e6:0.0} GFLOP/s (best {flop / ms[0] / 1e6:0.0})");
            }
        }
        finally
        {
            using var restore = new TorchBackend(original);
        }
    }
}
