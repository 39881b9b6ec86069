using System.Reflection;

namespace EditRuntime.Reports;

/// <summary>What the running binaries were built from (Directory.Build.targets writes it into the informational version).</summary>
public static class BuildInfo
{
    /// <summary>The git commit the engine was built from, "+dirty" when tracked files differed from it at build time; "unknown" when built outside a repository.</summary>
    public static string Commit { get; } = FromInformationalVersion(
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);

    /// <summary>"1.0.0+SHA" → SHA, "1.0.0+SHA.dirty" → SHA+dirty, anything else → "unknown".</summary>
    public static string FromInformationalVersion(string? version)
    {
        var plus = version?.IndexOf('+') ?? -1;
        if (version is null || plus < 0 || plus == version.Length - 1) return "unknown";
        var rev = version[(plus + 1)..];
        return rev.EndsWith(".dirty", StringComparison.Ordinal) ? rev[..^".dirty".Length] + "+dirty" : rev;
    }
}
