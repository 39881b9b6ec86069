using Silk.NET.Vulkan;

namespace EditRuntime.Vulkan;

/// <summary>What `editrt devices` shows about one Vulkan physical device, read once at start-up.</summary>
public sealed record PhysicalDeviceInfo
{
    public required int Index { get; init; }
    public required PhysicalDevice Handle { get; init; }
    public required string Name { get; init; }
    public required PhysicalDeviceType Type { get; init; }
    public required string DriverName { get; init; }
    public required string DriverInfo { get; init; }
    public required string ApiVersion { get; init; }
    public required uint VendorId { get; init; }
    public required ulong DeviceLocalBytes { get; init; }
    public required ulong HostVisibleBytes { get; init; }
    /// <summary>Some device-local memory type is also host-visible and coherent in a heap that holds all device memory (CPU devices, integrated GPUs).</summary>
    public required bool UnifiedMemory { get; init; }
    public required uint SubgroupSize { get; init; }
    public required uint MaxSharedMemoryBytes { get; init; }
    public required uint[] MaxWorkgroupCount { get; init; }
    public required uint MaxWorkgroupInvocations { get; init; }
    public required ulong MaxStorageBufferRange { get; init; }
    public required ulong MaxMemoryAllocationSize { get; init; }
    public required uint MaxPushConstantsSize { get; init; }
    public required bool Fp16 { get; init; }
    public required bool Fp64 { get; init; }
    public required bool Int64 { get; init; }
    public required bool BufferDeviceAddress { get; init; }
    public required bool Timestamps { get; init; }
    public required float TimestampPeriodNs { get; init; }

    /// <summary>A CPU implementation (lavapipe, SwiftShader): kernels pick CPU-friendly workgroup shapes.</summary>
    public bool IsCpu => Type == PhysicalDeviceType.Cpu;

    public string TypeName => Type switch
    {
        PhysicalDeviceType.DiscreteGpu => "discrete GPU",
        PhysicalDeviceType.IntegratedGpu => "integrated GPU",
        PhysicalDeviceType.VirtualGpu => "virtual GPU",
        PhysicalDeviceType.Cpu => "CPU",
        _ => "other",
    };

    /// <summary>Higher is preferred: discrete &gt; integrated &gt; virtual &gt; CPU &gt; other.</summary>
    public int Preference => Type switch
    {
        PhysicalDeviceType.DiscreteGpu => 4,
        PhysicalDeviceType.IntegratedGpu => 3,
        PhysicalDeviceType.VirtualGpu => 2,
        PhysicalDeviceType.Cpu => 1,
        _ => 0,
    };
}

/// <summary>Chooses the device: the user's override if given, else the most preferred type (first one on ties).</summary>
public static class DeviceSelector
{
    public const string EnvironmentVariable = "EDITRT_DEVICE";

    /// <param name="devices">All devices, in enumeration order.</param>
    /// <param name="selector">null/empty for automatic; else a device index or a case-insensitive part of its name.</param>
    public static PhysicalDeviceInfo Pick(IReadOnlyList<PhysicalDeviceInfo> devices, string? selector)
    {
        if (devices.Count == 0)
            throw new InvalidOperationException(
                "No Vulkan device found. Install a driver (for a CPU: apt-get install mesa-vulkan-drivers) or run 'make deps'.");
        string list() => string.Join("; ", devices.Select(d => $"{d.Index}: {d.Name} ({d.TypeName})"));
        if (!string.IsNullOrWhiteSpace(selector))
        {
            var s = selector.Trim();
            if (int.TryParse(s, out int idx))
            {
                var byIndex = devices.FirstOrDefault(d => d.Index == idx);
                return byIndex ?? throw new ArgumentException($"Device index {idx} does not exist. Devices: {list()}");
            }
            var matches = devices.Where(d => d.Name.Contains(s, StringComparison.OrdinalIgnoreCase)).ToList();
            if (matches.Count == 0) throw new ArgumentException($"No Vulkan device name contains \"{s}\". Devices: {list()}");
            return matches[0];
        }
        return devices.OrderByDescending(d => d.Preference).ThenBy(d => d.Index).First();
    }
}
