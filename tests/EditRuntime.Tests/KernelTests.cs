using EditRuntime.Compute;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The first kernels against float64 host loops, on odd sizes, with outputs poisoned with NaN.</summary>
public sealed class KernelTests : GpuTest
{
    private const double Elementwise = 1e-5, Reduction = 1e-5, MatmulLimit = 1e-5;

    [TestCase(1)]
    [TestCase(255)]
    [TestCase(100_003)]
    public void Fill_writes_every_element(int n)
    {
        using var x = Poisoned(n);
        float v = (float)Rng.NextDouble() * 10 - 5;
        Ops.Fill(x, v);
        Assert.That(x.ToArray(), Is.All.EqualTo(v));
    }

    [Test]
    public void Copy_is_exact()
    {
        using var src = RandomTensor(127, 255);
        using var dst = Poisoned(127, 255);
        Ops.Copy(src, dst);
        Assert.That(dst.ToArray(), Is.EqualTo(src.ToArray()));
    }

    [TestCase("add")]
    [TestCase("mul")]
    public void Binary_matches_float64(string op)
    {
        using var a = RandomTensor(127, 255, 3);
        using var b = RandomTensor(127, 255, 3);
        using var c = Poisoned(127, 255, 3);
        if (op == "add") Ops.Add(a, b, c); else Ops.Mul(a, b, c);
        var ah = a.ToArray(); var bh = b.ToArray();
        var reference = ah.Select((v, i) => op == "add" ? (double)v + bh[i] : (double)v * bh[i]).ToArray();
        AssertClose(c.ToArray(), reference, Elementwise, op);
    }

    [Test]
    public void Add_in_place_aliases_its_input()
    {
        using var a = RandomTensor(1001);
        using var b = RandomTensor(1001);
        var ah = a.ToArray(); var bh = b.ToArray();
        Ops.Add(a, b, a);
        AssertClose(a.ToArray(), ah.Select((v, i) => (double)v + bh[i]).ToArray(), Elementwise, "a += b");
    }

    [Test]
    public void Scale_matches_float64()
    {
        using var x = RandomTensor(63, 77);
        using var y = Poisoned(63, 77);
        float alpha = -1.7f;
        Ops.Scale(x, alpha, y);
        AssertClose(y.ToArray(), x.ToArray().Select(v => (double)alpha * v).ToArray(), Elementwise, "scale");
    }

