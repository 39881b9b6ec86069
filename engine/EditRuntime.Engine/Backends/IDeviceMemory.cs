namespace EditRuntime.Backends;

/// <summary>
/// How much memory a backend's tensors can take: the device-local heap of a GPU. Backends without it (the Torch
/// backend on the CPU) hold tensors in host memory, bounded by <see cref="HostMemory.AvailableBytes"/>.
/// </summary>
public interface IDeviceMemory
{
    /// <summary>Bytes of memory the device's tensors can take in all.</summary>
    long DeviceMemoryBytes { get; }
}

/// <summary>The host's memory that a new allocation can still take.</summary>
public static class HostMemory
{
    /// <summary>MemAvailable from /proc/meminfo on Linux (what can be allocated without swapping), else the memory .NET sees.</summary>
    public static long AvailableBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line["MemAvailable:".Length..].Trim().Split(' ')[0], out long kib))
                    return kib * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>What a backend's tensors can take: its device heap, or the host's available memory.</summary>
    public static long For(IBackend backend) => backend is IDeviceMemory d ? d.DeviceMemoryBytes : AvailableBytes();
}
