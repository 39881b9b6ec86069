using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

public sealed partial class VulkanBackend : IDeviceMemory
{
    /// <summary>The device-local heap; on unified memory (lavapipe, integrated GPUs) no more than the host can still give.</summary>
    public long DeviceMemoryBytes
    {
        get
        {
            long local = (long)Math.Min(Device.Info.DeviceLocalBytes, long.MaxValue);
            return Device.Info.UnifiedMemory ? Math.Min(local, HostMemory.AvailableBytes()) : local;
        }
    }
}
