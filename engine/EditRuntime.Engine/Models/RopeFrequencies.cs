namespace EditRuntime.Models;

/// <summary>
/// LLaMA 3's rope_scaling ("rope_type": "llama3" in a Hugging Face config.json): the frequencies of long wavelengths are
/// divided by <paramref name="Factor"/>, short ones kept, and the band between blended (see <see cref="RopeFrequencies.Compute"/>).
/// LLaMA 3.1: factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192.
/// </summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>The inverse-frequency table of rotary position embedding, computed on the host in float64 and uploaded as the
/// invFreq tensor of <see cref="Backends.ILlamaOps.Rope"/>.</summary>
public static class RopeFrequencies
{
    /// <summary>
    /// invFreq[i] = 1 / theta^(2i / headDim) for i &lt; headDim/2 (rope_theta), in float64, then, with
    /// <paramref name="scaling"/> (LLaMA 3's "llama3" rope_scaling), with wavelen = 2π / invFreq[i],
    /// L = original_max_position_embeddings:
    /// <list type="bullet">
    /// <item>wavelen &gt; L / low_freq_factor (low frequencies): invFreq / factor;</item>
    /// <item>wavelen &lt; L / high_freq_factor (high frequencies): invFreq unchanged;</item>
    /// <item>otherwise (both bounds included): smooth = (L / wavelen − low_freq_factor) / (high_freq_factor − low_freq_factor),
    /// (1 − smooth)·invFreq / factor + smooth·invFreq.</item>
    /// </list>
    /// Each value is rounded once to float32 at the end. (Hugging Face computes the table in float32 tensors, so its
    /// values may differ from these by an ulp; these are the correctly rounded ones.)
    /// </summary>
    public static float[] Compute(int headDim, double theta, Llama3RopeScaling? scaling = null)
    {
        const string op = "rope_frequencies";
        if (headDim < 2 || headDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"{op}: headDim must be even and ≥ 2, got {headDim}.");
        if (!double.IsFinite(theta) || theta <= 0)
            throw new ArgumentOutOfRangeException(nameof(theta), theta, $"{op}: theta (rope_theta) must be finite and > 0, got {theta}.");
        if (scaling is not null)
        {
            if (!double.IsFinite(scaling.Factor) || scaling.Factor <= 0)
                throw new ArgumentOutOfRangeException(nameof(scaling), $"{op}: scaling.Factor (rope_scaling.factor) must be finite and > 0, got {scaling.Factor}.");
            if (!double.IsFinite(scaling.LowFreqFactor) || scaling.LowFreqFactor <= 0)
                throw new ArgumentOutOfRangeException(nameof(scaling), $"{op}: scaling.LowFreqFactor (rope_scaling.low_freq_factor) must be finite and > 0, got {scaling.LowFreqFactor}.");
            if (!double.IsFinite(scaling.HighFreqFactor) || scaling.HighFreqFactor <= scaling.LowFreqFactor)
                throw new ArgumentOutOfRangeException(nameof(scaling),
                    $"{op}: scaling.HighFreqFactor (rope_scaling.high_freq_factor) must be finite and > LowFreqFactor {scaling.LowFreqFactor}, got {scaling.HighFreqFactor}.");
            if (scaling.OriginalMaxPositionEmbeddings <= 0)
                throw new ArgumentOutOfRangeException(nameof(scaling),
                    $"{op}: scaling.OriginalMaxPositionEmbeddings (rope_scaling.original_max_position_embeddings) must be > 0, got {scaling.OriginalMaxPositionEmbeddings}.");
        }

        var table = new float[headDim / 2];
        for (int i = 0; i < table.Length; i++)
        {
            double inv = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
            if (scaling is not null) inv = Llama3(inv, scaling);
            table[i] = (float)inv;
        }
        return table;
    }

    private static double Llama3(double inv, Llama3RopeScaling s)
    {
        double original = s.OriginalMaxPositionEmbeddings;
        double wavelen = 2 * Math.PI / inv;
        if (wavelen > original / s.LowFreqFactor) return inv / s.Factor;
        if (wavelen < original / s.HighFreqFactor) return inv;
        double smooth = (original / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * inv / s.Factor + smooth * inv;
    }
}
