using System.Runtime.InteropServices;
using EditRuntime.Backends;

namespace EditRuntime.Vulkan;

/// <summary>A tensor in Vulkan device memory: a row-major shape over one <see cref="GpuBuffer"/> (4 bytes per element).</summary>
public sealed class GpuTensor : Tensor
{
    private readonly IBackend? _owner;

    public VulkanDevice Device { get; }
    public GpuBuffer Buffer { get; }

    public GpuTensor(VulkanDevice device, params int[] shape) : this(device, DType.F32, shape, null) { }

    public GpuTensor(VulkanDevice device, DType dtype, int[] shape, IBackend? owner) : base(dtype, shape)
    {
        Device = device;
        _owner = owner;
        Buffer = device.Allocate((ulong)Count * 4);
    }

    public static GpuTensor FromArray(VulkanDevice device, float[] data, params int[] shape)
    {
        var t = new GpuTensor(device, shape);
        if (data.Length != t.Count) { t.Dispose(); throw new ArgumentException($"{data.Length} values for shape {Format(shape)} ({t.Count} elements)."); }
        t.Upload(data);
        return t;
    }

    public override IBackend Backend => _owner ?? throw new InvalidOperationException("This GpuTensor was made directly on a device, not by a backend.");
    public override bool IsDisposed => Buffer.IsDisposed;
    public ulong Address => Buffer.Address;
    public ulong Bytes => (ulong)Count * 4;
    public BufferRange Range => Buffer.Slice(0, Math.Max(4, Bytes));

    public void Upload(ReadOnlySpan<float> data)
    {
        if (data.Length != Count) throw new ArgumentException($"Upload of {data.Length} values into a tensor of {Count}.");
        Device.Upload(Buffer, MemoryMarshal.AsBytes(data));
    }

    public void Upload(ReadOnlySpan<int> data)
    {
        if (data.Length != Count) throw new ArgumentException($"Upload of {data.Length} values into a tensor of {Count}.");
        Device.Upload(Buffer, MemoryMarshal.AsBytes(data));
    }

    /// <summary>Copies the values to the host (waits for the recorded work that produces them).</summary>
    public float[] ToArray()
    {
        var a = new float[Count];
        Device.Download(Buffer, MemoryMarshal.AsBytes(a.AsSpan()));
        return a;
    }

    public int[] ToIntArray()
    {
        var a = new int[Count];
        Device.Download(Buffer, MemoryMarshal.AsBytes(a.AsSpan()));
        return a;
    }

    public override string ToString() => $"GpuTensor {DType} {ShapeString}";

    public override void Dispose() => Buffer.Dispose();
}
