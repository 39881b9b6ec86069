using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

internal static class Cli
{
    /// <summary>Runs a command body: errors become one "editrt: error: ..." line and exit code 1;
    /// validation messages collected on the way are printed and make the exit code 2.</summary>
    public static int Run(Func<int> body)
    {
        ValidationLog.EchoToStderr = true;
        int rc;
        try { rc = body(); }
        catch (Exception e)
        {
            Console.Error.WriteLine($"editrt: error: {e.Message}");
            if (Environment.GetEnvironmentVariable("EDITRT_TRACE") == "1") Console.Error.WriteLine(e);
            rc = 1;
        }
        if (ValidationLog.Count > 0)
        {
            Console.Error.WriteLine($"editrt: {ValidationLog.Count} Vulkan validation message(s) (see above).");
            if (rc == 0) rc = 2;
        }
        return rc;
    }

    /// <summary>Median of timing samples (benchmarks report medians: robust to a noisy machine).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var s = values.OrderBy(x => x).ToList();
        if (s.Count == 0) throw new ArgumentException("Median of no samples.");
        return s.Count % 2 == 1 ? s[s.Count / 2] : 0.5 * (s[s.Count / 2 - 1] + s[s.Count / 2]);
    }

    /// <summary>The benchmarks' --backend: "both" (Vulkan then Torch) or a comma-separated list of vulkan and torch.</summary>
    public static string[] BackendNames(string backends)
    {
        var names = backends == "both" ? ["vulkan", "torch"] : backends.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var n in names)
            if (n is not ("vulkan" or "torch")) throw new ArgumentException($"--backend: \"{n}\"; expected vulkan, torch or both.");
        return names.Length > 0 ? names : throw new ArgumentException("--backend: give vulkan, torch or both.");
    }

    public static string Bytes(ulong b) => b >= 1UL << 30 ? $"{b / (double)(1UL << 30):0.#} GiB"
        : b >= 1UL << 20 ? $"{b / (double)(1UL << 20):0.#} MiB"
        : b >= 1UL << 10 ? $"{b / 1024.0:0.#} KiB" : $"{b} B";
}
