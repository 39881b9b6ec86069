namespace EditRuntime.Compute;

/// <summary>Float64 loops on the host: the ground truth the first kernels are tested against.</summary>
public static class HostReference
{
    /// <summary>C = alpha·op(A)·op(B) + beta·C0 per batch, in float64, row-major: A (batch, M, K) or (batch, K, M) if transA,
    /// B (batch, K, N) or (batch, N, K) if transB, C (batch, M, N).</summary>
    public static double[] Matmul(float[] a, float[] b, float[]? c0, int batch, int M, int N, int K,
        bool transA, bool transB, double alpha = 1, double beta = 0)
    {
        var c = new double[(long)batch * M * N];
        Parallel.For(0, batch * M, bm =>
        {
            int bi = bm / M, m = bm % M;
            long aOff = (long)bi * M * K, bOff = (long)bi * K * N, cOff = (long)bi * M * N;
            for (int n = 0; n < N; n++)
            {
                double s = 0;
                for (int k = 0; k < K; k++)
                {
                    double av = transA ? a[aOff + (long)k * M + m] : a[aOff + (long)m * K + k];
                    double bv = transB ? b[bOff + (long)n * K + k] : b[bOff + (long)k * N + n];
                    s += av * bv;
                }
                long idx = cOff + (long)m * N + n;
                c[idx] = alpha * s + (beta != 0 && c0 != null ? beta * c0[idx] : 0);
            }
        });
        return c;
    }

    /// <summary>‖out − ref‖₂ / ‖ref‖₂ (absolute norm when ref is all zeros); NaN or ∞ anywhere in out gives +∞.</summary>
    public static double RelativeError(ReadOnlySpan<float> output, ReadOnlySpan<double> reference)
    {
        if (output.Length != reference.Length) throw new ArgumentException($"Lengths differ: {output.Length} vs {reference.Length}.");
        double num = 0, den = 0;
        for (int i = 0; i < output.Length; i++)
        {
            double o = output[i];
            if (!double.IsFinite(o)) return double.PositiveInfinity;
            double d = o - reference[i];
            num += d * d;
            den += reference[i] * reference[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    public static float[] RandomNormal(Random rng, long n, float scale = 1f)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = scale * (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }
}
