namespace EditRuntime.Backends;

/// <summary>Device time of one kernel (or copy/fill) the backend ran, labelled as its kernel is named ("core/matmul&lt;0,1,1&gt;").</summary>
public readonly record struct KernelTiming(string Label, double Milliseconds);

/// <summary>
/// Per-kernel device time, for a backend that can measure it (Vulkan: GPU timestamps around every command).
/// The Torch backend runs on the CPU and has none; callers test for this interface (`--profile` refuses a
/// backend without it). Profiling slows the run a little (two timestamps per command).
/// </summary>
public interface IKernelProfiler
{
    /// <summary>Times every command issued from now on; forgets what was collected before.</summary>
    void BeginProfiling();
    /// <summary>Waits for the work issued so far, stops timing, and returns every timing since <see cref="BeginProfiling"/>, in issue order.</summary>
    IReadOnlyList<KernelTiming> EndProfiling();
    /// <summary>Submissions of recorded work to the device so far (monotonic): how often the host waited.</summary>
    long Submits { get; }
}