    [TestCase(127, 255)]
    [TestCase(3, 1000)]
    [TestCase(300, 7)]
    [TestCase(1, 1)]
    public void Row_reductions_match_float64(int rows, int cols)
    {
        using var x = RandomTensor(rows, cols);
        using var sum = Poisoned(rows);
        using var max = Poisoned(rows);
        Ops.RowSum(x, sum);
        Ops.RowMax(x, max);
        var h = x.ToArray();
        var refSum = new double[rows];
        var refMax = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0, m = double.NegativeInfinity;
            for (int c = 0; c < cols; c++) { s += h[r * cols + c]; m = Math.Max(m, h[r * cols + c]); }
            refSum[r] = s; refMax[r] = m;
        }
        AssertClose(sum.ToArray(), refSum, Reduction, "row_sum");
        AssertClose(max.ToArray(), refMax, Reduction, "row_max");
    }

    [Test]
    public void Row_max_propagates_nan()
    {
        var h = HostReference.RandomNormal(Rng, 4 * 300);
        h[2 * 300 + 17] = float.NaN;
        using var x = GpuTensor.FromArray(Device, h, 4, 300);
        using var y = Poisoned(4);
        Ops.Fill(y, 0);
        Ops.RowMax(x, y);
        var r = y.ToArray();
        Assert.That(float.IsNaN(r[2]), Is.True, "a NaN in row 2 must give NaN");
        Assert.That(r.Where((_, i) => i != 2).All(float.IsFinite), Is.True);
    }

    // M, N, K, batch: odd sizes (scalar path) and multiples of 4 that are not multiples of the 64x64 tile (vec4 path).
    private static readonly int[][] MatmulShapes =
    {
        new[] { 127, 255, 63, 1 },
        new[] { 33, 17, 129, 3 },
        new[] { 1, 1, 1, 1 },
        new[] { 132, 68, 36, 2 },
        new[] { 4, 260, 4, 1 },
    };

    private static IEnumerable<TestCaseData> MatmulCases()
    {
        foreach (var s in MatmulShapes)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    yield return new TestCaseData(s[0], s[1], s[2], s[3], ta, tb)
                        .SetName($"Matmul_{s[0]}x{s[1]}x{s[2]}_batch{s[3]}_{(ta ? "At" : "A")}{(tb ? "Bt" : "B")}");
    }

    [TestCaseSource(nameof(MatmulCases))]
    public void Matmul_matches_float64(int M, int N, int K, int batch, bool transA, bool transB)
    {
        using var a = RandomTensor(batch, transA ? K : M, transA ? M : K);
        using var b = RandomTensor(batch, transB ? N : K, transB ? K : N);
        using var c = Poisoned(batch, M, N);
        Ops.Matmul(a, b, c, transA, transB);
        var reference = HostReference.Matmul(a.ToArray(), b.ToArray(), null, batch, M, N, K, transA, transB);
        AssertClose(c.ToArray(), reference, MatmulLimit, $"matmul {M}x{N}x{K} batch {batch} transA={transA} transB={transB}");
    }

    [TestCase(127, 255, 63)]
    [TestCase(132, 68, 36)]
    public void Matmul_alpha_beta_accumulates(int M, int N, int K)
    {
        using var a = RandomTensor(M, K);
        using var b = RandomTensor(K, N);
        using var c = RandomTensor(M, N);
        var c0 = c.ToArray();
        Ops.Matmul(a, b, c, alpha: 0.5f, beta: -2f);
        var reference = HostReference.Matmul(a.ToArray(), b.ToArray(), c0, 1, M, N, K, false, false, 0.5, -2);
        AssertClose(c.ToArray(), reference, MatmulLimit, "alpha·A·B + beta·C");
    }

    [Test]
    public void Matmul_batch_beyond_the_workgroup_count_limit()
    {
        int batch = (int)Device.Info.MaxWorkgroupCount[2] + 7;
        if (batch > 200_000) Assert.Ignore($"max workgroup count z is {batch - 7}: too large a batch to test quickly");
        using var a = RandomTensor(batch, 3, 2);
        using var b = RandomTensor(batch, 2, 3);
        using var c = Poisoned(batch, 3, 3);
        Ops.Matmul(a, b, c);
        var reference = HostReference.Matmul(a.ToArray(), b.ToArray(), null, batch, 3, 3, 2, false, false);
        AssertClose(c.ToArray(), reference, MatmulLimit, $"matmul batch {batch}");
    }

    [Test]
    public void Matmul_rows_beyond_one_grid_are_done_in_blocks()
    {
        int M = (int)Device.Info.MaxWorkgroupCount[1] * 64 + 13; // 64-row tiles: one more block than a grid holds
        if ((long)M * 8 * 4 > (long)Device.Info.MaxMemoryAllocationSize) Assert.Fail($"{M} rows do not fit one allocation");
        var ah = HostReference.RandomNormal(Rng, (long)M * 4);
        var bh = HostReference.RandomNormal(Rng, 4 * 8);
        using var a = GpuTensor.FromArray(Device, ah, M, 4);
        using var b = GpuTensor.FromArray(Device, bh, 4, 8);
        using var c = Poisoned(M, 8);
        Ops.Matmul(a, b, c);
        var got = c.ToArray();
        // Check the last rows (second block) and a sample of the first block against float64.
        foreach (int m in new[] { 0, 1, M / 2, M - 14, M - 13, M - 1 })
            for (int n = 0; n < 8; n++)
            {
                double r = 0;
                for (int k = 0; k < 4; k++) r += (double)ah[(long)m * 4 + k] * bh[k * 8 + n];
                Assert.That(got[(long)m * 8 + n], Is.EqualTo(r).Within(1e-4 * (1 + Math.Abs(r))), $"C[{m}, {n}]");
            }
        Assert.That(got.All(float.IsFinite), Is.True, "every element written");
    }

    [Test]
    public void Matmul_rejects_mismatched_shapes()
    {
        using var a = RandomTensor(3, 4);
        using var b = RandomTensor(5, 6);
        using var c = RandomTensor(3, 6);
        var e = Assert.Throws<ArgumentException>(() => Ops.Matmul(a, b, c))!;
        Assert.That(e.Message, Does.Contain("op(A) is 3x4"));
    }
}
