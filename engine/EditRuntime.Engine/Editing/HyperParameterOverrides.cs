namespace EditRuntime.Editing;

/// <summary>The command line's <c>--set key=value</c> overrides of an editor's hyper-parameters (used by every command that builds an editor).</summary>
public static class HyperParameterOverrides
{
    /// <summary>key → value text, in order; a missing '=', an empty key or a key given twice is an error naming the flag.</summary>
    public static IReadOnlyDictionary<string, string> Parse(IEnumerable<string> items)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--set {item}: expected key=value.");
            string key = item[..eq].Trim();
            if (key.Length == 0) throw new ArgumentException($"--set {item}: expected key=value.");
            if (!result.TryAdd(key, item[(eq + 1)..]))
                throw new ArgumentException($"--set {item}: \"{key}\" is set twice.");
        }
        return result;
    }
}
