using System.Globalization;

namespace EditRuntime.Editing;

/// <summary>
/// The device memory an editor's state will take, stated by the editor in its constructor before it
/// allocates, and checked against <see cref="EditorContext.DeviceMemoryLimit"/>: a configuration that would
/// not fit is refused at once, naming the hyper-parameters that size it, instead of failing an allocation
/// halfway through building the editor (or hours into a run).
/// </summary>
public static class EditorMemory
{
    /// <param name="bytes">What the state will need, in bytes.</param>
    /// <param name="what">What it is ("LoRA banks").</param>
    /// <param name="keys">The hyper-parameters the size follows from (named in the error with their values).</param>
    /// <exception cref="HyperParameterException">The estimate exceeds the context's limit.</exception>
    public static void Require(EditorContext context, HyperParameters hparams, long bytes, string what, params string[] keys)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes), $"{hparams.Editor}: a memory estimate of {bytes} bytes.");
        if (context.DeviceMemoryLimit is not long limit || bytes <= limit) return;
        var values = string.Join(", ", keys.Select(k => $"{k} = {HyperParameters.Describe(hparams.ToJson()[k])}"));
        var sources = string.Join(", ", keys.Select(hparams.SourceOf).Distinct());
        throw new HyperParameterException($"{sources}: the {what} of {hparams.Editor} would take {MiB(bytes)} of device memory ({values}), " +
                                          $"over the limit of {MiB(limit)}; lower {string.Join(" or ", keys)}.");
    }

    private static string MiB(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";
}
