namespace EditRuntime.Editing;

/// <summary>
/// The random numbers an editor draws (initial weights, gate noise), from a seed its hyper-parameters
/// state, so an edit is reproducible to the bit. It is System.Random with that seed — .NET keeps the
/// seeded generator's sequence fixed across versions (the seeded constructor selects the legacy
/// algorithm for exactly that reason) — and two transforms of it written down here once. The numbers are
/// those the editors drew from <c>Compute.HostReference.RandomNormal</c> before they had a toolkit (a test
/// checks both give the same floats), so committed results reproduce.
/// </summary>
public sealed class SeededRandom(int seed)
{
    private readonly Random _rng = new(seed);

    public int Seed { get; } = seed;

    /// <summary>Shuffles in place (System.Random's Fisher–Yates on this stream).</summary>
    public void Shuffle<T>(Span<T> values) => _rng.Shuffle(values);

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => _rng.NextDouble();

    /// <summary>
    /// n draws of N(0, std²) by Box–Muller, one pair of uniforms per value (only the cosine branch is
    /// used, which wastes half the stream but is the stream every committed result was made with).
    /// </summary>
    public float[] Normal(long n, float std = 1f)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++)
        {
            double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
            x[i] = std * (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    /// <summary>n draws uniform in [−bound, bound) (as float32: (2u − 1)·bound).</summary>
    public float[] Uniform(long n, float bound)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)(_rng.NextDouble() * 2 - 1) * bound;
        return x;
    }
}
