using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace EditRuntime.Vulkan;

/// <summary>Where a buffer lives: device memory for tensors, or host-visible staging for uploads and downloads.</summary>
public enum MemoryKind { Device, Staging }

/// <summary>
/// One VkDeviceMemory with one VkBuffer bound over all of it. Shaders reach sub-allocations by
/// buffer device address (block address + offset), so no descriptor ever limits a tensor to
/// maxStorageBufferRange; the only limit is the block's size (≤ maxMemoryAllocationSize).
/// </summary>
public sealed unsafe class MemoryBlock
{
    internal DeviceMemory Memory;
    internal Buffer Buffer;
    public ulong Size { get; }
    public ulong Address { get; internal set; }
    public byte* Mapped { get; internal set; }
    public bool Dedicated { get; }
    internal readonly FreeList Free;
    internal int LiveAllocations;

    internal MemoryBlock(ulong size, bool dedicated)
    {
        Size = size;
        Dedicated = dedicated;
        Free = new FreeList(size);
    }
}

/// <summary>
/// First-fit free list over [0, size) with coalescing of neighbours on release.
/// Kept separate from Vulkan so it can be unit-tested.
/// </summary>
public sealed class FreeList
{
    // Sorted by offset, never adjacent (adjacent ranges are merged).
    private readonly List<(ulong Offset, ulong Size)> _free = new();
    public ulong Capacity { get; }

    public FreeList(ulong capacity)
    {
        Capacity = capacity;
        _free.Add((0, capacity));
    }

    public ulong FreeBytes => _free.Aggregate(0UL, (s, r) => s + r.Size);
    public int FragmentCount => _free.Count;

    /// <summary>Returns the offset of a range of <paramref name="size"/> bytes aligned to <paramref name="alignment"/>, or null.</summary>
    public ulong? Allocate(ulong size, ulong alignment)
    {
        for (int i = 0; i < _free.Count; i++)
        {
            var (off, sz) = _free[i];
            ulong aligned = (off + alignment - 1) / alignment * alignment;
            ulong pad = aligned - off;
            if (sz < pad + size) continue;
            // Keep the padding in front and the tail after as free ranges.
            var rest = new List<(ulong, ulong)>(2);
            if (pad > 0) rest.Add((off, pad));
            if (sz > pad + size) rest.Add((aligned + size, sz - pad - size));
            _free.RemoveAt(i);
            _free.InsertRange(i, rest);
            return aligned;
        }
        return null;
    }

    public void Release(ulong offset, ulong size)
    {
        if (size == 0) return;
        int i = 0;
        while (i < _free.Count && _free[i].Offset < offset) i++;
        if (i > 0 && _free[i - 1].Offset + _free[i - 1].Size > offset)
            throw new InvalidOperationException($"Double free or overlap at offset {offset}.");
        if (i < _free.Count && offset + size > _free[i].Offset)
            throw new InvalidOperationException($"Double free or overlap at offset {offset}.");
        _free.Insert(i, (offset, size));
        if (i + 1 < _free.Count && _free[i].Offset + _free[i].Size == _free[i + 1].Offset)
        {
            _free[i] = (_free[i].Offset, _free[i].Size + _free[i + 1].Size);
            _free.RemoveAt(i + 1);
        }
        if (i > 0 && _free[i - 1].Offset + _free[i - 1].Size == _free[i].Offset)
        {
            _free[i - 1] = (_free[i - 1].Offset, _free[i - 1].Size + _free[i].Size);
            _free.RemoveAt(i);
        }
    }
}

/// <summary>A sub-allocation: a byte range of one block. Its device address is what shaders receive.</summary>
public sealed unsafe class GpuBuffer : IDisposable
{
    private readonly VulkanDevice _device;
    internal MemoryBlock Block { get; }
    public ulong Offset { get; }
    public ulong Size { get; }
    public MemoryKind Kind { get; }
    private bool _disposed;

    internal GpuBuffer(VulkanDevice device, MemoryBlock block, ulong offset, ulong size, MemoryKind kind)
    {
        _device = device; Block = block; Offset = offset; Size = size; Kind = kind;
    }

    public ulong Address => Block.Address + Offset;

    /// <summary>Host pointer, or null when the memory is not mapped (device-local memory of a discrete GPU).</summary>
    public byte* Mapped => Block.Mapped == null ? null : Block.Mapped + Offset;

    /// <summary>The whole buffer, as a range for hazard tracking.</summary>
    public BufferRange Range => new(Block, Offset, Size);

    public BufferRange Slice(ulong offset, ulong size) => new(Block, Offset + offset, size);

    public bool IsDisposed => _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _device.Release(this);
    }
}

/// <summary>A byte range of a block, as kernels declare what they read and write.</summary>
public readonly record struct BufferRange(MemoryBlock Block, ulong Offset, ulong Size)
{
    public bool Overlaps(in BufferRange o) =>
        ReferenceEquals(Block, o.Block) && Offset < o.Offset + o.Size && o.Offset < Offset + Size;
}

/// <summary>Allocator bookkeeping shown by benchmarks and reports.</summary>
public sealed class MemoryStats
{
    public ulong ReservedBytes;   // held from Vulkan in blocks
    public ulong InUseBytes;      // handed out to live buffers
    public ulong PeakInUseBytes;
    public int Blocks;
    public ulong DeferredFreeBytes;   // freed by their owners, returned when the recorded work that may use them completes
    public long DeferredFlushes;      // submits forced because DeferredFreeBytes passed DeviceOptions.DeferredFreeLimitBytes
}
