using EditRuntime.Vulkan;
using NUnit.Framework;
using Silk.NET.Vulkan;

namespace EditRuntime.Tests;

public sealed class DeviceSelectionTests
{
    private static PhysicalDeviceInfo Fake(int index, string name, PhysicalDeviceType type) => new()
    {
        Index = index, Handle = new PhysicalDevice(index + 1), Name = name, Type = type, DriverName = "d", DriverInfo = "i", ApiVersion = "1.3.0",
        VendorId = 0, DeviceLocalBytes = 1, HostVisibleBytes = 1, UnifiedMemory = false, SubgroupSize = 32,
        MaxSharedMemoryBytes = 1, MaxWorkgroupCount = new uint[] { 1, 1, 1 }, MaxWorkgroupInvocations = 1,
        MaxStorageBufferRange = 1, MaxMemoryAllocationSize = 1, MaxPushConstantsSize = 128, Fp16 = true, Fp64 = true,
        Int64 = true, BufferDeviceAddress = true, Timestamps = true, TimestampPeriodNs = 1,
    };

    private static readonly List<PhysicalDeviceInfo> All = new()
    {
        Fake(0, "llvmpipe (LLVM 15)", PhysicalDeviceType.Cpu),
        Fake(1, "Virtio GPU", PhysicalDeviceType.VirtualGpu),
        Fake(2, "Intel UHD 770", PhysicalDeviceType.IntegratedGpu),
        Fake(3, "NVIDIA H100", PhysicalDeviceType.DiscreteGpu),
    };

    [Test]
    public void Prefers_discrete_then_integrated_then_virtual_then_cpu()
    {
        Assert.That(DeviceSelector.Pick(All, null).Name, Is.EqualTo("NVIDIA H100"));
        Assert.That(DeviceSelector.Pick(All.Take(3).ToList(), null).Name, Is.EqualTo("Intel UHD 770"));
        Assert.That(DeviceSelector.Pick(All.Take(2).ToList(), null).Name, Is.EqualTo("Virtio GPU"));
        Assert.That(DeviceSelector.Pick(All.Take(1).ToList(), "").Name, Does.StartWith("llvmpipe"));
    }

    [Test]
    public void Override_by_index_or_name()
    {
        Assert.That(DeviceSelector.Pick(All, "0").Name, Does.StartWith("llvmpipe"));
        Assert.That(DeviceSelector.Pick(All, "intel").Name, Is.EqualTo("Intel UHD 770"));
        Assert.That(DeviceSelector.Pick(All, " LLVMPIPE ").Index, Is.Zero);
    }

    [Test]
    public void Bad_override_lists_the_devices()
    {
        var e = Assert.Throws<ArgumentException>(() => DeviceSelector.Pick(All, "radeon"))!;
        Assert.That(e.Message, Does.Contain("radeon").And.Contain("3: NVIDIA H100 (discrete GPU)"));
        Assert.Throws<ArgumentException>(() => DeviceSelector.Pick(All, "9"));
        Assert.Throws<InvalidOperationException>(() => DeviceSelector.Pick(new List<PhysicalDeviceInfo>(), null));
    }
}
